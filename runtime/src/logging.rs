//! runc-compatible log lines. containerd and conmon pass `--log FILE --log-format json` and show
//! the user the `msg` of the last error line, so that line must say what went wrong.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::util::rfc3339_now;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Logger {
    path: Option<PathBuf>,
    format: Format,
    debug: bool,
}

impl Logger {
    pub fn new(path: Option<&Path>, format: Format, debug: bool) -> Self {
        Logger {
            path: path.map(Path::to_path_buf),
            format,
            debug,
        }
    }

    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    pub fn line(&self, level: &str, msg: &str) -> String {
        let time = rfc3339_now();
        match self.format {
            Format::Json => {
                let v = serde_json::json!({ "level": level, "msg": msg, "time": time });
                format!("{v}\n")
            }
            Format::Text => format!("time=\"{time}\" level={level} msg={msg:?}\n"),
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let line = self.line(level, msg);
        match &self.path {
            // A log we cannot write must not hide the message: fall back to stderr.
            Some(path) => {
                let written = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if written.is_err() {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_what_containerd_parses() {
        let l = Logger::new(None, Format::Json, false);
        let line = l.line("error", "container \"x\" does not exist");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("valid JSON");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn text_lines_quote_the_message() {
        let l = Logger::new(None, Format::Text, false);
        let line = l.line("error", "a \"b\"");
        assert!(line.contains("level=error msg=\"a \\\"b\\\"\""), "{line}");
    }
}
