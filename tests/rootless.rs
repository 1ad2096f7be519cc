//! Rootless husk: a user without root pulls, runs, logs, execs, stops and removes containers in
//! a user namespace mapped from /etc/subuid and /etc/subgid, with its own store; what it cannot
//! have (limits without a delegated cgroup, ids it was given no range for) is one clear line.
//!
//! The tests make two users of their own (with and without subordinate ids) and run husk as
//! them, each test with its own home and runtime directory, so its own husk-pause process.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use common::*;

/// The test user with subordinate ids, and their first id.
const USER: &str = "husk-rl-test";
const SUB_START: u32 = 420_000;
/// The test user without any.
const USER_NOSUB: &str = "husk-rl-nosub";

static USERADD: Mutex<()> = Mutex::new(());

fn ids_of(name: &str) -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name(name).ok().flatten()?;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// The user `name` (made if missing), with the range at SUB_START or with none.
fn test_user(name: &str, subordinate: bool) -> Option<(u32, u32)> {
    let _serial = USERADD.lock().unwrap_or_else(|e| e.into_inner());
    if ids_of(name).is_none() {
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", name])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIP: cannot add user {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
    }
    let ids = ids_of(name)?;
    let has = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{name}:")))
    };
    // useradd may have given a range on its own; each test user is as the test wants it.
    if has("/etc/subuid") != subordinate || has("/etc/subgid") != subordinate {
        let range = format!("{SUB_START}-{}", SUB_START + 65535);
        let mut usermod = Command::new("usermod");
        if subordinate {
            usermod.args(["--add-subuids", &range, "--add-subgids", &range, name]);
        } else {
            for file in ["/etc/subuid", "/etc/subgid"] {
                let kept: String = std::fs::read_to_string(file)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{name}:")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(file, kept).expect("rewrite the subordinate id file");
            }
            return Some(ids);
        }
        let out = usermod.output().expect("usermod runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(ids)
}

/// The first subordinate uid of USER (useradd may have given it a range of its own).
fn range_start() -> u32 {
    std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{USER}:")).map(str::to_string))
        .and_then(|r| r.split(':').next().and_then(|n| n.parse::<u32>().ok()))
        .unwrap()
}

/// One rootless session: a user, its home and runtime directory; its containers, pause
/// process and store go when it is dropped.
struct Session {
    uid: u32,
    gid: u32,
    home: tempfile::TempDir,
    /// A cgroup v2 directory the commands start in (moved there as root, before they become
    /// the user), as a login under systemd's user@UID.service would.
    cgroup: Option<PathBuf>,
    /// Cgroups made for the test: dropped after `drop` has ended the session's processes.
    delegated: Vec<Delegated>,
}

impl Session {
    fn new(test: &str, user: &str, subordinate: bool) -> Option<Session> {
        if !is_root() {
            eprintln!("SKIP {test}: making a test user needs root");
            return None;
        }
        if Command::new("newuidmap").arg("--help").output().is_err() {
            eprintln!("SKIP {test}: newuidmap is missing (Debian's uidmap package)");
            return None;
        }
        let (uid, gid) = test_user(user, subordinate)?;
        let home = tempfile::Builder::new().prefix("husk-rl-").tempdir().ok()?;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).ok()?;
        std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).ok()?;
        let s = Session {
            uid,
            gid,
            home,
            cgroup: None,
            delegated: Vec::new(),
        };
        let v = s.husk(&["--version"]);
        if !v.status.success() {
            eprintln!(
                "SKIP {test}: {user} cannot run {} (a directory above it is closed to others?)",
                env!("CARGO_BIN_EXE_husk")
            );
            return None;
        }
        Some(s)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.home.path().join("run"))
            .env("HUSK_LAYER_MOUNT_GRACE", "0")
            .current_dir(self.home.path())
            .stdin(Stdio::null());
        match &self.cgroup {
            None => {
                c.uid(self.uid).gid(self.gid);
            }
            Some(dir) => {
                // std drops to the user before pre_exec's closures run, and a move between
                // cgroups needs root's write to their common ancestor: move first, then drop.
                let procs = std::ffi::CString::new(
                    dir.join("cgroup.procs")
                        .into_os_string()
                        .into_encoded_bytes(),
                )
                .expect("a cgroup path without NUL");
                let (uid, gid) = (self.uid, self.gid);
                unsafe {
                    c.pre_exec(move || {
                        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::close(fd);
                        if libc::setgroups(0, std::ptr::null()) != 0
                            || libc::setgid(gid) != 0
                            || libc::setuid(uid) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
        c
    }

    fn husk(&self, args: &[&str]) -> Output {
        self.cmd(env!("CARGO_BIN_EXE_husk"))
            .args(args)
            .output()
            .expect("husk runs")
    }

    /// husk ARGS, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.husk(args);
        assert!(
            out.status.success(),
            "husk {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out.stdout)
    }

    /// husk ARGS, which must be refused (exit 125) in one line; that line.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.husk(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "husk {args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    }

    fn store(&self) -> PathBuf {
        self.home.path().join(".local/share/husk")
    }

    fn pause_pid(&self) -> Option<i32> {
        let p = self.home.path().join("run/husk/pause.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let ps = self.husk(&["ps", "-aq"]);
        let ids: Vec<String> = text(&ps.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let rm = self.husk(&args);
            if !rm.status.success() {
                eprintln!("rm -f as the test user: {}", text(&rm.stderr));
            }
        }
        if let Some(pid) = self.pause_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A layer with a file and a directory owned by 1000:1000, and one above it that makes a
/// directory opaque (overlayfs keeps that mark in a `user.` xattr in a user namespace).
fn owned_layers() -> Vec<Vec<u8>> {
    let layer = |entries: &[(&str, tar::EntryType, u32, u64, &[u8])]| {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, mode, uid, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_path(path).unwrap();
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_gid(*uid);
            h.set_mtime(1_000_000_000);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    };
    use tar::EntryType::{Directory as D, Regular as F};
    vec![
        layer(&[
            ("home/", D, 0o755, 0, b""),
            ("home/app/", D, 0o750, 1000, b""),
            ("home/app/owned", F, 0o640, 1000, b"mine\n"),
            ("home/old/", D, 0o755, 0, b""),
            ("home/old/a", F, 0o644, 0, b""),
            ("home/old/b", F, 0o644, 0, b""),
        ]),
        layer(&[
            ("home/old/", D, 0o755, 0, b""),
            ("home/old/.wh..wh..opq", F, 0o644, 0, b""),
            ("home/old/new", F, 0o644, 0, b""),
        ]),
    ]
}

/// A registry with the busybox image, and with it plus `owned_layer` as `owned`.
fn registry() -> Option<(support::TestRegistry, String, String)> {
    let reg = support::start_registry()?;
    support::push_busybox_image_with(&reg, "lib/busybox", "latest", &[]);
    support::push_busybox_image_with(&reg, "lib/owned", "latest", &owned_layers());
    let plain = format!("127.0.0.1:{}/lib/busybox", reg.port);
    let owned = format!("127.0.0.1:{}/lib/owned", reg.port);
    Some((reg, plain, owned))
}

#[test]
fn a_user_without_root_pulls_runs_and_removes_containers() {
    let t = "a_user_without_root_pulls_runs_and_removes_containers";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let Some((_reg, img, owned)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    s.ok(&["pull", "-q", &owned]);
    // The store is the user's, for the user's eyes only, and no root was used for it.
    let meta = std::fs::metadata(s.store()).expect("the store is in the user's home");
    assert_eq!(meta.uid(), s.uid);
    assert_eq!(meta.mode() & 0o077, 0, "the store is private");
    let info = s.ok(&["info"]);
    assert!(info.contains("rootless"), "{info}");
    assert!(
        info.contains(&format!("Husk Root Dir: {}", s.store().display())),
        "{info}"
    );

    // Root inside is the user outside; the image's owners are shifted into the user's range.
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &owned,
        "sh",
        "-c",
        "id -u; stat -c %u:%g /home/app/owned; cat /home/app/owned; cat /proc/self/uid_map; ls /home/old | grep -c .",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "1000:1000", "{out}");
    assert_eq!(lines[2], "mine", "{out}");
    let map: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(map, ["0", &s.uid.to_string(), "1"], "{out}");
    // The opaque /home/old of the top layer hides the two files below it.
    assert_eq!(lines.last(), Some(&"1"), "{out}");
    let on_host = walk_find(&s.store(), "owned").expect("the layer's file is in the store");
    let first = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{USER}:"))?
                .split(':')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .expect("the user's range");
    assert_eq!(
        std::fs::symlink_metadata(on_host).unwrap().uid(),
        first + 999,
        "uid 1000 of the image is the user's subordinate id 999"
    );

    // Relative paths are the caller's, though husk moved into its namespaces first.
    let tar = s.home.path().join("bb.tar");
    std::fs::write(&tar, support::busybox_layer()).unwrap();
    std::os::unix::fs::chown(&tar, Some(s.uid), Some(s.gid)).unwrap();
    s.ok(&["import", "bb.tar", "relative:1"]);
    s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "relative:1",
        "/bin/busybox",
        "true",
    ]);

    // Exit codes pass through.
    let code = s.husk(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(code.status.code(), Some(7));

    // Detached: ps, logs, exec, stop, rm.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let ps = s.ok(&["ps"]);
    assert!(ps.contains("svc") && ps.contains("Up "), "{ps}");
    until(|| s.ok(&["logs", "svc"]).contains("started"));
    assert!(s
        .ok(&["exec", "svc", "cat", "/proc/1/cmdline"])
        .contains("sh"));
    s.ok(&["stop", "svc"]);
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
    s.ok(&["rm", "svc"]);
    assert!(!s.ok(&["ps", "-a"]).contains("svc"));
    let runtime = s.home.path().join("run/husk/runtime");
    assert!(
        dir_entries(&runtime).is_empty(),
        "runtime state left: {:?}",
        dir_entries(&runtime)
    );
}

/// The first path under `dir` named `name`.
fn walk_find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if e.file_name() == name {
            return Some(p);
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(found) = walk_find(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

fn until(mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed().as_secs() < 20, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn root_of_a_rootless_container_cannot_touch_what_root_owns() {
    let t = "root_of_a_rootless_container_cannot_touch_what_root_owns";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    // A directory the user may enter, with a root-only file and a root-owned subdirectory.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(shared.path().join("secret"), "root only\n").unwrap();
    std::fs::set_permissions(
        shared.path().join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(shared.path().join("rootdir")).unwrap();
    let vol = format!("{}:/w", shared.path().display());
    let out = s.husk(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &vol,
        &img,
        "sh",
        "-c",
        "cat /w/secret; echo cat=$?; touch /w/rootdir/x; echo touch=$?; echo 1 > /proc/sys/kernel/sysrq; echo sysrq=$?; mknod /tmp/sda b 254 0; echo mknod=$?",
    ]);
    let o = text(&out.stdout);
    for step in ["cat", "touch", "sysrq", "mknod"] {
        assert!(
            o.lines()
                .any(|l| l.starts_with(&format!("{step}=")) && !l.ends_with("=0")),
            "{step} must fail: {o} {}",
            text(&out.stderr)
        );
    }
    assert!(!shared.path().join("rootdir/x").exists());
    // Another user's store is not this user's to read.
    let other = Session::new(t, USER_NOSUB, false).expect("the second user");
    other.ok(&["info"]);
    let read = s.cmd("ls").arg(other.store()).output().expect("ls runs");
    assert!(!read.status.success(), "one user reads another's store");
}

#[test]
fn limits_are_refused_in_one_line() {
    let t = "limits_are_refused_in_one_line";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    let err = s.refused(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "32m",
        &img,
        "true",
    ]);
    assert!(err.contains("memory") && err.contains("delegated"), "{err}");
    // Without limits, the same container runs.
    s.ok(&["run", "--rm", "--network", "none", &img, "true"]);
}

/// A cgroup v2 subtree handed to a user as systemd hands `user@UID.service` over with
/// `Delegate=yes`: the directory and its `cgroup.procs`, `cgroup.threads` and
/// `cgroup.subtree_control` are the user's, the parent enables the controllers for it, and the
/// user's processes live in a child of it. Removed, with what husk made in it, when dropped.
struct Delegated {
    dir: PathBuf,
}

impl Delegated {
    fn new(uid: u32, gid: u32, tag: &str) -> Delegated {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/husk-rl-{}-{tag}",
            std::process::id()
        ));
        let root_has = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
        for ctl in ["memory", "pids", "cpu"] {
            assert!(
                root_has.contains(ctl),
                "the guest's root cgroup lacks {ctl}"
            );
            std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("+{ctl}")).unwrap();
        }
        let d = Delegated { dir };
        for sub in ["", "caller"] {
            let dir = d.dir.join(sub);
            std::fs::create_dir(&dir).unwrap();
            for f in [
                "",
                "cgroup.procs",
                "cgroup.threads",
                "cgroup.subtree_control",
            ] {
                std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
            }
        }
        d
    }

    /// The cgroup's directory for a path in the hierarchy (`/husk-rl-N/husk/ID`).
    fn dir_of(path: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        // Children first; a killed pause process leaves its cgroup once it is reaped.
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let who: Vec<String> = procs
                .split_whitespace()
                .map(|p| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                    format!("{p} {}", comm.trim())
                })
                .collect();
            eprintln!("cannot remove the test's cgroup {}: {who:?}", dir.display());
        }
        remove(&self.dir);
    }
}

fn cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Linux's version as (major, minor).
fn kernel() -> (u32, u32) {
    let r = nix::sys::utsname::uname().unwrap();
    let mut it = r
        .release()
        .to_string_lossy()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect::<Vec<u32>>()
        .into_iter();
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// A workspace bound in is the user's on both sides: its files are root's inside, and what the
/// container's root writes there is the user's on the host (`--userns keep-id` says the same
/// and changes nothing for a rootless user). A named volume keeps its files, with their owners
/// in the user's range, from one container to the next.
#[test]
fn the_workspace_stays_the_users_and_volumes_keep_their_files() {
    let t = "the_workspace_stays_the_users_and_volumes_keep_their_files";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    let ws = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(ws.path(), Some(s.uid), Some(s.gid)).unwrap();
    std::fs::write(ws.path().join("mine"), "source\n").unwrap();
    std::os::unix::fs::chown(ws.path().join("mine"), Some(s.uid), Some(s.gid)).unwrap();
    let vol = format!("{}:/w", ws.path().display());
    for userns in [None, Some("keep-id")] {
        let mut args = vec!["run", "--rm", "--network", "none", "-v", &vol];
        if let Some(u) = userns {
            args.extend(["--userns", u]);
        }
        args.extend([
            img.as_str(),
            "sh",
            "-c",
            "stat -c %u:%g /w/mine; rm -rf /w/made; mkdir /w/made && echo out > /w/made/f",
        ]);
        let out = s.ok(&args);
        assert_eq!(out.trim(), "0:0", "{userns:?}: {out}");
        for p in ["made", "made/f"] {
            let m = std::fs::metadata(ws.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (s.uid, s.gid), "{userns:?}: {p}");
        }
    }

    s.ok(&["volume", "create", "data"]);
    s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        &img,
        "sh",
        "-c",
        "echo kept > /data/f && chown 1000:1000 /data/f",
    ]);
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data:ro",
        &img,
        "sh",
        "-c",
        "cat /data/f; stat -c %u /data/f; touch /data/g; echo touch=$?",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["kept", "1000"], "{out}");
    assert!(
        out.contains("touch=1"),
        "a read-only volume was written: {out}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&s.ok(&["volume", "inspect", "data"])).unwrap();
    let dir = PathBuf::from(inspect[0]["Mountpoint"].as_str().unwrap());
    assert!(dir.starts_with(s.store()), "{}", dir.display());
    let f = dir.join("f");
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), range_start() + 999);
    assert!(s.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
    s.ok(&["volume", "rm", "data"]);
    assert!(!dir.exists());
}

