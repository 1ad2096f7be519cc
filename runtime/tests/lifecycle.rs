//! The container lifecycle, as a caller (containerd, podman, the conformance suites) drives it.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn run_passes_stdout_and_exit_code_through_and_cleans_up() {
    if !require_root("run_passes_stdout_and_exit_code_through_and_cleans_up") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sh", "-c", "echo hello from husk; exit 3"]);
    let id = unique_id("run");
    let out = root.hr(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(text(&out.stdout), "hello from husk\n");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        !root.container_dir(&id).exists(),
        "run deletes the container after it exits"
    );
    assert_no_cgroup(&id);
}

#[test]
fn run_reports_a_signal_death_as_128_plus_n() {
    if !require_root("run_reports_a_signal_death_as_128_plus_n") {
        return;
    }
    let root = Root::new();
    // A pid-namespace init ignores signals it has no handler for, even from itself: kill it
    // from outside, as `docker kill` would.
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("sig");
    let running = root.spawn(&["run", "-b", b.path().to_str().unwrap(), &id]);
    root.track(&id);
    root.wait_status(&id, "running");
    root.ok(&["kill", &id, "KILL"]);
    let out = Root::finish(running);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(!root.container_dir(&id).exists());
}

#[test]
fn create_waits_for_start_then_runs_and_stops() {
    if !require_root("create_waits_for_start_then_runs_and_stops") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sh", "-c", "touch /out/started; sleep 1000"]);
    b.with_out_mount();
    let id = unique_id("life");
    let pid_file = b.path().join("pid");
    root.ok(&[
        "create",
        &id,
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let st = root.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(
        Path::new(st["bundle"].as_str().unwrap()),
        fs::canonicalize(b.path()).unwrap()
    );
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        st["pid"].as_i64(),
        Some(pid as i64),
        "pid file holds the host pid of the init"
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !b.out().join("started").exists(),
        "the user process must not run before start"
    );

    root.ok(&["start", &id]);
    assert_eq!(root.status(&id), "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.out().join("started").exists() {
        assert!(Instant::now() < deadline, "process never ran after start");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The init is in the container's cgroup.
    let procs = fs::read_to_string(cgroup_dir("pids", &id).join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "init {pid} not in cgroup: {procs}"
    );

    let again = root.hr(&["start", &id]);
    assert!(
        !again.status.success(),
        "a running container cannot be started twice"
    );

    root.ok(&["kill", &id, "KILL"]);
    root.wait_status(&id, "stopped");
    assert!(
        root.state(&id).get("pid").is_none(),
        "a stopped container has no pid"
    );
    root.ok(&["delete", &id]);
    assert!(!root.container_dir(&id).exists());
    assert_no_cgroup(&id);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
}

#[test]
fn flags_are_accepted_before_and_after_the_id() {
    if !require_root("flags_are_accepted_before_and_after_the_id") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let bundle = b.path().to_str().unwrap();
    let a = unique_id("order-a");
    let z = unique_id("order-b");
    root.ok(&["create", &a, "--bundle", bundle]);
    root.ok(&["create", "--bundle", bundle, &z]);
    assert_eq!(root.status(&a), "created");
    assert_eq!(root.status(&z), "created");
    root.ok(&["delete", &a]);
    root.ok(&["delete", "--force", &z]);
}

#[test]
fn delete_of_a_running_container_needs_force() {
    if !require_root("delete_of_a_running_container_needs_force") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("del");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(root.status(&id), "running");
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let out = root.hr(&["delete", &id]);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("running"), "{}", error_line(&out));
    assert_eq!(
        root.status(&id),
        "running",
        "a refused delete changes nothing"
    );
    root.ok(&["delete", "--force", &id]);
    assert!(!root.container_dir(&id).exists());
    assert_no_cgroup(&id);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "init survived delete --force: {stat}"
    );
}

#[test]
fn delete_force_of_an_unknown_id_succeeds() {
    if !require_root("delete_force_of_an_unknown_id_succeeds") {
        return;
    }
    let root = Root::new();
    assert!(root
        .hr(&["delete", "--force", "never-was"])
        .status
        .success());
    let out = root.hr(&["delete", "never-was"]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("does not exist"),
        "{}",
        error_line(&out)
    );
}

