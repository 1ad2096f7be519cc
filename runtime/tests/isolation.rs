//! What the container sees from inside: namespaces, root filesystem, process attributes.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::json;

fn sh(script: &str) -> Bundle {
    Bundle::new(&["sh", "-c", script])
}

#[test]
fn namespaces_are_new_and_the_init_is_pid_1() {
    if !require_root("namespaces_are_new_and_the_init_is_pid_1") {
        return;
    }
    let root = Root::new();
    let mut b = sh("echo pid=$$; hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; for n in ipc mnt net pid uts cgroup; do readlink /proc/self/ns/$n; done");
    b.edit(|c| c["hostname"] = "boxy".into());
    let out = root.run_ok(&b);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("pid=1"));
    assert_eq!(lines.next(), Some("boxy"));
    assert_eq!(
        lines.next(),
        Some("lo"),
        "a new network namespace has only lo"
    );
    for l in lines.filter(|l| l.contains(":[")) {
        let kind = l.split(':').next().unwrap();
        let host = fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert_ne!(Path::new(l), host, "{kind} namespace must be new");
    }
}

#[test]
fn the_cgroup_namespace_shows_the_container_its_own_cgroup_as_root() {
    if !require_root("the_cgroup_namespace_shows_the_container_its_own_cgroup_as_root") {
        return;
    }
    let root = Root::new();
    let b = sh("cat /proc/self/cgroup; grep ' /sys/fs/cgroup' /proc/self/mountinfo | head -1");
    let out = root.run_ok(&b);
    let (cgroups, mount): (Vec<&str>, Vec<&str>) =
        out.lines().partition(|l| !l.contains("/sys/fs/cgroup"));
    if is_cgroup_v2() {
        assert_eq!(cgroups, ["0::/"], "{out}");
    } else {
        // Every v1 hierarchy (and the hybrid's empty v2 one) is rooted at the container.
        assert!(!cgroups.is_empty());
        assert!(cgroups.iter().all(|l| l.ends_with(":/")), "{out}");
    }
    // And the cgroup file system mounted inside starts at the container's cgroup.
    let root_field = mount[0].split_whitespace().nth(3);
    assert_eq!(root_field, Some("/"), "{out}");
}

#[test]
fn user_namespace_maps_ids() {
    if !require_root("user_namespace_maps_ids") {
        return;
    }
    let root = Root::new();
    let mut b =
        sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; cat /proc/self/status | grep CapEff");
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let out = root.run_ok(&b);
    let fields: Vec<Vec<&str>> = out
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], ["0", "100000", "65536"]);
    assert_eq!(fields[1], ["0", "100000", "65536"]);
    assert_eq!(out.lines().nth(2), Some("0"), "root inside");
}

#[test]
fn time_namespace_offsets_apply() {
    if !require_root("time_namespace_offsets_apply") {
        return;
    }
    let root = Root::new();
    let mut b = sh("cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime");
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] =
            json!({"boottime": {"secs": 86400, "nanosecs": 0}, "monotonic": {"secs": 3600}});
    });
    let out = root.run_ok(&b);
    let offsets: Vec<Vec<&str>> = out
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(offsets.contains(&vec!["monotonic", "3600", "0"]), "{out}");
    assert!(offsets.contains(&vec!["boottime", "86400", "0"]), "{out}");
    let inside: u64 = out.lines().last().unwrap().trim().parse().unwrap();
    let host: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside as f64 >= host + 86_000.0,
        "uptime inside {inside} vs host {host}"
    );
}

