//! The docker-like engine end to end: detached containers and their monitor, ps, logs, exec,
//! stop, kill, rm, wait, start, restart, inspect, top, stats, prune, volumes, names, exit codes,
//! a pty, OOM, and a monitor or an attached husk killed with SIGKILL.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A registry with the busybox image and a store that has pulled it.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn record(root: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(root.join("containers").join(id).join("container.json")).unwrap(),
    )
    .unwrap()
}

fn inspect(root: &Path, name: &str) -> serde_json::Value {
    let (code, out, err) = husk(root, &["inspect", name]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// No container's mount is left under the store.
fn no_mounts(root: &Path) {
    let left = mounts_left(root);
    assert!(left.is_empty(), "a mount was left behind: {left:?}");
}

#[test]
fn detached_container_ps_logs_exec_stop_rm() {
    let Some((_reg, root, img)) = busybox_store("detached_container_ps_logs_exec_stop_rm", &[])
    else {
        return;
    };
    let r = root.path();
    let (code, id, err) = husk(r, &["run", "-d", "--name", "web", "--label", "tier=front", "-m", "96m", &img, "sh", "-c",
        "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    let (_, ps, _) = husk(r, &["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&id[..12]) && row.contains("Up ") && row.ends_with("web"),
        "{row}"
    );
    assert_eq!(
        husk(r, &["ps", "-q", "--filter", "label=tier=front"])
            .1
            .trim(),
        &id[..12]
    );
    assert_eq!(
        husk(r, &["ps", "-q", "--filter", "label=tier=back"])
            .1
            .trim(),
        ""
    );

    until("the log", || husk(r, &["logs", "web"]).1 == "hello\n");
    let (_, out, err) = husk(r, &["logs", "web"]);
    assert_eq!((out.as_str(), err.as_str()), ("hello\n", "oops\n"));
    let log = std::fs::read_to_string(
        r.join("containers")
            .join(&id)
            .join(format!("{id}-json.log")),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(
        first["log"].is_string()
            && first["stream"].is_string()
            && first["time"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    let (_, ts, _) = husk(r, &["logs", "-t", "--tail", "2", &id[..8]]);
    assert!(ts.ends_with(" hello\n") && ts.starts_with("20"), "{ts}");

    // exec: output, exit codes, environment, user.
    assert_eq!(
        husk(r, &["exec", "web", "sh", "-c", "echo $FROM_IMAGE; id -u"]).1,
        "yes\n0\n"
    );
    assert_eq!(
        husk(
            r,
            &[
                "exec",
                "-u",
                "app",
                "-e",
                "Y=2",
                "web",
                "sh",
                "-c",
                "echo $Y; id -u"
            ]
        )
        .1,
        "2\n1000\n"
    );
    assert_eq!(husk(r, &["exec", "web", "sh", "-c", "exit 3"]).0, 3);
    assert_eq!(husk(r, &["exec", "web", "no-such-command"]).0, 127);
    assert_eq!(husk(r, &["exec", "-d", "web", "sleep", "1"]).0, 0);

    let v = inspect(r, "web");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"], "/web");
    assert_eq!(v["State"]["Running"], true);
    assert!(v["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(v["Config"]["Labels"]["tier"], "front");
    let (_, top, _) = husk(r, &["top", "web"]);
    assert!(top.contains("PID") && top.contains("sleep"), "{top}");
    let (code, stats, err) = husk(r, &["stats", "--no-stream", "web"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stats.contains("MEM USAGE / LIMIT") && stats.contains("web"),
        "{stats}"
    );
    // The figures come from the container's cgroup (v1 or v2 files): its limit, some memory
    // in use, and its processes (sh and its sleep).
    let (code, json, err) = husk(r, &["stats", "--no-stream", "--format", "json", "web"]);
    assert_eq!(code, 0, "{err}");
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let mem = row["MemUsage"].as_str().unwrap();
    assert!(
        mem.contains(" / 96") && mem.ends_with("MiB") && !mem.starts_with("0B"),
        "{row}"
    );
    assert!(
        row["PIDs"].as_str().unwrap().parse::<u32>().unwrap() >= 1,
        "{row}"
    );
    // Streamed: a new table each second, read until the second one (the VM matrix's
    // emulated kernels take longer than a second a sample; `timeout` bounds a hang).
    let mut streamed = std::process::Command::new("timeout")
        .args(["-s", "INT", "60", env!("CARGO_BIN_EXE_husk"), "--root"])
        .arg(r)
        .args(["stats", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tables = std::io::BufRead::lines(std::io::BufReader::new(streamed.stdout.take().unwrap()))
        .map_while(Result::ok)
        .filter(|l| l.contains("CONTAINER ID"))
        .take(2)
        .count();
    // SAFETY: SIGINT to the `timeout` this test started; it passes it on to husk.
    unsafe { libc::kill(streamed.id() as i32, libc::SIGINT) };
    let _ = streamed.wait();
    assert_eq!(tables, 2, "a new table each second");

    // A running container is not removed without -f; stop sends the stop signal.
    let (code, _, err) = husk(r, &["rm", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("running"), "{err}");
    let (code, out, _) = husk(r, &["stop", "web"]);
    assert_eq!((code, out.as_str()), (0, "web\n"));
    assert!(husk(r, &["logs", "web"]).1.ends_with("bye\n"));
    let v = inspect(r, "web");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 0);
    assert_eq!(husk(r, &["wait", "web"]).1, "0\n");
    assert!(
        husk(r, &["ps"]).1.lines().count() == 1,
        "not running any more"
    );
    assert!(husk(r, &["ps", "-a"]).1.contains("Exited (0)"));

    // start again: same container, same log, appended.
    let (code, _, err) = husk(r, &["start", "web"]);
    assert_eq!(code, 0, "{err}");
    until("the second run's log", || {
        husk(r, &["logs", "web"]).1.matches("hello").count() == 2
    });
    let (code, _, _) = husk(r, &["kill", "web"]);
    assert_eq!(code, 0);
    assert_eq!(husk(r, &["wait", "web"]).1, "137\n");
    let (code, out, _) = husk(r, &["rm", "web"]);
    assert_eq!((code, out.as_str()), (0, "web\n"));
    assert_eq!(husk(r, &["ps", "-aq"]).1, "");
    no_mounts(r);
    // The name is free again.
    let (code, _, err) = husk(r, &["run", "--name", "web", &img, "true"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = husk(r, &["container", "prune", "-f"]);
    assert_eq!(code, 0);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert_eq!(husk(r, &["ps", "-aq"]).1, "");
}

#[test]
fn attached_runs_keep_records_and_docker_exit_codes() {
    let Some((_reg, root, img)) =
        busybox_store("attached_runs_keep_records_and_docker_exit_codes", &[])
    else {
        return;
    };
    let r = root.path();
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--name",
            "a1",
            &img,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    assert!(husk(r, &["ps", "-a"]).1.contains("Exited (3)"));
    let (_, out, err) = husk(r, &["logs", "a1"]);
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(husk(r, &["run", "--rm", &img, "true"]).0, 0);
    assert_eq!(husk(r, &["run", "--rm", &img, "false"]).0, 1);
    // 137 (SIGKILL) is `kill` + `wait` in detached_container_ps_logs_exec_stop_rm: a shell that is
    // PID 1 cannot SIGKILL itself.
    assert_eq!(husk(r, &["run", "--rm", &img, "no-such-command"]).0, 127);
    assert_eq!(husk(r, &["run", "--rm", &img, "/bin/notexec"]).0, 126);
    let (code, _, err) = husk(r, &["run", "--rm", "--ulimit", "bogus=1", &img, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("bogus") && err.lines().count() == 1, "{err}");
    // Detached failures carry the same codes; the record keeps the error.
    let (code, _, err) = husk(r, &["run", "-d", "--name", "bad", &img, "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    let v = inspect(r, "bad");
    assert_eq!(v["State"]["ExitCode"], 127);
    assert!(
        v["State"]["Error"]
            .as_str()
            .unwrap()
            .contains("no-such-command"),
        "{v}"
    );
    // Unknown flags fail clearly.
    let (code, _, err) = husk(r, &["run", "--no-such-flag", &img, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("--no-such-flag"), "{err}");
    // Only --rm containers go away by themselves.
    assert_eq!(husk(r, &["ps", "-aq"]).1.lines().count(), 2);
}

#[test]
fn two_runs_with_one_name_at_once_exactly_one_wins() {
    let Some((_reg, root, img)) =
        busybox_store("two_runs_with_one_name_at_once_exactly_one_wins", &[])
    else {
        return;
    };
    let r = root.path();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
            .env("HUSK_CONFIG", no_bridge_config())
            .arg("--root")
            .arg(r)
            .args(["run", "-d", "--name", "only", &img, "sleep", "30"])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(125)),
        "{codes:?} {} {}",
        text(&a.stderr),
        text(&b.stderr)
    );
    let loser = if a.status.success() { &b } else { &a };
    assert!(
        text(&loser.stderr).contains("already in use"),
        "{}",
        text(&loser.stderr)
    );
    assert_eq!(husk(r, &["ps", "-aq"]).1.lines().count(), 1);
    assert_eq!(husk(r, &["rm", "-f", "only"]).0, 0);
    no_mounts(r);
}

#[test]
fn a_killed_monitor_or_husk_loses_nothing_silently() {
    let Some((_reg, root, img)) =
        busybox_store("a_killed_monitor_or_husk_loses_nothing_silently", &[])
    else {
        return;
    };
    let r = root.path();
    let id = husk(r, &["run", "-d", "--name", "m", &img, "sleep", "300"])
        .1
        .trim()
        .to_string();
    let rec = record(r, &id);
    let (monitor, init) = (
        rec["state"]["monitor_pid"].as_i64().unwrap() as i32,
        rec["state"]["pid"].as_i64().unwrap() as i32,
    );
    assert!(monitor > 0 && init > 0);
    // SAFETY: SIGKILL to the monitor this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    until("the monitor to die", || {
        std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .map_or(true, |s| s.contains(") Z "))
    });
    // Nothing would log its output or record its exit: the next husk command kills it and
    // says so (see tests/sandbox.rs for what else goes).
    let v = inspect(r, "m");
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    assert_eq!(v["State"]["ExitCode"], 137, "{v}");
    assert!(
        v["State"]["Error"].as_str().unwrap().contains("died"),
        "{v}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{init}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{init}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    );
    assert_eq!(husk(r, &["rm", "m"]).0, 0);
    no_mounts(r);

    // An attached husk killed mid-run: the container goes on, rm -f cleans up.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
        .env("HUSK_CONFIG", no_bridge_config())
        .arg("--root")
        .arg(r)
        .args(["run", "--name", "att", &img, "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("the attached container to run", || {
        husk(r, &["ps", "-q"]).1.lines().count() == 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(husk(r, &["ps"]).1.contains("att"));
    // Its exit, with nobody to record it, is reaped by the next command: 255 and why.
    let init = record(r, husk(r, &["ps", "-q", "--no-trunc"]).1.trim())["state"]["pid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: SIGKILL to the container's init, which this test started.
    unsafe { libc::kill(init, libc::SIGKILL) };
    until("the orphan's exit to show", || {
        husk(r, &["ps", "-a"]).1.contains("Exited (255)")
    });
    let v = inspect(r, "att");
    assert!(
        v["State"]["Error"].as_str().unwrap().contains("died"),
        "{v}"
    );
    no_mounts(r);
    let (code, _, err) = husk(r, &["rm", "-f", "att"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(husk(r, &["ps", "-aq"]).1, "");
    no_mounts(r);
}

#[test]
fn an_oom_kill_is_reported_in_inspect() {
    let Some((_reg, root, img)) = busybox_store("an_oom_kill_is_reported_in_inspect", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "hog",
            "-m",
            "16m",
            &img,
            "sh",
            "-c",
            "a=0123456789; while true; do a=$a$a; done",
        ],
    );
    assert_eq!(code, 137, "{err}");
    let v = inspect(r, "hog");
    assert_eq!(v["State"]["OOMKilled"], true, "{v}");
    assert_eq!(v["HostConfig"]["Memory"], 16 << 20);
}

#[test]
fn volumes_named_anonymous_and_copied_up() {
    let Some((_reg, root, img)) = busybox_store("volumes_named_anonymous_and_copied_up", &[])
    else {
        return;
    };
    let r = root.path();
    assert_eq!(husk(r, &["volume", "create", "data"]).1, "data\n");
    assert_eq!(
        husk(
            r,
            &[
                "run",
                "--rm",
                "-v",
                "data:/data",
                &img,
                "sh",
                "-c",
                "echo kept > /data/f"
            ]
        )
        .0,
        0
    );
    assert_eq!(
        husk(
            r,
            &["run", "--rm", "-v", "data:/data:ro", &img, "cat", "/data/f"]
        )
        .1,
        "kept\n"
    );
    assert_ne!(
        husk(
            r,
            &[
                "run",
                "--rm",
                "-v",
                "data:/data:ro",
                &img,
                "touch",
                "/data/g"
            ]
        )
        .0,
        0
    );
    // A new named volume over a path the image has: filled with the image's files.
    assert_eq!(
        husk(r, &["run", "--rm", "-v", "etcvol:/etc", &img, "true"]).0,
        0
    );
    let v: serde_json::Value =
        serde_json::from_str(&husk(r, &["volume", "inspect", "etcvol"]).1).unwrap();
    let mp = v[0]["Mountpoint"].as_str().unwrap().to_string();
    assert!(std::fs::read_to_string(Path::new(&mp).join("passwd"))
        .unwrap()
        .contains("app:x:1000"));
    // --mount and --tmpfs.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host").unwrap();
    let m = format!(
        "type=bind,source={},target=/h,readonly",
        host.path().display()
    );
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--mount",
            &m,
            "--tmpfs",
            "/scratch",
            &img,
            "sh",
            "-c",
            "cat /h/in; grep ' /scratch ' /proc/mounts | cut -d' ' -f3",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "from hosttmpfs\n"), "{err}");
    // An anonymous volume lives as long as its container with rm -v.
    let id = husk(
        r,
        &[
            "run",
            "-d",
            "-v",
            "/anon",
            &img,
            "sh",
            "-c",
            "echo x > /anon/x",
        ],
    )
    .1
    .trim()
    .to_string();
    assert_eq!(husk(r, &["wait", &id]).1, "0\n");
    let anon = record(r, &id)["anonymous_volumes"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(husk(r, &["volume", "ls", "-q"]).1.contains(&anon));
    let (code, _, err) = husk(r, &["volume", "rm", "data"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(husk(r, &["rm", "-v", &id]).0, 0);
    assert!(!husk(r, &["volume", "ls", "-q"]).1.contains(&anon));
    assert_eq!(husk(r, &["volume", "prune", "-a"]).0, 0);
    assert_eq!(husk(r, &["volume", "ls", "-q"]).1, "");
    no_mounts(r);
}

#[test]
fn run_flags_reach_the_container() {
    let Some((_reg, root, img)) = busybox_store("run_flags_reach_the_container", &[]) else {
        return;
    };
    let r = root.path();
    // Supplementary groups from the image's /etc/group, as docker gives them.
    assert_eq!(
        husk(r, &["run", "--rm", "-u", "app", &img, "id", "-G"]).1,
        "1000 50\n"
    );
    assert_eq!(husk(r, &["run", "--rm", &img, "id", "-G"]).1, "0 10\n");
    let env = r.join("env");
    std::fs::write(&env, "# comment\nFROM_FILE=1\n\nOVER=file\n").unwrap();
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--env-file",
            env.to_str().unwrap(),
            "-e",
            "OVER=flag",
            &img,
            "sh",
            "-c",
            "echo $FROM_FILE $OVER",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "1 flag\n"), "{err}");
    let (_, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            "--ulimit",
            "nofile=100:200",
            &img,
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn",
        ],
    );
    assert_eq!(out, "100\n200\n");
    let cap_eff = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            &img,
            "grep",
            "-E",
            "^(CapEff|NoNewPrivs)",
            "/proc/self/status",
        ]);
        husk(r, &a).1
    };
    let default = cap_eff(&[]);
    assert!(
        default.contains("CapEff:\t00000000a80425fb"),
        "docker's 14 capabilities: {default}"
    );
    assert!(default.contains("NoNewPrivs:\t0"));
    assert!(cap_eff(&["--cap-drop", "ALL", "--cap-add", "NET_RAW"])
        .contains("CapEff:\t0000000000002000"));
    assert!(cap_eff(&["--cap-drop", "chown"]).contains("CapEff:\t00000000a80425fa"));
    assert!(cap_eff(&["--security-opt", "no-new-privileges"]).contains("NoNewPrivs:\t1"));
    let privileged = cap_eff(&["--privileged"]);
    assert!(!privileged.contains("a80425fb"), "{privileged}");
    assert!(
        husk(r, &["run", "--rm", "--privileged", &img, "ls", "/dev"])
            .1
            .contains("vda")
            || !Path::new("/dev/vda").exists()
    );
    assert_ne!(
        husk(r, &["run", "--rm", "--cap-add", "NOT_A_CAP", &img, "true"]).0,
        0
    );
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--security-opt",
            "apparmor=strict",
            &img,
            "true",
        ],
    );
    assert_eq!(code, 125);
    assert!(err.contains("apparmor=strict"), "{err}");
    // Recorded settings show in inspect.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "cfg",
            "-c",
            "512",
            "-m",
            "64m",
            "--memory-swap",
            "128m",
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "3",
            &img,
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = inspect(r, "cfg");
    assert_eq!(v["HostConfig"]["CpuShares"], 512);
    assert_eq!(v["HostConfig"]["MemorySwap"], 128 << 20);
    assert_eq!(v["Config"]["StopSignal"], "SIGUSR1");
    assert_eq!(v["Config"]["StopTimeout"], 3);
    // --init: tini as PID 1 when the host has it.
    if Path::new("/usr/bin/tini-static").exists() {
        let (code, out, err) = husk(
            r,
            &[
                "run",
                "--rm",
                "--init",
                &img,
                "sh",
                "-c",
                "cat /proc/1/cmdline | tr '\\0' ' '",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("/dev/init -- sh"), "{out}");
    } else {
        eprintln!("SKIP --init half of run_flags_reach_the_container: tini is not installed (.ci/run installs it)");
    }
}

#[test]
fn a_tty_through_a_pty() {
    let Some((_reg, root, img)) = busybox_store("a_tty_through_a_pty", &[]) else {
        return;
    };
    let r = root.path();
    let husk_bin = env!("CARGO_BIN_EXE_husk");
    for (args, name) in [("run --rm -it", ""), ("run -t --name tty1", "tty1")] {
        let cmd = format!(
            "{husk_bin} --root {} {args} {img} sh -c 'tty; stty size'",
            r.display()
        );
        let Ok(out) = std::process::Command::new("script")
            .env("HUSK_CONFIG", no_bridge_config())
            .args(["-qec", &cmd, "/dev/null"])
            .output()
        else {
            eprintln!("SKIP a_tty_through_a_pty: script(1) is missing");
            return;
        };
        let screen = text(&out.stdout);
        assert!(out.status.success(), "{screen}");
        assert!(screen.contains("/dev/pts/0"), "{screen}");
        if !name.is_empty() {
            assert!(husk(r, &["logs", name]).1.contains("/dev/pts/0"));
        }
    }
    // exec -it into a running container.
    assert_eq!(
        husk(r, &["run", "-d", "--name", "box", &img, "sleep", "60"]).0,
        0
    );
    let cmd = format!(
        "{husk_bin} --root {} exec -it box sh -c 'tty; exit 4'",
        r.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let screen = text(&out.stdout);
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert_eq!(husk(r, &["rm", "-f", "box"]).0, 0);
}

#[test]
fn signals_restart_start_attach_and_follow() {
    let Some((_reg, root, img)) = busybox_store("signals_restart_start_attach_and_follow", &[])
    else {
        return;
    };
    let r = root.path();
    // Ctrl-C reaches an attached container (logged and direct).
    for rm in [false, true] {
        let mut args = vec!["--root", r.to_str().unwrap(), "run"];
        if rm {
            args.push("--rm");
        }
        args.extend_from_slice(&[
            &img,
            "sh",
            "-c",
            "trap 'echo got; exit 7' INT; echo ready; while :; do sleep 0.1; done",
        ]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
            .env("HUSK_CONFIG", no_bridge_config())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line, "ready\n");
        // SAFETY: SIGINT to the husk this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert_eq!(
            (status.code(), rest.as_str()),
            (Some(7), "got\n"),
            "rm={rm}"
        );
    }
    // logs -f follows until the container stops; --since drops what came before.
    let (code, id, err) = husk(
        r,
        &["run", "-d", &img, "sh", "-c", "echo one; sleep 1; echo two"],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let (code, out, err) = husk(r, &["logs", "-f", &id]);
    assert_eq!((code, out.as_str()), (0, "one\ntwo\n"), "{err}");
    assert_eq!(
        husk(r, &["logs", "--since", "2099-01-01T00:00:00Z", &id]).1,
        ""
    );
    assert_eq!(husk(r, &["logs", "--since", "1h", &id]).1, "one\ntwo\n");
    // start -a attaches and returns the container's code; restart runs it again.
    let (code, out, _) = husk(r, &["start", "-a", &id]);
    assert_eq!((code, out.as_str()), (0, "one\ntwo\n"));
    let id2 = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "loop",
            &img,
            "sh",
            "-c",
            "echo start; while :; do sleep 0.1; done",
        ],
    )
    .1;
    assert_eq!(id2.trim().len(), 64);
    until("the first start", || {
        husk(r, &["logs", "loop"]).1 == "start\n"
    });
    let first_pid = inspect(r, "loop")["State"]["Pid"].clone();
    let (code, _, err) = husk(r, &["restart", "-t", "1", "loop"]);
    assert_eq!(code, 0, "{err}");
    until("the second start", || {
        husk(r, &["logs", "loop"]).1 == "start\nstart\n"
    });
    assert_ne!(inspect(r, "loop")["State"]["Pid"], first_pid);
    // A container that outlives its run keeps overlayfs's syncs; a --rm one skips them.
    let root_mount = |c: &str| {
        let (code, out, err) = husk(r, &["exec", c, "head", "-n", "1", "/proc/self/mountinfo"]);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert!(!root_mount("loop").contains("volatile"));
    assert_eq!(husk(r, &["rm", "-f", "loop", &id]).0, 0);
    // A --rm container survives a restart, and goes when it stops.
    let (code, rm_id, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--rm",
            &img,
            "sh",
            "-c",
            "while :; do sleep 0.1; done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let rm_id = rm_id.trim().to_string();
    // `volatile`, or `fsync=volatile` on Linux 6.6+.
    let m = root_mount(&rm_id);
    assert!(m.contains("volatile"), "{m}");
    // Remounted after the restart: overlayfs refuses a volatile work directory it used
    // before (work/incompat/volatile), so husk clears it first.
    let (code, _, err) = husk(r, &["restart", "-t", "0", &rm_id]);
    assert_eq!(code, 0, "{err}");
    assert!(husk(r, &["ps", "-q"]).1.contains(&rm_id[..12]));
    let m = root_mount(&rm_id);
    assert!(m.contains("volatile"), "{m}");
    assert_eq!(husk(r, &["stop", "-t", "0", &rm_id]).0, 0);
    until("the --rm container to go", || {
        !husk(r, &["ps", "-aq"]).1.contains(&rm_id[..12])
    });
    // `rm -f` of a running --rm container races its monitor, which removes it too: either
    // way it is gone and rm succeeds.
    for _ in 0..5 {
        let (code, id, err) = husk(r, &["run", "-d", "--rm", &img, "sleep", "30"]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = husk(r, &["rm", "-f", id.trim()]);
        assert_eq!(code, 0, "{err}");
        until("the --rm container to go", || {
            !husk(r, &["ps", "-aq"]).1.contains(&id.trim()[..12])
        });
    }
    no_mounts(r);
}

#[test]
fn a_timeout_kills_the_container_with_137() {
    let Some((_reg, root, img)) = busybox_store("a_timeout_kills_the_container_with_137", &[])
    else {
        return;
    };
    let r = root.path();
    // Attached: husk returns the SIGKILL's 137 and says why; a busy loop that ignores
    // SIGTERM (PID 1) cannot outlast it.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--timeout",
            "1",
            &img,
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("killed after its --timeout of 1 s"), "{err}");
    // A command that ends first keeps its own code, without waiting for the timeout.
    let started = Instant::now();
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--timeout",
            "60",
            &img,
            "sh",
            "-c",
            "echo hi; exit 3",
        ],
    );
    assert_eq!((code, out.as_str()), (3, "hi\n"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "did not wait for the timeout"
    );
    // Detached: the monitor enforces it; wait and inspect tell.
    let (code, id, err) = husk(r, &["run", "-d", "--timeout", "1", &img, "sleep", "60"]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim();
    assert_eq!(husk(r, &["wait", id]).1, "137\n");
    let state = &inspect(r, id)["State"];
    assert_eq!(state["ExitCode"], 137);
    assert!(
        state["Error"]
            .as_str()
            .unwrap_or("")
            .contains("--timeout of 1 s"),
        "{state}"
    );
    // Counted again from each start.
    let (code, _, err) = husk(r, &["start", "-a", id]);
    assert_eq!(code, 137, "{err}");
    let (code, _, err) = husk(r, &["run", "--rm", "--timeout", "0", &img, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("--timeout"), "{err}");
    assert_eq!(husk(r, &["rm", "-f", id]).0, 0);
    no_mounts(r);
}

/// What a docker user types wrong, or expects docker's answer to: one line (two for a flag,
/// with where to read more), docker's exit codes, and `-w` of a directory the image lacks.
#[test]
fn bad_input_gets_dockers_answers() {
    let Some((_reg, root, img)) = busybox_store("bad_input_gets_dockers_answers", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(r, &["run", "--x", &img]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(err, "husk: unknown flag: --x\nSee 'husk run --help'.\n");
    let (code, _, err) = husk(r, &["network", "create", "--nope"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.ends_with("See 'husk network create --help'.\n"),
        "{err}"
    );

    for (args, code_wanted, says) in [
        (vec!["rm", "nope"], 1, "no such container: nope"),
        (vec!["stop", "nope"], 1, "no such container: nope"),
        (vec!["exec", "nope", "ls"], 1, "no such container: nope"),
        (
            vec!["run", "--rm", "--cpus", "999", &img, "true"],
            125,
            "range of CPUs is from 0.01 to",
        ),
        (
            vec!["run", "--rm", "-m", "1k", &img, "true"],
            125,
            "minimum memory limit allowed is 6MB",
        ),
        (
            vec!["run", "--rm", "-e", "=x", &img, "true"],
            125,
            "invalid environment variable: =x",
        ),
        (
            vec!["run", "--rm", "-it", &img, "true"],
            1,
            "the input device is not a TTY",
        ),
    ] {
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, code_wanted, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(husk(r, &["ps", "-aq"]).1, "", "nothing was made");

    let (code, out, err) = husk(r, &["run", "--rm", "-w", "/new/dir", &img, "pwd"]);
    assert_eq!((code, out.as_str()), (0, "/new/dir\n"), "{err}");
    let (code, _, err) = husk(r, &["run", "-d", "--name", "box", &img, "sleep", "60"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = husk(r, &["exec", "box", "nosuch"]);
    assert_eq!(code, 127, "{err}");
    assert!(!err.contains("exec: exec:"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(husk(r, &["rm", "-f", "box"]).0, 0);
}

/// `--log-opt labels=` and `env=` put docker's `attrs` on each line; `logs --details` shows
/// them (query-escaped, sorted), and a bare space where there are none, as docker does.
#[test]
fn logs_details_show_the_labels_and_env_the_log_opts_name() {
    let Some((_reg, root, img)) = busybox_store("logs_details_show_labels_and_env", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "tagged",
            "--log-opt",
            "labels=app,tier,missing",
            "--log-opt",
            "env=STAGE",
            "-l",
            "app=web",
            "-l",
            "tier=front end",
            "-l",
            "other=x",
            "-e",
            "STAGE=prod&1",
            &img,
            "echo",
            "hi",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(r, &["logs", "--details", "tagged"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "STAGE=prod%261,app=web,tier=front+end hi\n");
    let (_, plain, _) = husk(r, &["logs", "tagged"]);
    assert_eq!(plain, "hi\n");
    let (_, out, _) = husk(
        r,
        &[
            "inspect",
            "-f",
            "{{.HostConfig.LogConfig.Config.labels}}",
            "tagged",
        ],
    );
    assert_eq!(out.trim(), "app,tier,missing");
    assert_eq!(husk(r, &["run", "--name", "bare", &img, "echo", "hi"]).0, 0);
    let (_, out, _) = husk(r, &["logs", "--details", "bare"]);
    assert_eq!(out, " hi\n");
    assert_eq!(husk(r, &["rm", "tagged", "bare"]).0, 0);

    // docker's `local` driver: rotated and gzip'd, read back whole.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "local",
            "--log-driver",
            "local",
            "--log-opt",
            "max-size=1k",
            &img,
            "sh",
            "-c",
            "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = husk(r, &["logs", "local"]);
    let want: String = (0..60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(out, want);
    let (_, tail, _) = husk(r, &["logs", "-n", "2", "local"]);
    assert_eq!(tail, "line 58\nline 59\n");
    let (_, kind, _) = husk(
        r,
        &["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "local"],
    );
    assert_eq!(kind.trim(), "local");
    let (_, path, _) = husk(r, &["inspect", "-f", "{{.LogPath}}", "local"]);
    let gz = std::fs::read_dir(std::path::Path::new(path.trim()).parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".gz"))
        .count();
    assert!(gz >= 2, "rotated files are compressed");
    assert_eq!(husk(r, &["rm", "local"]).0, 0);
}

/// docker's json-file rotation (`--log-opt max-size`, `max-file`) and the `none` driver.
#[test]
fn logs_rotate_at_max_size_and_the_none_driver_keeps_nothing() {
    let Some((_reg, root, img)) = busybox_store(
        "logs_rotate_at_max_size_and_the_none_driver_keeps_nothing",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    let (code, id, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "chatty",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=2",
            &img,
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    assert_eq!(husk(r, &["wait", "chatty"]).1.trim(), "0");
    let dir = r.join("containers").join(&id);
    let mut logs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    logs.sort();
    assert_eq!(logs, [format!("{id}-json.log"), format!("{id}-json.log.1")]);
    for l in &logs {
        assert!(std::fs::metadata(dir.join(l)).unwrap().len() < 2300, "{l}");
    }
    // What is kept, oldest first and without a gap, ends with the last line.
    let (code, out, err) = husk(r, &["logs", "chatty"]);
    assert_eq!(code, 0, "{err}");
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 299);
    assert!(nums[0] > 0, "the oldest lines were dropped");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    assert_eq!(
        husk(r, &["logs", "--tail", "2", "chatty"]).1,
        "line 298\nline 299\n"
    );
    let (_, v, _) = husk(r, &["inspect", "chatty"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v[0]["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(v[0]["HostConfig"]["LogConfig"]["Config"]["max-file"], "2");

    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "quiet",
            "--log-driver",
            "none",
            &img,
            "echo",
            "gone",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = husk(r, &["logs", "quiet"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not support reading"), "{err}");
    for bad in [
        vec!["--log-opt", "max-file=2"],
        vec!["--log-driver", "syslog"],
        vec!["--log-opt", "max-size=lots"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(bad.iter().copied());
        args.extend([img.as_str(), "true"]);
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, 125, "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
    }
}

#[test]
fn pause_freezes_and_unpause_thaws_and_a_paused_container_still_stops() {
    let Some((_reg, root, img)) = busybox_store(
        "pause_freezes_and_unpause_thaws_and_a_paused_container_still_stops",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            &img,
            "sh",
            "-c",
            "while true; do date +%s%N > /tmp/t; sleep 0.05; done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(r, &["pause", "ticker"]);
    assert_eq!((code, out.as_str()), (0, "ticker\n"), "{err}");
    let (_, ps, _) = husk(r, &["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    let (_, v, _) = husk(r, &["inspect", "ticker"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(
        (
            v[0]["State"]["Paused"].as_bool(),
            v[0]["State"]["Status"].as_str()
        ),
        (Some(true), Some("paused"))
    );
    // Frozen: the file stops changing.
    let dir = r
        .join("containers")
        .join(v[0]["Id"].as_str().unwrap())
        .join("rootfs/tmp/t");
    let before = std::fs::read(&dir).ok();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read(&dir).ok(), before, "a paused container ran");
    let (code, _, err) = husk(r, &["pause", "ticker"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already paused"), "{err}");
    assert_eq!(husk(r, &["unpause", "ticker"]).0, 0);
    until("the container to tick again", || {
        std::fs::read(&dir).ok() != before
    });
    let (code, _, err) = husk(r, &["unpause", "ticker"]);
    assert_eq!(code, 1, "{err}");
    // A paused container stops (docker thaws it for the signal).
    assert_eq!(husk(r, &["pause", "ticker"]).0, 0);
    let (code, _, err) = husk(r, &["stop", "-t", "1", "ticker"]);
    assert_eq!(code, 0, "{err}");
    let (_, ps, _) = husk(r, &["ps", "-a"]);
    assert!(ps.contains("Exited"), "{ps}");
    assert_eq!(husk(r, &["rm", "ticker"]).0, 0);
}

#[test]
fn rename_moves_the_name_and_frees_the_old_one() {
    let Some((_reg, root, img)) = busybox_store("rename_moves_the_name_and_frees_the_old_one", &[])
    else {
        return;
    };
    let r = root.path();
    assert_eq!(
        husk(r, &["run", "-d", "--name", "first", &img, "sleep", "60"]).0,
        0
    );
    assert_eq!(
        husk(r, &["run", "-d", "--name", "other", &img, "sleep", "60"]).0,
        0
    );
    let (code, _, err) = husk(r, &["rename", "first", "second"]);
    assert_eq!(code, 0, "{err}");
    assert!(husk(r, &["ps", "--format", "json"])
        .1
        .contains("\"Names\":\"second\""));
    assert_eq!(husk(r, &["inspect", "first"]).0, 1, "the old name is gone");
    for (new, says) in [
        ("other", "already in use"),
        ("second", "same name"),
        ("bad name", "invalid container name"),
    ] {
        let (code, _, err) = husk(r, &["rename", "second", new]);
        assert_ne!(code, 0, "{new}");
        assert!(err.contains(says), "{new}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // The old name is free for a new container.
    assert_eq!(
        husk(r, &["run", "-d", "--name", "first", &img, "sleep", "60"]).0,
        0
    );
    // A --rm container renamed while it runs lets go of its new name when it goes.
    assert_eq!(
        husk(
            r,
            &["run", "-d", "--rm", "--name", "short", &img, "sleep", "1"]
        )
        .0,
        0
    );
    assert_eq!(husk(r, &["rename", "short", "shorter"]).0, 0);
    husk(r, &["wait", "shorter"]);
    until("the --rm container to go", || {
        husk(r, &["inspect", "shorter"]).0 != 0
    });
    let (code, _, err) = husk(r, &["run", "--rm", "--name", "shorter", &img, "true"]);
    assert_eq!(code, 0, "the name was released: {err}");
    assert_eq!(husk(r, &["rm", "-f", "first", "second", "other"]).0, 0);
}

#[test]
fn update_changes_the_limits_of_a_running_container_and_they_stay() {
    let Some((_reg, root, img)) = busybox_store(
        "update_changes_the_limits_of_a_running_container_and_they_stay",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    let read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";
    assert_eq!(
        husk(
            r,
            &["run", "-d", "--name", "box", "-m", "64m", &img, "sleep", "600"]
        )
        .0,
        0
    );
    let (code, out, err) = husk(r, &["update", "-m", "128m", "--pids-limit", "50", "box"]);
    assert_eq!((code, out.as_str()), (0, "box\n"), "{err}");
    let (_, out, _) = husk(r, &["exec", "box", "sh", "-c", read]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["134217728", "50"]);
    let (_, v, _) = husk(r, &["inspect", "box"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v[0]["HostConfig"]["Memory"], 134217728);
    // Kept for the next start.
    assert_eq!(husk(r, &["stop", "-t", "0", "box"]).0, 0);
    assert_eq!(husk(r, &["start", "box"]).0, 0);
    let (_, out, _) = husk(r, &["exec", "box", "sh", "-c", read]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["134217728", "50"]);
    for (args, says) in [
        (vec!["update", "-m", "1k", "box"], "minimum memory"),
        (vec!["update", "--cpus", "999", "box"], "range of CPUs"),
        (vec!["update", "-m", "64m", "nope"], "no such container"),
    ] {
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(husk(r, &["rm", "-f", "box"]).0, 0);
}

/// docker's `--format`: Go templates with `table`, `json` and docker's functions, on ps,
/// images, stats, network ls and inspect's `-f`.
#[test]
fn go_templates_format_the_listings_as_dockers_do() {
    let Some((_reg, root, img)) =
        busybox_store("go_templates_format_the_listings_as_dockers_do", &[])
    else {
        return;
    };
    let r = root.path();
    let (code, id, err) = husk(
        r,
        &[
            "run", "-d", "--name", "tmpl", "-l", "tier=web", &img, "sleep", "60",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim();
    let ok = |args: &[&str]| {
        let (code, out, err) = husk(r, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    assert_eq!(
        ok(&["ps", "--format", "{{.Names}} {{.Labels}}"]),
        "tmpl tier=web\n"
    );
    let table = ok(&["ps", "--format", "table {{.ID}}\\t{{upper .Names}}"]);
    assert_eq!(
        table,
        format!("CONTAINER ID   NAMES\n{}   TMPL\n", &id[..12])
    );
    let line: serde_json::Value =
        serde_json::from_str(ok(&["ps", "--format", "{{json .}}"]).trim()).unwrap();
    assert_eq!(line["Names"], "tmpl");
    assert_eq!(
        ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.Config.Labels.tier}}",
            "tmpl"
        ]),
        "running web\n"
    );
    assert_eq!(
        ok(&["inspect", "--format", "{{json .Config.Labels}}", "tmpl"]),
        "{\"tier\":\"web\"}\n"
    );
    let images = ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.trim().ends_with("/lib/busybox:latest"), "{images}");
    let stats = ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\\t{{.PIDs}}",
    ]);
    assert_eq!(stats, "NAME      PIDS\ntmpl      1\n");
    assert_eq!(
        ok(&["network", "ls", "--format", "{{.Name}}"]),
        "bridge\nhost\nnone\n"
    );
    let (code, _, err) = husk(r, &["ps", "--format", "{{.Names"]);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(husk(r, &["rm", "-f", "tmpl"]).0, 0);
}

fn inspect_state(r: &Path, c: &str) -> serde_json::Value {
    let (_, v, _) = husk(r, &["inspect", c]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    v[0].clone()
}

/// docker's `--restart`: on-failure with a count, always until a stop, unless-stopped after a
/// kill, the hand-off of an attached run, and the conflicts.
#[test]
fn restart_policies_restart_as_dockers_do() {
    let Some((_reg, root, img)) = busybox_store("restart_policies_restart_as_dockers_do", &[])
    else {
        return;
    };
    let r = root.path();
    // on-failure:2: three runs in all, then it stays exited with its code.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            &img,
            "sh",
            "-c",
            "echo run; exit 3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    until("on-failure to give up", || {
        let v = inspect_state(r, "flaky");
        v["RestartCount"] == 2
            && v["State"]["Status"] == "exited"
            && v["State"]["Restarting"] == false
    });
    assert_eq!(husk(r, &["logs", "flaky"]).1, "run\nrun\nrun\n");
    let v = inspect_state(r, "flaky");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);

    // always: a container that exits 0 comes back, until `stop`.
    assert_eq!(
        husk(
            r,
            &[
                "run",
                "-d",
                "--name",
                "loop",
                "--restart",
                "always",
                &img,
                "sh",
                "-c",
                "sleep 0.2"
            ]
        )
        .0,
        0
    );
    until("always to restart twice", || {
        inspect_state(r, "loop")["RestartCount"].as_u64() >= Some(2)
    });
    let (code, _, err) = husk(r, &["stop", "-t", "1", "loop"]);
    assert_eq!(code, 0, "{err}");
    let count = inspect_state(r, "loop")["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(800));
    let v = inspect_state(r, "loop");
    assert_eq!(
        v["RestartCount"], count,
        "a stopped container stays stopped"
    );
    assert_eq!(v["State"]["Status"], "exited");
    let (_, ps, _) = husk(r, &["ps", "-a", "--filter", "name=loop"]);
    assert!(ps.contains("Exited"), "{ps}");

    // unless-stopped: a kill is the user's too.
    assert_eq!(
        husk(
            r,
            &[
                "run",
                "-d",
                "--name",
                "svc",
                "--restart",
                "unless-stopped",
                &img,
                "sleep",
                "60"
            ]
        )
        .0,
        0
    );
    assert_eq!(husk(r, &["kill", "svc"]).0, 0);
    until("the kill to be recorded", || {
        inspect_state(r, "svc")["State"]["Status"] == "exited"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect_state(r, "svc")["RestartCount"], 0);

    // Attached: the exit comes back at once, the restart happens behind it.
    let (code, out, _) = husk(
        r,
        &[
            "run",
            "--name",
            "att",
            "--restart",
            "on-failure:1",
            &img,
            "sh",
            "-c",
            "echo try; exit 4",
        ],
    );
    assert_eq!((code, out.as_str()), (4, "try\n"));
    until("the handed-off restart", || {
        let v = inspect_state(r, "att");
        v["RestartCount"] == 1
            && v["State"]["Status"] == "exited"
            && v["State"]["Restarting"] == false
    });
    assert_eq!(husk(r, &["logs", "att"]).1, "try\ntry\n");

    for (args, says) in [
        (
            vec!["run", "--rm", "--restart", "always", &img, "true"],
            "conflicting options",
        ),
        (
            vec!["run", "-d", "--restart", "sometimes", &img, "true"],
            "invalid restart policy",
        ),
    ] {
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(husk(r, &["rm", "-f", "flaky", "loop", "svc", "att"]).0, 0);
}

#[test]
fn system_df_prune_and_version() {
    let Some((_reg, root, img)) = busybox_store("system_df_prune_and_version", &[]) else {
        return;
    };
    let r = root.path();
    assert_eq!(
        husk(r, &["run", "-d", "--name", "user", &img, "sleep", "60"]).0,
        0
    );
    assert_eq!(husk(r, &["run", "--name", "done", &img, "true"]).0, 0);
    let (code, df, err) = husk(r, &["system", "df"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<&str>> = df.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert_eq!(&rows[1][..3], ["Images", "1", "1"], "{df}");
    assert_eq!(&rows[2][..3], ["Containers", "2", "1"], "{df}");
    // An image a container uses stays, even with -a.
    let (code, out, err) = husk(r, &["image", "prune", "-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("untagged"), "{out}");
    assert_eq!(husk(r, &["images", "-q"]).1.lines().count(), 1);
    // system prune: the stopped container goes, the running one and its image stay.
    let (code, out, err) = husk(r, &["system", "prune", "-a", "-f"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert_eq!(husk(r, &["ps", "-aq"]).1.lines().count(), 1);
    assert_eq!(husk(r, &["images", "-q"]).1.lines().count(), 1);
    assert_eq!(husk(r, &["rm", "-f", "user"]).0, 0);
    let (_, out, _) = husk(r, &["image", "prune", "-a"]);
    assert!(out.contains("untagged:"), "{out}");
    assert_eq!(husk(r, &["images", "-q"]).1, "");
    let (code, v, _) = husk(r, &["version", "--format", "{{.Client.Version}}"]);
    assert_eq!((code, v.trim()), (0, env!("CARGO_PKG_VERSION")));
}

#[test]
fn more_run_flags_reach_the_container() {
    let Some((_reg, root, img)) = busybox_store("more_run_flags_reach_the_container", &[]) else {
        return;
    };
    let r = root.path();
    let host_ns = |kind: &str| std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
    let labels = r.join("labels");
    std::fs::write(&labels, "# a comment\ntier=back\nowner=ci\n").unwrap();
    let cid = r.join("cid");
    let (code, out, err) = husk(
        r,
        &[
            "run", "--name", "flags", "--shm-size", "128m", "--sysctl", "net.ipv4.ip_forward=1",
            "--device", "/dev/zero:/dev/myzero", "--device", "/dev/loop-control:/dev/lc:r",
            "--cpuset-cpus", "0", "--group-add", "staff",
            "--group-add", "1234", "--ipc", "host", "--uts", "host", "--cidfile",
            cid.to_str().unwrap(), "--label-file", labels.to_str().unwrap(), "-l", "owner=me",
            "--memory-reservation", "32mb", "--blkio-weight", "300", &img, "sh", "-c",
            "grep /dev/shm /proc/mounts | grep -o 'size=[0-9]*k'; cat /proc/sys/net/ipv4/ip_forward; \
             head -c 4 /dev/myzero | wc -c; (exec 3</dev/lc) && (exec 3>/dev/lc) 2>/dev/null || echo read-only; \
             grep Cpus_allowed_list /proc/self/status; id -G; hostname; readlink /proc/self/ns/ipc",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "size=131072k", "{out}");
    assert_eq!(lines[1], "1", "{out}");
    assert_eq!(lines[2], "4", "{out}");
    // The device cgroup lets it be opened for reading only (/dev/zero is allowed anyway, as
    // docker's defaults allow it).
    assert_eq!(lines[3], "read-only", "{out}");
    assert_eq!(lines[4], "Cpus_allowed_list:\t0", "{out}");
    assert_eq!(lines[5], "0 10 50 1234", "{out}");
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(lines[6], host_name, "{out}");
    assert_eq!(lines[7], host_ns("ipc").to_str().unwrap(), "{out}");
    let id = std::fs::read_to_string(&cid).unwrap();
    let v = inspect(r, "flags");
    assert_eq!(v["Id"], id.as_str());
    let h = &v["HostConfig"];
    assert_eq!(h["ShmSize"], 128 << 20, "{h}");
    assert_eq!(h["MemoryReservation"], 32 << 20, "{h}");
    assert_eq!(h["BlkioWeight"], 300, "{h}");
    assert_eq!(h["CpusetCpus"], "0", "{h}");
    assert_eq!(h["IpcMode"], "host", "{h}");
    assert_eq!(h["UTSMode"], "host", "{h}");
    assert_eq!(h["Sysctls"]["net.ipv4.ip_forward"], "1", "{h}");
    assert_eq!(v["Config"]["Labels"]["tier"], "back", "{v}");
    assert_eq!(
        v["Config"]["Labels"]["owner"], "me",
        "the command line wins: {v}"
    );
    // The same cidfile again: refused before anything is made.
    let (code, _, err) = husk(
        r,
        &["run", "--cidfile", cid.to_str().unwrap(), &img, "true"],
    );
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("container ID file found"), "{err}");
    assert_eq!(husk(r, &["ps", "-aq"]).1.lines().count(), 1);

    // Another container's pid and ipc namespaces, and its volumes.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "holder",
            "-v",
            "shared:/data",
            &img,
            "sh",
            "-c",
            "echo kept > /data/f; exec sleep 1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--pid",
            "container:holder",
            "--ipc",
            "container:holder",
            "--volumes-from",
            "holder:ro",
            &img,
            "sh",
            "-c",
            "ps -o comm | grep -c sleep; cat /data/f; touch /data/g 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\nkept\nread-only\n");
    // Blkio throttles need a block device: the one this store is on, when there is one.
    if std::path::Path::new("/dev/vda").exists() {
        let (code, _, err) = husk(
            r,
            &[
                "run",
                "--rm",
                "--device-read-bps",
                "/dev/vda:1mb",
                "--device-write-iops",
                "/dev/vda:100",
                &img,
                "true",
            ],
        );
        assert_eq!(code, 0, "{err}");
    } else {
        eprintln!("SKIP the blkio throttle run: no /dev/vda here");
    }
    // Bad input: one line, exit 125, nothing made.
    for (args, says) in [
        (vec!["--device", "/etc/passwd"], "not a device"),
        (vec!["--device", "relative"], "absolute"),
        (vec!["--pid", "container:nosuch"], "nosuch"),
        (vec!["--uts", "container:holder"], "--uts"),
        (vec!["--blkio-weight", "5"], "10 to 1000"),
        (
            vec!["--device-read-bps", "/dev/null:1mb"],
            "not a block device",
        ),
        (vec!["--gpus", "all"], "--gpus"),
        (vec!["--shm-size", "0"], "shm-size"),
        (vec!["--sysctl", "novalue"], "--sysctl"),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend([img.as_str(), "true"]);
        let (code, _, err) = husk(r, &full);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(husk(r, &["ps", "-aq"]).1.lines().count(), 2);
    assert_eq!(husk(r, &["rm", "-f", "holder", "flags"]).0, 0);
    no_mounts(r);
}

#[test]
fn cp_both_ways_with_dockers_rules_and_no_way_out() {
    let Some((_reg, root, img)) =
        busybox_store("cp_both_ways_with_dockers_rules_and_no_way_out", &[])
    else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "box",
            &img,
            "sh",
            "-c",
            "mkdir -p /data/sub && echo a > /data/f && echo b > /data/sub/g && \
           ln -s /etc/passwd /data/link && ln -s ../../../../../../.. /data/up && \
           touch /data/ready && exec sleep 1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    until("the container's files", || {
        husk(r, &["exec", "box", "test", "-e", "/data/ready"]).0 == 0
    });
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    // A directory into an existing directory: under its own name; symlinks stay symlinks.
    let (code, _, err) = husk(r, &["cp", "box:/data", h.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Successfully copied"), "{err}");
    assert_eq!(
        std::fs::read_to_string(h.join("data/sub/g")).unwrap(),
        "b\n"
    );
    assert_eq!(
        std::fs::read_link(h.join("data/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    // Its contents, to a new name; a file to a file.
    let (code, _, err) = husk(r, &["cp", "box:/data/.", h.join("new").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(h.join("new/f")).unwrap(), "a\n");
    let (code, _, err) = husk(r, &["cp", "box:/data/f", h.join("one").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(h.join("one")).unwrap(), "a\n");
    // Into the container: a file and a directory.
    std::fs::create_dir_all(h.join("tree/deep")).unwrap();
    std::fs::write(h.join("tree/deep/x"), "x").unwrap();
    let (code, _, err) = husk(
        r,
        &["cp", h.join("one").to_str().unwrap(), "box:/data/copied"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = husk(r, &["cp", h.join("tree").to_str().unwrap(), "box:/data"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = husk(
        r,
        &["exec", "box", "cat", "/data/copied", "/data/tree/deep/x"],
    );
    assert_eq!(out, "a\nx");
    // Through the container's symlink out of its root: it stays the container's root.
    let marker = format!("husk-cp-escape-{}", std::process::id());
    let (code, _, err) = husk(
        r,
        &[
            "cp",
            h.join("one").to_str().unwrap(),
            &format!("box:/data/up/tmp/{marker}"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "cp followed a symlink onto the host"
    );
    assert_eq!(
        husk(r, &["exec", "box", "test", "-f", &format!("/tmp/{marker}")]).0,
        0
    );
    let (code, _, err) = husk(
        r,
        &[
            "cp",
            "box:/data/up/etc/hostname",
            h.join("hn").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let theirs = husk(r, &["exec", "box", "cat", "/etc/hostname"]).1;
    assert_eq!(std::fs::read_to_string(h.join("hn")).unwrap(), theirs);
    // Tar streams both ways; a stream that names a path out of the destination is refused.
    let out = husk_output(r, &["cp", "box:/data/sub", "-"], None);
    assert!(out.status.success());
    let mut names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["sub", "sub/g"]);
    let mut evil = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_size(1);
    hd.set_mode(0o644);
    hd.set_entry_type(tar::EntryType::Regular);
    evil.append_data(&mut hd, "ok", &b"1"[..]).unwrap();
    let mut raw = evil.into_inner().unwrap();
    // A second entry named ../escape, written by hand (the tar crate refuses to make one).
    let mut h2 = tar::Header::new_old();
    h2.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h2.set_size(1);
    h2.set_mode(0o644);
    h2.set_entry_type(tar::EntryType::Regular);
    h2.set_cksum();
    raw.truncate(raw.len() - 1024);
    raw.extend_from_slice(h2.as_bytes());
    raw.extend_from_slice(&[b'2'; 1]);
    raw.resize(raw.len() + 511 + 1024, 0);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
        .env("HUSK_CONFIG", no_bridge_config())
        .arg("--root")
        .arg(r)
        .args(["cp", "-", "box:/data/sub"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(!done.status.success());
    assert!(
        text(&done.stderr).contains("out of the destination"),
        "{}",
        text(&done.stderr)
    );
    assert_ne!(husk(r, &["exec", "box", "test", "-e", "/data/escape"]).0, 0);
    // A stopped container: its root is mounted for the copy, and unmounted after.
    assert_eq!(husk(r, &["stop", "-t", "0", "box"]).0, 0);
    let (code, _, err) = husk(
        r,
        &["cp", "box:/data/sub/g", h.join("late").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(h.join("late")).unwrap(), "b\n");
    no_mounts(r);
    // Bad input: one line.
    for (args, says) in [
        (
            vec!["cp", "box:/nope", h.to_str().unwrap()],
            "could not find",
        ),
        (vec!["cp", "a", "b"], "at least one container"),
        (
            vec!["cp", "box:/data", h.join("one").to_str().unwrap()],
            "directory to a file",
        ),
    ] {
        let (code, _, err) = husk(r, &args);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(husk(r, &["rm", "box"]).0, 0);
    no_mounts(r);
}
