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
    let Some((major, minor)) = block_device() else {
        eprintln!("SKIP every_resource_is_written_where_the_kernel_reads_it: no block device");
        return;
    };
    let dev = format!("{major}:{minor}");
    // v1 takes per-device weights only through BFQ, where the disk uses that scheduler.
    let bfq = fs::read_dir("/sys/block").unwrap().flatten().any(|e| {
        fs::read_to_string(e.path().join("dev")).is_ok_and(|d| d.trim() == dev)
            && fs::read_to_string(e.path().join("queue/scheduler"))
                .is_ok_and(|s| s.contains("[bfq]"))
    });
    // v2 takes one only through BFQ or where the io cost controller is on for the device
    // (io.cost.qos); elsewhere it is refused (checked below).
    let iocost = fs::read_to_string("/sys/fs/cgroup/io.cost.qos")
        .is_ok_and(|q| q.lines().any(|l| l.starts_with(&format!("{dev} enable=1"))));
    // The disk itself uses BFQ.
    let bfq_loaded = fs::read_dir("/sys/block").unwrap().flatten().any(|e| {
        fs::read_to_string(e.path().join("dev")).is_ok_and(|d| d.trim() == dev)
            && fs::read_to_string(e.path().join("queue/scheduler"))
                .is_ok_and(|s| s.contains("[bfq]"))
    });
    let weight_device = if v2 { iocost || bfq_loaded } else { bfq };
    if !weight_device {
        eprintln!("every_resource_is_written_where_the_kernel_reads_it: no per-device io weight for {dev} here (v1 without BFQ; v2 without BFQ or io.cost.qos): its refusal is checked instead");
    }
    // cpu.burst is Linux 5.14's, cpu.idle 5.15's: older kernels refuse them (below).
    let burst = kernel_at_least(5, 14);
    let idle = kernel_at_least(5, 15);
    b.edit(|c| {
        let mut r = json!({
            "memory": {"limit": 134217728, "reservation": 67108864, "swap": 268435456},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 64},
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": major, "minor": minor, "weight": 200}],
                "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]
            }
        });
        if burst {
            r["cpu"]["burst"] = 1000.into();
        }
        if !weight_device {
            r["blockIO"]["weightDevice"] = json!(null);
        }
        if !v2 {
            r["memory"]["swappiness"] = 10.into();
            if idle {
                r["cpu"]["idle"] = 0.into();
            }
        } else {
            // 0, not 1: an idle group reads its cpu.weight as 0 (6.1), hiding the shares.
            if idle {
                r["cpu"]["idle"] = 0.into();
            }
            r["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
            r["unified"] = json!({"memory.high": "100663296"});
        }
        c["linux"]["resources"] = r;
    });
    let id = unique_id("res");
    let out = root.hr(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    if v2 {
        let d = cgroup_dir("", &id);
        assert_eq!(read(&d.join("memory.max")), "134217728");
        assert_eq!(read(&d.join("memory.low")), "67108864");
        assert_eq!(read(&d.join("memory.high")), "100663296", "from unified");
        if d.join("memory.swap.max").exists() {
            // v2 counts swap alone: the spec's memory+swap minus the limit.
            assert_eq!(read(&d.join("memory.swap.max")), "134217728");
        }
        assert_eq!(read(&d.join("cpu.weight")), "20");
        assert_eq!(read(&d.join("cpu.max")), "50000 100000");
        if burst {
            assert_eq!(read(&d.join("cpu.max.burst")), "1000");
        }
        if idle {
            assert_eq!(read(&d.join("cpu.idle")), "0");
        }
        assert_eq!(read(&d.join("cpuset.cpus")), "0");
        assert_eq!(read(&d.join("cpuset.mems")), "0");
        assert_eq!(read(&d.join("pids.max")), "64");
        assert_eq!(read(&d.join("hugetlb.2MB.max")), "4194304");
        let io_max = read(&d.join("io.max"));
        assert!(io_max.contains(&format!("{dev} rbps=1048576")), "{io_max}");
        assert!(io_max.contains("wiops=100"), "{io_max}");
        let weight = read(&d.join("io.weight"));
        // blkio's 10..1000 scaled to io's 1..10000, as runc does.
        assert!(weight.contains("default 2930"), "{weight}");
        if iocost {
            assert!(weight.contains(&format!("{dev} 1919")), "{weight}");
        } else if bfq_loaded {
            let bfq = read(&d.join("io.bfq.weight"));
            assert!(bfq.contains(&format!("{dev} 200")), "{bfq}");
        }
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
        if burst {
            assert_eq!(read(&cpu.join("cpu.cfs_burst_us")), "1000");
        }
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
        if weight_device {
            assert!(
                read(&blkio.join(wd)).contains(&format!("{dev} 200")),
                "{}",
                read(&blkio.join(wd))
            );
        }
        assert_eq!(
            read(&blkio.join("blkio.throttle.read_bps_device")),
            format!("{dev} 1048576")
        );
        assert_eq!(
            read(&blkio.join("blkio.throttle.write_iops_device")),
            format!("{dev} 100")
        );
    }
    // The container sees its own limit through its cgroup namespace mount.
    let inside = root.ok(&["exec", &id, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(inside.trim(), "134217728");
    root.ok(&["delete", "-f", &id]);
    if v2 && !weight_device {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| c["linux"]["resources"] = json!({"blockIO": {"weightDevice": [{"major": major, "minor": minor, "weight": 200}]}}));
        let wd = unique_id("wd");
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &wd]);
        if out.status.success() {
            // This host has the io cost controller on for the device.
            root.ok(&["delete", "-f", &wd]);
        } else {
            assert!(
                error_line(&out).contains("uses neither BFQ nor the io cost controller"),
                "{}",
                error_line(&out)
            );
        }
    }
}

