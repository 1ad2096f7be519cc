//! Test harness: a busybox bundle from Debian's busybox-static, a throwaway runtime root, and
//! a guard that force-deletes every container the test made and checks nothing is left behind.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BUSYBOX: &str = "/bin/busybox";

/// Root is needed for namespaces, mounts and cgroups. Without it, say so and skip.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root (namespaces, mounts, cgroups)");
    false
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_husk-runtime")
}

/// A unique container id: cgroup paths (/husk/<id>) are global on the machine.
pub fn unique_id(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}
static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A bundle: `dir/config.json` and `dir/rootfs` holding busybox and its applets.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: install Debian's busybox-static (.ci/run does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("husk-bundle-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "etc", "tmp", "out"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
        fs::set_permissions(
            rootfs.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("chmod");
        let mut config = husk_runtime::features::default_spec(false);
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        config["root"]["readonly"] = false.into();
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A host directory bind-mounted at /out in the container, for results.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn with_out_mount(&mut self) -> &mut Self {
        fs::create_dir_all(self.out()).expect("mkdir out");
        let m = serde_json::json!({"destination": "/out", "type": "bind", "source": self.out(), "options": ["rbind", "rw"]});
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(m);
        self.save();
        self
    }

    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
    }
}

/// A runtime root for one test; on drop every container in it is force-deleted, and the test
/// fails if a state directory or cgroup of its containers survives.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub ids: std::cell::RefCell<Vec<String>>,
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("husk-root-")
                .tempdir()
                .expect("tempdir"),
            ids: Default::default(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(self.dir.path());
        c.stdin(Stdio::null());
        c
    }

    /// Run husk-runtime with `args`; remembers ids after `create`/`run` for cleanup.
    pub fn hr(&self, args: &[&str]) -> Output {
        if let Some(pos) = args.iter().position(|a| *a == "create" || *a == "run") {
            if let Some(id) = args[pos + 1..]
                .iter()
                .find(|a| !a.starts_with('-') && !a.contains('/'))
            {
                self.ids.borrow_mut().push(id.to_string());
            }
        }
        // Files, not pipes: `create` hands its stdio to the container, which keeps a pipe open
        // long after husk-runtime exits (runc behaves the same).
        let out = tempfile::tempfile().expect("tempfile");
        let err = tempfile::tempfile().expect("tempfile");
        let status = self
            .cmd()
            .args(args)
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"))
            .status()
            .expect("spawn husk-runtime");
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    /// Start husk-runtime without waiting; `finish` collects its output.
    pub fn spawn(&self, args: &[&str]) -> (std::process::Child, fs::File, fs::File) {
        let out = tempfile::tempfile().expect("tempfile");
        let err = tempfile::tempfile().expect("tempfile");
        let child = self
            .cmd()
            .args(args)
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"))
            .spawn()
            .expect("spawn husk-runtime");
        (child, out, err)
    }

    pub fn finish(spawned: (std::process::Child, fs::File, fs::File)) -> Output {
        let (mut child, out, err) = spawned;
        let status = child.wait().expect("wait");
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    pub fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.hr(args);
        assert!(
            out.status.success(),
            "husk-runtime {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    /// The container's status, or "" while it does not exist.
    pub fn status(&self, id: &str) -> String {
        let out = self.hr(&["state", id]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// `run` a bundle in the foreground and return (exit code, stdout, stderr).
    pub fn run(&self, b: &Bundle) -> (i32, String, String) {
        let id = unique_id("fg");
        let out = self.hr(&[
            "run",
            "--bundle",
            b.path().to_str().expect("utf-8 path"),
            &id,
        ]);
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// `run` and insist on success; stdout.
    pub fn run_ok(&self, b: &Bundle) -> String {
        let (code, out, err) = self.run(b);
        assert_eq!(code, 0, "container failed: {err}\nstdout: {out}");
        out
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..500 {
            if self.status(id) == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} never became {want}: {}", self.status(id));
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let ids = self.ids.borrow().clone();
        for id in &ids {
            let _ = self.cmd().args(["delete", "--force", id]).output();
        }
        if std::thread::panicking() {
            return;
        }
        for id in &ids {
            assert!(
                !self.container_dir(id).exists(),
                "state of {id} left behind"
            );
            assert_no_cgroup(id);
        }
    }
}

/// Remove the cgroup `rel` (relative to a hierarchy's root) from every hierarchy where it is
/// empty: the parents a test's cgroupsPath made, which runtimes leave for later containers.
pub fn remove_empty_cgroup(rel: &str) {
    let rel = rel.trim_start_matches('/');
    let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = fs::remove_dir(hierarchy.path().join(rel));
    }
}

pub fn assert_no_cgroup(id: &str) {
    for hierarchy in fs::read_dir("/sys/fs/cgroup").expect("cgroupfs").flatten() {
        let p = hierarchy.path().join("husk").join(id);
        assert!(!p.exists(), "cgroup {} left behind", p.display());
    }
    assert!(
        !Path::new("/sys/fs/cgroup/husk").join(id).exists(),
        "v2 cgroup left behind"
    );
}

fn read_all(mut f: fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.rewind().expect("rewind");
    f.read_to_end(&mut v).expect("read");
    v
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The one-line error husk-runtime printed (the msg of its text log line).
pub fn error_line(out: &Output) -> String {
    let s = text(&out.stderr);
    let line = s
        .lines()
        .find(|l| l.contains("level=error"))
        .unwrap_or("")
        .to_string();
    line
}

/// The cgroup directory of a container in one v1 controller (or the v2 directory).
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("husk")
        .join(id);
    if Path::new("/sys/fs/cgroup").join(controller).exists() {
        v1
    } else {
        Path::new("/sys/fs/cgroup/husk").join(id)
    }
}

pub fn is_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Whether the running kernel is at least `major.minor` (features the matrix's older kernels
/// lack are refused there with the version they need).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0)) >= (major, minor)
}

/// A real block device of this machine as (major, minor): the first disk in /sys/block
/// (this VM's vda is 254:0; the VM matrix's guests number theirs at boot).
pub fn block_device() -> Option<(u32, u32)> {
    let mut disks: Vec<_> = fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    disks.sort();
    let dev = fs::read_to_string(format!("/sys/block/{}/dev", disks.first()?)).ok()?;
    let (major, minor) = dev.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
