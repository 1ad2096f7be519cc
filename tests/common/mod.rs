//! Helpers shared by the `husk` end-to-end tests.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Run `husk --root ROOT ARGS…`, with `DOCKER_CONFIG` set when given.
pub fn husk_output(root: &Path, args: &[&str], docker_config: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_husk"));
    c.arg("--root").arg(root).args(args);
    if let Some(d) = docker_config {
        c.env("DOCKER_CONFIG", d);
    }
    c.output().expect("husk runs")
}

/// (exit code, stdout, stderr) of `husk --root ROOT ARGS…`.
pub fn husk_env(root: &Path, args: &[&str], docker_config: Option<&Path>) -> (i32, String, String) {
    let out = husk_output(root, args, docker_config);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

pub fn husk(root: &Path, args: &[&str]) -> (i32, String, String) {
    husk_env(root, args, None)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A file of an image, read through `husk image mount` (whatever the storage driver).
pub fn image_file(root: &Path, image: &str, file: &str) -> Vec<u8> {
    let (code, mp, err) = husk(root, &["image", "mount", image]);
    assert_eq!(code, 0, "{err}");
    let data = std::fs::read(Path::new(mp.trim()).join(file)).unwrap();
    let (code, _, err) = husk(root, &["image", "unmount", image]);
    assert_eq!(code, 0, "{err}");
    data
}
