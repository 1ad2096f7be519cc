//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`, so log shippers that read
//! docker's files read ours. `husk logs` reads them back.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};
use husk_cli::husk::LogsArgs;
use serde::{Deserialize, Serialize};

use crate::containers::{self, Status};
use crate::timefmt;

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    log: std::borrow::Cow<'a, str>,
    stream: &'a str,
    time: String,
}

/// Splits a stream into lines for the log; a line longer than 16 KiB is written in parts, as
/// docker does, and what is left at the end is written without a newline.
pub struct Writer {
    file: File,
    pending: [Vec<u8>; 2],
}

const MAX_LINE: usize = 16 * 1024;

impl Writer {
    pub fn open(path: &Path) -> Result<Writer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log {}", path.display()))?;
        Ok(Writer {
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) {
        let line = Line {
            log: String::from_utf8_lossy(bytes),
            stream: if stream == 0 { "stdout" } else { "stderr" },
            time: timefmt::now(),
        };
        if let Ok(mut s) = serde_json::to_vec(&line) {
            s.push(b'\n');
            // A full disk loses log lines, never the container.
            let _ = self.file.write_all(&s);
        }
    }

    /// Bytes the container wrote to stdout (0) or stderr (1).
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.pending[stream]);
        buf.extend_from_slice(data);
        // Entries end at a newline or at 16 KiB, however the bytes arrived.
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            let end = match rest.iter().position(|b| *b == b'\n') {
                Some(nl) if nl < MAX_LINE => nl + 1,
                _ if rest.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            self.emit(stream, &buf[start..start + end]);
            start += end;
        }
        self.pending[stream] = buf[start..].to_vec();
    }

    pub fn finish(&mut self) {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.pending[s]);
            if !rest.is_empty() {
                self.emit(s, &rest);
            }
        }
    }
}

fn print(line: &str, a: &LogsArgs, since: Option<f64>) -> Result<()> {
    let Ok(l) = serde_json::from_str::<Line>(line) else {
        return Ok(()); // a line cut off by a crash
    };
    if let Some(s) = since {
        if timefmt::parse(&l.time).is_some_and(|t| t < s) {
            return Ok(());
        }
    }
    let text = if a.timestamps {
        format!("{} {}", l.time, l.log)
    } else {
        l.log.into_owned()
    };
    if l.stream == "stderr" {
        std::io::stderr().write_all(text.as_bytes())?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// `husk logs`.
pub fn logs(root: &Path, a: &LogsArgs) -> Result<()> {
    let c = containers::find(root, &a.container)?;
    let path = containers::log_path(root, &c.id);
    let since = match &a.since {
        Some(s) => Some(timefmt::since(s).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid --since {s:?}: use RFC 3339, Unix seconds or a duration like 10m"
            )
        })?),
        None => None,
    };
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number or \"all\""))?,
        ),
    };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !a.follow => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut reader = BufReader::new(&mut file);
    let mut lines: Vec<String> = Vec::new();
    let mut buf = String::new();
    while reader.read_line(&mut buf)? > 0 {
        if buf.ends_with('\n') {
            lines.push(std::mem::take(&mut buf));
        } else {
            break; // a line still being written: follow picks it up
        }
    }
    let pos = reader.stream_position()? - buf.len() as u64;
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for l in &lines[skip..] {
        print(l, a, since)?;
    }
    if !a.follow {
        return Ok(());
    }
    file.seek(SeekFrom::Start(pos))?;
    let mut reader = BufReader::new(file);
    let mut partial = String::new();
    loop {
        let mut chunk = String::new();
        let n = reader.read_line(&mut chunk)?;
        if n > 0 {
            partial.push_str(&chunk);
            if partial.ends_with('\n') {
                print(&std::mem::take(&mut partial), a, since)?;
            }
            continue;
        }
        // Nothing new: stop once the container has stopped (and its last lines are read).
        let running = containers::Container::load(root, &c.id)
            .map(|c| c.observed().status == Status::Running)
            .unwrap_or(false);
        if !running {
            // The last lines, including one half-read when the container stopped.
            while reader.read_line(&mut partial)? > 0 {
                if partial.ends_with('\n') {
                    print(&std::mem::take(&mut partial), a, since)?;
                }
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(chunks: &[&[u8]]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = Writer::open(&path).unwrap();
        for c in chunks {
            w.write(0, c);
        }
        w.finish();
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn lines_split_the_same_however_the_bytes_arrive() {
        let long = format!("{}\n", "x".repeat(MAX_LINE + 10));
        let whole = entries(&[long.as_bytes()]);
        let (a, b) = long.as_bytes().split_at(100);
        assert_eq!(whole, entries(&[a, b]));
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].len(), MAX_LINE);
        assert_eq!(
            entries(&[b"one\ntw", b"o\nthree"]),
            ["one\n", "two\n", "three"]
        );
    }
}
