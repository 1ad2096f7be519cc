//! `events`: a container's resource usage and OOM kills as one JSON object a line, the shape
//! `runc events` prints ({"type":"stats"|"oom","id":…,"data":…}).

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cgroups::stats::{oom_kills, read_stats, Stats};
use crate::container::Runtime;
use crate::error::{Error, Result};
use crate::state::Status;

/// Go's duration syntax as runc takes it: "500ms", "5s", "1m30s", "2h".
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidConfig(format!("invalid duration {s:?} (use e.g. 500ms, 5s, 1m)"));
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = tail;
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

impl Runtime {
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let record = self.record(id)?;
        let cg = record
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::Unsupported(format!("container {id} has no cgroup")))?;
        Ok(read_stats(cg))
    }

    /// With `once`, one stats event. Otherwise stats every `interval` and an "oom" event each
    /// time the kernel's OOM killer kills in the container, until the container stops.
    pub fn events(
        &self,
        id: &str,
        interval: Duration,
        once: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let emit = |out: &mut dyn Write, v: serde_json::Value| -> Result<()> {
            writeln!(out, "{v}")
                .and_then(|_| out.flush())
                .map_err(|e| Error::io("cannot write events", e))
        };
        let record = self.record(id)?;
        let cg = record
            .cgroup
            .clone()
            .ok_or_else(|| Error::Unsupported(format!("container {id} has no cgroup")))?;
        if once {
            return emit(
                out,
                json!({"type": "stats", "id": id, "data": read_stats(&cg)}),
            );
        }
        let mut ooms = oom_kills(&cg);
        let mut next_stats = Instant::now();
        // OOM kills are checked often; stats go out at the asked interval.
        let tick = interval.min(Duration::from_millis(100));
        loop {
            // OOM first: a container the OOM killer just ended still gets its event.
            let now_ooms = oom_kills(&cg);
            if now_ooms > ooms {
                ooms = now_ooms;
                emit(out, json!({"type": "oom", "id": id}))?;
            }
            match self.state(id) {
                Ok(st) if st.status != Status::Stopped => {}
                _ => return Ok(()),
            }
            if Instant::now() >= next_stats {
                emit(
                    out,
                    json!({"type": "stats", "id": id, "data": read_stats(&cg)}),
                )?;
                next_stats += interval;
            }
            std::thread::sleep(tick);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "5", "s", "5x", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
