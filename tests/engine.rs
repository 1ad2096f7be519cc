//! The docker-like engine end to end: detached containers and their monitor, ps, logs, exec,
//! stop, kill, rm, wait, start, restart, inspect, top, stats, prune, volumes, names, exit codes,
//! a pty, OOM, and a monitor or an attached husk killed with SIGKILL.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use support::*;

/// A registry with the busybox image and a store that has pulled it.
fn setup(test: &str) -> Option<(TestRegistry, tempfile::TempDir, String)> {
    if !is_root() {
        eprintln!("SKIP {test}: containers need root");
        return None;
    }
    let reg = start_registry()?;
    push_busybox_image(&reg, "lib/busybox", "latest");
    let root = tempfile::tempdir().unwrap();
    let img = format!("127.0.0.1:{}/lib/busybox", reg.port);
    let (code, _, err) = husk(root.path(), &["pull", "-q", &img]);
    assert_eq!(code, 0, "{err}");
    Some((reg, root, img))
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn record(root: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join("containers").join(id).join("container.json")).unwrap()).unwrap()
}

fn inspect(root: &Path, name: &str) -> serde_json::Value {
    let (code, out, err) = husk(root, &["inspect", name]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// No mount under the store is left.
fn no_mounts(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()), "a mount was left behind");
}

#[test]
fn detached_container_ps_logs_exec_stop_rm() {
    let Some((_reg, root, img)) = setup("detached_container_ps_logs_exec_stop_rm") else { return };
    let r = root.path();
    let (code, id, err) = husk(r, &["run", "-d", "--name", "web", "--label", "tier=front", &img, "sh", "-c",
        "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    let (_, ps, _) = husk(r, &["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    for col in ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id[..12]) && row.contains("Up ") && row.ends_with("web"), "{row}");
    assert_eq!(husk(r, &["ps", "-q", "--filter", "label=tier=front"]).1.trim(), &id[..12]);
    assert_eq!(husk(r, &["ps", "-q", "--filter", "label=tier=back"]).1.trim(), "");

    until("the log", || husk(r, &["logs", "web"]).1 == "hello\n");
    let (_, out, err) = husk(r, &["logs", "web"]);
    assert_eq!((out.as_str(), err.as_str()), ("hello\n", "oops\n"));
    let log = std::fs::read_to_string(r.join("containers").join(&id).join(format!("{id}-json.log"))).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(first["log"].is_string() && first["stream"].is_string() && first["time"].as_str().unwrap().ends_with('Z'), "{first}");
    let (_, ts, _) = husk(r, &["logs", "-t", "--tail", "2", &id[..8]]);
    assert!(ts.ends_with(" hello\n") && ts.starts_with("20"), "{ts}");

    // exec: output, exit codes, environment, user.
    assert_eq!(husk(r, &["exec", "web", "sh", "-c", "echo $FROM_IMAGE; id -u"]).1, "yes\n0\n");
    assert_eq!(husk(r, &["exec", "-u", "app", "-e", "Y=2", "web", "sh", "-c", "echo $Y; id -u"]).1, "2\n1000\n");
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
    assert!(stats.contains("MEM USAGE / LIMIT") && stats.contains("web"), "{stats}");

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
    assert!(husk(r, &["ps"]).1.lines().count() == 1, "not running any more");
    assert!(husk(r, &["ps", "-a"]).1.contains("Exited (0)"));

    // start again: same container, same log, appended.
    let (code, _, err) = husk(r, &["start", "web"]);
    assert_eq!(code, 0, "{err}");
    until("the second run's log", || husk(r, &["logs", "web"]).1.matches("hello").count() == 2);
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