#[test]
fn two_creates_of_one_id_exactly_one_wins() {
    if !require_root("two_creates_of_one_id_exactly_one_wins") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("race");
    root.track(&id);
    let args = ["create", "--bundle", b.path().to_str().unwrap(), &id];
    let (c1, c2) = (root.spawn(&args), root.spawn(&args));
    let (o1, o2) = (Root::finish(c1), Root::finish(c2));
    let wins = [o1.status.success(), o2.status.success()];
    assert_eq!(
        wins.iter().filter(|w| **w).count(),
        1,
        "exactly one create wins: {wins:?}"
    );
    let loser = if wins[0] { &o2 } else { &o1 };
    assert!(
        error_line(loser).contains("already exists"),
        "{}",
        error_line(loser)
    );
    assert_eq!(
        root.status(&id),
        "created",
        "the loser did not damage the winner"
    );
}

#[test]
fn kill_takes_names_numbers_and_all() {
    if !require_root("kill_takes_names_numbers_and_all") {
        return;
    }
    let root = Root::new();
    // The shell traps TERM and USR1 (signals to a pid-1 process need a handler).
    let b = Bundle::new(&["sh", "-c", "trap 'echo usr1 > /tmp/usr1' USR1; trap 'exit 7' TERM; sleep 1000 & while :; do wait; done"]);
    let id = unique_id("kill");
    root.ok(&["run", "-d", "-b", b.path().to_str().unwrap(), &id]);
    root.ok(&["kill", &id, "USR1"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.rootfs().join("tmp/usr1").exists() {
        assert!(Instant::now() < deadline, "USR1 never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(root.ps_pids(&id).len(), 2, "sh and its sleep");
    root.ok(&["kill", "--all", &id, "9"]);
    root.wait_status(&id, "stopped");
    assert!(
        root.hr(&["kill", &id, "SIGTERM"]).status.code() != Some(0),
        "killing a stopped container fails"
    );
    root.ok(&["delete", &id]);
    let bad = root.hr(&["kill", "nope", "NOTASIGNAL"]);
    assert!(!bad.status.success());
}

trait Ps {
    fn ps_pids(&self, id: &str) -> Vec<i64>;
}
impl Ps for Root {
    fn ps_pids(&self, id: &str) -> Vec<i64> {
        serde_json::from_str(&self.ok(&["ps", "--format", "json", id])).expect("ps json")
    }
}

#[test]
fn list_and_ps_formats() {
    if !require_root("list_and_ps_formats") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("list");
    root.ok(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(root.ok(&["list", "-q"]).trim(), id);
    let list: serde_json::Value =
        serde_json::from_str(&root.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    let table = root.ok(&["list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&id));
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(root.ps_pids(&id), vec![pid]);
    let ps = root.ok(&["ps", &id]);
    assert!(ps.lines().next().unwrap().contains("PID"));
    assert!(ps.contains("sleep 1000"), "{ps}");
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn pause_and_resume_freeze_the_container() {
    if !require_root("pause_and_resume_freeze_the_container") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("pause");
    root.ok(&["run", "-d", "-b", b.path().to_str().unwrap(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    root.ok(&["pause", &id]);
    assert_eq!(root.status(&id), "paused");
    let freezer = if is_cgroup_v2() {
        cgroup_dir("", &id).join("cgroup.freeze")
    } else {
        cgroup_dir("freezer", &id).join("freezer.state")
    };
    let v = fs::read_to_string(&freezer).unwrap();
    assert!(v.trim() == "FROZEN" || v.trim() == "1", "{v}");
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let _ = stat;
    root.ok(&["resume", &id]);
    assert_eq!(root.status(&id), "running");
    // delete --force of a paused container works too.
    root.ok(&["pause", &id]);
    root.ok(&["delete", "--force", &id]);
}

#[test]
fn update_reads_resources_from_stdin() {
    if !require_root("update_reads_resources_from_stdin") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("update");
    root.ok(&["run", "-d", "-b", b.path().to_str().unwrap(), &id]);
    let mut child = root
        .cmd()
        .args(["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory": {"limit": 67108864}, "pids": {"limit": 42}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    if is_cgroup_v2() {
        assert_eq!(
            fs::read_to_string(cgroup_dir("", &id).join("memory.max"))
                .unwrap()
                .trim(),
            "67108864"
        );
    } else {
        assert_eq!(
            fs::read_to_string(cgroup_dir("memory", &id).join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            "67108864"
        );
    }
    assert_eq!(
        fs::read_to_string(cgroup_dir("pids", &id).join("pids.max"))
            .unwrap()
            .trim(),
        "42"
    );
    root.ok(&["update", "--pids-limit", "50", &id]);
    assert_eq!(
        fs::read_to_string(cgroup_dir("pids", &id).join("pids.max"))
            .unwrap()
            .trim(),
        "50"
    );
    // runc's flags: a cpu quota, and the swap alone (memory+swap, as v1 counts it: on v2 the
    // swap is what is above the limit the cgroup already has).
    root.ok(&[
        "update",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "100000",
        &id,
    ]);
    if is_cgroup_v2() {
        let d = cgroup_dir("", &id);
        assert_eq!(
            fs::read_to_string(d.join("cpu.max")).unwrap().trim(),
            "30000 100000"
        );
        if d.join("memory.swap.max").exists() {
            root.ok(&["update", "--memory-swap", "100663296", &id]);
            assert_eq!(
                fs::read_to_string(d.join("memory.swap.max"))
                    .unwrap()
                    .trim(),
                "33554432"
            );
        }
    } else {
        let d = cgroup_dir("cpu", &id);
        assert_eq!(
            fs::read_to_string(d.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "30000"
        );
    }
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn bad_input_is_one_clear_line_and_leaves_nothing() {
    if !require_root("bad_input_is_one_clear_line_and_leaves_nothing") {
        return;
    }
    let root = Root::new();
    type Mutation = Box<dyn Fn(&mut Bundle)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "malformed",
            Box::new(|b: &mut Bundle| {
                fs::write(b.path().join("config.json"), "{not json").unwrap()
            }),
            "config.json",
        ),
        (
            "no-args",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["process"]["args"] = serde_json::json!([]));
            }),
            "process.args",
        ),
        (
            "no-rootfs",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["root"]["path"] = "missing".into());
            }),
            "rootfs",
        ),
        (
            "bad-ns",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/nonexistent/ns"}]));
            }),
            "/nonexistent/ns",
        ),
        (
            "no-binary",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["process"]["args"] = serde_json::json!(["/no/such/program"]));
            }),
            "/no/such/program",
        ),
        (
            "bad-mount",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/x", "type": "bind", "source": "/definitely/not/here", "options": ["bind"]})));
            }),
            "/definitely/not/here",
        ),
        (
            "bad-cap-list",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| {
                    c["process"]["capabilities"]["bounding"] = serde_json::json!("CAP_CHOWN")
                });
            }),
            "config.json",
        ),
        (
            "apparmor",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["process"]["apparmorProfile"] = "docker-default".into());
            }),
            "AppArmor",
        ),
        (
            "bad-sysctl",
            Box::new(|b: &mut Bundle| {
                b.edit(|c| c["linux"]["sysctl"] = serde_json::json!({"kernel.panic": "1"}));
            }),
            "kernel.panic",
        ),
    ];
    for (name, mutate, needle) in cases {
        let mut b = Bundle::new(&["true"]);
        mutate(&mut b);
        let id = unique_id(name);
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{name}: create must fail");
        let err = error_line(&out);
        assert!(
            err.contains(needle),
            "{name}: error should name {needle:?}: {err}"
        );
        assert_eq!(
            text(&out.stderr).lines().count(),
            1,
            "{name}: one line: {}",
            text(&out.stderr)
        );
        assert!(
            !root.container_dir(&id).exists(),
            "{name}: state dir left behind"
        );
        assert_no_cgroup(&id);
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(b.path().to_str().unwrap()),
            "{name}: a mount of the bundle leaked to the host"
        );
    }
    // Ids: unknown, invalid, duplicate.
    for args in [
        &["start", "ghost"][..],
        &["state", "ghost"],
        &["kill", "ghost"],
        &["delete", "ghost"],
        &["ps", "ghost"],
    ] {
        let out = root.hr(args);
        assert!(!out.status.success());
        assert!(
            error_line(&out).contains("does not exist"),
            "{args:?}: {}",
            error_line(&out)
        );
    }
    let b = Bundle::new(&["sleep", "100"]);
    let out = root.hr(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "../escape",
    ]);
    assert!(
        error_line(&out).contains("invalid container id"),
        "{}",
        error_line(&out)
    );
    let id = unique_id("dup");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        error_line(&out).contains("already exists"),
        "{}",
        error_line(&out)
    );
    assert_eq!(
        root.status(&id),
        "created",
        "the failed duplicate did not touch the original"
    );
    root.ok(&["delete", &id]);
}

