//! The event journal `husk events` reads. docker's daemon keeps events in memory; husk has no
//! daemon, so each command appends what it did to `<root>/events.jsonl`: one JSON line in
//! docker's event shape per event, written with one `write` on an `O_APPEND` file, so lines of
//! husks running at once never interleave. Past `MAX_BYTES` the file becomes
//! `events.jsonl.1` (the one before is dropped): the journal stays bounded, and `events`
//! reads both.
//!
//! Writing an event never fails a command: a store on a full disk loses the event, not the
//! container.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const MAX_BYTES: u64 = 1 << 20;

/// One event, as docker's API and `docker events --format '{{json .}}'` give it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, `network` or `volume`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `health_status: healthy`, `pull`, `untag`, …
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    /// Seconds since the epoch, and the same in nanoseconds.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// docker's older fields, kept for scripts that still read them: the action, the
    /// actor's id and (for containers) the image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

fn path(root: &Path) -> PathBuf {
    root.join("events.jsonl")
}

fn rotated(root: &Path) -> PathBuf {
    root.join("events.jsonl.1")
}

/// Append one event: `kind` (`container`, …), `action`, the actor's id and attributes.
pub fn emit(root: &Path, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
    let time_nano = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let attributes: BTreeMap<String, String> = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let legacy = kind == "container";
    let event = Event {
        kind: kind.into(),
        action: action.into(),
        status: if legacy { action.into() } else { String::new() },
        id: if legacy { id.into() } else { String::new() },
        from: if legacy {
            attributes.get("image").cloned().unwrap_or_default()
        } else {
            String::new()
        },
        actor: Actor {
            id: id.into(),
            attributes,
        },
        scope: "local".into(),
        time: time_nano / 1_000_000_000,
        time_nano,
    };
    let Ok(mut line) = serde_json::to_vec(&event) else {
        return;
    };
    line.push(b'\n');
    let p = path(root);
    if fs::metadata(&p).is_ok_and(|m| m.len() > MAX_BYTES) {
        // Two husks may both rotate: the second moves a nearly empty file over the first's,
        // losing the older half of the journal, never a line being written.
        let _ = fs::rename(&p, rotated(root));
    }
    if let Ok(mut f) = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&p)
    {
        let _ = f.write_all(&line);
    }
}

/// Which events `events` gives: each key's values OR'ed, the keys AND'ed (docker's rule).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub by_key: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// `KEY=VALUE` with the keys docker's `events --filter` takes.
    pub fn add(&mut self, filter: &str) -> crate::error::Result<()> {
        let Some((k, v)) = filter.split_once('=') else {
            return Err(crate::error::Error::Invalid(format!(
                "invalid filter {filter:?}: use KEY=VALUE"
            )));
        };
        const KEYS: [&str; 7] = [
            "container",
            "event",
            "image",
            "label",
            "network",
            "type",
            "volume",
        ];
        if !KEYS.contains(&k) {
            return Err(crate::error::Error::Invalid(format!(
                "invalid filter {k:?}: husk's events know {}",
                KEYS.join(", ")
            )));
        }
        self.by_key.entry(k.into()).or_default().push(v.into());
        Ok(())
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.by_key
            .iter()
            .all(|(k, values)| values.iter().any(|v| one_matches(e, k, v)))
    }
}

fn one_matches(e: &Event, key: &str, v: &str) -> bool {
    let attr = |name: &str| e.actor.attributes.get(name).map(String::as_str);
    let own_id_or_name =
        |kind: &str| e.kind == kind && (e.actor.id.starts_with(v) || attr("name") == Some(v));
    match key {
        "container" => own_id_or_name("container"),
        "network" => own_id_or_name("network"),
        "volume" => own_id_or_name("volume"),
        // `health_status: healthy` matches `event=health_status` too, as in docker.
        "event" => e.action == v || e.action.split(':').next() == Some(v),
        "type" => e.kind == v,
        "image" => {
            attr("image") == Some(v)
                || (e.kind == "image" && (e.actor.id == v || attr("name") == Some(v)))
        }
        "label" => match v.split_once('=') {
            Some((lk, lv)) => attr(lk) == Some(lv),
            None => attr(v).is_some(),
        },
        _ => false,
    }
}

/// Where reading has got to in the journal: the file and the offset in it.
#[derive(Debug, Default)]
pub struct Cursor {
    inode: u64,
    offset: u64,
}

