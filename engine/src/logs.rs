//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`, so log shippers that read
//! docker's files read ours; `read` gives them back, line by line, following if asked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::options::{LogConfig, LogOptions};
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
    /// What `--log-opt labels=` and `env=` put on each line (docker's `attrs`).
    pub attrs: BTreeMap<String, String>,
    /// When it was written, RFC 3339 with nanoseconds.
    pub time: String,
    pub text: String,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    log: std::borrow::Cow<'a, str>,
    stream: &'a str,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    attrs: BTreeMap<String, String>,
    time: String,
}

/// Splits a stream into lines for the log; a line longer than 16 KiB is written in parts, as
/// docker does, and what is left at the end is written without a newline. With a size limit
/// the file is rotated as docker's json-file rotates it: `LOG` → `LOG.1` → `LOG.2` …, the
/// oldest dropped, `max_file` files in all.
pub struct Writer {
    attrs: BTreeMap<String, String>,
    compress: bool,
    /// None for the `none` driver: lines are split and dropped.
    file: Option<File>,
    path: PathBuf,
    /// Where the last whole line ends (the monitor is the log's one writer).
    end: u64,
    pending: [Vec<u8>; 2],
    max_size: Option<u64>,
    max_file: u32,
}

const MAX_LINE: usize = 16 * 1024;

fn open_append(path: &Path) -> Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))?;
    let end = file
        .metadata()
        .with_context(|| format!("cannot read the log {}", path.display()))?
        .len();
    Ok((file, end))
}

/// `LOG.n`, a rotated file of the log at `path`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// `LOG.n.gz`, a rotated file compressed.
fn rotated_gz(path: &Path, n: u32) -> PathBuf {
    let mut p = rotated(path, n).into_os_string();
    p.push(".gz");
    PathBuf::from(p)
}

/// The log's files, oldest first: the rotated ones (compressed or not), then the one being
/// written.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..)
        .map_while(|n| {
            let (plain, gz) = (rotated(path, n), rotated_gz(path, n));
            if plain.exists() {
                Some(plain)
            } else {
                gz.exists().then_some(gz)
            }
        })
        .collect();
    out.reverse();
    out.push(path.to_path_buf());
    out
}

/// gzip `from` into `to` (beside it, then renamed), and remove `from`.
fn compress(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut enc = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(File::create(&tmp)?),
            flate2::Compression::default(),
        );
        std::io::copy(&mut File::open(from)?, &mut enc)?;
        enc.finish()?.flush()?;
        std::fs::rename(&tmp, to)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    std::fs::remove_file(from)
}

/// The attributes a container's log lines carry: the labels and environment variables its
/// log config names, where it has them.
pub fn attrs_of(c: &crate::store::Container) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    for k in &c.log_config.labels {
        if let Some(v) = c.labels.get(k) {
            attrs.insert(k.clone(), v.clone());
        }
    }
    for k in &c.log_config.env {
        let value = c
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(k.as_str())?.strip_prefix('='));
        if let Some(v) = value {
            attrs.insert(k.clone(), v.to_string());
        }
    }
    attrs
}

