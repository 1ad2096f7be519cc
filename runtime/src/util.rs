//! Small helpers shared by several modules: time stamps, id checks, file writes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Context, Error, Result};

/// RFC 3339 UTC time with nanoseconds, as Go's time.RFC3339Nano prints it (runc, containerd).
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Container ids become directory names under --root: keep them to runc's character set.
/// A Linux list of numbers ("0-3,7", as cpusets and NUMA node lists are written), each below
/// `limit`; None when it does not parse.
pub fn parse_list(s: &str, limit: usize) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
        if lo > hi || hi >= limit {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// Write `data` to `path` atomically: a temp file in the same directory, renamed over it, so a
/// reader sees the old or the new content, never a mix. No fsync: runtime state lives under
/// /run, which does not outlive a reboot anyway, and the fsync was a measurable part of start.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.ctx_path("cannot write", path)
}

/// Write a kernel control file (procfs, sysfs, cgroupfs): one write, no truncation games.
pub fn write_file(path: &Path, data: &str) -> Result<()> {
    fs::write(path, data)
        .map_err(|e| Error::io(format!("cannot write {data:?} to {}", path.display()), e))
}

/// The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), used to
/// tell a live container init from a recycled pid.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// /proc/PID/stat in one read (a sweep over a thousand holders reads a thousand of them;
/// `read_to_string` would take five reads each, /proc giving no size to start from).
fn read_proc_stat(pid: i32) -> Option<String> {
    use std::io::Read;
    let mut f = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let n = f.read(&mut buf).ok()?;
    if n < buf.len() {
        return String::from_utf8(buf[..n].to_vec()).ok();
    }
    let mut text = String::from_utf8(buf.to_vec()).ok()?;
    f.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The one-letter state of a process (R, S, D, Z, T, ...).
pub fn process_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.chars().next()
}

/// Process `pid` is the one that started at `start` (clock ticks since boot) and has not yet
/// exited. State and start time come from one read of its stat file: read apart, a process
/// reaped between the two reads would look alive (its start time matched, then no state).
pub fn process_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(stat) = read_proc_stat(pid) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let state = rest.chars().next();
    let started = rest.split(' ').nth(19).and_then(|s| s.parse::<u64>().ok());
    started == Some(start) && !matches!(state, Some('Z' | 'X') | None)
}

/// A signal by number, or by name with or without "SIG" (`KILL`, `sigterm`, `9`).
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_000_000, 0), "2026-11-18T11:06:40.000000000Z");
    }

    #[test]
    fn ids_are_checked() {
        for good in ["a", "c-1", "k8s_pod.1+x", "ABC_123"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "../x", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_time_of_self_is_readable() {
        let pid = std::process::id() as i32;
        assert!(process_start_time(pid).is_some());
        assert!(matches!(process_state(pid), Some('R' | 'S')));
        let start = process_start_time(pid).expect("own start time");
        assert!(process_alive(pid, start));
        assert!(
            !process_alive(pid, start + 1),
            "another start time is another process"
        );
        assert!(!process_alive(0, start));
    }
}
