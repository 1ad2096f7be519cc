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

/// One rootless session: a user, its home and runtime directory; its containers, pause
/// process and store go when it is dropped.
struct Session {
    uid: u32,
    gid: u32,
    home: tempfile::TempDir,
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
        let s = Session { uid, gid, home };
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
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null());
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
        let _ = self.husk(&["rm", "-f", "-a"]);
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
    let out = s.husk(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "32m",
        &img,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("memory") && err.contains("delegated"), "{err}");
    // Without limits, the same container runs.
    s.ok(&["run", "--rm", "--network", "none", &img, "true"]);
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
    let out = s.husk(&["run", "--rm", "--network", "bridge", &img, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("pasta"), "{}", text(&out.stderr));
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
