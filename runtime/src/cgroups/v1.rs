//! cgroup v1: one directory per mounted hierarchy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{set, set_since, CGROUP_ROOT};
use crate::error::{Error, Result};

/// Mounted v1 hierarchies: controllers ("cpu,cpuacct", "name=systemd") → mount point.
pub fn hierarchies() -> Result<BTreeMap<String, PathBuf>> {
    match conventional_hierarchies() {
        Some(found) => Ok(found),
        None => mounted_hierarchies(),
    }
}

/// The v1 hierarchies mountinfo shows under /sys/fs/cgroup.
fn mounted_hierarchies() -> Result<BTreeMap<String, PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read /proc/self/mountinfo", e))?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        if !mount_point.starts_with(CGROUP_ROOT) {
            continue;
        }
        let controllers: Vec<&str> = super_opts
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro")
                    && !o.starts_with("release_agent")
                    && *o != "clone_children"
                    && *o != "noprefix"
                    && *o != "xattr"
                    && *o != "cpuset_v2_mode"
            })
            .collect();
        if !controllers.is_empty() {
            out.insert(controllers.join(","), PathBuf::from(mount_point));
        }
    }
    Ok(out)
}

/// The hierarchies this process is in (`/proc/self/cgroup`), each where every distribution
/// mounts it: `/sys/fs/cgroup/<controllers>`, a named one at `/sys/fs/cgroup/<name>`. None
/// unless each is there and is a cgroup file system; then mountinfo decides, whose reading
/// costs the kernel more with every mount on the host (a thousand containers' overlays).
fn conventional_hierarchies() -> Option<BTreeMap<String, PathBuf>> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut out = BTreeMap::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers)) = (f.next(), f.next()) else {
            return None;
        };
        if controllers.is_empty() {
            continue;
        }
        let dir = controllers.strip_prefix("name=").unwrap_or(controllers);
        let mount_point = Path::new(CGROUP_ROOT).join(dir);
        let on_cgroup = nix::sys::statfs::statfs(&mount_point)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC);
        if !on_cgroup {
            return None;
        }
        out.insert(controllers.to_string(), mount_point);
    }
    (!out.is_empty()).then_some(out)
}

/// Move the calling thread into `dirs` by writing 0 to their `tasks` files. For a
/// single-threaded process this is the whole process, and unlike a write of a pid to
/// `cgroup.procs` it does not take the global threadgroup lock, whose first writer waits for an
/// RCU grace period (5-15 ms here, the largest cost of a container start).
pub fn join_self(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        set(dir, "tasks", 0)?;
    }
    Ok(())
}

pub fn create(path: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut made = BTreeMap::new();
    for (controllers, mount) in hierarchies()? {
        let dir = mount.join(rel);
        let result = if controllers.split(',').any(|c| c == "cpuset") {
            create_cpuset(&mount, rel)
        } else {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("cannot create cgroup {}", dir.display()), e))
        };
        if let Err(e) = result {
            let _ = super::remove(&super::CgroupPaths::V1(made));
            return Err(e);
        }
        made.insert(controllers, dir);
    }
    if made.is_empty() {
        // `ip netns exec` mounts a fresh sysfs on /sys, which hides every cgroup mount.
        let bare_sysfs = nix::sys::statfs::statfs(CGROUP_ROOT)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC);
        return Err(Error::Unsupported(if bare_sysfs {
            "nothing is mounted on /sys/fs/cgroup in this mount namespace (`ip netns exec` mounts a fresh /sys; `nsenter --net=/run/netns/NAME` keeps the host's)".into()
        } else {
            "no cgroup v1 hierarchy is mounted under /sys/fs/cgroup".into()
        }));
    }
    Ok(made)
}

