//! Healthchecks and events, as a docker user meets them: `--health-*` and the image's
//! HEALTHCHECK judged by the monitor (`(healthy)` in `ps`, `State.Health` in `inspect`,
//! `health=` filters), and `husk events` from the store's journal, past and followed.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The journal's events so far (`--since 0 --until now`), filtered, in `format`.
fn past_events(root: &Path, filters: &[&str], format: &str) -> String {
    let mut args = vec!["events", "--since", "0", "--until", "0s"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    if !format.is_empty() {
        args.extend(["--format", format]);
    }
    let (code, out, err) = husk(root, &args);
    assert_eq!(code, 0, "{err}");
    out
}

fn inspect(root: &Path, name: &str) -> Value {
    let (code, out, err) = husk(root, &["inspect", name]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

fn health_of(root: &Path, name: &str) -> Value {
    inspect(root, name)["State"]["Health"].clone()
}

/// Wait until the container's health status is `want`; its `State.Health` then.
fn until_health(root: &Path, name: &str, want: &str) -> Value {
    let start = Instant::now();
    loop {
        let h = health_of(root, name);
        if h["Status"] == want {
            return h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name} never became {want}: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line names `root` (monitors, checkers, their children).
fn processes_naming(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some(cmd)
        })
        .collect()
}

#[test]
fn a_health_cmd_turns_unhealthy_then_healthy_and_shows_in_ps_and_inspect() {
    let Some((_reg, root, img)) = busybox_store("a_health_cmd_turns_unhealthy_then_healthy", &[])
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
            "checked",
            "--health-cmd",
            "echo probe; test -e /tmp/ok",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            &img,
            "sleep",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let cfg = inspect(r, "checked")["Config"]["Healthcheck"].clone();
    assert_eq!(
        cfg["Test"],
        json!(["CMD-SHELL", "echo probe; test -e /tmp/ok"])
    );
    assert_eq!(cfg["Interval"], 200_000_000);
    assert_eq!(cfg["Retries"], 2);

    let h = until_health(r, "checked", "unhealthy");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 1, "{h}");
    assert_eq!(last["Output"], "probe\n", "the check's output is kept: {h}");
    let (_, ps, _) = husk(r, &["ps", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(unhealthy)"), "{ps}");
    let (_, listed, _) = husk(r, &["ps", "-q", "--filter", "health=unhealthy"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");

    assert_eq!(husk(r, &["exec", "checked", "touch", "/tmp/ok"]).0, 0);
    let h = until_health(r, "checked", "healthy");
    assert_eq!(h["FailingStreak"], 0);
    let (_, ps, _) = husk(r, &["ps", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(healthy)"), "{ps}");
    let (_, listed, _) = husk(r, &["ps", "-q", "--filter", "health=healthy"]);
    assert_eq!(listed.lines().count(), 1);
    let (_, listed, _) = husk(r, &["ps", "-q", "--filter", "health=unhealthy"]);
    assert_eq!(listed, "");
    // docker keeps the last five checks.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(health_of(r, "checked")["Log"].as_array().unwrap().len(), 5);

    // The verdicts are events, in order.
    let out = past_events(
        r,
        &["container=checked", "event=health_status"],
        "{{.Action}}",
    );
    let actions: Vec<&str> = out.lines().collect();
    assert_eq!(
        actions,
        ["health_status: unhealthy", "health_status: healthy"],
        "{out}"
    );

    // The checker goes with the container: nothing of it is left.
    assert_eq!(husk(r, &["rm", "-f", "checked"]).0, 0);
    let start = Instant::now();
    while !processes_naming(r).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_naming(r), Vec::<String>::new());
}

#[test]
fn a_check_that_hangs_is_killed_at_its_timeout_and_the_start_period_forgives() {
    let Some((_reg, root, img)) = busybox_store("a_check_that_hangs_is_killed", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "slow",
            "--health-cmd",
            "sleep 60",
            "--health-timeout",
            "300ms",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            &img,
            "sleep",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let h = until_health(r, "slow", "unhealthy");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], -1, "{h}");
    assert_eq!(last["Output"], "Health check exceeded timeout (300ms)");
    // Killed, not left behind: only the container's own sleep (and a check in flight).
    let (_, top, _) = husk(r, &["top", "slow"]);
    let checks = top.lines().filter(|l| l.contains("sleep 60")).count();
    assert!(checks <= 1, "timed-out checks pile up: {top}");

    // Failures inside the start period do not count.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "patient",
            "--health-cmd",
            "false",
            "--health-interval",
            "100ms",
            "--health-start-period",
            "1m",
            "--health-retries",
            "1",
            &img,
            "sleep",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(800));
    let h = health_of(r, "patient");
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    assert!(!h["Log"].as_array().unwrap().is_empty(), "checks ran: {h}");
    let (_, ps, _) = husk(
        r,
        &["ps", "--filter", "name=patient", "--format", "{{.Status}}"],
    );
    assert!(ps.trim().ends_with("(health: starting)"), "{ps}");
    assert_eq!(husk(r, &["rm", "-f", "slow", "patient"]).0, 0);
}

#[test]
fn the_images_healthcheck_applies_and_flags_override_or_disable_it() {
    if !is_root() {
        eprintln!("SKIP the_images_healthcheck_applies: containers need root");
        return;
    }
    let Some(reg) = support::start_registry() else {
        return;
    };
    support::push_busybox_image_config(
        &reg,
        "lib/checked",
        "latest",
        json!({"Env": ["PATH=/bin"], "Cmd": ["sleep", "1000"],
               "Healthcheck": {"Test": ["CMD", "test", "-e", "/tmp/ok"], "Interval": 100_000_000, "Retries": 1}}),
    );
    let root = store();
    let r = root.path();
    let img = format!("127.0.0.1:{}/lib/checked", reg.port);
    assert_eq!(husk(r, &["pull", "-q", &img]).0, 0);

    assert_eq!(husk(r, &["run", "-d", "--name", "from-image", &img]).0, 0);
    until_health(r, "from-image", "unhealthy");
    assert_eq!(
        inspect(r, "from-image")["Config"]["Healthcheck"]["Test"],
        json!(["CMD", "test", "-e", "/tmp/ok"])
    );
    // A flag changes one field and keeps the image's others.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "overridden",
            "--health-cmd",
            "true",
            &img,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let cfg = inspect(r, "overridden")["Config"]["Healthcheck"].clone();
    assert_eq!(cfg["Test"], json!(["CMD-SHELL", "true"]));
    assert_eq!(cfg["Interval"], 100_000_000);
    until_health(r, "overridden", "healthy");
    // --no-healthcheck: none at all.
    assert_eq!(
        husk(
            r,
            &["run", "-d", "--name", "unchecked", "--no-healthcheck", &img]
        )
        .0,
        0
    );
    let c = inspect(r, "unchecked");
    assert_eq!(c["State"]["Health"], Value::Null);
    assert_eq!(c["Config"]["Healthcheck"], Value::Null);
    let (_, ps, _) = husk(
        r,
        &[
            "ps",
            "--filter",
            "name=unchecked",
            "--format",
            "{{.Status}}",
        ],
    );
    assert!(!ps.contains('('), "{ps}");
    let (_, none, _) = husk(r, &["ps", "-q", "--filter", "health=none"]);
    assert_eq!(none.lines().count(), 1, "{none}");
    assert_eq!(
        husk(r, &["rm", "-f", "from-image", "overridden", "unchecked"]).0,
        0
    );
}

#[test]
fn bad_health_flags_are_one_line_and_exit_125_and_make_nothing() {
    let Some((_reg, root, img)) = busybox_store("bad_health_flags", &[]) else {
        return;
    };
    let r = root.path();
    for (args, says) in [
        (
            vec!["--health-cmd", "true", "--health-interval", "5"],
            "--health-interval",
        ),
        (
            vec!["--health-cmd", "true", "--health-timeout", "1x"],
            "--health-timeout",
        ),
        (
            vec!["--health-cmd", "true", "--health-interval", "10us"],
            "less than 1ms",
        ),
        (
            vec!["--no-healthcheck", "--health-cmd", "true"],
            "conflicts",
        ),
        (vec!["--health-interval", "1s"], "--health-cmd"),
    ] {
        let mut full = vec!["run", "-d"];
        full.extend(args.iter());
        full.extend([img.as_str(), "true"]);
        let (code, _, err) = husk(r, &full);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (code, _, err) = husk(r, &["ps", "--filter", "health=sick"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("starting, healthy, unhealthy or none"),
        "{err}"
    );
    let (_, all, _) = husk(r, &["ps", "-aq"]);
    assert_eq!(all, "", "a refused run makes no container");
}

#[test]
fn events_tell_a_containers_life_in_docker_shapes_past_and_followed() {
    let Some((_reg, root, img)) = busybox_store("events_tell_a_containers_life", &[]) else {
        return;
    };
    let r = root.path();
    // Followed: an `events` started before the container sees it start.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(r)
        .args([
            "events",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}} {{.Action}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = husk(
        r,
        &["run", "--rm", "--name", "short", &img, "sh", "-c", "exit 3"],
    );
    assert_eq!(code, 3, "{out}{err}");
    let mut line = String::new();
    BufReader::new(follower.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert_eq!(line, "short start\n");

    assert_eq!(
        husk(r, &["run", "-d", "--name", "paused", &img, "sleep", "1000"]).0,
        0
    );
    assert_eq!(husk(r, &["pause", "paused"]).0, 0);
    assert_eq!(husk(r, &["unpause", "paused"]).0, 0);
    assert_eq!(husk(r, &["rename", "paused", "renamed"]).0, 0);
    assert_eq!(husk(r, &["rm", "-f", "renamed"]).0, 0);
    assert_eq!(husk(r, &["volume", "create", "evvol"]).0, 0);
    assert_eq!(husk(r, &["volume", "rm", "evvol"]).0, 0);

    // The past, in docker's plain form: TIME TYPE ACTION ID (attributes).
    let out = past_events(r, &["container=short"], "");
    let actions: Vec<&str> = out.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{out}");
    let die = out.lines().nth(2).unwrap();
    assert!(
        die.contains("exitCode=3") && die.contains("name=short"),
        "{die}"
    );
    assert!(die.split(' ').next().unwrap().ends_with('Z'), "{die}");

    let out = past_events(r, &["type=container", "container=renamed"], "{{.Action}}");
    let actions: Vec<&str> = out.lines().collect();
    assert_eq!(
        actions,
        ["rename", "kill", "die", "destroy"],
        "events name the container by its name then: {out}"
    );
    let out = past_events(r, &["event=pause", "event=unpause"], "{{.Action}}");
    assert_eq!(out, "pause\nunpause\n");
    let out = past_events(r, &["type=volume"], "{{.Actor.ID}} {{.Action}}");
    assert_eq!(out, "evvol create\nevvol destroy\n");

    // {{json .}} is docker's event JSON, one object a line.
    let out = past_events(r, &["event=die"], "{{json .}}");
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["Type"], "container");
    assert_eq!(first["status"], "die");
    assert_eq!(first["Actor"]["Attributes"]["exitCode"], "3");
    assert_eq!(first["scope"], "local");
    assert!(first["timeNano"].as_i64().unwrap() / 1_000_000_000 == first["time"].as_i64().unwrap());
    // An image pull is one too.
    let out = past_events(r, &["type=image"], "{{.Action}}");
    assert_eq!(out, "pull\n");

    // Bad input: one line, exit 1 (docker's daemon refuses these; 125 is for flags).
    for args in [
        vec!["events", "--filter", "colour=red"],
        vec!["events", "--since", "yesterday"],
        vec!["events", "--filter", "nokey"],
    ] {
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
