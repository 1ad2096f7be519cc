//! `husk pull` and `husk images` against a real registry on 127.0.0.1, with throwaway roots.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::process::Command;

use common::*;
use support::*;

#[test]
fn pull_then_images_like_docker() {
    if !is_root() {
        eprintln!(
            "SKIP pull_then_images_like_docker: unpacking layers (ownership, whiteouts) needs root"
        );
        return;
    }
    let Some(reg) = start_registry() else { return };
    let img = push_image(
        &reg,
        "team/app",
        false,
        &husk_image::manifest::Platform::host().architecture,
    );
    let md = reg.push_manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest,
    );
    let root = tempfile::tempdir().unwrap();
    let name = format!("127.0.0.1:{}/team/app:v1", reg.port);

    let out = husk_output(root.path(), &["pull", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("Digest: {md}")), "{stdout}");
    assert!(
        stdout.contains("Status: Downloaded newer image"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some(name.as_str()));

    assert_eq!(stdout.matches(": Pull complete").count(), 2, "{stdout}");
    let again = text(&husk_output(root.path(), &["pull", &name], None).stdout);
    assert!(again.contains("Status: Image is up to date"), "{again}");
    assert_eq!(again.matches(": Already exists").count(), 2, "{again}");
    let quiet = husk_output(root.path(), &["pull", "-q", &name], None);
    assert_eq!(text(&quiet.stdout), format!("{name}\n"));

    let table = text(&husk_output(root.path(), &["images"], None).stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!("127.0.0.1:{}/team/app", reg.port)) && row.contains(" v1 "),
        "{row}"
    );
    assert_eq!(
        text(&husk_output(root.path(), &["images", "-q"], None).stdout)
            .trim()
            .len(),
        12,
        "a short image id"
    );

    // Errors: one line, exit 1, nothing recorded.
    for (args, needle) in [
        (
            vec!["pull".to_string(), "Not/Valid".to_string()],
            "invalid image reference",
        ),
        (
            vec![
                "pull".to_string(),
                format!("127.0.0.1:{}/team/app:missing", reg.port),
            ],
            "not found",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = husk_output(root.path(), &args, None);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
    }
    assert_eq!(
        text(&husk_output(root.path(), &["images", "-q"], None).stdout)
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_pull_killed_mid_download_resumes_next_time() {
    if !is_root() {
        eprintln!("SKIP a_pull_killed_mid_download_resumes_next_time: unpacking layers needs root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (data, blob) = push_big_image(&reg, "team/big");
    // The first large blob response stalls after 300 kB: the pull hangs there until killed.
    let proxy = flaky_proxy(reg.port, 1, 300_000, true);
    let root = tempfile::tempdir().unwrap();
    let name = format!("127.0.0.1:{}/team/big:big", proxy.port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(root.path())
        .args(["pull", "-q", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = root
        .path()
        .join("tmp")
        .join(format!("{}.partial", blob.hex()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 300_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !root.path().join("blobs/sha256").join(blob.hex()).exists(),
        "nothing half-written is committed"
    );

    let out = husk_output(root.path(), &["pull", "-q", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ranges = proxy.ranges.lock().unwrap().clone();
    assert!(
        ranges.iter().any(|r| !r.ends_with("=0-")),
        "the second pull resumed: {ranges:?}"
    );
    let layer = root.path().join("layers").join(
        std::fs::read_dir(root.path().join("layers"))
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .file_name(),
    );
    assert_eq!(std::fs::read(layer.join("big")).unwrap(), data);
    assert!(!partial.exists());
}
