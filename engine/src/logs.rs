//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`, so log shippers that read
//! docker's files read ours; `read` gives them back, line by line, following if asked.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::options::LogOptions;
use crate::store::{self, Status};
use crate::time;

/// Which of the container's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a container's log, as it wrote it (with its newline, unless the line was cut
/// at 16 KiB or the container ended without one).
#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: Stream,
    /// When it was written, RFC 3339 with nanoseconds.
    pub time: String,
    pub text: String,
}

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
    /// Where the last whole line ends (the monitor is the log's one writer).
    end: u64,
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
        let end = file
            .metadata()
            .with_context(|| format!("cannot read the log {}", path.display()))?
            .len();
        Ok(Writer {
            file,
            end,
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) {
        let line = Line {
            log: String::from_utf8_lossy(bytes),
            stream: if stream == 0 { "stdout" } else { "stderr" },
            time: time::now(),
        };
        if let Ok(mut s) = serde_json::to_vec(&line) {
            s.push(b'\n');
            // A full disk loses log lines, never the container; and a line written in part
            // is cut back off, or the next one would be glued to it and lost too.
            match self.file.write_all(&s) {
                Ok(()) => self.end += s.len() as u64,
                Err(_) => {
                    let _ = self.file.set_len(self.end);
                }
            }
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

/// Hand `line` to `each` unless it is cut off (a crash mid-write) or older than `since`.
fn emit_line(
    line: &str,
    since: Option<f64>,
    each: &mut dyn FnMut(LogLine) -> Result<()>,
) -> Result<()> {
    let Ok(l) = serde_json::from_str::<Line>(line) else {
        return Ok(()); // a line cut off by a crash
    };
    if let Some(s) = since {
        if time::parse(&l.time).is_some_and(|t| t < s) {
            return Ok(());
        }
    }
    each(LogLine {
        stream: if l.stream == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        },
        time: l.time,
        text: l.log.into_owned(),
    })
}

/// The log of container `id`, a line at a time to `each`; with `follow`, until the container
/// stops and its last lines are read. An error from `each` ends the reading with that error.
pub fn read(
    root: &Path,
    id: &str,
    opts: &LogOptions,
    each: &mut dyn FnMut(LogLine) -> Result<()>,
) -> Result<()> {
    let path = store::log_path(root, id);
    let since = opts.since;
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !opts.follow => return Ok(()),
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
    let skip = opts.tail.map_or(0, |n| lines.len().saturating_sub(n));
    for l in &lines[skip..] {
        emit_line(l, since, each)?;
    }
    if !opts.follow {
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
                emit_line(&std::mem::take(&mut partial), since, each)?;
            }
            continue;
        }
        let running = store::Container::load(root, id)
            .map(|c| c.observed().status == Status::Running)
            .unwrap_or(false);
        if !running {
            while reader.read_line(&mut partial)? > 0 {
                if partial.ends_with('\n') {
                    emit_line(&std::mem::take(&mut partial), since, each)?;
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
