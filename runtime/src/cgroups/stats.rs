//! Resource usage of a container's cgroup, in the JSON shape `runc events` prints (the `data` of
//! a "stats" event), read from v1 or v2 files. Missing files read as zero: a controller that is
//! not mounted has nothing to report.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::CgroupPaths;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    /// Nanoseconds.
    pub total: u64,
    pub kernel: u64,
    pub user: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    pub current: u64,
    /// 0 when unlimited.
    pub limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// A single number; "max" (v2) and absent files read as 0.
fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file).trim().parse().unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn flat_keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

pub fn read_stats(paths: &CgroupPaths) -> Stats {
    match paths {
        CgroupPaths::V1(_) => {
            let dir = |c: &str| {
                paths
                    .controller_dir(c)
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            v1_stats(
                &dir("cpu"),
                &dir("cpuacct"),
                &dir("memory"),
                &dir("pids"),
                &dir("blkio"),
            )
        }
        CgroupPaths::V2(d) => v2_stats(d),
    }
}

fn v1_stats(cpu: &Path, cpuacct: &Path, mem: &Path, pids: &Path, blkio: &Path) -> Stats {
    let mut s = Stats::default();
    // cpuacct.stat counts USER_HZ ticks.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let acct = flat_keyed(cpuacct, "cpuacct.stat");
    s.cpu.usage.total = num(cpuacct, "cpuacct.usage");
    s.cpu.usage.user = acct.get("user").copied().unwrap_or(0) * 1_000_000_000 / hz;
    s.cpu.usage.kernel = acct.get("system").copied().unwrap_or(0) * 1_000_000_000 / hz;
    s.cpu.usage.percpu = read(cpuacct, "cpuacct.usage_percpu")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let cs = flat_keyed(cpu, "cpu.stat");
    s.cpu.throttling = Throttling {
        periods: cs.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cs.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: cs.get("throttled_time").copied().unwrap_or(0),
    };
    let entry = |prefix: &str| MemoryEntry {
        limit: num(mem, &format!("{prefix}limit_in_bytes")),
        usage: num(mem, &format!("{prefix}usage_in_bytes")),
        max: num(mem, &format!("{prefix}max_usage_in_bytes")),
        failcnt: num(mem, &format!("{prefix}failcnt")),
    };
    s.memory.usage = entry("memory.");
    s.memory.swap = entry("memory.memsw.");
    s.memory.kernel = entry("memory.kmem.");
    s.memory.raw = flat_keyed(mem, "memory.stat");
    s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
    s.pids.current = num(pids, "pids.current");
    s.pids.limit = num(pids, "pids.max");
    let entries = |file: &str| -> Vec<BlkioEntry> {
        read(blkio, file)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (maj, min) = f.first()?.split_once(':')?;
                Some(BlkioEntry {
                    major: maj.parse().ok()?,
                    minor: min.parse().ok()?,
                    op: f.get(1)?.to_string(),
                    value: f.get(2)?.parse().ok()?,
                })
            })
            .collect()
    };
    s.blkio.io_service_bytes_recursive = entries("blkio.throttle.io_service_bytes_recursive");
    s.blkio.io_serviced_recursive = entries("blkio.throttle.io_serviced_recursive");
    s
}

fn v2_stats(d: &Path) -> Stats {
    let mut s = Stats::default();
    let cs = flat_keyed(d, "cpu.stat");
    let us = |k: &str| cs.get(k).copied().unwrap_or(0) * 1000;
    s.cpu.usage.total = us("usage_usec");
    s.cpu.usage.user = us("user_usec");
    s.cpu.usage.kernel = us("system_usec");
    s.cpu.throttling = Throttling {
        periods: cs.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cs.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    let events = flat_keyed(d, "memory.events");
    s.memory.usage = MemoryEntry {
        limit: num(d, "memory.max"),
        usage: num(d, "memory.current"),
        max: num(d, "memory.peak"),
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    s.memory.swap = MemoryEntry {
        limit: num(d, "memory.swap.max"),
        usage: num(d, "memory.swap.current"),
        max: num(d, "memory.swap.peak"),
        failcnt: 0,
    };
    s.memory.raw = flat_keyed(d, "memory.stat");
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.pids.current = num(d, "pids.current");
    s.pids.limit = num(d, "pids.max");
    for line in read(d, "io.stat").lines() {
        let mut f = line.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|x| x.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    s
}

/// How many processes of the container the kernel's OOM killer has killed so far.
pub fn oom_kills(paths: &CgroupPaths) -> u64 {
    match paths {
        CgroupPaths::V1(_) => paths
            .controller_dir("memory")
            .map(|d| {
                flat_keyed(d, "memory.oom_control")
                    .get("oom_kill")
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0),
        CgroupPaths::V2(d) => flat_keyed(d, "memory.events")
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_files_become_runc_shaped_stats() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = |f: &str, c: &str| fs::write(d.path().join(f), c).expect("write");
        w("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 2\nthrottled_usec 7\n");
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w("memory.stat", "anon 100\nfile 200\n");
        w("pids.current", "2\n");
        w("pids.max", "10\n");
        w(
            "io.stat",
            "254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let s = v2_stats(d.path());
        assert_eq!(s.cpu.usage.total, 1_500_000);
        assert_eq!(s.cpu.throttling.throttled_time, 7000);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.limit, 0, "max reads as unlimited");
        assert_eq!(s.memory.usage.failcnt, 3);
        assert_eq!(s.memory.cache, 200);
        assert_eq!(s.pids.limit, 10);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(oom_kills(&CgroupPaths::V2(d.path().to_path_buf())), 1);
        let v = serde_json::to_value(&s).expect("serializes");
        assert!(v["cpu"]["throttling"]["throttledPeriods"].is_u64());
        assert!(v["blkio"]["ioServiceBytesRecursive"].is_array());
    }
}