/// `--uidmap` and `--userns auto` for a rootless user: the container gets a user namespace of
/// its own inside husk's, its host ids being ids of husk's namespace (0 the user, 1 the first
/// subordinate id), as podman's. fuse-overlayfs shows the image's files shifted, so they keep
/// their owners inside; the runtime reaches the rootfs and bind sources in the user's private
/// store and home through descriptors opened before it became the container's root.
#[test]
fn a_rootless_container_gets_a_user_namespace_of_its_own() {
    let t = "a_rootless_container_gets_a_user_namespace_of_its_own";
    if Command::new("fuse-overlayfs")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP {t}: fuse-overlayfs is missing");
        return;
    }
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let Some((_reg, img, owned)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &owned]);
    // A workspace in the user's home (0700): the container's root cannot search the home.
    let ws = s.home.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("mine"), "source\n").unwrap();
    for p in [&ws, &ws.join("mine")] {
        std::os::unix::fs::chown(p, Some(s.uid), Some(s.gid)).unwrap();
    }
    let bind = format!("{}:/w", ws.display());
    let out = s.ok(&[
        "run", "--rm", "--network", "none", "--uidmap", "0:1:65536", "-v", &bind, "-v", "fresh:/v",
        &owned, "sh", "-c",
        "cat /proc/self/uid_map; id -u; stat -c %u:%g /bin/sh /home/app/owned /w/mine /v; cat /home/app/owned; touch /w/x; echo ws=$?; echo hi > /v/f; echo vol=$?; awk '$5 == \"/\" { for (i = 7; i < NF; i++) if ($i == \"-\") { print $(i + 1); exit } }' /proc/self/mountinfo",
    ]);
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        lines[..7],
        [
            "0 1 65536",
            "0",
            "0:0",
            "1000:1000",
            "65534:65534",
            "0:0",
            "mine"
        ],
        "{out}"
    );
    assert!(
        lines.contains(&"ws=1"),
        "root of the container wrote the user's files: {out}"
    );
    assert!(lines.contains(&"vol=0"), "{out}");
    assert_eq!(lines.last(), Some(&"fuse.fuse-overlayfs"), "{out}");
    // The new volume was the container's root's: on the host, the first subordinate id.
    let inspect: serde_json::Value =
        serde_json::from_str(&s.ok(&["volume", "inspect", "fresh"])).unwrap();
    let vol = PathBuf::from(inspect[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(vol.join("f")).unwrap().uid(),
        range_start()
    );
    // The image's modes hold: another id cannot read what 1000 keeps to itself.
    let out = s.husk(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:1:65536",
        "-u",
        "1001",
        &owned,
        "cat",
        "/home/app/owned",
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "uid 1001 read a 0640 file of 1000"
    );

    // The process's host id, and what diff, commit and cp make of the container's ids.
    let id = s.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--uidmap",
        "0:1:65536",
        &owned,
        "sh",
        "-c",
        "touch /by-root; touch /by-app; chown 1000:1000 /by-app; exec sleep 600",
    ]);
    let id = id.trim();
    let pid: i32 = s
        .ok(&["inspect", "--format", "{{.State.Pid}}", id])
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap();
    assert_eq!(host_uid, range_start().to_string(), "{status}");
    until(|| {
        s.ok(&["exec", id, "stat", "-c", "%u", "/by-app"])
            .trim()
            .starts_with("1000")
    });
    std::fs::write(s.home.path().join("copied"), "in\n").unwrap();
    std::os::unix::fs::chown(s.home.path().join("copied"), Some(s.uid), Some(s.gid)).unwrap();
    s.ok(&["cp", "copied", &format!("{id}:/copied")]);
    let out = s.ok(&["exec", id, "stat", "-c", "%u", "/copied"]);
    assert_eq!(
        out.trim(),
        "0",
        "cp gives what it makes to the container's root"
    );
    if kernel() < (5, 11) {
        // diff and commit read the image through a read-only stack of its layers, which
        // overlayfs makes in a user namespace from Linux 5.11 and fuse-overlayfs never.
        let out = s.husk(&["diff", id]);
        let err = text(&out.stderr);
        assert!(!out.status.success() && err.contains("5.11"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        eprintln!(
            "SKIP {t}: diff and commit of a rootless container need Linux 5.11 (refused in one line, checked)"
        );
        s.ok(&["rm", "-f", id]);
    } else {
        diff_and_commit_see_the_containers_ids(&s, id);
    }

    // auto: blocks of the namespace's ids, one per container, none overlapping.
    let a = s.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--userns",
        "auto:size=1000",
        &img,
        "sleep",
        "600",
    ]);
    let b = s.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--userns",
        "auto:size=1000",
        &img,
        "sleep",
        "600",
    ]);
    let map = |id: &str| s.ok(&["exec", id.trim(), "cat", "/proc/self/uid_map"]);
    let (ma, mb) = (map(&a), map(&b));
    let first = |m: &str| -> Vec<String> { m.split_whitespace().map(str::to_string).collect() };
    assert_eq!(first(&ma), ["0", "1", "1000"], "{ma}");
    assert_eq!(first(&mb), ["0", "1001", "1000"], "{mb}");
    s.ok(&["rm", "-f", a.trim(), b.trim()]);
    let err = s.refused(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:60000:10000",
        &img,
        "true",
    ]);
    assert!(err.contains("/etc/subuid"), "{err}");
    let err = s.refused(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--userns",
        "auto:size=70000",
        &img,
        "true",
    ]);
    assert!(err.contains("70000") && err.contains("65536"), "{err}");
    // A one-id map: the image's groups it lacks are dropped; asking for one is refused.
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:1:1",
        &img,
        "id",
        "-G",
    ]);
    assert_eq!(out.trim(), "0", "{out}");
    let err = s.refused(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:1:1",
        "--group-add",
        "10",
        &img,
        "true",
    ]);
    assert!(err.contains("--gidmap has no group 10"), "{err}");
    // Nothing of the containers is left mounted in husk's namespace.
    let pause = s.pause_pid().expect("husk's pause process");
    let mounts = std::fs::read_to_string(format!("/proc/{pause}/mountinfo")).unwrap();
    assert!(
        !mounts.contains("fuse-overlayfs"),
        "a fuse-overlayfs mount is left: {mounts}"
    );
}