/// A new cpuset cgroup starts with empty cpus and mems and refuses tasks: fill each new level
/// from its parent.
fn create_cpuset(mount: &Path, rel: &Path) -> Result<()> {
    let mut dir = mount.to_path_buf();
    for comp in rel.components() {
        let parent = dir.clone();
        dir.push(comp);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot create cgroup {}", dir.display()),
                    e,
                ))
            }
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let cur = fs::read_to_string(dir.join(file)).unwrap_or_default();
            if cur.trim().is_empty() {
                let from = fs::read_to_string(parent.join(file)).map_err(|e| {
                    Error::io(format!("cannot read {}", parent.join(file).display()), e)
                })?;
                set(&dir, file, from.trim())?;
            }
        }
    }
    Ok(())
}

fn dir_of<'a>(paths: &'a BTreeMap<String, PathBuf>, controller: &str) -> Option<&'a PathBuf> {
    super::v1_dir(paths, controller)
}

fn need<'a>(
    paths: &'a BTreeMap<String, PathBuf>,
    controller: &str,
    what: &str,
) -> Result<&'a PathBuf> {
    dir_of(paths, controller).ok_or_else(|| {
        Error::Unsupported(format!(
            "cannot apply {what}: the {controller} cgroup controller is not mounted"
        ))
    })
}

