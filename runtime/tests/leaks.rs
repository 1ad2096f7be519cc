//! A `create` that fails, at whatever step, leaves nothing: no process, cgroup, mount or state
//! (runc's callers retry, and every leak adds up on a node). Each case below fails at a
//! different step, from config checks before anything exists to the last step in the init;
//! and a runtime killed in the middle of `create` leaves what `delete --force` cleans up.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Processes whose command line mentions `needle` (the container id: the init and the
/// intermediate carry husk-runtime's own argv), zombies included.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id().to_string() {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// Assert that container `id` of bundle `b` left nothing anywhere.
fn assert_nothing_left(root: &Root, b: &Bundle, id: &str, case: &str) {
    // A process may take a moment to be reaped by its new parent.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_mentioning(id),
        Vec::<String>::new(),
        "{case}: processes left"
    );
    assert!(!root.container_dir(id).exists(), "{case}: state left");
    assert_no_cgroup(id);
    assert_eq!(
        mounts_under(b.path()),
        Vec::<String>::new(),
        "{case}: mounts left"
    );
}

type Mutation = Box<dyn Fn(&mut Value, &Path)>;

#[test]
fn a_create_that_fails_at_any_step_leaves_nothing() {
    if !require_root("a_create_that_fails_at_any_step_leaves_nothing") {
        return;
    }
    let cases: Vec<(&str, &str, Mutation)> = vec![
        // Before anything exists.
        (
            "an rlimit listed twice",
            "listed twice",
            Box::new(|c, _| {
                c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}, {"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20}]);
            }),
        ),
        (
            "a console socket that is not there",
            "console socket",
            Box::new(|c, _| {
                c["process"]["terminal"] = true.into();
            }),
        ),
        // In the intermediate process: joining a namespace.
        (
            "a namespace path that does not exist",
            "/nonexistent/netns",
            Box::new(|c, _| {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "network");
                ns.push(json!({"type": "network", "path": "/nonexistent/netns"}));
            }),
        ),
        // In the runtime, after the fork: the cgroup's limits.
        (
            "a cpuset the machine does not have",
            "cpuset",
            Box::new(|c, _| {
                c["linux"]["resources"] = json!({"cpu": {"cpus": "4095"}});
            }),
        ),
        // In the runtime, after the fork: the id maps of a new user namespace.
        (
            "id maps the kernel refuses",
            "map",
            Box::new(|c, _| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 10}, {"containerID": 5, "hostID": 100, "size": 10}]);
                c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 10}]);
            }),
        ),
        // In the init: mounts, after the cgroup exists.
        (
            "a bind mount of a missing source",
            "/nonexistent/source",
            Box::new(|c, _| {
                c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/mnt", "type": "bind", "source": "/nonexistent/source", "options": ["rbind"]}));
            }),
        ),
        // In the runtime, while the init waits: a createRuntime hook.
        (
            "a failing createRuntime hook",
            "exit status 4",
            Box::new(|c, _| {
                c["hooks"] =
                    json!({"createRuntime": [{"path": BUSYBOX, "args": ["sh", "-c", "exit 4"]}]});
            }),
        ),
        // In the init, mounts made: a createContainer hook.
        (
            "a failing createContainer hook",
            "exit status 5",
            Box::new(|c, _| {
                c["hooks"] =
                    json!({"createContainer": [{"path": BUSYBOX, "args": ["sh", "-c", "exit 5"]}]});
            }),
        ),
        // In the init, after the root switch.
        (
            "a sysctl the kernel does not have",
            "nonexistent_key",
            Box::new(|c, _| {
                c["linux"]["sysctl"] = json!({"net.ipv4.nonexistent_key": "1"});
            }),
        ),
        (
            "a seccomp agent that is not listening",
            "seccomp agent",
            Box::new(|c, dir| {
                c["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": dir.join("no-agent.sock"),
                    "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
                });
            }),
        ),
        (
            "an rlimit above the kernel's ceiling",
            "RLIMIT_NOFILE",
            Box::new(|c, _| {
                c["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 40, "hard": 1u64 << 40}]);
            }),
        ),
        // The last step in the init: the command.
        (
            "a command that does not exist",
            "/no/such/command",
            Box::new(|c, _| {
                c["process"]["args"] = json!(["/no/such/command"]);
            }),
        ),
    ];
    let root = Root::new();
    for (case, says, mutate) in cases {
        let mut b = Bundle::new(&["true"]);
        let dir = b.path().to_path_buf();
        b.edit(|c| mutate(c, &dir));
        let id = unique_id("leak");
        let pid_file = dir.join("pid");
        let mut args = vec![
            "create",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            dir.to_str().unwrap(),
        ];
        let sock = dir.join("console.sock");
        if b.config["process"]["terminal"] == true {
            args.extend(["--console-socket", sock.to_str().unwrap()]);
        }
        args.push(&id);
        let out = root.hr(&args);
        assert!(!out.status.success(), "{case}: create succeeded");
        let err = error_line(&out);
        assert!(err.contains(says), "{case}: {err}");
        assert_nothing_left(&root, &b, &id, case);
        assert!(!pid_file.exists(), "{case}: pid file left");
    }
}

#[test]
fn a_runtime_killed_during_create_leaves_what_delete_force_removes() {
    if !require_root("a_runtime_killed_during_create_leaves_what_delete_force_removes") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    let marker = b.path().join("hook-ran");
    // A createContainer hook runs in the init, inside the container's cgroup, with the
    // container's mounts made: the richest moment to die at.
    b.edit(|c| {
        c["hooks"] = json!({"createContainer": [{"path": BUSYBOX, "args": ["sh", "-c", format!("touch {}; exec sleep 1000", marker.display())]}]});
    });
    let id = unique_id("killed");
    let mut spawned = root.spawn(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    root.track(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    spawned.0.kill().expect("SIGKILL husk-runtime");
    let _ = spawned.0.wait();
    // What a caller sees: the container exists, still being created.
    assert_eq!(root.status(&id), "creating");
    root.ok(&["delete", "--force", &id]);
    assert_nothing_left(&root, &b, &id, "killed during create");
}

#[test]
fn a_failing_exec_leaves_no_process() {
    if !require_root("a_failing_exec_leaves_no_process") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("execleak");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    for (args, says) in [
        (vec!["exec", &id, "/no/such/command"], "/no/such/command"),
        (vec!["exec", "--cap", "CAP_NOPE", &id, "true"], "CAP_NOPE"),
        (
            vec!["exec", "--cwd", "/no/such/dir", &id, "true"],
            "/no/such/dir",
        ),
    ] {
        let out = root.hr(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            error_line(&out).contains(says),
            "{args:?}: {}",
            error_line(&out)
        );
        // The init runs `sleep` now: only a leftover exec would still carry the id.
        assert_eq!(processes_mentioning(&id), Vec::<String>::new(), "{args:?}");
        let init = root.state(&id)["pid"].as_i64().unwrap();
        assert_eq!(
            root.ok(&["ps", "--format", "json", &id]).trim(),
            format!("[{init}]")
        );
    }
    root.ok(&["delete", "-f", &id]);
}
