//! husk run's default confinement compared with docker's, and attacks from inside a container
//! on the classes of escape runc has had: a host binary reachable through /proc
//! (CVE-2019-5736), a host fd or cwd leaking in (CVE-2024-21626), a mount target symlinked out
//! of the root (CVE-2021-30465), and a hostile layer.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use support::*;

/// tests/fixtures/syscall_probe.c built static, or None (with the reason) without gcc.
fn probe(dir: &Path) -> Option<PathBuf> {
    let out = dir.join("syscall_probe");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/syscall_probe.c"
    );
    let ok = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP syscall probe: gcc with a static libc (gcc, libc6-dev) is not installed (.ci/run installs them)");
        return None;
    }
    Some(out)
}

fn parse(out: &str) -> HashMap<String, i32> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(-1)))
        .collect()
}

#[test]
fn default_confinement_matches_docker() {
    let Some((_reg, root, img)) = busybox_store("default_confinement_matches_docker", &[]) else {
        return;
    };
    let r = root.path();
    // Capabilities, seccomp mode, no-new-privileges as docker sets them.
    let (code, status, err) = husk(r, &["run", "--rm", &img, "cat", "/proc/self/status"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "CapEff:\t00000000a80425fb",
        "CapPrm:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapInh:\t0000000000000000",
        "Seccomp:\t2",
        "NoNewPrivs:\t0",
    ] {
        assert!(status.contains(want), "{want} in {status}");
    }
    // Masked and read-only paths.
    let (_, out, err) = husk(r, &["run", "--rm", &img, "sh", "-c",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo wrote || echo refused; cat /proc/keys | wc -c"]);
    assert_eq!(out, "0\n0\nrefused\n0\n", "{err}");
    // The default devices only.
    let (_, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "ls /dev | sort | tr '\\n' ' '",
        ],
    );
    for d in ["full", "null", "random", "tty", "urandom", "zero"] {
        assert!(out.contains(d), "{out}");
    }
    assert!(!out.contains("vda") && !out.contains("mem "), "{out}");

    let Some(probe) = probe(r) else { return };
    let mnt = format!("{}:/probe:ro", probe.display());
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "-v", &mnt];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&img, "/probe"]);
        let (code, out, err) = husk(r, &args);
        assert_eq!(code, 0, "{err}");
        parse(&out)
    };
    let confined = run(&[]);
    let eperm = 1;
    for call in [
        "keyctl",
        "add_key",
        "io_uring_setup",
        "userfaultfd",
        "bpf",
        "perf_event_open",
        "unshare_user",
        "clone_newns",
        "personality_norandom",
        "swapoff",
    ] {
        assert_eq!(
            confined[call], eperm,
            "{call} is refused by docker's profile: {confined:?}"
        );
    }
    assert_eq!(
        confined["clone3"], 38,
        "clone3 gets ENOSYS, so libc falls back to clone"
    );
    assert_eq!(confined["getpid"], 0);
    assert_eq!(confined["personality_linux"], 0);
    // Unconfined, the same calls reach the kernel (which answers differently).
    let open = run(&["--security-opt", "seccomp=unconfined"]);
    assert_ne!(open["keyctl"], eperm, "{open:?}");
    assert_ne!(open["clone3"], 38, "{open:?}");
    assert_ne!(open["io_uring_setup"], eperm, "{open:?}");
    // CAP_SYS_ADMIN opens the namespace calls, as in docker.
    let admin = run(&["--cap-add", "SYS_ADMIN"]);
    assert_eq!(admin["unshare_user"], 0, "{admin:?}");
    assert_ne!(admin["clone3"], 38, "{admin:?}");
    assert_eq!(admin["keyctl"], eperm, "keyrings stay closed: {admin:?}");
    // --privileged: no filter at all.
    let (_, status, _) = husk(
        r,
        &[
            "run",
            "--rm",
            "--privileged",
            &img,
            "grep",
            "Seccomp:",
            "/proc/self/status",
        ],
    );
    assert_eq!(status, "Seccomp:\t0\n");
}

#[test]
fn no_host_fd_or_cwd_reaches_the_container() {
    let Some((_reg, root, img)) = busybox_store("no_host_fd_or_cwd_reaches_the_container", &[])
    else {
        return;
    };
    let r = root.path();
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("host-secret"), "s3cret").unwrap();
    let dir = std::fs::File::open(secret.path()).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    // husk starts with a host directory open on fd 7, not close-on-exec, and its cwd there:
    // the leak runc had (CVE-2024-21626).
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_husk"));
        c.arg("--root").arg(r).args(args).current_dir(secret.path());
        // SAFETY: dup2 in the child before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    };
    for detach in [false, true] {
        let script = "ls /proc/self/fd | tr '\\n' ' '; echo; readlink /proc/self/cwd; ls /proc/self/fd/7/ 2>&1; cat ../../../host-secret 2>&1; true";
        let (code, out, err) = if detach {
            let (code, id, err) = run(&["run", "-d", &img, "sh", "-c", script]);
            assert_eq!(code, 0, "{err}");
            let id = id.trim().to_string();
            assert_eq!(husk(r, &["wait", &id]).0, 0);
            let (_, out, err) = husk(r, &["logs", &id]);
            (0, out, err)
        } else {
            run(&["run", "--rm", &img, "sh", "-c", script])
        };
        assert_eq!(code, 0, "{err}");
        assert!(
            !out.contains("s3cret") && !err.contains("s3cret"),
            "{out}{err}"
        );
        let mut lines = out.lines();
        let fds = lines.next().unwrap_or("");
        assert_eq!(
            fds.split_whitespace()
                .filter(|f| *f != "3")
                .collect::<Vec<_>>(),
            ["0", "1", "2"],
            "only stdio (and ls's own fd): {fds}"
        );
        assert_eq!(lines.next(), Some("/work"), "{out}");
    }
    // exec gets no host fd either.
    let id = husk(r, &["run", "-d", &img, "sleep", "30"])
        .1
        .trim()
        .to_string();
    let (code, out, err) = run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "ls /proc/self/fd | tr '\\n' ' '; echo; readlink /proc/self/cwd",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "0 1 2 3 \n/work\n",
        "only stdio (and ls's own fd), the container's cwd"
    );
    // The workdir cannot name a host fd.
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "-w",
        "/proc/self/fd/7",
        &img,
        "sh",
        "-c",
        "ls; cat host-secret",
    ]);
    assert!(
        !out.contains("s3cret") && !out.contains("host-secret"),
        "{code} {out} {err}"
    );
    assert_ne!(code, 0, "{out}");
    assert_eq!(husk(r, &["rm", "-f", &id]).0, 0);
}

