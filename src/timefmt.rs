//! Times as docker prints them: RFC 3339 stamps, "3 minutes ago", "Up 5 seconds".

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> String {
    husk_runtime::util::rfc3339_now()
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

/// docker's units.HumanDuration.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    let (m, h) = (s / 60, s / 3600);
    match () {
        _ if secs < 1.0 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// "3 minutes ago"; "N/A" for a time that does not parse.
pub fn ago(rfc3339: &str) -> String {
    match parse(rfc3339) {
        Some(t) => format!("{} ago", human_duration(now_secs() - t)),
        None => "N/A".into(),
    }
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
    fn parses_and_prints_like_docker() {
        assert_eq!(parse("1970-01-01T00:00:10Z"), Some(10.0));
        assert_eq!(parse("1970-01-01T01:00:10+01:00"), Some(10.0));
        assert_eq!(parse("2001-09-09T01:46:40.5Z"), Some(1_000_000_000.5));
        let stamp = husk_runtime::util::rfc3339(1_000_000_000, 250_000_000);
        assert_eq!(parse(&stamp), Some(1_000_000_000.25));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(human_duration(0.2), "Less than a second");
        assert_eq!(human_duration(5.0), "5 seconds");
        assert_eq!(human_duration(61.0), "About a minute");
        assert_eq!(human_duration(3.0 * 3600.0), "3 hours");
        assert_eq!(human_duration(3.0 * 86400.0), "3 days");
        assert!(since("10m").is_some_and(|t| (now_secs() - t - 600.0).abs() < 5.0));
        assert_eq!(since("1000"), Some(1000.0));
        assert_eq!(since("soon"), None);
    }
}