#[test]
fn a_cgroups_path_nested_under_a_slice_gets_its_controllers_from_each_parent() {
    if !require_root("a_cgroups_path_nested_under_a_slice_gets_its_controllers_from_each_parent") {
        return;
    }
    if !is_cgroup_v2() {
        eprintln!("SKIP a_cgroups_path_nested_under_a_slice_gets_its_controllers_from_each_parent: cgroup v2 only (the VM matrix runs it)");
        return;
    }
    let root = Root::new();
    // As systemd lays it out: a slice that exists already, with some controllers enabled.
    let slice_name = format!("husk-test-{}.slice", std::process::id());
    let slice = Path::new("/sys/fs/cgroup").join(&slice_name);
    fs::create_dir(&slice).unwrap();
    struct Rmdir(std::path::PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = fs::remove_dir(self.0.join("app"));
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Rmdir(slice.clone());
    // systemd enables the controllers at the root for its slices.
    fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory").unwrap();
    fs::write(slice.join("cgroup.subtree_control"), "+memory").unwrap();
    let id = unique_id("nested");
    let mut b = Bundle::new(&["sleep", "1000"]);
    let cg = format!("/{slice_name}/app/{id}");
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = cg.clone().into();
        c["linux"]["resources"] = json!({
            "memory": {"limit": 67108864},
            "pids": {"limit": 32},
            "cpu": {"quota": 20000, "period": 100000}
        });
    });
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let leaf = slice.join("app").join(&id);
    assert_eq!(read(&leaf.join("memory.max")), "67108864");
    assert_eq!(read(&leaf.join("pids.max")), "32");
    assert_eq!(read(&leaf.join("cpu.max")), "20000 100000");
    for dir in [&slice, &slice.join("app")] {
        let enabled = read(&dir.join("cgroup.subtree_control"));
        for ctl in ["memory", "pids", "cpu"] {
            assert!(
                enabled.split(' ').any(|c| c == ctl),
                "{}: {enabled}",
                dir.display()
            );
        }
    }
    let pid = read(&leaf.join("cgroup.procs"));
    assert_eq!(
        read(Path::new(&format!("/proc/{pid}/cgroup"))),
        format!("0::{cg}")
    );
    root.ok(&["delete", "-f", &id]);
    assert!(!leaf.exists(), "the container's cgroup goes with it");
    // Its parents stay, as runc leaves them: other containers of the slice may come.
    assert!(slice.join("app").exists());
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
        remove_empty_cgroup(path);
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
        // pread: the file's offset is shared with the events process, which writes at it
        // (a rewind here made it overwrite its own first line).
        let s = read_whole(&events.1);
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
        cases.push((
            "swappiness",
            json!({"memory": {"swappiness": 10}}),
            "memory.swappiness does not exist on cgroup v2",
        ));
        cases.push((
            "realtime",
            json!({"cpu": {"realtimeRuntime": 1000}}),
            "do not exist on cgroup v2",
        ));
        cases.push((
            "unifiedbad",
            json!({"unified": {"../memory.max": "1"}}),
            "unified",
        ));
    }
    // Files of newer kernels: refused with the version they need, not a bare EACCES.
    if !kernel_at_least(5, 14) {
        cases.push((
            "burst",
            json!({"cpu": {"burst": 1000}}),
            "Linux 5.14 or later",
        ));
    }
    if !kernel_at_least(5, 15) {
        cases.push(("idle", json!({"cpu": {"idle": 1}}), "Linux 5.15 or later"));
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
    // /dev/fuse (c 10:229): opening it needs no capability, so only the device cgroup can
    // refuse it (this host's own policy refuses its disk to everyone, the test runner too).
    if std::fs::File::open("/dev/fuse").is_err() {
        eprintln!("SKIP devices_are_denied_by_default_and_narrow_a_rules_stay_narrow: /dev/fuse does not open here");
        return;
    }
    let root = Root::new();
    for (name, resources) in [
        // No device rules at all: the runtime's policy still denies the device.
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
            "(exec 3</dev/fuse) 2>/dev/null && echo OPENED || echo denied",
        ]);
        b.edit(|c| {
            c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
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

/// A file's whole content, read without moving its (shared) offset.
fn read_whole(f: &fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; f.metadata().unwrap().len() as usize];
    let n = f.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    String::from_utf8_lossy(&buf).into_owned()
}