#[test]
fn errors_go_to_the_log_file_as_json_lines() {
    if !require_root("errors_go_to_the_log_file_as_json_lines") {
        return;
    }
    let root = Root::new();
    let log = root.dir.path().join("log.json");
    let out = root.hr(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "ghost",
    ]);
    assert!(!out.status.success());
    let line = fs::read_to_string(&log).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(line.lines().last().unwrap()).expect("a JSON line");
    assert_eq!(v["level"], "error");
    assert_eq!(v["msg"], "container \"ghost\" does not exist");
    assert!(v["time"].is_string());
}

#[test]
fn systemd_cgroup_is_accepted_on_every_command() {
    // containerd passes the flag to every call when SystemdCgroup is on (runtime/tests/systemd.rs
    // tests the driver itself).
    let root = Root::new();
    let out = root.hr(&["--systemd-cgroup", "list"]);
    assert!(out.status.success(), "{}", error_line(&out));
    let features: serde_json::Value =
        serde_json::from_str(&root.ok(&["features"])).expect("features JSON");
    assert_eq!(features["linux"]["cgroup"]["systemd"], true);
}

#[test]
fn features_and_spec_print_valid_json() {
    let root = Root::new();
    let f: serde_json::Value =
        serde_json::from_str(&root.ok(&["features"])).expect("features JSON");
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "time"));
    let dir = tempfile::tempdir().unwrap();
    root.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap())
            .expect("spec parses");
    assert_eq!(spec.version(), "1.2.0");
    let again = root.hr(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "spec does not overwrite an existing config.json"
    );
    let rl = tempfile::tempdir().unwrap();
    root.ok(&[
        "spec",
        "--rootless",
        "--bundle",
        rl.path().to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(rl.path().join("config.json")).unwrap()).unwrap();
    assert!(v["linux"]["uidMappings"].is_array());
}

