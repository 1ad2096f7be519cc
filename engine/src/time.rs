//! Times as the records keep them: RFC 3339 stamps, and seconds since the epoch.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> String {
    husk_runtime::util::rfc3339_now()
}

/// RFC 3339 with nanoseconds of a time in nanoseconds since the epoch.
pub fn rfc3339_nanos(nanos: i64) -> String {
    husk_runtime::util::rfc3339(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
}

pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch of an RFC 3339 time (`Z` or a ±hh:mm offset).
pub fn parse(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || time.len() < 8 {
        return None;
    }
    let t: Vec<i64> = time[..8]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let rest = &time[8..];
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (format!("0.{}", &r[..end]).parse::<f64>().ok()?, &r[end..])
        }
        None => (0.0, rest),
    };
    let offset = match zone {
        "Z" | "z" | "" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let secs = (era * 146_097 + doe - 719_468) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] - offset;
    Some(secs as f64 + frac)
}

/// `--since`: an RFC 3339 time, Unix seconds, or a duration back from now (10s, 5m, 2h).
pub fn since(s: &str) -> Option<f64> {
    if let Some(t) = parse(s) {
        return Some(t);
    }
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(now_secs() - n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_since() {
        assert_eq!(parse("1970-01-01T00:00:10Z"), Some(10.0));
        assert_eq!(parse("1970-01-01T01:00:10+01:00"), Some(10.0));
        assert_eq!(parse("2001-09-09T01:46:40.5Z"), Some(1_000_000_000.5));
        let stamp = husk_runtime::util::rfc3339(1_000_000_000, 250_000_000);
        assert_eq!(parse(&stamp), Some(1_000_000_000.25));
        assert_eq!(parse("yesterday"), None);
        assert!(since("10m").is_some_and(|t| (now_secs() - t - 600.0).abs() < 5.0));
        assert_eq!(since("1000"), Some(1000.0));
        assert_eq!(since("soon"), None);
    }
}
