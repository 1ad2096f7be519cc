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

#[test]
fn podman_runs_containers_with_husk_runtime() {
    if !require_root("podman_runs_containers_with_husk_runtime") {
        return;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("SKIP podman_runs_containers_with_husk_runtime: podman is not installed");
        return;
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

    // This VM's hard limits are below podman's defaults and root lacks CAP_SYS_RESOURCE (runc
    // fails the same way without these). podman's default seccomp profile stays on.
    let common = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--network",
        "none",
    ];
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
