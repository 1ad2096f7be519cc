//! Where callers could tell husk-runtime from runc, each pinned down: containerd's shim, podman
//! and Go clients rely on runc's behaviour in these corners.

mod common;

use common::*;
use serde_json::json;

#[test]
fn kill_all_of_a_stopped_container_succeeds_as_runcs_does() {
    if !require_root("kill_all_of_a_stopped_container_succeeds_as_runcs_does") {
        return;
    }
    // containerd's shim sends `kill --all ID KILL` after every CRI StopContainer.
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("killall");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    root.wait_status(&id, "stopped");
    root.ok(&["kill", "--all", &id, "KILL"]);
    // Without --all a stopped container still cannot be signalled.
    assert!(!root.hr(&["kill", &id, "KILL"]).status.success());
    root.ok(&["delete", &id]);
}

#[test]
fn kernel_memory_limits_are_ignored_with_a_warning() {
    if !require_root("kernel_memory_limits_are_ignored_with_a_warning") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["echo", "ran"]);
    b.edit(|c| {
        c["linux"]["resources"] = json!({"memory": {"kernel": 1048576, "kernelTCP": 1048576}});
    });
    let (code, out, err) = root.run(&b);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(
        err.contains("memory.kernel and memory.kernelTCP are ignored"),
        "{err}"
    );
}

#[test]
fn exec_env_replaces_the_configs_value() {
    if !require_root("exec_env_replaces_the_configs_value") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "X=config"]);
    });
    let id = unique_id("execenv");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = root.ok(&["exec", "--env", "X=exec", &id, "sh", "-c", "env | grep ^X="]);
    assert_eq!(out, "X=exec\n");
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn a_start_container_hook_without_env_gets_the_processs_environment() {
    if !require_root("a_start_container_hook_without_env_gets_the_processs_environment") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.with_out_mount();
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FROM_PROCESS=yes"]);
        c["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /out/without"]},
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /out/with"], "env": ["ONLY=this"]}
        ]});
    });
    root.run_ok(&b);
    let without = std::fs::read_to_string(b.out().join("without")).unwrap();
    assert!(without.contains("FROM_PROCESS=yes"), "{without}");
    let with = std::fs::read_to_string(b.out().join("with")).unwrap();
    assert!(
        with.contains("ONLY=this") && !with.contains("FROM_PROCESS"),
        "{with}"
    );
}

#[test]
fn proc_or_sys_through_a_symlink_in_the_rootfs_is_refused() {
    if !require_root("proc_or_sys_through_a_symlink_in_the_rootfs_is_refused") {
        return;
    }
    let root = Root::new();
    for dir in ["proc", "sys"] {
        let b = Bundle::new(&["true"]);
        let at = b.rootfs().join(dir);
        std::fs::remove_dir(&at).unwrap();
        std::os::unix::fs::symlink("tmp", &at).unwrap();
        let id = unique_id("symproc");
        // Files for stdio, as the harness does: a hang here would be the caller's hang.
        let out = root.hr(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success());
        let line = error_line(&out);
        assert!(
            line.contains("must be mounted on an ordinary directory"),
            "{line}"
        );
        assert!(!root.container_dir(&id).exists(), "nothing is left of {id}");
        assert!(std::fs::read_dir(b.rootfs().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}

#[test]
fn a_command_that_cannot_be_executed_fails_create_not_start() {
    if !require_root("a_command_that_cannot_be_executed_fails_create_not_start") {
        return;
    }
    // containerd's CRI reports a failing create as StartError with the reason; a create that
    // succeeds and a start that exits 126 gave an empty message.
    let root = Root::new();
    for (prog, says) in [
        ("/etc/passwd", "Permission denied"),
        ("/etc", "Permission denied"),
        ("/no/such/file", "No such file"),
        ("nosuchcommand", "executable file not found"),
    ] {
        let b = Bundle::new(&[prog]);
        let id = unique_id("noexec");
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{prog}: create succeeded");
        let line = error_line(&out);
        assert!(line.contains(says) && line.contains(prog), "{prog}: {line}");
        assert!(!root.container_dir(&id).exists(), "{prog}: {id} was left");
    }
}

#[test]
fn a_memory_policy_is_set_with_set_mempolicy() {
    if !require_root("a_memory_policy_is_set_with_set_mempolicy") {
        return;
    }
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        eprintln!("SKIP a_memory_policy_is_set_with_set_mempolicy: this kernel has no NUMA (no /proc/self/numa_maps)");
        return;
    }
    let root = Root::new();
    // numa_maps names each mapping's policy: the process's own unless a mapping has one.
    for (policy, shows) in [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
    ] {
        let mut b = Bundle::new(&["sh", "-c", "head -n 3 /proc/self/numa_maps"]);
        b.edit(|c| c["linux"]["memoryPolicy"] = policy.clone());
        let out = root.run_ok(&b);
        assert!(out.contains(shows), "{policy}: {out}");
    }
    // Bad nodes fail create, naming the setting; a node the machine lacks, the kernel's EINVAL.
    for (policy, says) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": "x"}),
            "use ranges like",
        ),
        (json!({"mode": "MPOL_BIND"}), "needs nodes"),
        (
            json!({"mode": "MPOL_BIND", "nodes": "4000"}),
            "a node that does not exist",
        ),
    ] {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| c["linux"]["memoryPolicy"] = policy.clone());
        let id = unique_id("mempol");
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{policy}");
        let line = error_line(&out);
        assert!(
            line.contains("memoryPolicy") && line.contains(says),
            "{policy}: {line}"
        );
        assert!(!root.container_dir(&id).exists());
    }
}