#[test]
fn namespaces_can_be_joined_by_path() {
    if !require_root("namespaces_can_be_joined_by_path") {
        return;
    }
    let root = Root::new();
    let a = Bundle::new(&["sleep", "1000"]);
    let ida = unique_id("joina");
    root.ok(&["run", "-d", "-b", a.path().to_str().unwrap(), &ida]);
    let pid = root.state(&ida)["pid"].as_i64().unwrap();
    let mut b = sh("readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname");
    b.edit(|c| {
        c["linux"]["namespaces"] = json!([
            {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
            {"type": "network", "path": format!("/proc/{pid}/ns/net")},
            {"type": "uts", "path": format!("/proc/{pid}/ns/uts")}
        ]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let out = root.run_ok(&b);
    let mut l = out.lines();
    assert_eq!(
        Path::new(l.next().unwrap()),
        fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
    );
    assert_eq!(
        Path::new(l.next().unwrap()),
        fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap()
    );
    assert_eq!(
        l.next(),
        Some("husk"),
        "the joined uts namespace carries the first container's hostname"
    );
    root.ok(&["delete", "-f", &ida]);
}

#[test]
fn mounts_are_made_in_order_with_their_options() {
    if !require_root("mounts_are_made_in_order_with_their_options") {
        return;
    }
    let root = Root::new();
    let host_dir = tempfile::tempdir().unwrap();
    fs::write(host_dir.path().join("file"), "from host\n").unwrap();
    let mut b = sh(
        "cat /data/file; touch /data/x 2>/dev/null && echo WRITABLE || echo readonly-bind; \
        grep ' /data ' /proc/self/mountinfo; grep ' /scratch ' /proc/self/mountinfo; \
        grep ' /scratch/inner ' /proc/self/mountinfo; touch /scratch/ok && echo scratch-rw; \
        grep ' /rshared ' /proc/self/mountinfo",
    );
    let src = host_dir.path().to_str().unwrap().to_string();
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}));
        m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]}));
        m.push(json!({"destination": "/scratch/inner", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}));
        m.push(json!({"destination": "/rshared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}));
    });
    let out = root.run_ok(&b);
    let mut l = out.lines();
    assert_eq!(l.next(), Some("from host"));
    assert_eq!(l.next(), Some("readonly-bind"));
    let data = l.next().unwrap();
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            data.split(' ')
                .nth(5)
                .unwrap()
                .split(',')
                .any(|f| f == flag),
            "{flag} missing: {data}"
        );
    }
    let scratch = l.next().unwrap();
    assert!(
        scratch.contains("size=1024k")
            && scratch.contains("mode=700")
            && scratch.contains("noexec"),
        "{scratch}"
    );
    let inner = l.next().unwrap();
    assert!(
        inner.split(' ').nth(5).unwrap().starts_with("ro"),
        "mounted on top of the earlier one, read-only: {inner}"
    );
    assert_eq!(l.next(), Some("scratch-rw"));
    assert!(l.next().unwrap().contains("shared:"), "rshared propagation");
    assert!(!host_dir.path().join("x").exists());
}

#[test]
fn recursive_read_only_binds_cover_submounts() {
    if !require_root("recursive_read_only_binds_cover_submounts") {
        return;
    }
    let root = Root::new();
    // A host tree with a mount inside it, bound with rbind + rro.
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    fs::create_dir(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _u = Unmount(sub.clone());
    let mut b = sh(
        "touch /tree/sub/x 2>/dev/null && echo WRITABLE || echo sub-readonly; \
        grep -c ' /atime/sub .*noatime' /proc/self/mountinfo",
    );
    let src = host.path().to_str().unwrap().to_string();
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/tree", "type": "bind", "source": src, "options": ["rbind", "rro"]}));
        // The atime mode is one field for mount_setattr: rnoatime must clear all of it.
        m.push(json!({"destination": "/atime", "type": "bind", "source": src, "options": ["rbind", "rnoatime"]}));
    });
    if !kernel_at_least(5, 12) {
        let (code, _, err) = root.run(&b);
        assert_ne!(code, 0);
        assert!(
            err.contains("need mount_setattr, Linux 5.12 or later"),
            "{err}"
        );
        return;
    }
    assert_eq!(root.run_ok(&b).trim(), "sub-readonly\n1");
}

