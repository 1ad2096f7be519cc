//! Helpers shared by the `husk` end-to-end tests.

#![allow(dead_code)]

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

pub use crate::support::is_root;

/// Run `husk --root ROOT ARGS…`, with `DOCKER_CONFIG` set when given. Layer mounts go as soon
/// as their last user does (a zero grace), so tests can check that; the grace period has its
/// own test. A grace set in the environment wins.
pub fn husk_output(root: &Path, args: &[&str], docker_config: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_husk"));
    c.arg("--root").arg(root).args(args);
    if let Some(d) = docker_config {
        c.env("DOCKER_CONFIG", d);
    }
    if std::env::var_os("HUSK_LAYER_MOUNT_GRACE").is_none() {
        c.env("HUSK_LAYER_MOUNT_GRACE", "0");
    }
    // Containers default to no network here (docker's `"bridge": "none"`): the default
    // bridge would change the host's own network. The network tests run husk in a network
    // namespace of their own, with the default left as it is (tests/network.rs).
    if std::env::var_os("HUSK_CONFIG").is_none() {
        c.env("HUSK_CONFIG", no_bridge_config());
    }
    c.output().expect("husk runs")
}

/// A husk config file that turns the default bridge off: one file for every test process,
/// written whole under a temporary name and renamed into place (tests of several processes
/// write it at once; a reader sees the old file or the new, never half of one).
pub fn no_bridge_config() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        const CONFIG: &[u8] = br#"{"bridge": "none"}"#;
        let path = std::env::temp_dir().join("husk-test-config-no-bridge.json");
        if std::fs::read(&path).ok().as_deref() != Some(CONFIG) {
            let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
            std::fs::write(&tmp, CONFIG).expect("write a test config");
            std::fs::rename(&tmp, &path).expect("put the test config in place");
        }
        path
    })
    .clone()
}

/// The names in `dir` (none when it cannot be read).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// (exit code, stdout, stderr) of `husk --root ROOT ARGS…`.
pub fn husk_env(root: &Path, args: &[&str], docker_config: Option<&Path>) -> (i32, String, String) {
    let out = husk_output(root, args, docker_config);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// (exit code, stdout, stderr) of `husk --root ROOT ARGS…` with `vars` in its environment
/// (`HUSK_CONFIG` among them replaces the no-bridge one).
pub fn husk_vars(
    root: &Path,
    vars: &[(&str, &std::ffi::OsStr)],
    args: &[&str],
) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_husk"));
    c.env("HUSK_CONFIG", no_bridge_config());
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("husk runs");
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

pub fn husk(root: &Path, args: &[&str]) -> (i32, String, String) {
    husk_env(root, args, None)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A file of an image, read through `husk image mount` (whatever the storage driver).
pub fn image_file(root: &Path, image: &str, file: &str) -> Vec<u8> {
    let (code, mp, err) = husk(root, &["image", "mount", image]);
    assert_eq!(code, 0, "{err}");
    let data = std::fs::read(Path::new(mp.trim()).join(file)).unwrap();
    let (code, _, err) = husk(root, &["image", "unmount", image]);
    assert_eq!(code, 0, "{err}");
    data
}

/// A throwaway husk root that, when dropped, unmounts what husk left mounted under it (the
/// shared EROFS layer mounts stay up between containers by design) before it is deleted.
pub struct Store(tempfile::TempDir);

impl Store {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A test that failed half-way may leave containers running: remove them the way a user
        // would (their monitors, processes, cgroups and mounts go), then what is still mounted.
        let (_, ids, _) = husk(self.0.path(), &["ps", "-aq", "--no-trunc"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = husk(self.0.path(), &args);
        }
        for pid in reapers(self.0.path()) {
            // SAFETY: SIGKILL to a layer-mount reaper that this test's husk started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_under(self.0.path());
    }
}

/// The pids of the layer-mount reapers (`husk --root ROOT reap-layer-mounts …`) of this root.
pub fn reapers(root: &Path) -> Vec<i32> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours = args.windows(3).any(|w| {
                w[0] == b"--root"
                    && Path::new(std::ffi::OsStr::from_bytes(w[1])) == root
                    && w[2] == b"reap-layer-mounts"
            });
            ours.then_some(pid)
        })
        .collect()
}