#[test]
fn a_time_namespace_works_inside_a_user_namespace() {
    if !require_root("a_time_namespace_works_inside_a_user_namespace") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["cat", "/proc/self/timens_offsets"]);
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "user"}));
        ns.push(json!({"type": "time"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 3600}});
    });
    let out = root.run_ok(&b);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["monotonic", "3600", "0"]),
        "{out}"
    );
}

#[test]
fn exec_cpu_affinity_puts_the_process_on_its_final_cpus() {
    if !require_root("exec_cpu_affinity_puts_the_process_on_its_final_cpus") {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("SKIP exec_cpu_affinity_puts_the_process_on_its_final_cpus: needs 2 CPUs");
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("affinity");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let process = b.path().join("process.json");
    let write = |affinity: serde_json::Value| {
        std::fs::write(
            &process,
            json!({"args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"], "cwd": "/",
                   "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}, "execCPUAffinity": affinity})
            .to_string(),
        )
        .unwrap();
    };
    write(json!({"initial": "0", "final": "1"}));
    let out = root.ok(&["exec", "-p", process.to_str().unwrap(), &id]);
    assert_eq!(out.split_whitespace().last(), Some("1"), "{out}");
    write(json!({"final": "0-1,5000"}));
    let bad = root.hr(&["exec", "-p", process.to_str().unwrap(), &id]);
    assert!(!bad.status.success());
    assert!(
        error_line(&bad).contains("execCPUAffinity.final"),
        "{}",
        error_line(&bad)
    );
    root.ok(&["delete", "-f", &id]);
}

/// Mount points at or under `dir` in this (the host's) mount namespace.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| std::path::Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// The optional fields (propagation) of the host's root mount.
fn root_propagation() -> String {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .map(|l| {
            l.split(" - ")
                .next()
                .unwrap_or("")
                .split(' ')
                .skip(6)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[test]
fn a_config_without_a_mount_namespace_runs_in_the_hosts_and_leaves_it_as_it_was() {
    if !require_root("a_config_without_a_mount_namespace_runs_in_the_hosts_and_leaves_it_as_it_was")
    {
        return;
    }
    // The spec: a namespace not listed is inherited. runc runs such a config; it also makes the
    // host's whole mount tree slave, which husk-runtime does not.
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        let ns: Vec<serde_json::Value> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "mount")
            .cloned()
            .collect();
        c["linux"]["namespaces"] = ns.into();
        c["root"]["readonly"] = true.into();
    });
    let rootfs = b.rootfs();
    let before = root_propagation();
    let id = unique_id("nomntns");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    // Same mount namespace as ours; the container's root is its rootfs, with /proc mounted.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap()
    );
    let out = root.ok(&["exec", &id, "sh", "-c", "cat /etc/passwd; ls /proc/self/status; touch /x 2>&1 || echo read-only; wc -c < /proc/timer_list"]);
    assert!(out.contains("user:x:1000:1000"), "{out}");
    assert!(out.contains("/proc/self/status"), "{out}");
    assert!(out.contains("read-only"), "{out}");
    assert!(
        out.trim_end().ends_with('0'),
        "masked /proc/timer_list: {out}"
    );
    // The mounts are the host's to see while it runs, and only under the rootfs.
    assert!(!mounts_under(&rootfs).is_empty());
    // The file system under the bundle stays writable: read-only is the container's bind only.
    std::fs::write(b.path().join("from-host"), "x").expect("the host's mount is still writable");
    root.ok(&["delete", "-f", &id]);
    assert_eq!(
        mounts_under(&rootfs),
        Vec::<String>::new(),
        "mounts left behind"
    );
    assert_eq!(
        root_propagation(),
        before,
        "the host's root propagation changed"
    );

    // A create that fails after the mounts were made leaves none either.
    b.edit(|c| c["process"]["args"] = serde_json::json!(["/no/such/command"]));
    let id = unique_id("nomntnsfail");
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert_eq!(
        mounts_under(&rootfs),
        Vec::<String>::new(),
        "mounts left behind"
    );
}

/// The host directory of `pid`'s cgroup: v2's, or v1's `controller` hierarchy's.
fn cgroup_dir_of(pid: i64, controller: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroup");
    let base = std::path::Path::new("/sys/fs/cgroup");
    if is_cgroup_v2() {
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("v2 line");
        base.join(rel.trim_start_matches('/'))
    } else {
        let rel = text
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let _ = f.next();
                let ctl = f.next()?;
                ctl.split(',').any(|c| c == controller).then(|| f.next())?
            })
            .expect("the controller's line");
        base.join(controller).join(rel.trim_start_matches('/'))
    }
}