#[test]
fn symlinks_in_the_image_cannot_redirect_mounts_to_the_host() {
    if !require_root("symlinks_in_the_image_cannot_redirect_mounts_to_the_host") {
        return;
    }
    let root = Root::new();
    let victim = tempfile::tempdir().unwrap();
    let mut b = sh("grep ' /evil' /proc/self/mountinfo | wc -l");
    std::os::unix::fs::symlink(victim.path(), b.rootfs().join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", b.rootfs().join("up")).unwrap();
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/up/tmp/target", "type": "tmpfs", "source": "tmpfs"}));
    });
    let _ = root.run(&b);
    // Whatever the container did, nothing appeared in or was mounted over the victim.
    assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 0);
    assert!(
        b.rootfs().join("tmp/target").is_dir(),
        "the `up` link resolved inside the root"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(victim.path().to_str().unwrap()));
}

#[test]
fn devices_and_dev_symlinks_exist() {
    if !require_root("devices_and_dev_symlinks_exist") {
        return;
    }
    let root = Root::new();
    let mut b = sh("for d in null zero full random urandom tty mine; do stat -c '%n %F %t:%T %a %u:%g' /dev/$d; done; \
        for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; echo x > /dev/null && head -c 3 /dev/zero | wc -c");
    b.edit(|c| {
        c["linux"]["devices"] = json!([{"path": "/dev/mine", "type": "c", "major": 1, "minor": 3, "fileMode": 432, "uid": 7, "gid": 8}]);
        c["linux"]["resources"]["devices"].as_array_mut().unwrap().push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    });
    let out = root.run_ok(&b);
    assert!(
        out.contains("/dev/null character special file 1:3 666 0:0"),
        "{out}"
    );
    assert!(
        out.contains("/dev/tty character special file 5:0 666"),
        "{out}"
    );
    assert!(
        out.contains("/dev/mine character special file 1:3 660 7:8"),
        "{out}"
    );
    for l in [
        "/proc/self/fd\n",
        "/proc/self/fd/0\n",
        "/proc/self/fd/1\n",
        "/proc/self/fd/2\n",
        "pts/ptmx\n",
    ] {
        assert!(out.contains(l), "missing {l}: {out}");
    }
    assert!(out.trim_end().ends_with('3'));
}

#[test]
fn device_cgroup_denies_what_is_not_allowed() {
    if !require_root("device_cgroup_denies_what_is_not_allowed") {
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIP device_cgroup_denies_what_is_not_allowed: this host has no /dev/net/tun");
        return;
    }
    let root = Root::new();
    // /dev/net/tun (c 10:200: opening it needs no capability, and it is not among the
    // runtime's default devices) exists as a node in the container, but the default-deny
    // cgroup (v1's devices.deny, v2's eBPF program) refuses to open it: EPERM.
    let node =
        json!([{"path": "/dev/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 438}]);
    let open = "(exec 3</dev/tun) 2>/dev/null && echo opened || echo denied";
    let mut b = sh(open);
    b.edit(|c| c["linux"]["devices"] = node.clone());
    assert_eq!(root.run_ok(&b).trim(), "denied");
    // A rule for it lets the same node open.
    let mut b = sh(open);
    b.edit(|c| {
        c["linux"]["devices"] = node.clone();
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"}));
    });
    assert_eq!(root.run_ok(&b).trim(), "opened");
}

#[test]
fn masked_readonly_paths_and_readonly_root() {
    if !require_root("masked_readonly_paths_and_readonly_root") {
        return;
    }
    let root = Root::new();
    // /proc/keys (a file) and /sys/firmware (a directory) exist on every kernel we run on.
    let mut b = sh("wc -c < /proc/keys; ls /sys/firmware | wc -l; echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null && echo SYS-WRITABLE || echo sys-ro; \
        touch /rootfile 2>/dev/null && echo ROOT-WRITABLE || echo root-ro; touch /tmp/ok && echo tmp-rw");
    b.edit(|c| {
        c["root"]["readonly"] = true.into();
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let out = root.run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "0", "sys-ro", "root-ro", "tmp-rw"]
    );
}

#[test]
fn sysctl_domainname_and_oom_score_adj() {
    if !require_root("sysctl_domainname_and_oom_score_adj") {
        return;
    }
    let root = Root::new();
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut b = sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; cat /proc/sys/kernel/domainname; cat /proc/self/oom_score_adj");
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        c["linux"]["readonlyPaths"] = json!([]);
        c["domainname"] = "example.test".into();
        c["process"]["oomScoreAdj"] = 500.into();
    });
    let out = root.run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", "1234", "example.test", "500"]
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward,
        "the host is untouched"
    );
}

