//! Seccomp filters from the config, enforced by the kernel inside the container.

mod common;

use common::*;
use serde_json::json;

fn with_profile(script: &str, nnp: bool, profile: serde_json::Value) -> Bundle {
    let mut b = Bundle::new(&["sh", "-c", script]);
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = nnp.into();
        c["linux"]["seccomp"] = profile.clone();
    });
    b
}

#[test]
fn errno_rules_refuse_syscalls_with_and_without_no_new_privs() {
    if !require_root("errno_rules_refuse_syscalls_with_and_without_no_new_privs") {
        return;
    }
    let root = Root::new();
    for nnp in [true, false] {
        let b = with_profile(
            "mkdir /tmp/d 2>&1 || true; grep Seccomp: /proc/self/status; echo alive",
            nnp,
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}),
        );
        let out = root.run_ok(&b);
        assert!(out.contains("Permission denied"), "nnp={nnp}: {out}");
        assert!(out.contains("Seccomp:\t2"), "filter mode: {out}");
        assert!(out.trim_end().ends_with("alive"));
        assert!(!b.rootfs().join("tmp/d").exists());
    }
}

#[test]
fn kill_process_ends_the_container_with_sigsys() {
    if !require_root("kill_process_ends_the_container_with_sigsys") {
        return;
    }
    let root = Root::new();
    // busybox sh reads $PPID with getppid at start-up.
    let b = with_profile(
        "echo $PPID",
        true,
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
    );
    let (code, _, _) = root.run(&b);
    assert_eq!(code, 128 + libc::SIGSYS, "killed by SIGSYS");
}

#[test]
fn argument_conditions_select_calls() {
    if !require_root("argument_conditions_select_calls") {
        return;
    }
    let root = Root::new();
    // personality(PER_LINUX32 = 8) is refused; other personality calls and uname are not.
    let b = with_profile(
        "linux32 uname -m 2>&1; echo rc=$?; uname -m",
        true,
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}),
    );
    let out = root.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("rc=") && *l != "rc=0"),
        "{out}"
    );
    assert_eq!(lines.last().copied(), Some(std::env::consts::ARCH), "{out}");
}

#[test]
fn exec_processes_get_the_filter_too() {
    if !require_root("exec_processes_get_the_filter_too") {
        return;
    }
    let root = Root::new();
    let b = with_profile(
        "sleep 1000",
        true,
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    let id = unique_id("secexec");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = root.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir /tmp/e 2>&1; grep Seccomp: /proc/self/status",
    ]);
    assert!(
        out.contains("Operation not permitted") && out.contains("Seccomp:\t2"),
        "{out}"
    );
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn a_bad_profile_fails_create_cleanly() {
    if !require_root("a_bad_profile_fails_create_cleanly") {
        return;
    }
    let root = Root::new();
    let b = with_profile(
        "true",
        true,
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]}),
    );
    let id = unique_id("badsec");
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        error_line(&out).contains("valueTwo"),
        "{}",
        error_line(&out)
    );
    assert!(!root.container_dir(&id).exists());
}
