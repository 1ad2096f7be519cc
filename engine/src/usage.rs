//! What a container used in one run (`run --report`, and `State.Usage` in `inspect`), read
//! from its cgroup as it ends, before the cgroup goes: CPU, peak memory, I/O, peak pids, OOM
//! kills. On cgroup v1 and v2. Where the kernel keeps no peak (v2's `memory.peak` came in
//! Linux 5.19, `pids.peak` later, and v1's pids controller has none), a sampler thread reads
//! the current values while the container runs; without one the figure is unknown (null),
//! never a made-up 0.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use husk_runtime::cgroups::{stats, CgroupPaths};
use serde::{Deserialize, Serialize};

/// One run's figures. Sizes in bytes, times in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// From the start of the container's process to its exit.
    pub wall_seconds: f64,
    pub cpu_user_seconds: f64,
    pub cpu_system_seconds: f64,
    /// The most memory (anonymous and page cache) its cgroup held at once; null where the
    /// kernel keeps no peak and nothing sampled it.
    pub memory_peak_bytes: Option<u64>,
    /// Bytes its processes read from and wrote to block devices (what reached a disk, not
    /// what stayed in the page cache or went to a tmpfs).
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// The most processes (threads included) it had at once; null as memory's peak.
    pub pids_peak: Option<u64>,
    /// Processes the kernel's OOM killer killed in it.
    pub oom_kills: u64,
    pub exit_code: i32,
    /// Why it ended, in words: `exited with code 0`, `killed by SIGKILL`, `OOM killed`,
    /// `killed after its --timeout of 5 s`.
    pub exit_reason: String,
}

