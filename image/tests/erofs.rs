//! Layers written as EROFS images: checked by erofs-utils' fsck.erofs, mounted by the kernel
//! and stacked by overlayfs exactly as the layers say.

#[path = "support/registry.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn write(layer: &[u8], path: &Path) -> husk_image::erofs::Report {
    let f = std::fs::File::create(path).unwrap();
    husk_image::erofs::write_layer(layer, std::io::BufWriter::new(f)).unwrap()
}

fn fsck(path: &Path) -> Option<String> {
    let out = Command::new("fsck.erofs").arg(path).output().ok()?;
    assert!(
        out.status.success(),
        "fsck.erofs {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Mount straight from the file (Linux 6.12+), else through a loop device as husk does.
fn mount_erofs(image: &Path, at: &Path) -> bool {
    std::fs::create_dir_all(at).unwrap();
    Command::new("mount")
        .args(["-t", "erofs", "-o", "ro"])
        .arg(image)
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        || husk_image::snapshot::mount_erofs_via_loop(image, at).is_ok()
}

fn umount(at: &Path) {
    let _ = Command::new("umount").arg(at).status();
}

#[test]
fn erofs_images_pass_fsck_and_mount_as_the_layers_say() {
    let dir = tempfile::tempdir().unwrap();
    let (layers, expected) = layered_edge();
    let mut images = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = dir.path().join(format!("{i}.erofs"));
        write(l, &p);
        if fsck(&p).is_none() {
            eprintln!("SKIP fsck half: erofs-utils is not installed (.ci/run installs it)");
        }
        images.push(p);
    }
    if !root() {
        eprintln!("SKIP erofs_images_pass_fsck_and_mount_as_the_layers_say mount half: needs root");
        return;
    }
    let mut mounts = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let at = dir.path().join(format!("m{i}"));
        if !mount_erofs(img, &at) {
            eprintln!("SKIP mount half: this kernel cannot mount an EROFS file");
            return;
        }
        mounts.push(at);
    }
    // The first layer alone, file by file.
    let first = tree(&mounts[0]);
    assert!(
        first.contains(&"a/x file x1".to_string()) && first.contains(&"link -> keep".to_string()),
        "{first:?}"
    );
    use std::os::unix::fs::MetadataExt;
    let keep = std::fs::metadata(mounts[0].join("keep")).unwrap();
    assert_eq!(
        keep.ino(),
        std::fs::metadata(mounts[0].join("hard")).unwrap().ino(),
        "a hardlink is one inode"
    );
    assert_eq!(keep.nlink(), 2);
    assert_eq!(keep.mtime(), 1_000_000_000);
    // Whiteouts are 0:0 character devices; the opaque directory carries its xattr.
    let wh = std::fs::symlink_metadata(mounts[1].join("b")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    match Command::new("getfattr")
        .args(["-n", "trusted.overlay.opaque", "--only-values"])
        .arg(mounts[1].join("c"))
        .output()
    {
        Ok(out) => assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "y",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!(
            "SKIP the opaque xattr check: getfattr (attr) is not installed (.ci/run installs it)"
        ),
    }
    // Stacked by overlayfs: exactly what the image spec says.
    let merged = dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let lower: Vec<String> = mounts
        .iter()
        .rev()
        .map(|m| m.display().to_string())
        .collect();
    let ok = Command::new("mount")
        .args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("ro,lowerdir={}", lower.join(":")),
        ])
        .arg(&merged)
        .status()
        .unwrap()
        .success();
    assert!(ok, "overlay over EROFS layers");
    let got = tree(&merged);
    umount(&merged);
    for m in &mounts {
        umount(m);
    }
    assert_eq!(got, expected);
}

#[test]
fn hostile_entries_never_reach_the_image() {
    use Entry::*;
    // tar refuses to write `..` names: put the bytes in the header by hand.
    let mut h = tar::Header::new_gnu();
    h.set_path("placeholder").unwrap();
    let name = b"../escape";
    h.as_gnu_mut().unwrap().name = [0; 100];
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"x"[..]).unwrap();
    let dotdot = b.into_inner().unwrap();
    let err =
        husk_image::erofs::write_layer(&dotdot[..], std::io::Cursor::new(Vec::new())).unwrap_err();
    assert!(err.to_string().contains("`..`"), "{err}");
    for (entries, why) in [
        (
            vec![Symlink("s", "/etc"), Hardlink("h", "/etc/shadow")],
            "not in this layer",
        ),
        (vec![File("f", b"x"), File("f/g", b"y")], "not a directory"),
        (vec![Hardlink("h", "nothing")], "not in this layer"),
        (vec![File(".wh..", b"")], "whiteout"),
    ] {
        let l = layer(&entries);
        let err =
            husk_image::erofs::write_layer(&l[..], std::io::Cursor::new(Vec::new())).unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    // A symlink whose target names a component no directory entry could have (GNU long link).
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "l", "x".repeat(300)).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "l/x", &b"y"[..]).unwrap();
    let l = b.into_inner().unwrap();
    let err = husk_image::erofs::write_layer(&l[..], std::io::Cursor::new(Vec::new())).unwrap_err();
    assert!(err.to_string().contains("invalid name"), "{err}");
    // A write through a symlink stays inside the layer's tree.
    let l = layer(&[
        Dir("etc"),
        Symlink("up", "../../../etc"),
        File("up/passwd", b"inside"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.erofs");
    write(&l, &p);
    let _ = fsck(&p);
    if root() && mount_erofs(&p, &dir.path().join("m")) {
        let content = std::fs::read_to_string(dir.path().join("m/etc/passwd")).unwrap();
        umount(&dir.path().join("m"));
        assert_eq!(content, "inside");
    }
}

#[test]
fn an_erofs_image_mounts_through_a_loop_device_too() {
    if !root() {
        eprintln!("SKIP an_erofs_image_mounts_through_a_loop_device_too: needs root");
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIP an_erofs_image_mounts_through_a_loop_device_too: no /dev/loop-control");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("l.erofs");
    write(&layer(&[Entry::File("hello", b"world")]), &img);
    let at = dir.path().join("m");
    std::fs::create_dir(&at).unwrap();
    husk_image::snapshot::mount_erofs_via_loop(&img, &at).unwrap();
    let got = std::fs::read(at.join("hello")).unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(at.to_str().unwrap()))
        .unwrap()
        .to_string();
    umount(&at);
    assert_eq!(got, b"world");
    assert!(line.contains("/dev/loop"), "{line}");
}

#[test]
fn overlay_s_own_xattrs_do_not_pass_from_a_layer() {
    use husk_image::unpack::xattr_allowed;
    assert!(xattr_allowed(b"user.mime", b"text/plain"));
    assert!(xattr_allowed(b"security.capability", b"\x01"));
    assert!(xattr_allowed(b"trusted.overlay.opaque", b"y"));
    assert!(!xattr_allowed(b"trusted.overlay.opaque", b"x"));
    assert!(!xattr_allowed(b"trusted.overlay.redirect", b"/etc"));
    assert!(!xattr_allowed(b"trusted.overlay.metacopy", b""));
}
