//! The systemd cgroup driver (`--systemd-cgroup`): a container's cgroup is a transient scope in
//! the slice its `cgroupsPath` names, with systemd told the limits, and nothing left once the
//! container is deleted or its create fails. Needs systemd as PID 1: the kernel matrix boots
//! it (tests/vm/matrix.py's systemd run); elsewhere only the refusals are tested.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Root, and systemd as this machine's init; else say why the test does not run.
fn require_systemd(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !systemd_booted() {
        println!("SKIP {test}: systemd is not this machine's init (the kernel matrix boots it)");
        return false;
    }
    true
}

/// `husk-runtime --systemd-cgroup VERB --bundle B ID`.
fn sd(root: &Root, verb: &str, b: &Bundle, id: &str) -> std::process::Output {
    root.hr(&[
        "--systemd-cgroup",
        verb,
        "--bundle",
        b.path().to_str().unwrap(),
        id,
    ])
}

fn sd_ok(root: &Root, verb: &str, b: &Bundle, id: &str) {
    let out = sd(root, verb, b, id);
    assert!(out.status.success(), "{verb} {id}: {}", text(&out.stderr));
}

/// One property of a unit as `systemctl show` prints it.
fn unit_property(unit: &str, property: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "-P", property, unit])
        .output()
        .expect("systemctl");
    text(&out.stdout).trim().to_string()
}

/// The v2 directory of a scope, or the v1 memory hierarchy's.
fn cgroup_of(path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if is_cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup/memory").join(rel)
    }
}

fn memory_limit_file() -> &'static str {
    if is_cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    }
}

fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn a_container_lives_in_a_transient_scope_of_its_slice() {
    if !require_systemd("a_container_lives_in_a_transient_scope_of_its_slice") {
        return;
    }
    let root = Root::new();
    let id = unique_id("sdscope");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("husk-test.slice:husk:{id}"));
        c["linux"]["resources"] = json!({
            "memory": {"limit": 67108864},
            "pids": {"limit": 32},
            "cpu": {"quota": 50000, "period": 100000}
        });
    });
    let unit = format!("husk-{id}.scope");
    let cg_path = format!("/husk.slice/husk-test.slice/{unit}");
    sd_ok(&root, "create", &b, &id);
    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    assert_eq!(unit_property(&unit, "Delegate"), "yes");
    assert_eq!(unit_property(&unit, "Slice"), "husk-test.slice");
    assert_eq!(unit_property(&unit, "ControlGroup"), cg_path);
    // systemd knows the limits (a daemon-reload keeps them) and the kernel has them.
    assert_eq!(unit_property(&unit, "TasksMax"), "32");
    assert_eq!(unit_property(&unit, "CPUQuotaPerSecUSec"), "500ms");
    let mem_prop = if is_cgroup_v2() {
        "MemoryMax"
    } else {
        "MemoryLimit"
    };
    assert_eq!(unit_property(&unit, mem_prop), "67108864");
    let dir = cgroup_of(&cg_path);
    assert_eq!(read_trimmed(&dir.join(memory_limit_file())), "67108864");
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    let procs = read_trimmed(&dir.join("cgroup.procs"));
    assert_eq!(procs, pid.to_string());

    root.ok(&["start", &id]);
    // update reaches both systemd and the cgroup.
    root.ok(&["update", "--memory", "134217728", &id]);
    assert_eq!(unit_property(&unit, mem_prop), "134217728");
    assert_eq!(read_trimmed(&dir.join(memory_limit_file())), "134217728");

    root.ok(&["kill", &id, "KILL"]);
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
}

#[test]
fn without_cgroups_path_the_scope_is_husk_id_in_system_slice() {
    if !require_systemd("without_cgroups_path_the_scope_is_husk_id_in_system_slice") {
        return;
    }
    let root = Root::new();
    let id = unique_id("sddefault");
    let b = Bundle::new(&["sh", "-c", "cat /proc/self/cgroup"]);
    let out = sd(&root, "run", &b, &id);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The container has its own cgroup namespace: it sees its cgroup as the root, so the host
    // path is checked through systemd instead, while the record still exists.
    assert!(text(&out.stdout).contains("::/"), "{}", text(&out.stdout));
    assert_eq!(
        unit_property(&format!("husk-{id}.scope"), "LoadState"),
        "not-found"
    );
    assert!(!cgroup_of(&format!("/system.slice/husk-{id}.scope")).exists());
}

