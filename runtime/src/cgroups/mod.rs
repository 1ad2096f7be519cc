//! Cgroups, v1 and v2 both first class, chosen at run time by what /sys/fs/cgroup is.
//!
//! The container's cgroup is created by `create` before the init exists, the intermediate
//! process is placed in it (so the init is born inside), and it is removed by `delete`.

pub mod ebpf;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where one container's cgroup lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupPaths {
    /// One directory per mounted v1 hierarchy, keyed by its controllers ("memory", "cpu,cpuacct",
    /// "name=systemd").
    V1(BTreeMap<String, PathBuf>),
    V2(PathBuf),
}

/// The directory of a v1 hierarchy that has `controller` ("cpu" is in "cpu,cpuacct").
pub fn v1_dir<'a>(paths: &'a BTreeMap<String, PathBuf>, controller: &str) -> Option<&'a PathBuf> {
    paths
        .iter()
        .find(|(k, _)| k.split(',').any(|c| c == controller))
        .map(|(_, v)| v)
}

impl CgroupPaths {
    /// Where `controller`'s files are: its v1 hierarchy's directory, or the v2 directory.
    pub fn controller_dir(&self, controller: &str) -> Option<&Path> {
        match self {
            CgroupPaths::V1(p) => v1_dir(p, controller).map(PathBuf::as_path),
            CgroupPaths::V2(d) => Some(d),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

pub fn detect() -> Version {
    match nix::sys::statfs::statfs(CGROUP_ROOT) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Version::V2,
        _ => Version::V1,
    }
}

/// The cgroup path a container gets: `linux.cgroupsPath` (relative paths are taken from the
/// hierarchy's root, as runc does) or `/husk/<id>`.
pub fn container_path(cgroups_path: Option<&Path>, id: &str) -> Result<PathBuf> {
    let p = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => {
            if p.to_string_lossy().contains(':') && !p.is_absolute() {
                return Err(Error::InvalidConfig(format!(
                    "cgroupsPath {} is in systemd's slice:prefix:name form: run with --systemd-cgroup",
                    p.display()
                )));
            }
            Path::new("/").join(p)
        }
        _ => Path::new("/husk").join(id),
    };
    // No `..`: the path must stay inside the hierarchy.
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::InvalidConfig(format!(
            "cgroupsPath {} leaves the cgroup hierarchy",
            p.display()
        )));
    }
    Ok(p)
}

/// Create the cgroup and apply the resources. On error nothing created is left behind.
/// `owner` is a process already in it that belongs there (the init, which systemd placed in
/// its scope); any other process means the cgroup is someone else's.
pub fn create(
    path: &Path,
    resources: Option<&LinuxResources>,
    owner: Option<i32>,
) -> Result<CgroupPaths> {
    let paths = match detect() {
        Version::V1 => CgroupPaths::V1(v1::create(path)?),
        Version::V2 => CgroupPaths::V2(v2::create(path)?),
    };
    // An existing cgroup with processes belongs to someone else: adopting it would later kill
    // and remove what is not ours.
    match pids(&paths) {
        Ok(p) if p.iter().any(|p| Some(*p) != owner) => {
            return Err(Error::InvalidConfig(format!(
                "cgroup {} is already in use by {} process(es)",
                path.display(),
                p.len()
            )))
        }
        _ => {}
    }
    let empty = LinuxResources::default();
    let r = resources.unwrap_or(&empty);
    // The device policy is always set at create: deny everything, then what the config and
    // the runtime's own devices need. Without it, CAP_MKNOD alone would reach the host's disks.
    let applied = apply(&paths, r).and_then(|()| apply_devices(&paths, r));
    if let Err(e) = applied {
        let _ = remove(&paths);
        return Err(e);
    }
    Ok(paths)
}

/// Whether `e` is the kernel refusing us a cgroup: a user namespace's root on a hierarchy no
/// one delegated to it.
pub fn is_denied(e: &Error) -> bool {
    let code = match e {
        Error::Io { err, .. } => err.raw_os_error(),
        Error::Sys { err, .. } => Some(*err as i32),
        _ => None,
    };
    matches!(code, Some(libc::EACCES | libc::EPERM | libc::EROFS))
}