fn number(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The kernel's own peaks: (memory, pids), each None where the kernel keeps none.
fn kernel_peaks(paths: &CgroupPaths) -> (Option<u64>, Option<u64>) {
    let memory = match paths {
        CgroupPaths::V1(_) => paths
            .controller_dir("memory")
            .and_then(|d| number(d, "memory.max_usage_in_bytes")),
        CgroupPaths::V2(d) => number(d, "memory.peak"),
    };
    let pids = match paths {
        CgroupPaths::V1(_) => None,
        CgroupPaths::V2(d) => number(d, "pids.peak"),
    };
    (memory, pids)
}

/// Reads memory and pids every 50 ms while the container runs, keeping the highest, where
/// the kernel keeps no peak of its own.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    memory: Arc<AtomicU64>,
    pids: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// None when the kernel keeps both peaks (nothing to sample) or the thread cannot start.
    pub fn start(paths: &CgroupPaths) -> Option<Sampler> {
        let (m, p) = kernel_peaks(paths);
        if m.is_some() && p.is_some() {
            return None;
        }
        let mem_dir = paths.controller_dir("memory")?.to_path_buf();
        let pids_dir = paths.controller_dir("pids")?.to_path_buf();
        let mem_file = match paths {
            CgroupPaths::V1(_) => "memory.usage_in_bytes",
            CgroupPaths::V2(_) => "memory.current",
        };
        let stop = Arc::new(AtomicBool::new(false));
        let memory = Arc::new(AtomicU64::new(0));
        let pids = Arc::new(AtomicU64::new(0));
        let (s, mm, pp) = (stop.clone(), memory.clone(), pids.clone());
        let thread = std::thread::Builder::new()
            .name("usage".into())
            .spawn(move || {
                // Signals are the monitor's main thread's to take.
                let _ = nix::sys::signal::SigSet::all().thread_block();
                while !s.load(Ordering::Relaxed) {
                    if let Some(v) = number(&mem_dir, mem_file) {
                        mm.fetch_max(v, Ordering::Relaxed);
                    }
                    if let Some(v) = number(&pids_dir, "pids.current") {
                        pp.fetch_max(v, Ordering::Relaxed);
                    }
                    std::thread::park_timeout(Duration::from_millis(50));
                }
            })
            .ok()?;
        Some(Sampler {
            stop,
            memory,
            pids,
            thread: Some(thread),
        })
    }

    /// Stop sampling; (memory, pids) peaks seen, 0 for one never read.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        (
            self.memory.load(Ordering::Relaxed),
            self.pids.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The figures of a run that ended now, from its cgroup (still there) and the sampler's.
pub fn collect(
    paths: &CgroupPaths,
    sampler: Option<Sampler>,
    wall: Duration,
    exit_code: i32,
    exit_reason: String,
) -> ResourceUsage {
    let s = stats::read_stats(paths);
    let (mut memory, mut pids) = kernel_peaks(paths);
    if let Some(sampler) = sampler {
        let (m, p) = sampler.finish();
        // A sampled figure only where it saw something: 0 would claim what nobody measured.
        if m > 0 {
            memory = Some(memory.unwrap_or(0).max(m));
        }
        if p > 0 {
            pids = Some(pids.unwrap_or(0).max(p));
        }
    }
    let bytes = |op: &str| -> u64 {
        s.blkio
            .io_service_bytes_recursive
            .iter()
            .filter(|e| e.op.eq_ignore_ascii_case(op))
            .map(|e| e.value)
            .sum()
    };
    ResourceUsage {
        wall_seconds: wall.as_secs_f64(),
        cpu_user_seconds: s.cpu.usage.user as f64 / 1e9,
        cpu_system_seconds: s.cpu.usage.kernel as f64 / 1e9,
        memory_peak_bytes: memory,
        io_read_bytes: bytes("read"),
        io_write_bytes: bytes("write"),
        pids_peak: pids,
        oom_kills: stats::oom_kills(paths),
        exit_code,
        exit_reason,
    }
}

/// Why a run ended, in words, from its exit code and what the engine knows of it.
pub fn exit_reason(code: i32, oom_killed: bool, timed_out: Option<u64>) -> String {
    if let Some(secs) = timed_out {
        return format!("killed after its --timeout of {secs} s");
    }
    if oom_killed && code == 128 + libc::SIGKILL {
        return "OOM killed".into();
    }
    if code > 128 && code < 128 + 65 {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(code - 128) {
            return format!("killed by {}", sig.as_str());
        }
    }
    format!("exited with code {code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_figures_and_unknown_peaks() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = |f: &str, s: &str| std::fs::write(d.path().join(f), s).expect("write");
        w(
            "cpu.stat",
            "usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\n",
        );
        w(
            "io.stat",
            "254:0 rbytes=4096 wbytes=104857600 rios=1 wios=25\n8:0 rbytes=1 wbytes=2\n",
        );
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        let paths = CgroupPaths::V2(d.path().to_path_buf());
        // Linux before 5.19: no memory.peak, no pids.peak, nothing sampled: unknown.
        let u = collect(
            &paths,
            None,
            Duration::from_millis(2500),
            137,
            "OOM killed".into(),
        );
        assert_eq!(u.cpu_user_seconds, 2.5);
        assert_eq!(u.cpu_system_seconds, 1.0);
        assert_eq!(u.io_read_bytes, 4097);
        assert_eq!(u.io_write_bytes, 104857602);
        assert_eq!(u.memory_peak_bytes, None);
        assert_eq!(u.pids_peak, None);
        assert_eq!(u.oom_kills, 1);
        w("memory.peak", "209715200\n");
        w("pids.peak", "7\n");
        let u = collect(&paths, None, Duration::ZERO, 0, String::new());
        assert_eq!(u.memory_peak_bytes, Some(209715200));
        assert_eq!(u.pids_peak, Some(7));
        let json = serde_json::to_value(&u).expect("json");
        assert_eq!(json["memory_peak_bytes"], 209715200);
        assert!(json["cpu_user_seconds"].is_f64());
    }

    #[test]
    fn reasons_say_what_ended_it() {
        assert_eq!(exit_reason(0, false, None), "exited with code 0");
        assert_eq!(exit_reason(137, true, None), "OOM killed");
        assert_eq!(exit_reason(137, false, None), "killed by SIGKILL");
        assert_eq!(
            exit_reason(137, false, Some(5)),
            "killed after its --timeout of 5 s"
        );
        assert_eq!(exit_reason(255, false, None), "exited with code 255");
    }
}