/// A rootless --uidmap container's upper directory holds the container's ids: `diff` lists its
/// files and a committed image has the ids the container saw, not shifted twice.
fn diff_and_commit_see_the_containers_ids(s: &Session, id: &str) {
    let diff = s.ok(&["diff", id]);
    assert!(
        diff.contains("/by-app") && diff.contains("/copied"),
        "{diff}"
    );
    s.ok(&["commit", id, "shifted:1"]);
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "shifted:1",
        "stat",
        "-c",
        "%n %u",
        "/by-root",
        "/by-app",
        "/copied",
    ]);
    assert_eq!(out.trim(), "/by-root 0\n/by-app 1000\n/copied 0", "{out}");
    s.ok(&["rm", "-f", id]);
}

/// The container's root is the image's layers under its own upper directory, stacked inside
/// the user namespace: by the kernel's overlayfs from Linux 5.11, by fuse-overlayfs before.
/// Either way what the container deletes is gone for it and back for the next one.
#[test]
fn layers_stack_in_the_user_namespace_on_every_kernel() {
    let t = "layers_stack_in_the_user_namespace_on_every_kernel";
    let old = kernel() < (5, 11);
    if old
        && Command::new("fuse-overlayfs")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("SKIP {t}: Linux before 5.11 needs fuse-overlayfs, which is missing");
        return;
    }
    let Some(s) = Session::new(t, USER_NOSUB, false) else {
        return;
    };
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    let out = s.ok(&[
        "run", "--rm", "--network", "none", &img, "sh", "-c",
        "awk '$5 == \"/\" { for (i = 7; i < NF; i++) if ($i == \"-\") { print $(i + 1); exit } }' /proc/self/mountinfo; rm /bin/true; test -e /bin/true; echo gone=$?; echo hi > /new; cat /new",
    ]);
    let want = if old {
        "fuse.fuse-overlayfs"
    } else {
        "overlay"
    };
    assert_eq!(out.lines().next(), Some(want), "{out}");
    assert!(out.contains("gone=1") && out.contains("hi"), "{out}");
    s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "test",
        "-e",
        "/bin/true",
    ]);
}