/// Whether `r` asks for anything only a cgroup enforces. The device policy is not such a thing
/// in a user namespace: its mounts are nodev and it cannot make device nodes.
pub fn has_limits(r: Option<&LinuxResources>) -> bool {
    let Some(r) = r else { return false };
    r.memory()
        .as_ref()
        .is_some_and(|m| *m != Default::default())
        || r.cpu().as_ref().is_some_and(|c| *c != Default::default())
        || r.pids().is_some()
        || r.block_io()
            .as_ref()
            .is_some_and(|b| *b != Default::default())
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.rdma().as_ref().is_some_and(|x| !x.is_empty())
        || r.unified().as_ref().is_some_and(|u| !u.is_empty())
}

/// Set the device policy (see `device_rules`).
pub fn apply_devices(paths: &CgroupPaths, r: &LinuxResources) -> Result<()> {
    let rules = device_rules(r)?;
    match paths {
        CgroupPaths::V1(p) => v1::apply_devices(p, &rules),
        CgroupPaths::V2(p) => ebpf::apply(p, &rules),
    }
}

pub fn apply(paths: &CgroupPaths, r: &LinuxResources) -> Result<()> {
    match paths {
        CgroupPaths::V1(p) => v1::apply(p, r),
        CgroupPaths::V2(p) => v2::apply(p, r),
    }
}

pub fn add_pid(paths: &CgroupPaths, pid: i32) -> Result<()> {
    match paths {
        CgroupPaths::V1(p) => p.values().try_for_each(|dir| {
            crate::util::write_file(&dir.join("cgroup.procs"), &pid.to_string())
        }),
        CgroupPaths::V2(p) => crate::util::write_file(&p.join("cgroup.procs"), &pid.to_string()),
    }
}

/// Pids of every process in the container's cgroup.
pub fn pids(paths: &CgroupPaths) -> Result<Vec<i32>> {
    let dir = match paths {
        CgroupPaths::V1(p) => p
            .get("pids")
            .or_else(|| p.get("memory"))
            .or_else(|| p.values().next())
            .cloned(),
        CgroupPaths::V2(p) => Some(p.clone()),
    };
    let Some(dir) = dir else {
        return Ok(Vec::new());
    };
    let mut pids = Vec::new();
    collect_pids(&dir, &mut pids)?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        // Gone, or going: a cgroup being removed (systemd stopping its scope at the same
        // time) answers ENODEV for the moment its directory is still there. No processes.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENODEV) =>
        {
            return Ok(())
        }
        Err(e) => return Err(Error::io(format!("cannot read {}", procs.display()), e)),
    }
    // Processes in sub-cgroups the container made itself belong to it too.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

pub fn freeze(paths: &CgroupPaths, frozen: bool) -> Result<()> {
    match paths {
        CgroupPaths::V1(p) => v1::freeze(p, frozen),
        CgroupPaths::V2(p) => v2::freeze(p, frozen),
    }
}

pub fn is_frozen(paths: &CgroupPaths) -> bool {
    match paths {
        CgroupPaths::V1(p) => v1::is_frozen(p),
        CgroupPaths::V2(p) => v2::is_frozen(p),
    }
}

/// Signal every process of the container. With SIGKILL on v2 the kernel does it atomically
/// (cgroup.kill); otherwise the cgroup is frozen while we signal, so nothing forks past us.
pub fn signal_all(paths: &CgroupPaths, sig: nix::sys::signal::Signal) -> Result<()> {
    if let CgroupPaths::V2(p) = paths {
        let kill = p.join("cgroup.kill");
        if sig == nix::sys::signal::Signal::SIGKILL && kill.exists() {
            return crate::util::write_file(&kill, "1");
        }
    }
    let was_frozen = is_frozen(paths);
    let can_freeze = freeze(paths, true).is_ok();
    for pid in pids(paths)? {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
    if can_freeze && !was_frozen {
        freeze(paths, false)?;
    }
    Ok(())
}

/// Remove the container's cgroup directories. Retries briefly: a killed process leaves its
/// cgroup a moment after it is reaped.
pub fn remove(paths: &CgroupPaths) -> Result<()> {
    let dirs: Vec<&PathBuf> = match paths {
        CgroupPaths::V1(p) => p.values().collect(),
        CgroupPaths::V2(p) => vec![p],
    };
    for dir in dirs {
        remove_tree(dir)?;
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<()> {
    // Children first: a container may have made sub-cgroups.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    let mut delay = std::time::Duration::from_millis(1);
    for _ in 0..12 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(Error::io(
                    format!("cannot remove cgroup {}", dir.display()),
                    e,
                ))
            }
        }
    }
    Err(Error::io(
        format!(
            "cannot remove cgroup {}: processes are still in it",
            dir.display()
        ),
        std::io::Error::from_raw_os_error(libc::EBUSY),
    ))
}