#[test]
fn a_volume_target_symlinked_out_of_the_root_stays_inside() {
    let host = tempfile::tempdir().unwrap();
    let target = host.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("host-file"), "host").unwrap();
    let t = target.to_str().unwrap().to_string();
    // The image points /escape (and /deep/escape, through a relative link) at the host path.
    let evil = layer(&[
        Entry::Symlink("escape", &t),
        Entry::Dir("deep"),
        Entry::Symlink("deep/escape", &format!("../../../../../../..{t}")),
    ]);
    let Some((_reg, root, img)) = busybox_store(
        "a_volume_target_symlinked_out_of_the_root_stays_inside",
        &[evil],
    ) else {
        return;
    };
    let r = root.path();
    for dst in ["/escape", "/deep/escape"] {
        let vol = format!("v{}:{dst}", dst.len());
        let (code, _, err) = husk(
            r,
            &[
                "run",
                "--rm",
                "-v",
                &vol,
                "--tmpfs",
                &format!("{dst}/t"),
                &img,
                "sh",
                "-c",
                &format!("echo planted > {dst}/planted"),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            !target.join("planted").exists(),
            "the write reached the host through {dst}"
        );
        assert!(!target.join("t").exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&t), "a mount landed on the host path");
    }
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
}

#[test]
fn the_host_binary_and_runtime_memory_stay_out_of_reach_during_exec() {
    let Some((_reg, root, img)) = busybox_store(
        "the_host_binary_and_runtime_memory_stay_out_of_reach_during_exec",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    let husk_bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_husk")).unwrap();
    let before = std::fs::read(&husk_bin).unwrap();
    // Inside: every 10 ms, try every process's exe for writing and its memory and environment
    // for reading; report anything that worked. The container's own busybox is left alone:
    // on 5.10 overlayfs lets root copy up and append to a running binary of its own, and the
    // append then makes exec's execve fail with ETXTBSY.
    let spy = "while :; do for p in /proc/[0-9]*; do \
        l=$(readlink $p/exe 2>/dev/null); case \"$l\" in *husk*) echo \"SAW $p $l\";; esac; \
        [ \"$l\" != /bin/busybox ] && (echo x >> $p/exe) 2>/dev/null && echo \"WROTE $p $l\"; \
        head -c1 $p/environ >/dev/null 2>&1 && [ \"$(readlink $p/exe 2>/dev/null)\" != /bin/busybox ] && echo \"READ $p\"; \
        done; done";
    let id = husk(r, &["run", "-d", &img, "sh", "-c", spy])
        .1
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    for _ in 0..30 {
        let (code, _, err) = husk(r, &["exec", &id, "true"]);
        if code != 0 {
            let (_, log, _) = husk(r, &["logs", &id]);
            panic!("exec: {code} {err}; the spy saw: {log}");
        }
    }
    assert_eq!(husk(r, &["rm", "-f", &id]).0, 0);
    let (_, log, _) = husk(r, &["logs", &id]);
    assert!(
        !log.contains("WROTE") && !log.contains("SAW") && !log.contains("READ"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&husk_bin).unwrap(),
        before,
        "the husk binary changed"
    );
}

#[test]
fn a_hostile_layer_runs_without_touching_the_host() {
    // A write through a symlink planted earlier in the same layer lands inside the layer.
    let through_symlink = layer(&[
        Entry::Dir("etc"),
        Entry::Symlink("hostetc", "/etc"),
        Entry::File("hostetc/husk-hostile-marker", b"pwned"),
        Entry::Symlink("up", "../../../../../../../etc"),
        Entry::File("up/husk-hostile-marker2", b"pwned"),
    ]);
    let Some((reg, root, img)) = busybox_store(
        "a_hostile_layer_runs_without_touching_the_host",
        &[through_symlink],
    ) else {
        return;
    };
    let r = root.path();
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "cat /etc/husk-hostile-marker /etc/husk-hostile-marker2",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "pwnedpwned"), "{err}");
    assert!(
        !Path::new("/etc/husk-hostile-marker").exists()
            && !Path::new("/etc/husk-hostile-marker2").exists()
    );
    // A hardlink to a host file is refused at pull time, with the entry named.
    let hardlink = layer(&[Entry::Hardlink("shadow-link", "/etc/shadow")]);
    push_busybox_image_with(&reg, "lib/hostile", "v1", &[hardlink]);
    let (code, _, err) = husk(
        r,
        &["pull", &format!("127.0.0.1:{}/lib/hostile:v1", reg.port)],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("shadow-link") && err.lines().count() == 1,
        "{err}"
    );
}