/// Where the user owns a cgroup v2 subtree, a rootless container gets its cgroup in it and its
/// limits work; where the user's cgroup is not delegated, or the delegated one has processes of
/// its own, the limits are refused in one line saying so.
#[test]
fn limits_work_in_a_delegated_cgroup_v2_subtree() {
    let t = "limits_work_in_a_delegated_cgroup_v2_subtree";
    if !cgroup_v2() {
        eprintln!("SKIP {t}: this host's cgroups are v1 (the kernel matrix runs it on v2)");
        return;
    }
    if kernel() < (5, 11)
        && Command::new("fuse-overlayfs")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!(
            "SKIP {t}: overlayfs mounts in a user namespace from Linux 5.11 on, and fuse-overlayfs is missing"
        );
        return;
    }
    // The user without subordinate ids: a single-id map needs no setuid newuidmap.
    let Some(mut s) = Session::new(t, USER_NOSUB, false) else {
        return;
    };
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    // Not delegated: this process's cgroup is root's.
    let err = s.refused(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "64m",
        &img,
        "true",
    ]);
    assert!(
        err.contains("memory") && err.contains("not delegated") && err.contains(&s.uid.to_string()),
        "{err}"
    );

    let d = Delegated::new(s.uid, s.gid, "a");
    s.cgroup = Some(d.dir.join("caller"));
    s.delegated.push(d);
    let id = s.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        &img,
        "sleep",
        "60",
    ]);
    let id = id.trim();
    let path = s.ok(&["inspect", "-f", "{{.State.Pid}}", id]);
    let pid: i32 = path.trim().parse().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("/husk-rl-{}-a/husk/", std::process::id());
    let line = cg.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("");
    assert!(line.starts_with(&want), "{cg}");
    let dir = Delegated::dir_of(line);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(read("memory.max").trim(), "67108864");
    assert_eq!(read("pids.max").trim(), "50");
    // husk's own views of it.
    let stats = s.ok(&["stats", "--no-stream", "--format", "{{.MemUsage}}", id]);
    assert!(stats.contains("/ 64.00MiB"), "{stats}");
    s.ok(&["pause", id]);
    assert_eq!(read("cgroup.freeze").trim(), "1");
    s.ok(&["unpause", id]);
    s.ok(&["rm", "-f", id]);
    assert!(!dir.exists(), "the container's cgroup outlived it");

    // The limits are enforced: more pids than allowed fail inside.
    let out = s.husk(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pids-limit",
        "5",
        &img,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
    ]);
    let o = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        o.contains("fork") || o.contains("Resource temporarily unavailable") || o.contains("can't"),
        "{o}"
    );

    // A delegated cgroup with processes of its own cannot give its children controllers (the
    // kernel keeps processes out of one that has: a fresh one, before husk enabled any).
    let busy = Delegated::new(s.uid, s.gid, "b");
    s.cgroup = Some(busy.dir.clone());
    s.delegated.push(busy);
    let err = s.refused(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "64m",
        &img,
        "true",
    ]);
    assert!(err.contains("no-internal-processes"), "{err}");
    s.cgroup = s.delegated.first().map(|d| d.dir.join("caller"));
}

