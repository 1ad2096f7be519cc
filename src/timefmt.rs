//! Times as docker prints them: "3 minutes ago", "Up 5 seconds".

use husk_engine::time::{now_secs, parse};

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

/// A `--since`/`--until` flag: RFC 3339, Unix seconds, or a duration back from now; seconds
/// since the epoch.
pub fn time_arg(flag: &str, v: &Option<String>) -> anyhow::Result<Option<f64>> {
    v.as_ref()
        .map(|s| {
            husk_engine::time::since(s).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid {flag} {s:?}: use RFC 3339, Unix seconds or a duration like 10m"
                )
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_docker() {
        assert_eq!(human_duration(0.2), "Less than a second");
        assert_eq!(human_duration(5.0), "5 seconds");
        assert_eq!(human_duration(61.0), "About a minute");
        assert_eq!(human_duration(3.0 * 3600.0), "3 hours");
        assert_eq!(human_duration(3.0 * 86400.0), "3 days");
        assert_eq!(ago("yesterday"), "N/A");
    }
}