#[test]
fn exec_ignore_paused_runs_once_the_container_is_resumed() {
    if !require_root("exec_ignore_paused_runs_once_the_container_is_resumed") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.with_out_mount();
    let id = unique_id("ignpaused");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    root.ok(&["pause", &id]);
    let out = root.hr(&["exec", &id, "true"]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("--ignore-paused"),
        "{}",
        error_line(&out)
    );
    let spawned = root.spawn(&[
        "exec",
        "--ignore-paused",
        &id,
        "sh",
        "-c",
        "echo ran > /out/ran",
    ]);
    // Frozen with the container: nothing can have run yet.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !b.out().join("ran").exists(),
        "the exec ran in a paused container"
    );
    assert_eq!(root.status(&id), "paused");
    root.ok(&["resume", &id]);
    let out = Root::finish(spawned);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(b.out().join("ran")).unwrap(),
        "ran\n"
    );
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn exec_cgroup_runs_the_process_in_a_sub_cgroup() {
    if !require_root("exec_cgroup_runs_the_process_in_a_sub_cgroup") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("execcg");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let init = root.state(&id)["pid"].as_i64().unwrap();
    let container = cgroup_dir_of(init, "pids");
    std::fs::create_dir(container.join("sub")).expect("a sub-cgroup");
    let opt = if is_cgroup_v2() { "sub" } else { "pids:sub" };
    let pid_file = b.path().join("exec.pid");
    root.ok(&[
        "exec",
        "-d",
        "--cgroup",
        opt,
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "100",
    ]);
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(cgroup_dir_of(pid, "pids"), container.join("sub"));
    if !is_cgroup_v2() {
        // The other hierarchies keep the container's own cgroup.
        assert_eq!(cgroup_dir_of(pid, "memory"), cgroup_dir_of(init, "memory"));
    }
    for (bad, why) in [
        ("nosuch", "does not exist"),
        ("../escape", "without . or .."),
    ] {
        let out = root.hr(&["exec", "--cgroup", bad, &id, "true"]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            error_line(&out).contains(why),
            "{bad}: {}",
            error_line(&out)
        );
    }
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn what_the_spec_accepts_runs() {
    if !require_root("what_the_spec_accepts_runs") {
        return;
    }
    let root = Root::new();
    // A capability name this runtime does not know: a warning, not a failure.
    let mut b = Bundle::new(&["echo", "ran"]);
    b.edit(|c| {
        c["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push("CAP_FROM_THE_FUTURE".into())
    });
    let (code, out, err) = root.run(&b);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(err.contains("CAP_FROM_THE_FUTURE"), "{err}");

    // sysctl(8)'s slash form, a device outside /dev, a relative mount destination.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward; [ -c /mydev/null ] && echo dev; grep -q ' /scratch tmpfs' /proc/mounts && echo mounted",
    ]);
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({"net/ipv4/ip_forward": "1"});
        c["linux"]["devices"] =
            json!([{"path": "/mydev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438}]);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "scratch", "type": "tmpfs", "source": "tmpfs"}));
    });
    let (code, out, err) = root.run(&b);
    assert_eq!((code, out.as_str()), (0, "1\ndev\nmounted\n"), "{err}");
    assert!(err.contains("relative"), "{err}");

    // No `linux` object at all: every namespace is the caller's.
    let mut b = Bundle::new(&["sh", "-c", "readlink /proc/self/ns/pid"]);
    b.edit(|c| {
        // hostname needs a uts namespace of its own.
        c.as_object_mut().unwrap().remove("linux");
        c.as_object_mut().unwrap().remove("hostname");
    });
    let (code, out, err) = root.run(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        std::fs::read_link("/proc/self/ns/pid")
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn mount_options_are_honoured_or_refused_never_dropped() {
    if !require_root("mount_options_are_honoured_or_refused_never_dropped") {
        return;
    }
    let root = Root::new();
    let src = tempfile::tempdir().unwrap();
    let mut b = Bundle::new(&["sh", "-c", "grep -E ' /(b|t|r) ' /proc/self/mountinfo"]);
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/b", "type": "bind", "source": src.path(), "options": ["rbind", "nosymfollow"]}));
        m.push(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosymfollow", "iversion"]}));
        if kernel_at_least(5, 12) {
            m.push(json!({"destination": "/r", "type": "bind", "source": src.path(), "options": ["rbind", "rnorelatime"]}));
        }
    });
    let (code, out, err) = root.run(&b);
    assert_eq!(code, 0, "{err}");
    let line = |mp: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some(mp))
            .unwrap_or_else(|| panic!("{mp} not mounted: {out}"))
            .to_string()
    };
    assert!(line("/b").contains("nosymfollow"), "{out}");
    assert!(line("/t").contains("nosymfollow"), "{out}");
    if kernel_at_least(5, 12) {
        assert!(!line("/r").contains("relatime"), "rnorelatime: {out}");
    } else {
        // Recursive options need mount_setattr: refused in one line, never dropped.
        let mut r = Bundle::new(&["true"]);
        r.edit(|c| {
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/r", "type": "bind", "source": src.path(), "options": ["rbind", "rnorelatime"]}));
        });
        let (code, _, err) = root.run(&r);
        assert_ne!(code, 0);
        assert!(err.contains("Linux 5.12"), "{err}");
    }

    // A typo on a bind mount is an error, not a silently dropped option; so is `idmap` with
    // no mapping to apply.
    for (opts, says) in [
        (json!(["rbind", "nosiud"]), "nosiud"),
        (json!(["rbind", "idmap"]), "idmap without uidMappings"),
    ] {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| {
            let m =
                json!({"destination": "/b", "type": "bind", "source": src.path(), "options": opts});
            c["mounts"].as_array_mut().unwrap().push(m);
        });
        let (code, _, err) = root.run(&b);
        assert_ne!(code, 0, "{says}");
        assert!(err.contains(says), "{says}: {err}");
    }
}

