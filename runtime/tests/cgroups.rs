//! linux.resources on the cgroup version this host has, read back from the cgroup files and
//! proven by their effect.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn every_resource_is_written_where_the_kernel_reads_it() {
    if !require_root("every_resource_is_written_where_the_kernel_reads_it") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let v2 = is_cgroup_v2();
    b.edit(|c| {
        let mut r = json!({
            "memory": {"limit": 134217728, "reservation": 67108864, "swap": 268435456},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0", "burst": 1000},
            "pids": {"limit": 64},
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": 254, "minor": 0, "weight": 200}],
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                "throttleWriteIopsDevice": [{"major": 254, "minor": 0, "rate": 100}]
            }
        });
        if !v2 {
            r["memory"]["swappiness"] = 10.into();
            r["cpu"]["idle"] = 0.into();
        }
        c["linux"]["resources"] = r;
    });
    let id = unique_id("res");
    let out = root.hr(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    if !out.status.success() && text(&out.stderr).contains("254:0") {
        eprintln!(
            "SKIP every_resource_is_written_where_the_kernel_reads_it: no block device 254:0 here"
        );
        return;
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    if v2 {
        let d = cgroup_dir("", &id);
        assert_eq!(read(&d.join("memory.max")), "134217728");
        assert_eq!(read(&d.join("memory.low")), "67108864");
        assert_eq!(read(&d.join("memory.swap.max")), "134217728");
        assert_eq!(read(&d.join("cpu.weight")), "20");
        assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        assert_eq!(read(&d.join("cpuset.cpus")), "0");
        assert_eq!(read(&d.join("pids.max")), "64");
        assert!(read(&d.join("io.max")).contains("254:0 rbps=1048576"));
    } else {
        let mem = cgroup_dir("memory", &id);
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), "134217728");
        assert_eq!(read(&mem.join("memory.soft_limit_in_bytes")), "67108864");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), "268435456");
        }
        assert_eq!(read(&mem.join("memory.swappiness")), "10");
        let cpu = cgroup_dir("cpu", &id);
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.cfs_burst_us")), "1000");
        let cpuset = cgroup_dir("cpuset", &id);
        assert_eq!(read(&cpuset.join("cpuset.cpus")), "0");
        assert_eq!(read(&cpuset.join("cpuset.mems")), "0");
        assert_eq!(read(&cgroup_dir("pids", &id).join("pids.max")), "64");
        let blkio = cgroup_dir("blkio", &id);
        let weight = if blkio.join("blkio.weight").exists() {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        assert!(
            read(&blkio.join(weight)).contains("300"),
            "{}",
            read(&blkio.join(weight))
        );
        let wd = if blkio.join("blkio.weight_device").exists() {
            "blkio.weight_device"
        } else {
            "blkio.bfq.weight_device"
        };
        assert!(
            read(&blkio.join(wd)).contains("254:0 200"),
            "{}",
            read(&blkio.join(wd))
        );
        assert_eq!(
            read(&blkio.join("blkio.throttle.read_bps_device")),
            "254:0 1048576"
        );
        assert_eq!(
            read(&blkio.join("blkio.throttle.write_iops_device")),
            "254:0 100"
        );
    }
    // The container sees its own limit through its cgroup namespace mount.
    let inside = root.ok(&["exec", &id, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(inside.trim(), "134217728");
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn cgroups_path_absolute_and_relative() {
    if !require_root("cgroups_path_absolute_and_relative") {
        return;
    }
    let root = Root::new();
    for (name, path) in [("abs", "/husk-test-abs"), ("rel", "husk-test-rel")] {
        let id = unique_id(name);
        let mut b = Bundle::new(&["sleep", "1000"]);
        let cg = format!("{path}/{id}");
        b.edit(|c| c["linux"]["cgroupsPath"] = cg.clone().into());
        root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
        let base = if is_cgroup_v2() {
            Path::new("/sys/fs/cgroup").to_path_buf()
        } else {
            Path::new("/sys/fs/cgroup/pids").to_path_buf()
        };
        let dir = base.join(cg.trim_start_matches('/'));
        let pid = root.state(&id)["pid"].as_i64().unwrap();
        assert!(
            read(&dir.join("cgroup.procs"))
                .lines()
                .any(|l| l == pid.to_string()),
            "{name}: init not in {}",
            dir.display()
        );
        root.ok(&["delete", "-f", &id]);
        assert!(
            !dir.exists(),
            "{name}: cgroup {} left behind",
            dir.display()
        );
        let _ = fs::remove_dir(dir.parent().unwrap());
    }
}

#[test]
fn a_process_past_its_memory_limit_is_oom_killed_and_reported() {
    if !require_root("a_process_past_its_memory_limit_is_oom_killed_and_reported") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=128M count=1; sleep 1000",
    ]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
    });
    let id = unique_id("oom");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let events = root.spawn(&["events", "--interval", "100ms", &id]);
    root.ok(&["start", &id]);
    // dd is killed; the shell goes on sleeping. Wait for the "oom" event.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let mut f = events.1.try_clone().unwrap();
        let mut s = String::new();
        use std::io::{Read, Seek};
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        if s.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["type"] == "oom")
                .unwrap_or(false)
        }) {
            break s;
        }
        assert!(Instant::now() < deadline, "no oom event: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let first: serde_json::Value = serde_json::from_str(seen.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "stats");
    assert_eq!(first["id"], id.as_str());
    root.ok(&["delete", "-f", &id]);
    // The events process ends by itself once the container is gone.
    let out = Root::finish(events);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    if !require_root("a_fork_bomb_stops_at_the_pids_limit") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "for i in $(seq 60); do sleep 1000 & done 2>/tmp/err; echo started; sleep 1000",
    ]);
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 16}));
    let id = unique_id("forkbomb");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.rootfs().join("tmp/err").exists()
        || fs::read_to_string(b.rootfs().join("tmp/err"))
            .unwrap()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the loop never hit the limit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids: Vec<i64> = serde_json::from_str(&root.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.len() <= 16,
        "{} processes past a limit of 16",
        pids.len()
    );
    let stats: serde_json::Value =
        serde_json::from_str(&root.ok(&["events", "--stats", &id])).unwrap();
    assert!(stats["data"]["pids"]["current"].as_u64().unwrap() <= 16);
    assert_eq!(stats["data"]["pids"]["limit"], 16);
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn a_paused_container_makes_no_progress() {
    if !require_root("a_paused_container_makes_no_progress") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "while :; do echo x >> /tmp/ticks; sleep 0.01; done",
    ]);
    let id = unique_id("frozen");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let ticks = b.rootfs().join("tmp/ticks");
    let size = || fs::metadata(&ticks).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while size() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    root.ok(&["pause", &id]);
    let frozen_at = size();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(size(), frozen_at, "a paused container kept running");
    root.ok(&["resume", &id]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while size() == frozen_at {
        assert!(
            Instant::now() < deadline,
            "a resumed container did not continue"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn stats_have_runc_events_shape() {
    if !require_root("stats_have_runc_events_shape") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000",
    ]);
    let id = unique_id("stats");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    std::thread::sleep(Duration::from_millis(200));
    let v: serde_json::Value =
        serde_json::from_str(root.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(v["type"], "stats");
    let d = &v["data"];
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["cpu"]["throttling"].is_object() && d["blkio"].is_object());
    let bad = root.hr(&["events", "--interval", "soon", &id]);
    assert!(
        error_line(&bad).contains("invalid duration"),
        "{}",
        error_line(&bad)
    );
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn limits_that_cannot_be_applied_are_errors() {
    if !require_root("limits_that_cannot_be_applied_are_errors") {
        return;
    }
    let root = Root::new();
    let mut cases = vec![
        (
            "kernel",
            json!({"memory": {"kernel": 1048576}}),
            "memory.kernel",
        ),
        ("badcpus", json!({"cpu": {"cpus": "4096"}}), "cpuset.cpus"),
        ("badweight", json!({"blockIO": {"weight": 5000}}), "weight"),
    ];
    let has = |c: &str| {
        Path::new("/sys/fs/cgroup").join(c).exists()
            || fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .unwrap_or_default()
                .contains(c)
    };
    if !is_cgroup_v2() {
        cases.push((
            "unified",
            json!({"unified": {"memory.high": "1000000"}}),
            "cgroup v2",
        ));
        if !has("hugetlb") {
            cases.push((
                "hugetlb",
                json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}),
                "hugetlb",
            ));
        }
        if !has("net_cls") {
            cases.push((
                "netcls",
                json!({"network": {"classID": 1048577}}),
                "net_cls",
            ));
        }
    } else {
        cases.push((
            "netcls",
            json!({"network": {"classID": 1048577}}),
            "cgroup v2",
        ));
    }
    for (name, resources, needle) in cases {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| c["linux"]["resources"] = resources.clone());
        let id = unique_id(name);
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{name}: must fail");
        assert!(
            error_line(&out).contains(needle),
            "{name}: {}",
            error_line(&out)
        );
        assert!(!root.container_dir(&id).exists());
        assert_no_cgroup(&id);
    }
}