pub fn apply(paths: &BTreeMap<String, PathBuf>, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        let dir = need(paths, "memory", "memory limits")?;
        let limit = m.limit();
        let swap = m.swap();
        // memsw must stay >= limit: raise order depends on the direction of the change.
        let set_limit = |v: i64| set(dir, "memory.limit_in_bytes", v);
        let set_swap = |v: i64| {
            if !dir.join("memory.memsw.limit_in_bytes").exists() {
                return Err(Error::Unsupported(
                    "cannot apply memory.swap: swap accounting is off in this kernel".into(),
                ));
            }
            set(dir, "memory.memsw.limit_in_bytes", v)
        };
        match (limit, swap) {
            (Some(l), Some(s)) => {
                if set_limit(l).is_err() {
                    set_swap(s)?;
                    set_limit(l)?;
                } else {
                    set_swap(s)?;
                }
            }
            (Some(l), None) => set_limit(l)?,
            (None, Some(s)) => set_swap(s)?,
            (None, None) => {}
        }
        if let Some(v) = m.reservation() {
            set(dir, "memory.soft_limit_in_bytes", v)?;
        }
        if let Some(v) = m.swappiness() {
            if v > 100 {
                return Err(Error::InvalidConfig(format!(
                    "memory.swappiness {v} is above 100"
                )));
            }
            set(dir, "memory.swappiness", v)?;
        }
        if m.disable_oom_killer() == Some(true) {
            set(dir, "memory.oom_control", 1)?;
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares() {
            set(need(paths, "cpu", "cpu.shares")?, "cpu.shares", v)?;
        }
        if let Some(v) = c.period() {
            set(need(paths, "cpu", "cpu.period")?, "cpu.cfs_period_us", v)?;
        }
        if let Some(v) = c.quota() {
            set(need(paths, "cpu", "cpu.quota")?, "cpu.cfs_quota_us", v)?;
        }
        if let Some(v) = c.realtime_period() {
            set(
                need(paths, "cpu", "cpu.realtimePeriod")?,
                "cpu.rt_period_us",
                v,
            )?;
        }
        if let Some(v) = c.realtime_runtime() {
            set(
                need(paths, "cpu", "cpu.realtimeRuntime")?,
                "cpu.rt_runtime_us",
                v,
            )?;
        }
        if let Some(v) = c.idle() {
            let dir = need(paths, "cpu", "cpu.idle")?;
            set_since(dir, "cpu.idle", v, ("cpu.idle", "5.15"))?;
        }
        if let Some(v) = c.burst() {
            let dir = need(paths, "cpu", "cpu.burst")?;
            set_since(dir, "cpu.cfs_burst_us", v, ("cpu.burst", "5.14"))?;
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            set(need(paths, "cpuset", "cpu.cpus")?, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            set(need(paths, "cpuset", "cpu.mems")?, "cpuset.mems", v)?;
        }
    }
    if let Some(p) = r.pids() {
        let dir = need(paths, "pids", "pids.limit")?;
        let v = p.limit();
        if v > 0 {
            set(dir, "pids.max", v)?;
        } else {
            set(dir, "pids.max", "max")?;
        }
    }
    if let Some(b) = r.block_io() {
        let dir = need(paths, "blkio", "blockIO")?;
        // With BFQ the weight files carry a "bfq." prefix; CFQ-era kernels had them bare.
        let weight_file = |name: &str| -> Result<String> {
            for f in [format!("blkio.{name}"), format!("blkio.bfq.{name}")] {
                if dir.join(&f).exists() {
                    return Ok(f);
                }
            }
            Err(Error::Unsupported(format!(
                "cannot apply blockIO {name}: this kernel's blkio controller has no such file"
            )))
        };
        if let Some(w) = b.weight() {
            set(dir, &weight_file("weight")?, w)?;
        }
        if let Some(w) = b.leaf_weight() {
            set(dir, &weight_file("leaf_weight")?, w)?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                set(
                    dir,
                    &weight_file("weight_device")?,
                    format!("{}:{} {w}", d.major(), d.minor()),
                )?;
            }
            if let Some(w) = d.leaf_weight() {
                set(
                    dir,
                    &weight_file("leaf_weight_device")?,
                    format!("{}:{} {w}", d.major(), d.minor()),
                )?;
            }
        }
        for (list, file) in [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
            ),
        ] {
            for d in list.iter().flatten() {
                set(
                    dir,
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let dir = need(paths, "hugetlb", "hugepageLimits")?;
        set(
            dir,
            &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
        )?;
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            set(
                need(paths, "net_cls", "network.classID")?,
                "net_cls.classid",
                id,
            )?;
        }
        for p in n.priorities().iter().flatten() {
            set(
                need(paths, "net_prio", "network.priorities")?,
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    let rdma = super::rdma_lines(r);
    if !rdma.is_empty() {
        let dir = need(paths, "rdma", "rdma limits")?;
        for line in rdma {
            set(dir, "rdma.max", line)?;
        }
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        apply_devices(paths, &super::device_rules(r)?)?;
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::Unsupported(
            "linux.resources.unified needs cgroup v2; this host runs cgroup v1".into(),
        ));
    }
    Ok(())
}

pub fn apply_devices(paths: &BTreeMap<String, PathBuf>, rules: &[super::DeviceRule]) -> Result<()> {
    let dir = need(paths, "devices", "device rules")?;
    for rule in rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        for line in rule.v1_lines() {
            set(dir, file, line)?;
        }
    }
    Ok(())
}

pub fn freeze(paths: &BTreeMap<String, PathBuf>, frozen: bool) -> Result<()> {
    let dir = need(paths, "freezer", "pause/resume")?;
    set(
        dir,
        "freezer.state",
        if frozen { "FROZEN" } else { "THAWED" },
    )?;
    // FREEZING is transient: wait until the kernel says FROZEN.
    for _ in 0..1000 {
        let state = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
        if !frozen || state.trim() == "FROZEN" {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        set(dir, "freezer.state", "FROZEN")?;
    }
    Err(Error::Unsupported(format!(
        "cgroup {} did not freeze",
        dir.display()
    )))
}

pub fn is_frozen(paths: &BTreeMap<String, PathBuf>) -> bool {
    dir_of(paths, "freezer")
        .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() == "FROZEN")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fast_lookup_of_hierarchies_agrees_with_mountinfo() {
        let Some(fast) = super::conventional_hierarchies() else {
            eprintln!("SKIP: no v1 hierarchy at its conventional place on this host");
            return;
        };
        let mounted = super::mounted_hierarchies().expect("mountinfo reads");
        assert_eq!(fast, mounted);
    }
}