#[test]
fn no_zombies_are_left_by_a_foreground_run() {
    if !require_root("no_zombies_are_left_by_a_foreground_run") {
        return;
    }
    let root = Root::new();
    // The init leaves orphans behind that outlive it briefly.
    let b = Bundle::new(&["sh", "-c", "sleep 0.2 & sleep 0.2 & exit 0"]);
    let id = unique_id("zombie");
    let child = root
        .cmd()
        .args(["run", "-b", b.path().to_str().unwrap(), &id])
        .spawn()
        .unwrap();
    let runtime_pid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // Nothing whose parent is the (now gone) runtime, and no zombie of ours.
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        let ppid: i32 = f[1].parse().unwrap_or(0);
        assert!(
            ppid != runtime_pid,
            "process {} still a child of the runtime",
            entry.file_name().to_string_lossy()
        );
        assert!(
            !(f[0] == "Z" && ppid == std::process::id() as i32),
            "zombie child of the test"
        );
    }
}

#[test]
fn create_hands_its_stdio_to_the_container() {
    if !require_root("create_hands_its_stdio_to_the_container") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; read x; echo read:$x",
    ]);
    let id = unique_id("stdio");
    root.track(&id);
    let input = b.path().join("stdin");
    fs::write(&input, "fed-in\n").unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let status = root
        .cmd()
        .args(["create", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(fs::File::open(&input).unwrap())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    root.ok(&["start", &id]);
    root.wait_status(&id, "stopped");
    assert_eq!(
        fs::read_to_string(out.path()).unwrap(),
        "to-stdout\nread:fed-in\n"
    );
    assert_eq!(fs::read_to_string(err.path()).unwrap(), "to-stderr\n");
    root.ok(&["delete", &id]);
}