#[test]
fn a_create_that_fails_after_the_scope_started_leaves_no_unit() {
    if !require_systemd("a_create_that_fails_after_the_scope_started_leaves_no_unit") {
        return;
    }
    let root = Root::new();
    let id = unique_id("sdfail");
    // The command is checked in the init, after it joined the scope.
    let mut b = Bundle::new(&["/no/such/command"]);
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(format!("husk-test.slice:husk:{id}")));
    let out = sd(&root, "create", &b, &id);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("/no/such/command"),
        "{}",
        text(&out.stderr)
    );
    let unit = format!("husk-{id}.scope");
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
    assert!(!cgroup_of(&format!("/husk.slice/husk-test.slice/{unit}")).exists());
    assert!(!root.container_dir(&id).exists());
}

#[test]
fn without_a_bus_the_error_says_so_and_nothing_is_left() {
    if !require_systemd("without_a_bus_the_error_says_so_and_nothing_is_left") {
        return;
    }
    let root = Root::new();
    let id = unique_id("sdnobus");
    let b = Bundle::new(&["true"]);
    let out = root
        .cmd()
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .args(["--systemd-cgroup", "run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .output()
        .expect("husk-runtime");
    root.track(&id);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach systemd over the system bus"),
        "{err}"
    );
    assert_eq!(
        unit_property(&format!("husk-{id}.scope"), "LoadState"),
        "not-found"
    );
    assert!(!root.container_dir(&id).exists());
}

#[test]
fn a_scope_that_is_taken_is_an_error_that_touches_nothing() {
    if !require_systemd("a_scope_that_is_taken_is_an_error_that_touches_nothing") {
        return;
    }
    let root = Root::new();
    let first = unique_id("sdtaken");
    let second = unique_id("sdtaken");
    let path = format!("husk-test.slice:husk:{first}");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(path));
    sd_ok(&root, "create", &b, &first);
    let out = sd(&root, "create", &b, &second);
    assert!(!out.status.success());
    let err = error_line(&out);
    assert!(err.contains(&format!("husk-{first}.scope")), "{err}");
    // The first container and its unit are untouched.
    assert_eq!(root.status(&first), "created");
    assert_eq!(
        unit_property(&format!("husk-{first}.scope"), "ActiveState"),
        "active"
    );
    assert!(!root.container_dir(&second).exists());
    root.ok(&["delete", "--force", &first]);
}

#[test]
fn without_systemd_the_driver_is_refused_in_one_line() {
    if !require_root("without_systemd_the_driver_is_refused_in_one_line") {
        return;
    }
    if systemd_booted() {
        println!("SKIP without_systemd_the_driver_is_refused_in_one_line: systemd runs here");
        return;
    }
    let root = Root::new();
    let id = unique_id("sdnone");
    let b = Bundle::new(&["true"]);
    let out = sd(&root, "create", &b, &id);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("needs systemd"), "{err}");
    assert!(!root.container_dir(&id).exists());
}

#[test]
fn a_cgroups_path_not_in_systemds_form_is_refused() {
    if !require_root("a_cgroups_path_not_in_systemds_form_is_refused") {
        return;
    }
    let root = Root::new();
    for (path, want) in [
        ("/plain/path", "slice:prefix:name"),
        ("nodot:p:n", "does not end in .slice"),
        ("a.slice:p:n.slice", "names a slice"),
    ] {
        let id = unique_id("sdbad");
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| c["linux"]["cgroupsPath"] = json!(path));
        let out = sd(&root, "create", &b, &id);
        assert!(!out.status.success(), "{path}");
        let err = error_line(&out);
        assert!(err.contains(want), "{path}: {err}");
        assert!(!root.container_dir(&id).exists());
    }
    // And the cgroupfs driver says which flag such a path needs.
    let id = unique_id("sdbad");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["cgroupsPath"] = json!("system.slice:husk:x"));
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(error_line(&out).contains("--systemd-cgroup"));
}
