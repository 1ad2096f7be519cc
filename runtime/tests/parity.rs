//! Where callers could tell husk-runtime from runc, each pinned down: containerd's shim, podman
//! and Go clients rely on runc's behaviour in these corners.

mod common;

use common::*;
use serde_json::json;

#[test]
fn kill_all_of_a_stopped_container_succeeds_as_runcs_does() {
    if !require_root("kill_all_of_a_stopped_container_succeeds_as_runcs_does") {
        return;
    }
    // containerd's shim sends `kill --all ID KILL` after every CRI StopContainer.
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("killall");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    root.wait_status(&id, "stopped");
    root.ok(&["kill", "--all", &id, "KILL"]);
    // Without --all a stopped container still cannot be signalled.
    assert!(!root.hr(&["kill", &id, "KILL"]).status.success());
    root.ok(&["delete", &id]);
}

#[test]
fn kernel_memory_limits_are_ignored_with_a_warning() {
    if !require_root("kernel_memory_limits_are_ignored_with_a_warning") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["echo", "ran"]);
    b.edit(|c| {
        c["linux"]["resources"] = json!({"memory": {"kernel": 1048576, "kernelTCP": 1048576}});
    });
    let (code, out, err) = root.run(&b);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(
        err.contains("memory.kernel and memory.kernelTCP are ignored"),
        "{err}"
    );
}

#[test]
fn exec_env_replaces_the_configs_value() {
    if !require_root("exec_env_replaces_the_configs_value") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "X=config"]);
    });
    let id = unique_id("execenv");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = root.ok(&["exec", "--env", "X=exec", &id, "sh", "-c", "env | grep ^X="]);
    assert_eq!(out, "X=exec\n");
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn a_start_container_hook_without_env_gets_the_processs_environment() {
    if !require_root("a_start_container_hook_without_env_gets_the_processs_environment") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.with_out_mount();
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FROM_PROCESS=yes"]);
        c["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /out/without"]},
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /out/with"], "env": ["ONLY=this"]}
        ]});
    });
    root.run_ok(&b);
    let without = std::fs::read_to_string(b.out().join("without")).unwrap();
    assert!(without.contains("FROM_PROCESS=yes"), "{without}");
    let with = std::fs::read_to_string(b.out().join("with")).unwrap();
    assert!(
        with.contains("ONLY=this") && !with.contains("FROM_PROCESS"),
        "{with}"
    );
}

#[test]
fn proc_or_sys_through_a_symlink_in_the_rootfs_is_refused() {
    if !require_root("proc_or_sys_through_a_symlink_in_the_rootfs_is_refused") {
        return;
    }
    let root = Root::new();
    for dir in ["proc", "sys"] {
        let b = Bundle::new(&["true"]);
        let at = b.rootfs().join(dir);
        std::fs::remove_dir(&at).unwrap();
        std::os::unix::fs::symlink("tmp", &at).unwrap();
        let id = unique_id("symproc");
        // Files for stdio, as the harness does: a hang here would be the caller's hang.
        let out = root.hr(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success());
        let line = error_line(&out);
        assert!(
            line.contains("must be mounted on an ordinary directory"),
            "{line}"
        );
        assert!(!root.container_dir(&id).exists(), "nothing is left of {id}");
        assert!(std::fs::read_dir(b.rootfs().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}

#[test]
fn a_command_that_cannot_be_executed_fails_create_not_start() {
    if !require_root("a_command_that_cannot_be_executed_fails_create_not_start") {
        return;
    }
    // containerd's CRI reports a failing create as StartError with the reason; a create that
    // succeeds and a start that exits 126 gave an empty message.
    let root = Root::new();
    for (prog, says) in [
        ("/etc/passwd", "Permission denied"),
        ("/etc", "Permission denied"),
        ("/no/such/file", "No such file"),
        ("nosuchcommand", "executable file not found"),
    ] {
        let b = Bundle::new(&[prog]);
        let id = unique_id("noexec");
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{prog}: create succeeded");
        let line = error_line(&out);
        assert!(line.contains(says) && line.contains(prog), "{prog}: {line}");
        assert!(!root.container_dir(&id).exists(), "{prog}: {id} was left");
    }
}
