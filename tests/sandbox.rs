//! The CI sandbox: nothing outlives a killed husk (`--die-with-parent`, a killed monitor, a
//! husk killed while it starts a container), the resource report checked against known work,
//! and limits a job cannot escape (a fork bomb, a memory hog, no network, a read-only root).

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_husk(root: &Path, args: &[&str]) -> Child {
    spawn_husk_with(root, &no_bridge_config(), args)
}

fn spawn_husk_with(root: &Path, config: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_husk"))
        .env("HUSK_CONFIG", config)
        .env("HUSK_LAYER_MOUNT_GRACE", "0")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("husk starts")
}

fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn husk_env_config(root: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    husk_vars(root, &[("HUSK_CONFIG", config.as_os_str())], args)
}

/// Cgroup directories (any hierarchy, three levels down) whose name holds `id`.
fn cgroups_of(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((d, depth)) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().contains(id) {
                found.push(e.path().display().to_string());
            } else if depth < 3 {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    found
}

/// Nothing of any container is left in the store at `root`: records, names, the runtime's
/// state, the monitored index, mounts; and nothing of container `id` on the host.
fn nothing_left(root: &Path, id: Option<&str>) -> Result<(), String> {
    for sub in ["containers", "names", "run", "monitored"] {
        let left: Vec<String> = dir_entries(&root.join(sub))
            .into_iter()
            .filter(|n| !n.starts_with('.') && n != "lock" && !n.ends_with(".lock"))
            .collect();
        if !left.is_empty() {
            return Err(format!("{sub}/ still has {left:?}"));
        }
    }
    let mounts = mounts_left(root);
    if !mounts.is_empty() {
        return Err(format!("mounts left: {mounts:?}"));
    }
    if let Some(id) = id {
        let procs = processes_of(id);
        if !procs.is_empty() {
            return Err(format!("processes left: {procs:?}"));
        }
        let cgs = cgroups_of(id);
        if !cgs.is_empty() {
            return Err(format!("cgroups left: {cgs:?}"));
        }
    }
    Ok(())
}

/// Wait until `f` is Ok; the wait, or a panic with what `f` said last.
fn until_ok(what: &str, limit: Duration, mut f: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    loop {
        match f() {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > limit => panic!("timed out waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Wait until nothing of container `id` is left.
fn until_gone(root: &Path, id: &str, what: &str) -> Duration {
    until_ok(&format!("{what} to go"), Duration::from_secs(15), || {
        nothing_left(root, Some(id))
    })
}

/// The id of the one container in the store, once there is one that runs.
fn running_id(root: &Path) -> String {
    let mut id = String::new();
    until("the container to run", Duration::from_secs(30), || {
        let (_, out, _) = husk(root, &["ps", "-q", "--no-trunc"]);
        id = out.trim().to_string();
        !id.is_empty()
    });
    id
}

#[test]
fn die_with_parent_takes_the_container_with_a_killed_husk() {
    let Some((_reg, root, img)) = busybox_store(
        "die_with_parent_takes_the_container_with_a_killed_husk",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    // Background processes too: the whole cgroup goes, not only the init.
    let mut husk_run = spawn_husk(
        r,
        &[
            "run",
            "--rm",
            "--die-with-parent",
            "--name",
            "job",
            &img,
            "sh",
            "-c",
            "sleep 1000 & sleep 1000 & sleep 1000",
        ],
    );
    let id = running_id(r);
    until("the job's processes", Duration::from_secs(10), || {
        processes_of(&id).len() >= 3
    });
    husk_run.kill().expect("SIGKILL husk");
    husk_run.wait().expect("reap husk");
    let took = until_gone(r, &id, "the container");
    eprintln!("die-with-parent: everything gone {took:?} after SIGKILL");

    // Without --rm the record goes too: the container dies with its husk.
    let mut husk_run = spawn_husk(
        r,
        &[
            "run",
            "--die-with-parent=true",
            "--name",
            "job2",
            &img,
            "sleep",
            "1000",
        ],
    );
    let id = running_id(r);
    husk_run.kill().expect("SIGKILL husk");
    husk_run.wait().expect("reap husk");
    until_gone(r, &id, "the second container");

    // As the default in husk's config file, for attached runs; `=false` overrides it.
    let config = r.join("die-config.json");
    std::fs::write(&config, br#"{"bridge": "none", "die-with-parent": true}"#).unwrap();
    let mut husk_run = spawn_husk_with(
        r,
        &config,
        &["run", "--name", "job3", &img, "sleep", "1000"],
    );
    let id = running_id(r);
    husk_run.kill().expect("SIGKILL husk");
    husk_run.wait().expect("reap husk");
    until_gone(r, &id, "the container the config's default took");
    let mut husk_run = spawn_husk_with(
        r,
        &config,
        &[
            "run",
            "--die-with-parent=false",
            "--name",
            "job4",
            &img,
            "sleep",
            "1000",
        ],
    );
    let id = running_id(r);
    husk_run.kill().expect("SIGKILL husk");
    husk_run.wait().expect("reap husk");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !processes_of(&id).is_empty(),
        "without die-with-parent it goes on, as docker's"
    );
    assert_eq!(husk(r, &["rm", "-f", "job4"]).0, 0);
    // A detached run ignores the config's default (it is meant to outlive its husk).
    let (code, _, err) = husk_env_config(r, &config, &["run", "-d", "--name", "bg", &img, "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(husk(r, &["rm", "-f", "bg"]).0, 0);

    // Conflicts are one line and exit 125.
    let (code, _, err) = husk(r, &["run", "-d", "--die-with-parent", &img, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--die-with-parent and --detach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--die-with-parent",
            "--restart",
            "always",
            &img,
            "true",
        ],
    );
    assert_eq!(code, 125, "{err}");
    // A run that ends normally leaves its record (no --rm) and the watcher goes.
    let (code, _, err) = husk(
        r,
        &["run", "--die-with-parent", "--name", "ok", &img, "true"],
    );
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let (_, out, _) = husk(r, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(out.contains("ok Exited (0)"), "{out}");
    assert_eq!(husk(r, &["rm", "ok"]).0, 0);
}

#[test]
fn a_husk_killed_while_it_starts_a_container_leaves_nothing() {
    let Some((_reg, root, img)) = busybox_store(
        "a_husk_killed_while_it_starts_a_container_leaves_nothing",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    // SIGKILL at points through the start: before the record, with the mount made, with
    // the runtime's container created, once it runs.
    for (i, delay) in [0u64, 3, 6, 10, 15, 25, 40, 70, 120].iter().enumerate() {
        let name = format!("start{i}");
        let mut child = spawn_husk(
            r,
            &[
                "run",
                "--rm",
                "--die-with-parent",
                "--name",
                &name,
                &img,
                "sleep",
                "1000",
            ],
        );
        std::thread::sleep(Duration::from_millis(*delay));
        child.kill().expect("SIGKILL husk");
        child.wait().expect("reap husk");
        until_ok(
            &format!("what a husk killed after {delay} ms left to go"),
            Duration::from_secs(15),
            || nothing_left(r, None),
        );
    }
    let (_, out, _) = husk(r, &["ps", "-aq"]);
    assert_eq!(out, "");
}

#[test]
fn a_killed_monitor_is_reaped_by_the_next_husk_command() {
    let Some((_reg, root, img)) =
        busybox_store("a_killed_monitor_is_reaped_by_the_next_husk_command", &[])
    else {
        return;
    };
    let r = root.path();
    let monitor_of = |id: &str| -> i32 {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(r.join("containers").join(id).join("container.json")).unwrap(),
        )
        .unwrap();
        v["state"]["monitor_pid"].as_i64().unwrap() as i32
    };
    // A --rm one: gone entirely after the next command.
    let (code, id, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "det",
            &img,
            "sh",
            "-c",
            "sleep 1000 & sleep 1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let monitor = monitor_of(&id);
    assert!(monitor > 0);
    // SAFETY: SIGKILL to the monitor this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    until("the monitor to die", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{monitor}")).exists()
            || std::fs::read_to_string(format!("/proc/{monitor}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    let (code, out, err) = husk(r, &["ps", "-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("det"), "{out}");
    nothing_left(r, Some(&id)).unwrap();

    // Without --rm: the record stays, saying what happened.
    let (_, id, _) = husk(r, &["run", "-d", "--name", "kept", &img, "sleep", "1000"]);
    let id = id.trim().to_string();
    let monitor = monitor_of(&id);
    // SAFETY: as above.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    until("the monitor to die", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .map_or(true, |s| s.contains(") Z "))
    });
    let (_, out, _) = husk(
        r,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}",
            "kept",
        ],
    );
    assert!(out.starts_with("exited 137 its husk"), "{out}");
    assert!(processes_of(&id).is_empty());
    assert!(cgroups_of(&id).is_empty(), "{:?}", cgroups_of(&id));
    assert!(mounts_left(r).is_empty(), "{:?}", mounts_left(r));
    assert_eq!(husk(r, &["rm", "kept"]).0, 0);
    nothing_left(r, Some(&id)).unwrap();
}

fn report_of(root: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let (code, _, err) = husk(root, args);
    let line = err
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report in: {err}"));
    (
        code,
        serde_json::from_str(line).expect("the report is JSON"),
    )
}

#[test]
fn the_report_measures_known_work() {
    let Some((_reg, root, img)) = busybox_store("the_report_measures_known_work", &[]) else {
        return;
    };
    let r = root.path();
    // 200 MiB written to a tmpfs is 200 MiB of the container's memory. Held a moment: where
    // the kernel keeps no peak (before 5.19) the monitor samples every 50 ms, and a peak
    // shorter than that can slip between two samples.
    let (code, v) = report_of(
        r,
        &[
            "run",
            "--rm",
            "--report=json",
            "--tmpfs",
            "/big:size=300m",
            &img,
            "sh",
            "-c",
            "dd if=/dev/zero of=/big/x bs=1M count=200 2>/dev/null && sleep 0.5",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["exit_reason"], "exited with code 0");
    assert!(v["memory_peak_bytes"].as_u64().unwrap() >= 200 << 20, "{v}");
    assert!(v["wall_seconds"].as_f64().unwrap() > 0.0, "{v}");

    // Busy until the shell itself has used 2 s of CPU (read from its own /proc stat, with no
    // process started per round): the cgroup counts at least that.
    let (code, v) = report_of(
        r,
        &["run", "--rm", "--report=json", &img, "sh", "-c",
          "while :; do read -r l < /proc/$$/stat; set -- $l; [ $((${14}+${15})) -ge 200 ] && break; done"],
    );
    assert_eq!(code, 0, "{v}");
    let cpu = v["cpu_user_seconds"].as_f64().unwrap() + v["cpu_system_seconds"].as_f64().unwrap();
    assert!(cpu >= 1.8, "{v}");

    // 100 MiB to a file on a disk, synced: at least 100 MiB written.
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let fs_type = {
        let c = std::ffi::CString::new(work.path().to_str().unwrap()).unwrap();
        // SAFETY: statfs into a zeroed struct.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statfs(c.as_ptr(), &mut st) };
        st.f_type
    };
    if fs_type == libc::TMPFS_MAGIC {
        eprintln!("SKIP the I/O figure: /var/tmp is a tmpfs here, nothing reaches a disk");
    } else {
        let vol = format!("{}:/w", work.path().display());
        let (code, v) = report_of(
            r,
            &[
                "run",
                "--rm",
                "--report=json",
                "-v",
                &vol,
                &img,
                "dd",
                "if=/dev/zero",
                "of=/w/f",
                "bs=1M",
                "count=100",
                "conv=fsync",
            ],
        );
        assert_eq!(code, 0, "{v}");
        assert!(v["io_write_bytes"].as_u64().unwrap() >= 100 << 20, "{v}");
    }

    // Peak pids, the OOM killer, and the text form.
    let (code, v) = report_of(
        r,
        &[
            "run",
            "--rm",
            "--report=json",
            &img,
            "sh",
            "-c",
            "sleep 1 & sleep 1 & sleep 1 & wait",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert!(v["pids_peak"].as_u64().unwrap() >= 4, "{v}");
    let (code, v) = report_of(
        r,
        &[
            "run",
            "--rm",
            "--report=json",
            "-m",
            "16m",
            "--memory-swap",
            "16m",
            &img,
            "sh",
            "-c",
            "a=0123456789; while true; do a=$a$a; done",
        ],
    );
    assert_eq!(code, 137, "{v}");
    assert_eq!(v["exit_reason"], "OOM killed", "{v}");
    assert!(v["oom_kills"].as_u64().unwrap() >= 1, "{v}");
    let (code, _, err) = husk(r, &["run", "--rm", "--report", &img, "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("husk: report: container"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("memory peak"), "{err}");

    // --report-file: JSON in the file; inspect keeps the figures of a container kept.
    let file = work.path().join("report.json");
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "kept",
            "--report-file",
            file.to_str().unwrap(),
            &img,
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["container"], "kept");
    assert_eq!(v["exit_code"], 0);
    let (_, out, _) = husk(r, &["inspect", "-f", "{{json .State.Usage}}", "kept"]);
    let u: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(u["exit_code"], 0, "{out}");
    assert!(u["cpu_user_seconds"].is_number(), "{out}");
    assert_eq!(husk(r, &["rm", "kept"]).0, 0);
    let (code, _, err) = husk(r, &["run", "-d", "--report", &img, "true"]);
    assert_eq!(code, 125, "{err}");
}

#[test]
fn a_job_cannot_escape_its_limits() {
    let Some((_reg, root, img)) = busybox_store("a_job_cannot_escape_its_limits", &[]) else {
        return;
    };
    let r = root.path();
    // A fork bomb under --pids-limit, ended by --timeout: the host keeps its pids.
    let (code, v) = report_of(
        r,
        &[
            "run",
            "--rm",
            "--report=json",
            "--pids-limit",
            "64",
            "--timeout",
            "3",
            &img,
            "sh",
            "-c",
            "b() { b | b & }; b; sleep 100",
        ],
    );
    assert_eq!(code, 137, "{v}");
    assert!(
        v["exit_reason"].as_str().unwrap().contains("--timeout"),
        "{v}"
    );
    if let Some(p) = v["pids_peak"].as_u64() {
        assert!(p <= 64, "{v}");
    }
    // A memory hog with swap off: the OOM killer ends it, not the host.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "-m",
            "32m",
            "--memory-swap",
            "32m",
            &img,
            "sh",
            "-c",
            "a=0123456789; while true; do a=$a$a; done",
        ],
    );
    assert_eq!(code, 137, "{err}");
    // No network, for everything the job starts; a read-only root with a writable workspace
    // and /tmp; no new privileges.
    let work = tempfile::tempdir().unwrap();
    let vol = format!("{}:/w", work.path().display());
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-v",
            &vol,
            "--security-opt",
            "no-new-privileges",
            &img,
            "sh",
            "-c",
            "sh -c 'ls /sys/class/net'; touch /etc/x 2>/dev/null && echo root-writable; \
           touch /w/x /tmp/x && echo writable; grep NoNewPrivs /proc/self/status",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.split_whitespace().next(), Some("lo"), "{out}");
    assert!(!out.contains("root-writable"), "{out}");
    assert!(out.contains("writable"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(work.path().join("x").exists());
}

#[test]
fn rootfs_runs_a_directory_without_changing_it() {
    if !is_root() {
        eprintln!("SKIP rootfs_runs_a_directory_without_changing_it: containers need root");
        return;
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIP rootfs_runs_a_directory_without_changing_it: no busybox (busybox-static)");
        return;
    };
    let root = store();
    let r = root.path();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let rootfs = dir.path().to_str().unwrap();
    let (code, out, err) = husk(
        r,
        &["run", "--rm", "--rootfs", rootfs, "/bin/sh", "-c",
          "/bin/busybox mkdir /made && echo hi > /made/x && /bin/busybox cat /made/x && echo $PATH"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("hi\n/usr/local/sbin:"), "{out}");
    assert!(
        !dir.path().join("made").exists(),
        "the container wrote into --rootfs"
    );
    // The same confinement as an image's container: read-only root, no network.
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--read-only",
            "--network",
            "none",
            "--rootfs",
            rootfs,
            "/bin/sh",
            "-c",
            "/bin/busybox touch /y 2>/dev/null || echo read-only; /bin/busybox ls /sys/class/net",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "read-only\nlo\n");
    // Kept containers show the directory as their image, and go cleanly.
    let (code, _, err) = husk(
        r,
        &[
            "run", "--name", "dir", "--rootfs", rootfs, "/bin/sh", "-c", "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = husk(r, &["ps", "-a", "--format", "{{.Image}}"]);
    assert_eq!(out.trim(), rootfs);
    assert_eq!(husk(r, &["rm", "dir"]).0, 0);
    // Bad input: one line, exit 125.
    for (args, why) in [
        (
            vec!["run", "--rootfs", "/nonexistent-dir", "/bin/sh"],
            "No such file",
        ),
        (vec!["run", "--rootfs", rootfs], "no command given"),
    ] {
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, 125, "{err}");
        assert!(
            err.contains(why) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    assert!(mounts_left(r).is_empty(), "{:?}", mounts_left(r));
}

#[test]
fn keep_id_gives_the_workspace_to_the_caller() {
    let Some((_reg, root, img)) = busybox_store("keep_id_gives_the_workspace_to_the_caller", &[])
    else {
        return;
    };
    let r = root.path();
    // A workspace on a disk: a tmpfs takes an idmap only from Linux 6.3.
    let ws = tempfile::tempdir_in("/var/tmp").unwrap();
    std::os::unix::fs::chown(ws.path(), Some(1234), Some(1234)).unwrap();
    std::fs::write(ws.path().join("checkout.c"), b"int main(){}").unwrap();
    std::os::unix::fs::chown(ws.path().join("checkout.c"), Some(1234), Some(1234)).unwrap();
    let vol = format!("{}:/w", ws.path().display());
    // As a CI runner does: `sudo husk run …` by the runner's user, uid 1234.
    let out = Command::new(env!("CARGO_BIN_EXE_husk"))
        .env("HUSK_CONFIG", no_bridge_config())
        .env("SUDO_UID", "1234")
        .env("SUDO_GID", "1234")
        .arg("--root")
        .arg(r)
        .args([
            "run",
            "--rm",
            "--userns",
            "keep-id",
            "-v",
            &vol,
            &img,
            "sh",
            "-c",
            "stat -c '%u:%g' /w/checkout.c; echo built > /w/out; mkdir /w/dir; id -u",
        ])
        .output()
        .unwrap();
    let (code, stdout, err) = (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    );
    if !kernel_at_least(5, 12) {
        assert_eq!(code, 125, "{err}");
        assert!(err.contains("Linux 5.12"), "{err}");
        eprintln!(
            "SKIP keep-id's ownership check: idmapped mounts need Linux 5.12 (refused in one line)"
        );
        return;
    }
    assert_eq!(code, 0, "{err}");
    // Inside, the caller's files are root's, and the job runs as root.
    assert_eq!(stdout, "0:0\n0\n");
    use std::os::unix::fs::MetadataExt;
    for f in ["out", "dir"] {
        let m = std::fs::metadata(ws.path().join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (1234, 1234),
            "{f} belongs to the caller"
        );
    }
    // Without keep-id the job's files are root's, as docker's.
    let (code, _, err) = husk(
        r,
        &["run", "--rm", "-v", &vol, &img, "touch", "/w/rootfile"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::metadata(ws.path().join("rootfile")).unwrap().uid(),
        0
    );
    let (code, _, err) = husk(r, &["run", "--rm", "--userns", "bogus", &img, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--userns"), "{err}");
}
