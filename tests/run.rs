//! `husk run --rm`: an image from a real registry, run in the foreground through the in-process
//! runtime, docker's exit codes, and nothing left behind.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use common::*;
use support::*;

#[test]
fn run_rm_like_docker() {
    if !is_root() {
        eprintln!("SKIP run_rm_like_docker: containers need root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    push_busybox_image(&reg, "lib/busybox", "latest");
    let root = store();
    let r = root.path();
    let img = format!("127.0.0.1:{}/lib/busybox", reg.port);

    // This test runs containers on unpacked directory layers (the engine tests use the
    // default, EROFS, where the kernel has it).
    assert_eq!(
        husk(r, &["--storage-driver", "overlay", "pull", "-q", &img]).0,
        0
    );
    assert_eq!(
        husk(r, &["info"])
            .1
            .matches(" 0 EROFS images, 1 directories")
            .count(),
        1
    );
    // The image's CMD, ENV and WORKDIR apply.
    let (code, out, err) = husk(r, &["run", "--rm", &img]);
    assert_eq!((code, out.as_str()), (0, "default-cmd\n"), "{err}");
    let (code, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "echo $FROM_IMAGE; pwd; id -u; hostname | wc -c",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["yes", "/work", "0", "13"]);

    // Flags.
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "app:staff",
            "--hostname",
            "box",
            &img,
            "sh",
            "-c",
            "echo $X; pwd; id -u; id -g; hostname",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", "/tmp", "1000", "50", "box"]
    );
    let (_, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            "--read-only",
            &img,
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo WRITABLE || echo ro",
        ],
    );
    assert_eq!(out.trim(), "ro");
    let (_, out, _) = husk(r, &["run", "--rm", "--memory", "64m", "--pids-limit", "20", &img, "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["67108864", "20"]);
    // --cpus 0.5: half of each 100 ms period (v1's cfs quota and period, v2's cpu.max).
    let (code, out, err) = husk(r, &["run", "--rm", "--cpus", "0.5", &img, "sh", "-c",
        "cd /sys/fs/cgroup; if [ -d cpu ]; then echo $(cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us); else cat cpu.max; fi"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "50000 100000", "--cpus");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host").unwrap();
    let vol = format!("{}:/data", host.path().display());
    let (_, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            "-v",
            &vol,
            &img,
            "sh",
            "-c",
            "cat /data/in; echo out > /data/out",
        ],
    );
    assert_eq!(out, "from host");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "out\n"
    );
    let (_, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "cat /proc/net/dev | tail -n +3 | wc -l",
        ],
    );
    assert_eq!(out.trim(), "1", "--network none: only lo");

    // The container's writes do not reach the image.
    husk(
        r,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "echo scribble > /bin/busybox",
        ],
    );
    let (code, out, _) = husk(r, &["run", "--rm", &img, "echo", "intact"]);
    assert_eq!((code, out.as_str()), (0, "intact\n"));

    // docker's exit codes.
    assert_eq!(husk(r, &["run", "--rm", &img, "sh", "-c", "exit 3"]).0, 3);
    assert_eq!(husk(r, &["run", "--rm", &img, "no-such-command"]).0, 127);
    assert_eq!(husk(r, &["run", "--rm", &img, "/bin/notexec"]).0, 126);
    let (code, _, err) = husk(r, &["run", "--rm", "127.0.0.1:1/nothing/here"]);
    assert_eq!(code, 125, "{err}");
    // docker's "Unable to find image … locally", then the one-line error.
    assert!(err.starts_with("Unable to find image"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");

    // Nothing is left: no container directory, no mount, no runtime state.
    let containers = r.join("containers");
    assert!(!containers.exists() || std::fs::read_dir(&containers).unwrap().count() == 0);
    let left = mounts_left(r);
    assert!(left.is_empty(), "a mount was left behind: {left:?}");
    let run = r.join("run");
    assert!(!run.exists() || std::fs::read_dir(&run).unwrap().count() == 0);
}

/// `ip netns exec` mounts a fresh sysfs on /sys, hiding every cgroup mount: a start there
/// fails in one line that says so and names the way around it.
#[test]
fn a_start_under_ip_netns_exec_says_why_it_finds_no_cgroups() {
    let Some((_reg, store, img)) = busybox_store(
        "a_start_under_ip_netns_exec_says_why_it_finds_no_cgroups",
        &[],
    ) else {
        return;
    };
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        eprintln!("SKIP a_start_under_ip_netns_exec_says_why_it_finds_no_cgroups: no ip(8)");
        return;
    }
    let ns = format!("husk-test-{}", std::process::id());
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .expect("ip runs");
    assert!(made.success());
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_husk"), "--root"])
        .arg(store.path())
        .args(["run", "--rm", &img, "true"])
        .env("HUSK_CONFIG", no_bridge_config())
        .output()
        .expect("ip runs");
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &ns])
        .status();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ip netns exec") && err.contains("nsenter"),
        "{err}"
    );
    // Nothing of the failed start is left.
    assert_eq!(husk(store.path(), &["ps", "-aq"]).1, "");
    assert!(mounts_left(store.path()).is_empty());
}