/// Where a cgroup2 hierarchy is mounted: /sys/fs/cgroup on v2 hosts, /sys/fs/cgroup/unified on
/// hybrid ones (this project's test machines), so the eBPF device filter runs on both.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(Into::into))?
    })
}

#[test]
fn the_ebpf_device_filter_is_enforced_by_the_kernel() {
    if !require_root("the_ebpf_device_filter_is_enforced_by_the_kernel") {
        return;
    }
    let Some(mount) = cgroup2_mount() else {
        eprintln!(
            "SKIP the_ebpf_device_filter_is_enforced_by_the_kernel: no cgroup2 hierarchy mounted"
        );
        return;
    };
    let dir = mount.join(format!("husk-ebpf-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    // docker's shape: deny everything, then the runtime's defaults (null, zero, ...).
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_value(json!({"devices": [{"allow": false, "access": "rwm"}]})).unwrap();
    let rules = husk_runtime::cgroups::device_rules(&resources).unwrap();
    husk_runtime::cgroups::ebpf::apply(&dir, &rules).expect("the kernel accepts the program");
    // Apply twice: the second replaces the first (update), it does not stack.
    husk_runtime::cgroups::ebpf::apply(&dir, &rules).expect("replacing the program");
    let cg = fs::File::open(&dir).unwrap();
    let ids = husk_runtime::cgroups::ebpf::attached(std::os::fd::AsRawFd::as_raw_fd(&cg)).unwrap();
    assert_eq!(ids.len(), 1, "the old program was detached: {ids:?}");
    let script = format!(
        "echo $$ > {}/cgroup.procs; head -c 1 /dev/zero > /dev/null && echo zero-ok; \
         head -c 1 /dev/kmsg > /dev/null 2>&1 && echo KMSG-READ || echo kmsg-denied; \
         mknod /tmp/husk-ebpf-node-$$ c 1 3 && echo mknod-ok; rm -f /tmp/husk-ebpf-node-$$",
        dir.display()
    );
    let out = std::process::Command::new(BUSYBOX)
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["zero-ok", "kmsg-denied", "mknod-ok"],
        "{text}"
    );
}

/// The v2 lifecycle (create, join, freeze, kill through cgroup.kill, remove) on whatever cgroup2
/// hierarchy this host has; on hybrid hosts that is the controller-less unified one, which still
/// has cgroup.freeze and cgroup.kill.
#[test]
fn v2_freeze_kill_and_remove_work_on_a_cgroup2_hierarchy() {
    if !require_root("v2_freeze_kill_and_remove_work_on_a_cgroup2_hierarchy") {
        return;
    }
    use husk_runtime::cgroups::{self, CgroupPaths};
    let Some(mount) = cgroup2_mount() else {
        eprintln!("SKIP v2_freeze_kill_and_remove_work_on_a_cgroup2_hierarchy: no cgroup2 hierarchy mounted");
        return;
    };
    let top = mount.join(format!("husk-v2-test-{}", std::process::id()));
    let dir = cgroups::v2::create_in(&mount, &top.strip_prefix(&mount).unwrap().join("c")).unwrap();
    let paths = CgroupPaths::V2(dir.clone());
    let mut child = std::process::Command::new(BUSYBOX)
        .args(["sleep", "100"])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    cgroups::add_pid(&paths, pid).unwrap();
    assert_eq!(cgroups::pids(&paths).unwrap(), vec![pid]);
    cgroups::freeze(&paths, true).unwrap();
    assert!(cgroups::is_frozen(&paths));
    cgroups::freeze(&paths, false).unwrap();
    assert!(!cgroups::is_frozen(&paths));
    cgroups::signal_all(&paths, nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    cgroups::remove(&paths).unwrap();
    assert!(!dir.exists());
    fs::remove_dir(&top).unwrap();
}

#[test]
fn devices_are_denied_by_default_and_narrow_a_rules_stay_narrow() {
    if !require_root("devices_are_denied_by_default_and_narrow_a_rules_stay_narrow") {
        return;
    }
    let root = Root::new();
    for (name, resources) in [
        // No device rules at all: the runtime's policy still denies the host disk.
        ("none", None),
        // A rule of type "a" with numbers must not become "every device" on v1.
        (
            "narrow-a",
            Some(json!({"devices": [{"allow": true, "major": 10, "minor": 200, "access": "rwm"}]})),
        ),
    ] {
        let mut b = Bundle::new(&[
            "sh",
            "-c",
            "head -c 1 /dev/disk >/dev/null 2>&1 && echo READ || echo denied",
        ]);
        b.edit(|c| {
            c["linux"]["devices"] =
                json!([{"path": "/dev/disk", "type": "b", "major": 254, "minor": 0}]);
            match &resources {
                Some(r) => c["linux"]["resources"] = r.clone(),
                None => {
                    c["linux"].as_object_mut().unwrap().remove("resources");
                }
            }
        });
        assert_eq!(root.run_ok(&b).trim(), "denied", "{name}");
    }
}

#[test]
fn a_cgroup_in_use_is_not_adopted() {
    if !require_root("a_cgroup_in_use_is_not_adopted") {
        return;
    }
    let root = Root::new();
    let cg = format!("/husk-shared-{}", std::process::id());
    let mut a = Bundle::new(&["sleep", "1000"]);
    a.edit(|c| c["linux"]["cgroupsPath"] = cg.clone().into());
    let ida = unique_id("owner");
    root.ok(&["run", "-d", "--bundle", a.path().to_str().unwrap(), &ida]);
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["cgroupsPath"] = cg.clone().into());
    let idb = unique_id("intruder");
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &idb]);
    assert!(
        error_line(&out).contains("already in use"),
        "{}",
        error_line(&out)
    );
    assert_eq!(root.status(&ida), "running", "the owner was not touched");
    root.ok(&["delete", "-f", &ida]);
}

#[test]
fn processes_that_outlive_the_init_are_killed_on_delete() {
    if !require_root("processes_that_outlive_the_init_are_killed_on_delete") {
        return;
    }
    let root = Root::new();
    // No pid namespace: the init's death does not take the others with it.
    let mut b = Bundle::new(&["sh", "-c", "sleep 1000 & echo $! > /tmp/orphan; exit 0"]);
    b.edit(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}])
    });
    let id = unique_id("orphans");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    root.wait_status(&id, "stopped");
    let orphan: i32 = fs::read_to_string(b.rootfs().join("tmp/orphan"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{orphan}")).exists(),
        "the orphan runs on"
    );
    root.ok(&["delete", &id]);
    let stat = fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the orphan survived delete: {stat}"
    );
    assert_no_cgroup(&id);
}
