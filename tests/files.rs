//! A container's files as docker shows them: `diff` (A, C, D from the overlay's upper
//! directory), `export` (its file system as a tar, volumes left out), and `history` of an
//! image.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

#[test]
fn diff_says_what_a_container_added_changed_and_deleted() {
    let Some((_reg, root, img)) = busybox_store("diff_says_what_a_container_changed", &[]) else {
        return;
    };
    let r = root.path();
    // Nothing changed: nothing to say (husk's own /etc mount targets are not changes).
    assert_eq!(
        husk(r, &["run", "-d", "--name", "quiet", &img, "sleep", "1000"]).0,
        0
    );
    let (code, out, err) = husk(r, &["diff", "quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "a fresh container changed nothing");

    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "busy",
            "-v",
            "/srv/data",
            &img,
            "sh",
            "-c",
            "mkdir -p /newdir/sub && echo x > /newdir/sub/f && echo more >> /etc/passwd \
             && rm /bin/notexec && rm /etc/group && chmod 700 /work && ln -s /etc/shadow /tmp/link \
             && echo v > /srv/data/in-volume",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(r, &["diff", "busy"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "C /bin\nD /bin/notexec\nC /etc\nD /etc/group\nC /etc/passwd\nA /newdir\nA /newdir/sub\n\
         A /newdir/sub/f\nA /srv\nA /srv/data\nC /tmp\nA /tmp/link\nC /work\n",
        "docker's letters, sorted; the volume's content is not the container's"
    );
    // Stopped or running alike, and nothing is left mounted for the question.
    assert!(
        mounts_left(r).iter().all(|m| !m.contains("diff-lower")),
        "{:?}",
        mounts_left(r)
    );
    let (code, _, err) = husk(r, &["diff", "nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(husk(r, &["rm", "-f", "quiet", "busy"]).0, 0);
}

#[test]
fn export_writes_the_containers_file_system_without_its_volumes() {
    let Some((_reg, root, img)) = busybox_store("export_writes_the_file_system", &[]) else {
        return;
    };
    let r = root.path();
    assert_eq!(
        husk(
            r,
            &[
                "run",
                "-d",
                "--name",
                "exp",
                "-v",
                "/vol",
                &img,
                "sh",
                "-c",
                "echo hello > /made && echo v > /vol/f && rm /bin/notexec && sleep 1000"
            ],
        )
        .0,
        0
    );
    let start = std::time::Instant::now();
    while husk(r, &["diff", "exp"]).1.lines().all(|l| l != "A /made") {
        assert!(
            start.elapsed().as_secs() < 20,
            "the container never wrote /made"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let entries = |tar: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    };
    // Running: to stdout.
    let out = Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(r)
        .args(["export", "exp"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = entries(&out.stdout);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        got.iter().any(|(n, d)| n == "made" && d == b"hello\n"),
        "{names:?}"
    );
    assert!(
        names.contains(&"bin/busybox") && names.contains(&"etc/passwd"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"bin/notexec"),
        "a deleted file is not exported"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("vol/")),
        "volumes are not the container's: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("proc/") && n.len() > 5),
        "no /proc content"
    );

    // Stopped: to a file, the same content.
    assert_eq!(husk(r, &["stop", "-t", "0", "exp"]).0, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exp.tar");
    let (code, _, err) = husk(r, &["export", "-o", file.to_str().unwrap(), "exp"]);
    assert_eq!(code, 0, "{err}");
    let again = entries(&std::fs::read(&file).unwrap());
    assert_eq!(again.len(), got.len());
    assert!(again.iter().any(|(n, d)| n == "made" && d == b"hello\n"));
    assert!(
        mounts_left(r).is_empty(),
        "the export's mount is undone: {:?}",
        mounts_left(r)
    );

    // What export wrote, import makes an image of: the same files, the changes in its config.
    let (code, id, err) = husk(
        r,
        &[
            "import",
            "-c",
            r#"CMD ["cat", "/made"]"#,
            "-c",
            "ENV FROM_IMPORT=yes",
            "-m",
            "round trip",
            file.to_str().unwrap(),
            "local/imported:v1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "{id}"
    );
    let (code, out, err) = husk(r, &["run", "--rm", "local/imported:v1"]);
    assert_eq!((code, out.as_str()), (0, "hello\n"), "{err}");
    let (_, out, _) = husk(
        r,
        &[
            "run",
            "--rm",
            "local/imported:v1",
            "sh",
            "-c",
            "echo $FROM_IMPORT; ls /bin/notexec",
        ],
    );
    assert_eq!(out, "yes\n", "the deleted file stays deleted");
    let (_, hist, _) = husk(
        r,
        &[
            "history",
            "--format",
            "{{.CreatedBy}}|{{.Comment}}",
            "local/imported:v1",
        ],
    );
    assert_eq!(hist, "husk import|round trip\n");
    // From stdin, gzip'd.
    let gz = Command::new("gzip")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap()
        .stdout;
    let mut child = Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(r)
        .args(["import", "-", "local/imported:gz"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &gz).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let layers = |name: &str| {
        let (_, out, _) = husk(r, &["image", "inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["RootFS"]["Layers"].clone()
    };
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    assert_eq!(
        layers("local/imported:gz"),
        layers("local/imported:v1"),
        "the same layer, compressed or not"
    );
    // Bad input: one line, exit 1, nothing stored.
    let (_, before, _) = husk(r, &["images", "-q"]);
    let junk = dir.path().join("junk");
    std::fs::write(
        &junk,
        b"this is not a tar archive at all, not even close to one...",
    )
    .unwrap();
    for args in [
        vec!["import", junk.to_str().unwrap(), "local/junk"],
        vec![
            "import",
            "-c",
            "RUN true",
            file.to_str().unwrap(),
            "local/junk",
        ],
        vec!["import", "/nonexistent.tar", "local/junk"],
    ] {
        let (code, _, err) = husk(r, &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (_, after, _) = husk(r, &["images", "-q"]);
    assert_eq!(before, after);
    std::fs::remove_file(&junk).unwrap();

    // A failed export leaves no half file.
    let (code, _, err) = husk(r, &["export", "-o", file.to_str().unwrap(), "nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap().len(),
        std::fs::metadata(&file).unwrap().len() as usize
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    assert_eq!(husk(r, &["rm", "exp"]).0, 0);
}

#[test]
fn history_lists_the_images_steps_newest_first() {
    if !is_root() {
        eprintln!("SKIP history_lists_the_images_steps: needs the test registry (root)");
        return;
    }
    let Some(reg) = support::start_registry() else {
        return;
    };
    let long = format!("/bin/sh -c {}", "echo step && ".repeat(10));
    support::push_busybox_image_history(
        &reg,
        "lib/made",
        "v1",
        &[support::tar_of(&[("app/hello", b"hi\n")])],
        json!([
            {"created": "2026-01-01T00:00:00Z", "created_by": "ADD busybox /", "comment": "base"},
            {"created": "2026-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": true},
            {"created": "2026-01-03T00:00:00Z", "created_by": long},
        ]),
    );
    let root = store();
    let r = root.path();
    let img = format!("127.0.0.1:{}/lib/made:v1", reg.port);
    assert_eq!(husk(r, &["pull", "-q", &img]).0, 0);
    let (code, out, err) = husk(r, &["history", &img]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].contains("echo step") && lines[1].contains('…'),
        "newest first, cut: {out}"
    );
    assert!(
        lines[2].starts_with("<missing>")
            && lines[2].contains("ENV A=1")
            && lines[2].contains(" 0B"),
        "{out}"
    );
    assert!(
        lines[3].contains("ADD busybox /") && lines[3].trim_end().ends_with("base"),
        "{out}"
    );

    let (_, ids, _) = husk(r, &["history", "-q", &img]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0].len(), 12);
    assert_eq!(&ids[1..], ["<missing>", "<missing>"]);
    let (_, out, _) = husk(
        r,
        &[
            "image",
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}|{{.Size}}",
            &img,
        ],
    );
    let first = out.lines().next().unwrap();
    assert_eq!(
        first.split('|').next().unwrap(),
        long,
        "--no-trunc keeps it whole"
    );
    let (_, plain, _) = husk(r, &["history", "-H=false", "--format", "{{.Size}}", &img]);
    assert!(plain.lines().all(|l| l.parse::<u64>().is_ok()), "{plain}");
    let (code, _, err) = husk(r, &["history", "nosuch:tag"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
