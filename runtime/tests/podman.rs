//! A real caller: podman (through conmon) drives husk-runtime as it drives runc. Runs where
//! podman is installed (.ci/run installs it), in a throwaway podman store.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

struct Podman {
    root: tempfile::TempDir,
    runroot: tempfile::TempDir,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.root.path())
            .arg("--runroot")
            .arg(self.runroot.path())
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--runtime")
            .arg(bin());
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd().args(args).output().expect("podman runs")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all", "--force"]).output();
        // podman leaves its shm and overlay mounts under the run root; unmount before removal.
        for dir in [self.runroot.path(), self.root.path()] {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut mounts: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| Path::new(m).starts_with(dir))
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// A throwaway podman store with a busybox image imported as `localhost/husk-busybox:test`, or
/// None (said why) where podman or root is missing.
fn podman_with_image(test: &str) -> Option<Podman> {
    if !require_root(test) {
        return None;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("SKIP {test}: podman is not installed");
        return None;
    }
    let p = Podman {
        root: tempfile::tempdir().unwrap(),
        runroot: tempfile::tempdir().unwrap(),
    };
    // An image from a busybox rootfs, imported (no registry needed).
    let b = Bundle::new(&["true"]);
    let tar = b.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(b.rootfs())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let out = p.run(&[
        "import",
        tar.to_str().unwrap(),
        "localhost/husk-busybox:test",
    ]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    Some(p)
}

/// This VM's hard limits are below podman's defaults and root lacks CAP_SYS_RESOURCE (runc
/// fails the same way without these). podman's default seccomp profile stays on.
const COMMON: [&str; 6] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "--network",
    "none",
];

#[test]
fn podman_runs_containers_with_husk_runtime() {
    let Some(p) = podman_with_image("podman_runs_containers_with_husk_runtime") else {
        return;
    };
    let common = COMMON;
    let mut args = vec!["run", "--rm"];
    args.extend(common);
    args.extend([
        "localhost/husk-busybox:test",
        "sh",
        "-c",
        "echo hello from husk; exit 42",
    ]);
    let out = p.run(&args);
    assert_eq!(
        text(&out.stdout),
        "hello from husk\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(42),
        "the exit code passes through conmon"
    );

    // Detached, then exec, stop and rm: create/start/state/exec/kill/delete through conmon.
    let mut args = vec!["run", "-d", "--name", "husk-podman-test"];
    args.extend(common);
    args.extend([
        "localhost/husk-busybox:test",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let out = p.run(&args);
    assert!(out.status.success(), "run -d: {}", text(&out.stderr));
    let out = p.run(&[
        "exec",
        "husk-podman-test",
        "sh",
        "-c",
        "echo exec says $((6*7))",
    ]);
    assert_eq!(text(&out.stdout), "exec says 42\n", "{}", text(&out.stderr));
    let out = p.run(&["stop", "-t", "5", "husk-podman-test"]);
    assert!(out.status.success(), "stop: {}", text(&out.stderr));
    let out = p.run(&["rm", "husk-podman-test"]);
    assert!(out.status.success(), "rm: {}", text(&out.stderr));
}

#[test]
fn podman_drives_the_rest_of_the_runtime() {
    let Some(p) = podman_with_image("podman_drives_the_rest_of_the_runtime") else {
        return;
    };
    let image = "localhost/husk-busybox:test";
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run"];
        args.extend(COMMON);
        args.extend(extra);
        args.push(image);
        args.extend(cmd);
        p.run(&args)
    };
    // A terminal: conmon takes the pty master over the console socket.
    let out = run(
        &["--rm", "-t"],
        &["sh", "-c", "tty; grep ^Seccomp: /proc/self/status"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout).replace('\r', "");
    assert!(said.starts_with("/dev/pts/0\n"), "{said:?}");
    // podman's default seccomp profile is on.
    assert!(said.contains("Seccomp:\t2"), "{said:?}");

    // A command that does not exist: reported at create, 127 as with runc.
    let out = run(&["--rm"], &["/no/such/command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/no/such/command"),
        "{}",
        text(&out.stderr)
    );

    // A memory limit and its OOM kill.
    let out = run(
        &[
            "--name",
            "husk-podman-oom",
            "--memory",
            "32m",
            "--memory-swap",
            "32m",
        ],
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    // (podman's State.OOMKilled comes from conmon's own cgroup watch, which stays false here
    // on cgroup v1: noted in issue 14, not pinned.)
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(p.run(&["rm", "husk-podman-oom"]).status.success());

    // Detached: logs, pause/unpause, update, kill.
    let out = run(
        &["-d", "--name", "husk-podman-svc", "--memory", "64m"],
        &["sh", "-c", "echo up; while :; do sleep 0.1; done"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ok = |args: &[&str]| {
        let out = p.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    assert_eq!(ok(&["logs", "husk-podman-svc"]), "up\n");
    ok(&["pause", "husk-podman-svc"]);
    assert_eq!(
        ok(&["inspect", "-f", "{{.State.Status}}", "husk-podman-svc"]).trim(),
        "paused"
    );
    ok(&["unpause", "husk-podman-svc"]);
    ok(&["update", "--memory", "128m", "husk-podman-svc"]);
    let file = if is_cgroup_v2() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    assert_eq!(
        ok(&["exec", "husk-podman-svc", "cat", file]).trim(),
        "134217728"
    );
    ok(&["kill", "husk-podman-svc"]);
    let out = p.run(&["wait", "husk-podman-svc"]);
    assert_eq!(text(&out.stdout).trim(), "137", "{}", text(&out.stderr));
    ok(&["rm", "husk-podman-svc"]);
}