/// Every event in the journal at or after `since_nano` (oldest first), and where the
/// journal ends now, for `follow`.
pub fn read(root: &Path, since_nano: i64) -> (Vec<Event>, Cursor) {
    let mut out = Vec::new();
    read_lines(&rotated(root), 0, since_nano, &mut out);
    let cursor = match fs::File::open(path(root)) {
        Ok(f) => {
            let inode = f.metadata().map(|m| m.ino()).unwrap_or(0);
            let offset = read_from(f, 0, since_nano, &mut out);
            Cursor { inode, offset }
        }
        Err(_) => Cursor::default(),
    };
    (out, cursor)
}

/// Events appended since `cursor` (after waiting up to `wait` for some), moving it on. A
/// journal rotated meanwhile is read from the start of its new file.
pub fn follow(root: &Path, cursor: &mut Cursor, wait: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Ok(f) = fs::File::open(path(root)) {
            let inode = f.metadata().map(|m| m.ino()).unwrap_or(0);
            if inode != cursor.inode {
                if cursor.inode != 0 {
                    // The rest of the file we were reading is events.jsonl.1 now.
                    read_lines(&rotated(root), cursor.offset, 0, &mut out);
                }
                *cursor = Cursor { inode, offset: 0 };
            }
            cursor.offset = read_from(f, cursor.offset, 0, &mut out);
        }
        if !out.is_empty() || std::time::Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_lines(p: &Path, offset: u64, since_nano: i64, out: &mut Vec<Event>) {
    if let Ok(f) = fs::File::open(p) {
        read_from(f, offset, since_nano, out);
    }
}

/// Whole lines from `offset` on; the offset after the last whole line (a line being
/// written is read next time).
fn read_from(mut f: fs::File, offset: u64, since_nano: i64, out: &mut Vec<Event>) -> u64 {
    if f.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut reader = std::io::BufReader::new(&mut f);
    let mut at = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return at,
            Ok(n) if line.last() == Some(&b'\n') => {
                at += n as u64;
                // A line a full disk cut short is skipped, not fatal.
                if let Ok(e) = serde_json::from_slice::<Event>(&line) {
                    if e.time_nano >= since_nano {
                        out.push(e);
                    }
                }
            }
            Ok(_) => return at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_filter_and_follow_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        emit(
            root,
            "container",
            "create",
            "abc123",
            &[("name", "web"), ("image", "busybox")],
        );
        emit(
            root,
            "container",
            "health_status: healthy",
            "abc123",
            &[("name", "web")],
        );
        emit(
            root,
            "image",
            "pull",
            "busybox:latest",
            &[("name", "busybox:latest")],
        );
        let (all, mut cursor) = read(root, 0);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].status, "create");
        assert_eq!(all[0].from, "busybox");
        assert_eq!(
            all[2].id, "",
            "docker's legacy fields are for containers only"
        );

        let mut f = EventFilter::default();
        f.add("event=health_status").unwrap();
        assert_eq!(all.iter().filter(|e| f.matches(e)).count(), 1);
        let mut f = EventFilter::default();
        f.add("container=web").unwrap();
        f.add("type=container").unwrap();
        assert_eq!(all.iter().filter(|e| f.matches(e)).count(), 2);
        let mut f = EventFilter::default();
        f.add("image=busybox").unwrap();
        assert_eq!(all.iter().filter(|e| f.matches(e)).count(), 1);
        assert!(EventFilter::default().add("colour=red").is_err());
        assert!(EventFilter::default().add("container").is_err());

        // Nothing new: follow waits, then says so.
        assert!(follow(root, &mut cursor, Duration::from_millis(60)).is_empty());
        // A half-written line waits for its end.
        let mut raw = fs::OpenOptions::new()
            .append(true)
            .open(path(root))
            .unwrap();
        raw.write_all(b"{\"Type\":").unwrap();
        assert!(follow(root, &mut cursor, Duration::ZERO).is_empty());
        raw.write_all(b"\"x\"}\n").unwrap(); // not an event: skipped
        emit(root, "container", "start", "abc123", &[]);
        let new = follow(root, &mut cursor, Duration::ZERO);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].action, "start");

        // Rotation: the rest of the old file, then the new one.
        fs::write(path(root), "").unwrap();
        let big = vec![b' '; MAX_BYTES as usize + 1];
        fs::OpenOptions::new()
            .append(true)
            .open(path(root))
            .unwrap()
            .write_all(&big)
            .unwrap();
        let mut cursor = Cursor {
            inode: fs::metadata(path(root)).unwrap().ino(),
            offset: 0,
        };
        emit(root, "container", "die", "abc123", &[("exitCode", "3")]);
        assert!(fs::metadata(path(root)).unwrap().len() < 1000, "rotated");
        let new = follow(root, &mut cursor, Duration::ZERO);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].actor.attributes["exitCode"], "3");
    }
}