#[test]
fn no_pivot_uses_chroot() {
    if !require_root("no_pivot_uses_chroot") {
        return;
    }
    let root = Root::new();
    let b = sh("ls /bin/busybox && cat /proc/self/mountinfo | wc -l");
    let id = unique_id("nopivot");
    let out = root.hr(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("/bin/busybox"));
}

#[test]
fn process_identity_environment_and_limits() {
    if !require_root("process_identity_environment_and_limits") {
        return;
    }
    let root = Root::new();
    let mut b = sh("id; umask; pwd; echo $FOO $HOME; ulimit -n; ulimit -Hn; grep -E '^(NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb))' /proc/self/status; \
        grep -E '^policy' /proc/self/sched; uname -m");
    b.edit(|c| {
        let p = &mut c["process"];
        p["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 63});
        p["cwd"] = "/tmp".into();
        p["env"] = json!(["PATH=/bin", "FOO=bar"]);
        p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]);
        p["noNewPrivileges"] = true.into();
        p["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        });
        p["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    let out = root.run_ok(&b);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "uid=1000(user) gid=1000(user) groups=10,20", "{out}");
    assert_eq!(l[1], "0077");
    assert_eq!(l[2], "/tmp");
    assert_eq!(l[3], "bar /home/user", "HOME from the image's /etc/passwd");
    assert_eq!(l[4], "100");
    assert_eq!(l[5], "200");
    // CAP_CHOWN=0, CAP_KILL=5, CAP_NET_BIND_SERVICE=10.
    let caps: std::collections::HashMap<&str, &str> =
        l.iter().filter_map(|x| x.split_once(":\t")).collect();
    assert_eq!(caps["CapBnd"], "0000000000000421");
    // A non-root user keeps across execve only its ambient capabilities (busybox has no file
    // capabilities), so effective and permitted are the ambient set.
    assert_eq!(caps["CapEff"], "0000000000000400");
    assert_eq!(caps["CapPrm"], "0000000000000400");
    assert_eq!(caps["CapInh"], "0000000000000420");
    assert_eq!(caps["CapAmb"], "0000000000000400");
    assert_eq!(caps["NoNewPrivs"], "1");
    assert!(
        out.contains("policy                                       :                    3"),
        "SCHED_BATCH: {out}"
    );
    assert_eq!(l.last().copied(), Some("i686"), "LINUX32 personality");
}

#[test]
fn ambient_capabilities_without_inheritable_ones_are_skipped_as_runc_does() {
    if !require_root("ambient_capabilities_without_inheritable_ones_are_skipped_as_runc_does") {
        return;
    }
    let root = Root::new();
    let mut b = sh("grep -E '^Cap(Inh|Eff|Amb)' /proc/self/status");
    // What `runc spec` writes: ambient capabilities, no inheritable ones. The kernel refuses
    // to raise those (PR_CAP_AMBIENT_RAISE needs them inheritable); runc runs it regardless.
    b.edit(|c| {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
        });
    });
    let (code, out, err) = root.run(&b);
    assert_eq!(code, 0, "{out}{err}");
    // CAP_KILL=5, CAP_NET_BIND_SERVICE=10, CAP_AUDIT_WRITE=29.
    assert!(out.contains("CapEff:\t0000000020000420"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    assert!(
        err.contains(
            "ambient capabilities CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE are not raised"
        ),
        "a warning says what was skipped: {err}"
    );
}

#[test]
fn io_priority_is_applied() {
    if !require_root("io_priority_is_applied") {
        return;
    }
    let root = Root::new();
    let mut b = sh("ionice -p $$");
    b.edit(|c| c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6}));
    let out = root.run_ok(&b);
    assert!(out.contains("best-effort") && out.contains('6'), "{out}");
}

#[test]
fn a_capability_the_host_lacks_is_a_clear_error() {
    if !require_root("a_capability_the_host_lacks_is_a_clear_error") {
        return;
    }
    // This VM's bounding set lacks CAP_SYS_RESOURCE; elsewhere the test has nothing to prove.
    if caps::has_cap(
        None,
        caps::CapSet::Bounding,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(true)
    {
        eprintln!(
            "SKIP a_capability_the_host_lacks_is_a_clear_error: this host has CAP_SYS_RESOURCE"
        );
        return;
    }
    let root = Root::new();
    let mut b = sh("true");
    b.edit(|c| c["process"]["capabilities"]["effective"] = json!(["CAP_SYS_RESOURCE"]));
    let (code, _, err) = root.run(&b);
    assert_ne!(code, 0);
    assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
}

#[test]
fn only_stdio_and_preserved_fds_reach_the_container() {
    if !require_root("only_stdio_and_preserved_fds_reach_the_container") {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let root = Root::new();
    let b = sh("ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; echo via-fd-3 >&3; readlink /proc/self/cwd");
    let shared = tempfile::NamedTempFile::new().unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(shared.path())
        .unwrap();
    // An extra fd 4 that must NOT be passed on, and fd 3 that must be.
    let leak = fs::File::open("/etc/hostname").unwrap();
    let (f3, f4) = (f.as_raw_fd(), leak.as_raw_fd());
    let id = unique_id("fds");
    root.track(&id);
    let mut cmd = root.cmd();
    cmd.args([
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    unsafe {
        cmd.pre_exec(move || {
            // Both must survive the exec of husk-runtime; dup2 onto itself would keep the
            // close-on-exec flag, so clear it explicitly. (f4 may be 3: move it out first.)
            let f4 = libc::fcntl(f4, libc::F_DUPFD_CLOEXEC, 10);
            if f4 < 0 || libc::dup2(f3, 3) < 0 || libc::dup2(f4, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::fcntl(3, libc::F_SETFD, 0);
            libc::fcntl(4, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // ls itself opens the directory it lists (fd 4 here), so only 0-3 plus that one.
    let fds: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&fds[..4], ["0", "1", "2", "3"], "{stdout}");
    assert!(fds.len() <= 5, "an extra fd leaked: {stdout}");
    assert_eq!(
        stdout.lines().nth(1),
        Some("/"),
        "the cwd is inside the container"
    );
    assert_eq!(fs::read_to_string(shared.path()).unwrap(), "via-fd-3\n");
}

#[test]
fn a_cwd_through_an_inherited_fd_is_refused() {
    if !require_root("a_cwd_through_an_inherited_fd_is_refused") {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // runc's CVE-2024-21626: an fd of the caller (here a host directory on fd 7) is still open
    // in the init when it enters process.cwd, so cwd /proc/self/fd/7 is that host directory.
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("host-secret"), "s3cret").unwrap();
    let dir = fs::File::open(host.path()).unwrap();
    let raw = dir.as_raw_fd();
    let root = Root::new();
    let mut b = sh("ls; cat host-secret");
    b.edit(|c| c["process"]["cwd"] = "/proc/self/fd/7".into());
    let id = unique_id("cwdfd");
    root.track(&id);
    let mut cmd = root.cmd();
    cmd.args(["run", "--bundle", b.path().to_str().unwrap(), &id]);
    // SAFETY: dup2 in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stdout.contains("s3cret") && !stdout.contains("host-secret"),
        "{stdout}"
    );
    assert!(!out.status.success());
    assert!(stderr.contains("outside the container"), "{stderr}");
}

#[test]
fn preserve_fds_refuses_fds_the_caller_did_not_open() {
    if !require_root("preserve_fds_refuses_fds_the_caller_did_not_open") {
        return;
    }
    let root = Root::new();
    let b = sh("true");
    let id = unique_id("nofd");
    // 50 fds the caller surely has not opened: they would be the runtime's own.
    let out = root.hr(&[
        "run",
        "--preserve-fds",
        "50",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not open"),
        "{}",
        text(&out.stderr)
    );
    assert!(!root.container_dir(&id).exists());
}