impl Writer {
    /// The log at `path`; every line carries `attrs` (docker's, from `--log-opt labels=`
    /// and `env=`; see `attrs_of`).
    pub fn open(
        path: &Path,
        config: &LogConfig,
        attrs: BTreeMap<String, String>,
    ) -> Result<Writer> {
        let (file, end) = if config.driver == "none" {
            (None, 0)
        } else {
            let (f, end) = open_append(path)?;
            (Some(f), end)
        };
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            end,
            pending: [Vec::new(), Vec::new()],
            max_size: config.max_size,
            max_file: config.max_file.max(1),
            compress: config.compress,
            attrs,
        })
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let line = Line {
            log: String::from_utf8_lossy(bytes),
            stream: if stream == 0 { "stdout" } else { "stderr" },
            attrs: self.attrs.clone(),
            time: time::now(),
        };
        if let Ok(mut s) = serde_json::to_vec(&line) {
            s.push(b'\n');
            // A full disk loses log lines, never the container; and a line written in part
            // is cut back off, or the next one would be glued to it and lost too.
            match file.write_all(&s) {
                Ok(()) => self.end += s.len() as u64,
                Err(_) => {
                    let _ = file.set_len(self.end);
                }
            }
        }
        if self.max_size.is_some_and(|m| self.end >= m) {
            self.rotate();
        }
    }

    /// The file is full: shift the rotated ones up (the oldest falls off) and start a new
    /// one; with `max_file` 1, cut the one file back to empty, as docker does.
    fn rotate(&mut self) {
        if self.max_file <= 1 {
            if let Some(f) = &self.file {
                if f.set_len(0).is_ok() {
                    self.end = 0;
                }
            }
            return;
        }
        for n in (1..self.max_file - 1).rev() {
            let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            let _ = std::fs::rename(rotated_gz(&self.path, n), rotated_gz(&self.path, n + 1));
        }
        if std::fs::rename(&self.path, rotated(&self.path, 1)).is_ok() {
            if let Ok((f, end)) = open_append(&self.path) {
                self.file = Some(f);
                self.end = end;
            }
            // Compressed here, between two lines: the container's output waits in its pipe
            // meanwhile (a 20 MB file takes about a tenth of a second). A failure keeps
            // the plain file, which is read all the same.
            if self.compress {
                let _ = std::fs::remove_file(rotated_gz(&self.path, 1));
                let _ = compress(&rotated(&self.path, 1), &rotated_gz(&self.path, 1));
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
        attrs: l.attrs,
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
    // The rotated files whole, then the one being written up to its last whole line.
    let mut lines: Vec<String> = Vec::new();
    for old in files(&path).iter().filter(|p| **p != path) {
        if let Ok(f) = File::open(old) {
            let r: Box<dyn std::io::Read> = if old.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::read::MultiGzDecoder::new(f))
            } else {
                Box::new(f)
            };
            for l in BufReader::new(r).lines() {
                lines.push(format!("{}\n", l?));
            }
        }
    }
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !opts.follow => {
            let skip = opts.tail.map_or(0, |n| lines.len().saturating_sub(n));
            for l in &lines[skip..] {
                emit_line(l, since, each)?;
            }
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut reader = BufReader::new(&mut file);
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
    let mut ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
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
        // Rotated under us: what was left in the old file is read (above, to its end), the
        // new one from its start. Cut back to empty (max-file 1): from the start again.
        match std::fs::metadata(&path) {
            Ok(m) if m.ino() != ino => {
                if let Ok(f) = File::open(&path) {
                    ino = m.ino();
                    partial.clear();
                    reader = BufReader::new(f);
                    continue;
                }
            }
            Ok(m) if m.len() < reader.stream_position()? => {
                partial.clear();
                reader.seek(SeekFrom::Start(0))?;
                continue;
            }
            _ => {}
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
        let mut w = Writer::open(&path, &LogConfig::default(), BTreeMap::new()).unwrap();
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

    #[test]
    fn compressed_rotations_read_back_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig::parse(Some("local"), &["max-size=1k".into()]).unwrap();
        assert!(config.compress && config.max_file == 5);
        let mut w = Writer::open(&path, &config, BTreeMap::new()).unwrap();
        for i in 0..60 {
            w.write(0, format!("line {i}\n").as_bytes());
        }
        w.finish();
        let kept = files(&path);
        assert!(kept.len() > 2, "{kept:?}");
        for f in &kept[..kept.len() - 1] {
            assert!(f.to_string_lossy().ends_with(".gz"), "{f:?}");
        }
        assert!(
            !rotated(&path, 1).exists(),
            "the plain file goes once compressed"
        );
        let mut all = Vec::new();
        for f in &kept {
            let mut text = String::new();
            let file = File::open(f).unwrap();
            if f.extension().is_some_and(|e| e == "gz") {
                std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text)
            } else {
                std::io::Read::read_to_string(&mut &file, &mut text)
            }
            .unwrap();
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                all.push(v["log"].as_str().unwrap().trim().to_string());
            }
        }
        let want: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
        assert_eq!(all, want);
        assert!(LogConfig::parse(Some("local"), &["labels=a".into()]).is_err());
        assert!(LogConfig::parse(None, &["compress=maybe".into()]).is_err());
    }

    #[test]
    fn a_full_log_rotates_and_keeps_max_file_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig {
            driver: "json-file".into(),
            max_size: Some(1000),
            max_file: 3,
            ..Default::default()
        };
        let mut w = Writer::open(&path, &config, BTreeMap::new()).unwrap();
        for i in 0..200 {
            w.write(0, format!("line {i}\n").as_bytes());
        }
        w.finish();
        let kept = files(&path);
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(!rotated(&path, 3).exists());
        for f in &kept {
            assert!(std::fs::metadata(f).unwrap().len() < 1100, "{f:?}");
        }
        // Oldest first, no gap, ending with the last line.
        let mut all = Vec::new();
        for f in &kept {
            for l in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                all.push(v["log"].as_str().unwrap().trim().to_string());
            }
        }
        assert_eq!(all.last().unwrap(), "line 199");
        let first: usize = all[0].trim_start_matches("line ").parse().unwrap();
        let want: Vec<String> = (first..200).map(|i| format!("line {i}")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn max_file_one_cuts_the_file_back_and_none_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let one = LogConfig {
            driver: "json-file".into(),
            max_size: Some(500),
            max_file: 1,
            ..Default::default()
        };
        let mut w = Writer::open(&path, &one, BTreeMap::new()).unwrap();
        for i in 0..100 {
            w.write(1, format!("e{i}\n").as_bytes());
        }
        assert!(std::fs::metadata(&path).unwrap().len() < 600);
        assert!(!rotated(&path, 1).exists());
        let none_path = dir.path().join("none");
        let none = LogConfig {
            driver: "none".into(),
            ..LogConfig::default()
        };
        let mut w = Writer::open(&none_path, &none, BTreeMap::new()).unwrap();
        w.write(0, b"dropped\n");
        w.finish();
        assert!(!none_path.exists());
    }
}