pub fn store() -> Store {
    Store(tempfile::tempdir().expect("tempdir"))
}

/// Detach every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&dir))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: umount2 of a path under this test's own store.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Mounts under `root` other than the shared EROFS layer mounts (which stay up between
/// containers): what a container or `image mount` left behind.
pub fn mounts_left(root: &Path) -> Vec<String> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&root) && !p.contains("/layer-mounts/"))
        .map(str::to_string)
        .collect()
}

/// How many shared EROFS layer mounts are up under `root`.
pub fn layer_mounts(root: &Path) -> usize {
    let dir = std::fs::canonicalize(root)
        .unwrap_or_else(|_| root.to_path_buf())
        .join("layer-mounts");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&dir))
        .count()
}

/// The test busybox image (plus `extra` layers) in a registry of its own, pulled into a fresh
/// store: (registry, store, image name). None, with SKIP said, without root.
pub fn busybox_store(
    test: &str,
    extra: &[Vec<u8>],
) -> Option<(crate::support::TestRegistry, Store, String)> {
    if !is_root() {
        eprintln!("SKIP {test}: containers need root");
        return None;
    }
    let reg = crate::support::start_registry()?;
    crate::support::push_busybox_image_with(&reg, "lib/busybox", "latest", extra);
    let root = store();
    let img = format!("127.0.0.1:{}/lib/busybox", reg.port);
    let (code, _, err) = husk(root.path(), &["pull", "-q", &img]);
    assert_eq!(code, 0, "{err}");
    Some((reg, root, img))
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0)) >= (major, minor)
}

/// What one client thread of a load test saw: per command, (ran, worked); per error kind, how
/// often.
pub type Tally = (
    std::collections::BTreeMap<&'static str, (usize, usize)>,
    std::collections::BTreeMap<String, usize>,
);

/// Joins the client threads of a load test and adds up what they saw, printed for the log.
pub fn join_clients(clients: Vec<std::thread::JoinHandle<Tally>>, secs: u64) -> Tally {
    let mut tally: Tally = Default::default();
    for c in clients {
        let (t, e) = c.join().expect("a client thread");
        for (k, (n, ok)) in t {
            let x = tally.0.entry(k).or_default();
            x.0 += n;
            x.1 += ok;
        }
        for (k, n) in e {
            *tally.1.entry(k).or_default() += n;
        }
    }
    eprintln!("in {secs} s, (ran, worked) per command: {:?}", tally.0);
    for (e, n) in &tally.1 {
        eprintln!("  {n} × {e}");
    }
    tally
}

/// Processes whose cgroup names container `id`.
pub fn processes_of(id: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                    let cg = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
                    cg.contains(id).then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `husk --root ROOT` with the tests' environment (no bridge, no layer-mount grace).
pub fn husk_cmd(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_husk"));
    c.arg("--root")
        .arg(root)
        .env("HUSK_LAYER_MOUNT_GRACE", "0")
        .env("HUSK_CONFIG", no_bridge_config());
    c
}

/// One command of a load test: it must end with an exit code, never a signal or a panic.
/// Counted in `tally` as run, and as worked when it succeeds. Its output, and its stderr as
/// text.
pub fn counted_run(
    root: &Path,
    args: &[&str],
    kind: &'static str,
    tally: &mut std::collections::BTreeMap<&'static str, (usize, usize)>,
) -> (Output, String) {
    let out = husk_cmd(root).args(args).output().expect("husk runs");
    let err = text(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "{args:?} died: {:?} {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let t = tally.entry(kind).or_default();
    t.0 += 1;
    if out.status.success() {
        t.1 += 1;
    }
    (out, err)
}

/// A small xorshift generator: the load tests' choices, the same for a seed every run.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