/// One device cgroup rule: `typ` is 'a' (all), 'c' or 'b'; `None` major/minor is "*"; `access`
/// holds r, w and m.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub typ: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    fn parse_default(allow: bool, s: &str) -> DeviceRule {
        // "c 1:3 rwm" / "c 136:* rwm"
        let mut f = s.split(' ');
        let typ = f.next().and_then(|t| t.chars().next()).unwrap_or('a');
        let (ma, mi) = f
            .next()
            .and_then(|n| n.split_once(':'))
            .unwrap_or(("*", "*"));
        DeviceRule {
            allow,
            typ,
            major: ma.parse().ok(),
            minor: mi.parse().ok(),
            access: f.next().unwrap_or("rwm").to_string(),
        }
    }

    /// The lines v1's devices.allow / devices.deny take. v1 reads any line starting with "a"
    /// as every device, ignoring numbers and access, so a narrower "a" rule becomes one line for
    /// character and one for block devices.
    pub fn v1_lines(&self) -> Vec<String> {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        let line = |t: char| format!("{t} {}:{} {}", n(self.major), n(self.minor), self.access);
        match self.typ {
            'a' if self.major.is_none() && self.minor.is_none() && self.access == "rwm" => {
                vec!["a".into()]
            }
            'a' => vec![line('c'), line('b')],
            t => vec![line(t)],
        }
    }
}

/// The device rules a container's cgroup gets: deny everything, the config's rules in order,
/// then the ones every container needs for the devices the runtime itself creates (runc
/// appends the same list). Later rules win over earlier ones.
pub fn device_rules(r: &LinuxResources) -> Result<Vec<DeviceRule>> {
    let mut out = vec![DeviceRule::parse_default(false, "a *:* rwm")];
    for d in r.devices().iter().flatten() {
        let typ = match d.typ().map(|t| t.as_str().to_string()).as_deref() {
            None | Some("a") => 'a',
            Some("c") | Some("u") => 'c',
            Some("b") => 'b',
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "device cgroup rule type {other:?} is not a, b or c"
                )))
            }
        };
        let access = d.access().clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(Error::InvalidConfig(format!(
                "device cgroup access {access:?} is not made of r, w and m"
            )));
        }
        out.push(DeviceRule {
            allow: d.allow(),
            typ,
            major: d.major(),
            minor: d.minor(),
            access,
        });
    }
    for rule in [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:1 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
    ] {
        out.push(DeviceRule::parse_default(true, rule));
    }
    Ok(out)
}

/// The `rdma.max` lines of `linux.resources.rdma` (the same file on v1 and v2).
pub(crate) fn rdma_lines(r: &LinuxResources) -> Vec<String> {
    r.rdma()
        .iter()
        .flatten()
        .map(|(dev, l)| {
            let mut v = dev.clone();
            if let Some(h) = l.hca_handles() {
                v.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                v.push_str(&format!(" hca_object={o}"));
            }
            v
        })
        .collect()
}

/// Write `value` to `dir/file`, naming the file and the value when the kernel refuses.
pub(crate) fn set(dir: &Path, file: &str, value: impl std::fmt::Display) -> Result<()> {
    crate::util::write_file(&dir.join(file), &value.to_string())
}

/// `set` for a file that only newer kernels have: where it is missing, the limit is refused
/// with the version it needs (a write would fail with a bare EACCES on cgroupfs).
pub(crate) fn set_since(
    dir: &Path,
    file: &str,
    value: impl std::fmt::Display,
    (what, linux): (&str, &str),
) -> Result<()> {
    if !dir.join(file).exists() {
        return Err(Error::Unsupported(format!(
            "{what} needs {file}, Linux {linux} or later"
        )));
    }
    set(dir, file, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(
            container_path(None, "c1").unwrap(),
            PathBuf::from("/husk/c1")
        );
        assert_eq!(
            container_path(Some(Path::new("a/b")), "c1").unwrap(),
            PathBuf::from("/a/b")
        );
        assert_eq!(
            container_path(Some(Path::new("/a/b")), "c1").unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(container_path(Some(Path::new("/a/../../b")), "c1").is_err());
        assert!(container_path(Some(Path::new("system.slice:husk:c1")), "c1").is_err());
    }
}