#[test]
fn without_subordinate_ids_the_user_alone_is_mapped() {
    let t = "without_subordinate_ids_the_user_alone_is_mapped";
    let Some(s) = Session::new(t, USER_NOSUB, false) else {
        return;
    };
    let Some((_reg, img, owned)) = registry() else {
        return;
    };
    // An image whose files are all root's works with the user alone.
    s.ok(&["pull", "-q", &img]);
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "cat",
        "/proc/self/uid_map",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    // One with another owner names the file and the line to add.
    let out = s.husk(&["pull", "-q", &owned]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("/etc/subuid") && err.contains("USER:100000:65536"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The store is intact: the first image still runs.
    s.ok(&["run", "--rm", "--network", "none", &img, "true"]);
}

#[test]
fn a_published_port_reaches_a_rootless_container_through_pasta() {
    let t = "a_published_port_reaches_a_rootless_container_through_pasta";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    if Command::new("pasta").arg("--version").output().is_err() {
        eprintln!("SKIP {t}: pasta is missing (Debian's passt package)");
        return;
    }
    let tun = std::fs::metadata("/dev/net/tun").map(|m| m.mode() & 0o006 == 0o006);
    if !tun.unwrap_or(false) {
        eprintln!("SKIP {t}: /dev/net/tun is not open to users here (udev makes it 0666)");
        return;
    }
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        &img,
        "sh",
        "-c",
        "mkdir /www && echo hello-rootless > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let shown = s.ok(&["port", "web"]);
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    let mut body = String::new();
    until(|| {
        body = http_get(port).unwrap_or_default();
        body.contains("hello-rootless")
    });
    // The default network is pasta's: an interface besides lo, a default route.
    let route = s.ok(&["exec", "web", "ip", "route"]);
    assert!(route.contains("default"), "{route}");
    s.ok(&["rm", "-f", "web"]);
    until(|| http_get(port).is_none());
    // No bridge for a user, in one line.
    let err = s.refused(&["run", "--rm", "--network", "bridge", &img, "true"]);
    assert!(err.contains("pasta"), "{err}");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut b = String::new();
    c.read_to_string(&mut b).ok()?;
    (!b.is_empty()).then_some(b)
}

#[test]
fn a_runtime_dir_in_tmp_that_is_not_private_is_refused() {
    let t = "a_runtime_dir_in_tmp_that_is_not_private_is_refused";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let dir = PathBuf::from(format!("/tmp/husk-run-{}", s.uid));
    if dir.exists() {
        eprintln!("SKIP {t}: {} exists already", dir.display());
        return;
    }
    // Another user's (root's here) directory where ours would go.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = s
        .cmd(env!("CARGO_BIN_EXE_husk"))
        .env_remove("XDG_RUNTIME_DIR")
        .arg("info")
        .output()
        .expect("husk runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("not a private directory"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn system_migrate_makes_the_namespace_again_once_nothing_runs() {
    let t = "system_migrate_makes_the_namespace_again_once_nothing_runs";
    let Some(s) = Session::new(t, USER, true) else {
        return;
    };
    let Some((_reg, img, _)) = registry() else {
        return;
    };
    s.ok(&["pull", "-q", &img]);
    let first = s.pause_pid().expect("a pause process");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "m",
        "--network",
        "none",
        &img,
        "sleep",
        "30",
    ]);
    let out = s.husk(&["system", "migrate"]);
    assert!(!out.status.success(), "migrate with a running container");
    let err = text(&out.stderr);
    assert!(err.contains("still running"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(s.ok(&["exec", "m", "echo", "alive"]), "alive\n");
    s.ok(&["rm", "-f", "m"]);
    let said = s.ok(&["system", "migrate"]);
    assert!(said.contains(&first.to_string()), "{said}");
    until(|| {
        std::fs::read_to_string(format!("/proc/{first}/comm"))
            .map_or(true, |c| c.trim_end() != "husk-pause")
    });
    // The next command makes a new namespace; the store is as it was.
    s.ok(&["run", "--rm", "--network", "none", &img, "true"]);
    let second = s.pause_pid().expect("a new pause process");
    assert_ne!(first, second);
    // Root has no namespace to make again.
    let root_store = store();
    let (code, _, err) = husk(root_store.path(), &["system", "migrate"]);
    assert_ne!(code, 0);
    assert!(err.contains("rootless"), "{err}");
}
