//! cgroup v2: one unified directory.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{set, set_since, CGROUP_ROOT};
use crate::error::{Error, Result};

const WANTED: [&str; 8] = [
    "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

pub fn create(path: &Path) -> Result<PathBuf> {
    create_in(Path::new(CGROUP_ROOT), path)
}

/// `create` under another cgroup2 mount (tests use the unified hierarchy of hybrid hosts).
/// Each ancestor gets the controllers it offers enabled for its children, writing only those
/// not enabled yet: under systemd (`/system.slice/...`) they usually are, and a write to
/// `cgroup.subtree_control` takes the kernel's cgroup lock.
pub fn create_in(root: &Path, path: &Path) -> Result<PathBuf> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut dir = root.to_path_buf();
    for comp in rel.components() {
        enable_controllers(&dir);
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
    }
    Ok(dir)
}

/// Enable for `dir`'s children the wanted controllers it has and has not enabled yet. A
/// failure is left for `need` to report when a limit asks for that controller (a cgroup with
/// processes of its own cannot enable any: the kernel's no-internal-processes rule).
fn enable_controllers(dir: &Path) {
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
    let (available, enabled) = (read("cgroup.controllers"), read("cgroup.subtree_control"));
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for ctl in available
        .split_whitespace()
        .filter(|c| WANTED.contains(c) && !enabled.contains(c))
    {
        let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{ctl}"));
    }
}

fn need(dir: &Path, controller: &str, what: &str) -> Result<()> {
    let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if have.split_whitespace().any(|c| c == controller) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "cannot apply {what}: the {controller} controller is not enabled for {}",
            dir.display()
        )))
    }
}

/// cgroup v1 cpu.shares [2, 262144] onto v2 cpu.weight [1, 10000], the conversion runc and the
/// kernel documentation use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// blkio.weight [10, 1000] onto io.weight [1, 10000].
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

/// One device's io weight: through BFQ where the device uses it (its weights are blkio's own
/// 1..1000), else through the io cost controller, which takes a device's weight only once it
/// is on for that device (io.cost.qos; no kernel up to 6.12 turns it on by itself).
fn weight_device(dir: &Path, major: i64, minor: i64, w: u16) -> Result<()> {
    let write = |file: &str, line: String| match fs::write(dir.join(file), &line) {
        Ok(()) => Ok(true),
        // The device does not use this policy.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(Error::io(
            format!("cannot write {line:?} to {}/{file}", dir.display()),
            e,
        )),
    };
    // io.bfq.weight exists once BFQ is loaded, whichever scheduler this device uses.
    if dir.join("io.bfq.weight").exists() && write("io.bfq.weight", format!("{major}:{minor} {w}"))?
    {
        return Ok(());
    }
    if write(
        "io.weight",
        format!("{major}:{minor} {}", blkio_to_io_weight(w)),
    )? {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "cannot apply blockIO.weightDevice {major}:{minor}: the device uses neither BFQ nor the io cost controller (enable it in io.cost.qos)"
    )))
}

pub fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        need(dir, "memory", "memory limits")?;
        if let Some(l) = m.limit() {
            set(
                dir,
                "memory.max",
                if l < 0 {
                    "max".to_string()
                } else {
                    l.to_string()
                },
            )?;
        }
        if let Some(s) = m.swap() {
            // v1's swap is memory+swap; v2's swap.max is swap alone. An update that gives only
            // the swap takes the limit the cgroup has.
            let limit = m.limit().or_else(|| {
                fs::read_to_string(dir.join("memory.max"))
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
            });
            let v = match (s, limit) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            set(dir, "memory.swap.max", v)?;
        }
        if let Some(v) = m.reservation() {
            set(dir, "memory.low", v)?;
        }
        if m.swappiness().is_some() {
            return Err(Error::Unsupported(
                "memory.swappiness does not exist on cgroup v2".into(),
            ));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::Unsupported(
                "memory.disableOOMKiller does not exist on cgroup v2".into(),
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares() {
            need(dir, "cpu", "cpu.shares")?;
            set(dir, "cpu.weight", shares_to_weight(v))?;
        }
        if c.quota().is_some() || c.period().is_some() {
            need(dir, "cpu", "cpu.quota")?;
            let quota = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            set(
                dir,
                "cpu.max",
                format!("{quota} {}", c.period().unwrap_or(100_000)),
            )?;
        }
        if let Some(v) = c.idle() {
            need(dir, "cpu", "cpu.idle")?;
            set_since(dir, "cpu.idle", v, ("cpu.idle", "5.15"))?;
        }
        if let Some(v) = c.burst() {
            need(dir, "cpu", "cpu.burst")?;
            set_since(dir, "cpu.max.burst", v, ("cpu.burst", "5.14"))?;
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return Err(Error::Unsupported(
                "cpu.realtimePeriod/realtimeRuntime do not exist on cgroup v2".into(),
            ));
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            need(dir, "cpuset", "cpu.cpus")?;
            set(dir, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            need(dir, "cpuset", "cpu.mems")?;
            set(dir, "cpuset.mems", v)?;
        }
    }
    if let Some(p) = r.pids() {
        need(dir, "pids", "pids.limit")?;
        let v = p.limit();
        set(
            dir,
            "pids.max",
            if v > 0 { v.to_string() } else { "max".into() },
        )?;
    }
    if let Some(b) = r.block_io() {
        need(dir, "io", "blockIO")?;
        if let Some(w) = b.weight() {
            set(
                dir,
                "io.weight",
                format!("default {}", blkio_to_io_weight(w)),
            )?;
        }
        if b.leaf_weight().is_some() {
            return Err(Error::Unsupported(
                "blockIO.leafWeight does not exist on cgroup v2".into(),
            ));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                weight_device(dir, d.major(), d.minor(), w)?;
            }
        }
        for (list, key) in [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ] {
            for d in list.iter().flatten() {
                set(
                    dir,
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        need(dir, "hugetlb", "hugepageLimits")?;
        set(dir, &format!("hugetlb.{}.max", h.page_size()), h.limit())?;
    }
    if r.network().is_some() {
        return Err(Error::Unsupported(
            "linux.resources.network (net_cls/net_prio) does not exist on cgroup v2".into(),
        ));
    }
    let rdma = super::rdma_lines(r);
    if !rdma.is_empty() {
        need(dir, "rdma", "rdma limits")?;
        for line in rdma {
            set(dir, "rdma.max", line)?;
        }
    }
    if let Some(u) = r.unified() {
        for (k, v) in u {
            if k.contains('/') || k.starts_with('.') {
                return Err(Error::InvalidConfig(format!(
                    "unified key {k:?} is not a cgroup file name"
                )));
            }
            set(dir, k, v)?;
        }
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        super::ebpf::apply(dir, &super::device_rules(r)?)?;
    }
    Ok(())
}

pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    set(dir, "cgroup.freeze", if frozen { 1 } else { 0 })?;
    // Usually a few milliseconds; on a loaded or emulated machine (the kernel matrix's TCG
    // guests) a second was seen not to be enough, so up to ten.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if is_frozen(dir) == frozen {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::Unsupported(format!(
        "cgroup {} did not change its frozen state",
        dir.display()
    )))
}

pub fn is_frozen(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l.trim() == "frozen 1"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