#[test]
fn an_idmapped_bind_maps_file_owners_both_ways() {
    if !require_root("an_idmapped_bind_maps_file_owners_both_ways") {
        return;
    }
    let root = Root::new();
    // On a disk (ext4 here and in the VMs), not a tmpfs: tmpfs takes an idmap only from 6.3.
    let src = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(src.path().join("mine"), b"x").unwrap();
    // The directory too: the container's root has no CAP_DAC_OVERRIDE in this config.
    for p in [src.path().to_path_buf(), src.path().join("mine")] {
        std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
    }
    // On-disk 1000 is the container's root, and the container's root writes as 1000; on-disk
    // 0 is the container's 1000; the rest as they are.
    let maps = json!([
        {"containerID": 1000, "hostID": 0, "size": 1},
        {"containerID": 0, "hostID": 1000, "size": 1},
        {"containerID": 1, "hostID": 1, "size": 999},
        {"containerID": 1001, "hostID": 1001, "size": 64535},
    ]);
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "stat -c %u /w/mine; touch /w/made; stat -c %u /w/made",
    ]);
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/w", "type": "bind", "source": src.path(), "options": ["rbind"],
            "uidMappings": maps, "gidMappings": maps,
        }));
    });
    let (code, out, err) = root.run(&b);
    if !kernel_at_least(5, 12) {
        assert_ne!(code, 0);
        assert!(err.contains("Linux 5.12"), "{err}");
        return;
    }
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "0\n0\n",
        "inside: the file owned by 1000 on disk, and the new one, are root's"
    );
    let made = std::fs::metadata(src.path().join("made")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (made.uid(), made.gid()),
        (1000, 1000),
        "on disk: written as 1000"
    );
    // A mapping on a mount that is not a bind: refused in one line.
    let mut t = Bundle::new(&["true"]);
    t.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/t", "type": "tmpfs", "source": "tmpfs",
            "uidMappings": maps, "gidMappings": maps,
        }));
    });
    let (code, _, err) = root.run(&t);
    assert_ne!(code, 0);
    assert!(err.contains("bind mounts only"), "{err}");
}

