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
fn a_masked_eq_rule_without_value_two_compares_with_zero() {
    if !require_root("a_masked_eq_rule_without_value_two_compares_with_zero") {
        return;
    }
    // As Go clients write them (`omitempty` drops a valueTwo of 0): chmod's mode with its
    // sticky, setgid and setuid bits masked, compared with 0. A plain mode is refused, one with
    // the sticky bit passes.
    let root = Root::new();
    let mask = 0o7000;
    let b = with_profile(
        "touch /tmp/f; chmod 644 /tmp/f 2>&1; chmod 1644 /tmp/f && echo sticky made",
        true,
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [
                   {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": mask, "op": "SCMP_CMP_MASKED_EQ"}]},
                   {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": mask, "op": "SCMP_CMP_MASKED_EQ"}]}]}),
    );
    let out = root.run_ok(&b);
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("sticky made"), "{out}");
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
               "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
    );
    let id = unique_id("badsec");
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        error_line(&out).contains("index 6 is above 5"),
        "{}",
        error_line(&out)
    );
    assert!(!root.container_dir(&id).exists());
}

/// struct seccomp_notif and seccomp_notif_resp (linux/seccomp.h).
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

/// A seccomp agent: takes the listener from the runtime, then answers every notified call
/// with ENOSPC. Returns (the message it got, the syscall numbers it saw).
fn agent(
    listener: std::os::unix::net::UnixListener,
    calls: usize,
) -> std::thread::JoinHandle<(serde_json::Value, Vec<i32>)> {
    agent_after(listener, 0, calls)
}

/// `agent`, first taking (and keeping) the listeners of `skip` earlier connections.
fn agent_after(
    listener: std::os::unix::net::UnixListener,
    skip: usize,
    calls: usize,
) -> std::thread::JoinHandle<(serde_json::Value, Vec<i32>)> {
    use std::os::fd::AsRawFd;
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for _ in 0..skip {
            kept.push(listener.accept().unwrap().0);
        }
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = -1;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                fd = fds[0];
            }
        }
        let n = msg.bytes;
        let text: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert!(fd >= 0, "the listener fd came with the message");
        let mut seen = Vec::new();
        for _ in 0..calls {
            let mut req = Notif::default();
            // SAFETY: the ioctls of a seccomp listener fd with the structs they take.
            if unsafe { libc::ioctl(fd, NOTIF_RECV, &mut req as *mut Notif) } != 0 {
                break;
            }
            seen.push(req.nr);
            let resp = NotifResp {
                id: req.id,
                val: 0,
                error: -libc::ENOSPC,
                flags: 0,
            };
            unsafe { libc::ioctl(fd, NOTIF_SEND, &resp as *const NotifResp) };
        }
        (text, seen)
    })
}

#[test]
fn notify_hands_the_listener_to_the_agent_for_init_and_exec() {
    if !require_root("notify_hands_the_listener_to_the_agent_for_init_and_exec") {
        return;
    }
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let handle = agent(listener, 1);
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "husk-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]});
    let b = with_profile("mkdir /tmp/d 2>&1; echo done", true, profile.clone());
    let id = unique_id("notify");
    let out = root.hr(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("No space left on device") && stdout.contains("done"),
        "the agent answered: {stdout}"
    );
    let (msg, seen) = handle.join().unwrap();
    assert_eq!(msg["fds"], json!(["seccompFd"]));
    assert_eq!(msg["metadata"], "husk-test");
    assert_eq!(msg["state"]["id"], id.as_str());
    assert!(msg["pid"].as_i64().unwrap() > 0, "{msg}");
    assert_eq!(seen, [libc::SYS_mkdir as i32], "{seen:?}");
    assert!(!b.rootfs().join("tmp/d").exists());

    // exec into a running container: the exec'd process hands over its own listener.
    let sock2 = dir.path().join("agent2.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock2).unwrap();
    let handle2 = agent_after(listener, 1, 1);
    let mut profile2 = profile;
    profile2["listenerPath"] = json!(sock2);
    let b = with_profile("sleep 30", true, profile2);
    let id = unique_id("notify-exec");
    root.track(&id);
    let out = root.hr(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let init_pid = root.state(&id)["pid"].as_i64().unwrap();
    let out = root.hr(&["exec", &id, "sh", "-c", "mkdir /tmp/e 2>&1; echo exec-done"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("No space left on device") && stdout.contains("exec-done"),
        "{stdout} {}",
        text(&out.stderr)
    );
    let (msg, seen) = handle2.join().unwrap();
    assert_eq!(msg["state"]["id"], id.as_str());
    let pid = msg["pid"].as_i64().unwrap();
    assert!(
        pid > 0 && pid != init_pid,
        "the exec'd process's pid: {msg}"
    );
    assert_eq!(seen, [libc::SYS_mkdir as i32]);
    let _ = root.hr(&["kill", &id, "KILL"]);
}

#[test]
fn without_no_new_privs_the_agent_gets_the_listener_during_create() {
    if !require_root("without_no_new_privs_the_agent_gets_the_listener_during_create") {
        return;
    }
    // Agents (and runc's callers) wait for the listener during `create`, as runc sends it.
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let handle = agent(listener, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join().unwrap());
    });
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]});
    let b = with_profile("echo started", false, profile);
    let id = unique_id("notify-create");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let (msg, _) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the agent got no listener before start");
    assert_eq!(msg["state"]["id"], id.as_str());
    assert_eq!(msg["state"]["status"], "created");
    root.ok(&["start", &id]);
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
}