#[test]
fn a_joined_user_namespace_may_come_with_its_own_mappings() {
    if !require_root("a_joined_user_namespace_may_come_with_its_own_mappings") {
        return;
    }
    // containerd and CRI-O send the mappings of a user namespace they ask to join.
    let root = Root::new();
    let maps = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let mut a = Bundle::new(&["sleep", "1000"]);
    a.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = maps.clone();
        c["linux"]["gidMappings"] = maps.clone();
    });
    let first = unique_id("userns-owner");
    root.ok(&["run", "-d", "--bundle", a.path().to_str().unwrap(), &first]);
    let pid = root.state(&first)["pid"].as_i64().unwrap();
    let userns = format!("/proc/{pid}/ns/user");
    for (given, ok) in [
        (maps.clone(), true),
        (
            json!([{"containerID": 0, "hostID": 300000, "size": 65536}]),
            false,
        ),
    ] {
        let mut b = Bundle::new(&["cat", "/proc/self/uid_map"]);
        b.edit(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user", "path": userns}));
            c["linux"]["uidMappings"] = given.clone();
            c["linux"]["gidMappings"] = given.clone();
        });
        let (code, out, err) = root.run(&b);
        if ok {
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("200000"), "{out}");
        } else {
            assert_ne!(code, 0);
            assert!(err.contains("differ"), "{err}");
        }
    }
    root.ok(&["delete", "-f", &first]);
}

#[test]
fn a_file_at_a_device_path_that_is_not_that_device_is_an_error() {
    if !require_root("a_file_at_a_device_path_that_is_not_that_device_is_an_error") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    std::fs::create_dir_all(b.rootfs().join("mydev")).unwrap();
    std::fs::write(b.rootfs().join("mydev/null"), "not a device").unwrap();
    b.edit(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/mydev/null", "type": "c", "major": 1, "minor": 3}]);
    });
    let (code, _, err) = root.run(&b);
    assert_ne!(code, 0);
    assert!(err.contains("not that device"), "{err}");
    // The image's own node of that very device is fine.
    std::fs::remove_file(b.rootfs().join("mydev/null")).unwrap();
    nix::sys::stat::mknod(
        &b.rootfs().join("mydev/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let (code, _, err) = root.run(&b);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn exec_keeps_the_callers_umask_when_the_process_has_none() {
    if !require_root("exec_keeps_the_callers_umask_when_the_process_has_none") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sh", "-c", "umask; sleep 1000"]);
    b.edit(|c| {
        c["process"]["user"]
            .as_object_mut()
            .unwrap()
            .remove("umask");
    });
    let id = unique_id("umask");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077; exec {} --root {} exec {id} sh -c umask",
            bin(),
            root.dir.path().display()
        ))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "0077", "{}", text(&out.stderr));
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn a_missing_cwd_is_made_as_runc_makes_it() {
    if !require_root("a_missing_cwd_is_made_as_runc_makes_it") {
        return;
    }
    // runc makes process.cwd when the root lacks it (docker's `-w /new/dir` relies on it),
    // also under a read-only root.
    let root = Root::new();
    let mut b = Bundle::new(&["pwd"]);
    b.edit(|c| {
        c["process"]["cwd"] = json!("/made/by/the/runtime");
        c["root"]["readonly"] = json!(true);
    });
    let (code, out, err) = root.run(&b);
    assert_eq!((code, out.as_str()), (0, "/made/by/the/runtime\n"), "{err}");
}
