//! The layer unpacker, file by file, including hostile layers and the overlayfs result.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use husk_image::unpack::{decompress, unpack};

fn root() -> bool {
    if nix_is_root() {
        return true;
    }
    eprintln!("SKIP: unpacking with ownership, devices and trusted xattrs needs root");
    false
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tar built entry by entry; `raw` names bypass the tar crate's own `..` checks.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, name: &[u8], mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h.set_size(0);
        h
    }
    fn file(mut self, name: &str, data: &[u8], mode: u32, uid: u64) -> Tar {
        let mut h = Self::header(tar::EntryType::Regular, name.as_bytes(), mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn dir(mut self, name: &str) -> Tar {
        let mut h = Self::header(tar::EntryType::Directory, name.as_bytes(), 0o755);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Tar {
        let mut h = Self::header(kind, name.as_bytes(), 0o777);
        h.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }
    fn node(mut self, kind: tar::EntryType, name: &str, major: u32, minor: u32) -> Tar {
        let mut h = Self::header(kind, name.as_bytes(), 0o600);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }
    fn xattr_file(mut self, name: &str, key: &str, value: &str) -> Tar {
        let record = format!("SCHILY.xattr.{key}={value}\n");
        let line = format!(
            "{} {record}",
            record.len() + 1 + (record.len() + 1).to_string().len()
        );
        let mut pax = Self::header(tar::EntryType::XHeader, b"././@PaxHeader", 0o644);
        pax.set_size(line.len() as u64);
        pax.set_cksum();
        self.0.append(&pax, line.as_bytes()).unwrap();
        self.file(name, b"x", 0o644, 0)
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

#[test]
fn entries_keep_their_kind_owner_mode_xattrs_and_times() {
    if !root() {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let layer = Tar::new()
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0\n", 0o644, 0)
        .file("bin/su", b"#!", 0o4755, 0)
        .file("home/u/note", b"mine", 0o600, 1000)
        .link(tar::EntryType::Symlink, "etc/alias", "/etc/passwd")
        .link(tar::EntryType::Link, "etc/hard", "etc/passwd")
        .node(tar::EntryType::Char, "dev/null", 1, 3)
        .node(tar::EntryType::Fifo, "run/fifo", 0, 0)
        .xattr_file("data", "user.husk", "yes")
        .bytes();
    let report = unpack(&layer[..], dest.path()).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let p = |r: &str| dest.path().join(r);
    assert_eq!(fs::read(p("etc/passwd")).unwrap(), b"root:x:0:0\n");
    let su = fs::metadata(p("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    let note = fs::metadata(p("home/u/note")).unwrap();
    assert_eq!(
        (note.uid(), note.gid(), note.mode() & 0o777),
        (1000, 1000, 0o600)
    );
    assert_eq!(note.mtime(), 1_000_000_000);
    assert_eq!(
        fs::read_link(p("etc/alias")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::metadata(p("etc/hard")).unwrap().ino(),
        fs::metadata(p("etc/passwd")).unwrap().ino()
    );
    let dev = fs::metadata(p("dev/null")).unwrap();
    assert!(dev.file_type().is_char_device() && dev.rdev() == libc::makedev(1, 3));
    assert!(fs::metadata(p("run/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(
        fs::metadata(p("etc")).unwrap().mtime(),
        1_000_000_000,
        "directory times set last"
    );
    let mut buf = [0u8; 16];
    let path = std::ffi::CString::new(p("data").to_str().unwrap()).unwrap();
    // SAFETY: getxattr into a stack buffer.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"user.husk".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(&buf[..n.max(0) as usize], b"yes");
}

#[test]
fn whiteouts_become_overlayfs_whiteouts_and_only_hide_lower_layers() {
    if !root() {
        return;
    }
    let lower = tempfile::tempdir().unwrap();
    let upper = tempfile::tempdir().unwrap();
    let base = Tar::new()
        .file("gone", b"lower", 0o644, 0)
        .file("keep", b"lower", 0o644, 0)
        .file("back", b"lower", 0o644, 0)
        .file("opq/old", b"lower", 0o644, 0)
        .bytes();
    unpack(&base[..], lower.path()).unwrap();
    let top = Tar::new()
        .file(".wh.gone", b"", 0o644, 0)
        // Re-added then whited out in the same layer: the file of this layer stays.
        .file("keep", b"upper", 0o644, 0)
        .file(".wh.keep", b"", 0o644, 0)
        // Whited out then re-added: the new file.
        .file(".wh.back", b"", 0o644, 0)
        .file("back", b"upper", 0o644, 0)
        .file("opq/.wh..wh..opq", b"", 0o644, 0)
        .file("opq/new", b"upper", 0o644, 0)
        .bytes();
    unpack(&top[..], upper.path()).unwrap();
    let wh = fs::metadata(upper.path().join("gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "a 0:0 whiteout"
    );
    assert_eq!(fs::read(upper.path().join("keep")).unwrap(), b"upper");
    assert_eq!(fs::read(upper.path().join("back")).unwrap(), b"upper");

    // What overlayfs makes of the two layers is what the image spec says.
    let merged = tempfile::tempdir().unwrap();
    let opts = format!(
        "lowerdir={}:{}",
        upper.path().display(),
        lower.path().display()
    );
    let c = |s: &Path| std::ffi::CString::new(s.to_str().unwrap()).unwrap();
    let (src, tgt, fstype, data) = (
        c(Path::new("overlay")),
        c(merged.path()),
        c(Path::new("overlay")),
        std::ffi::CString::new(opts).unwrap(),
    );
    // SAFETY: mount(2) with valid C strings; unmounted below.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fstype.as_ptr(),
            libc::MS_RDONLY,
            data.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "overlay mount: {}", std::io::Error::last_os_error());
    let m = |r: &str| merged.path().join(r);
    let result = || {
        assert!(!m("gone").exists(), "whited out");
        assert_eq!(fs::read(m("keep")).unwrap(), b"upper");
        assert_eq!(fs::read(m("back")).unwrap(), b"upper");
        assert!(
            !m("opq/old").exists(),
            "the opaque directory hides the lower content"
        );
        assert_eq!(fs::read(m("opq/new")).unwrap(), b"upper");
    };
    let outcome = std::panic::catch_unwind(result);
    // SAFETY: umount of what we mounted.
    unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) };
    outcome.unwrap();
}

#[test]
fn hostile_layers_cannot_write_outside_the_layer() {
    if !root() {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let o = outside.path().to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "dotdot",
            Tar::new().file("../escape", b"x", 0o644, 0).bytes(),
            Some("`..`"),
        ),
        (
            "nested-dotdot",
            Tar::new().file("a/../../escape", b"x", 0o644, 0).bytes(),
            Some("`..`"),
        ),
        (
            "hardlink-out",
            Tar::new()
                .link(tar::EntryType::Link, "l", "../../etc/passwd")
                .bytes(),
            Some("`..`"),
        ),
        (
            "hardlink-absolute",
            Tar::new()
                .link(tar::EntryType::Link, "l", "/etc/passwd")
                .bytes(),
            Some("not an earlier entry"),
        ),
        // Through symlinks planted by the layer itself: resolved inside the layer, where this
        // one dangles, so the entry is refused.
        (
            "symlink-dir",
            Tar::new()
                .link(tar::EntryType::Symlink, "evil", &o)
                .file("evil/pwned", b"x", 0o644, 0)
                .bytes(),
            Some("evil"),
        ),
        (
            "symlink-up",
            Tar::new()
                .link(tar::EntryType::Symlink, "up", "../../../../../..")
                .file(&format!("up{o}/pwned2"), b"x", 0o644, 0)
                .bytes(),
            None,
        ),
        (
            "absolute-name",
            Tar::new()
                .file(&format!("{o}/pwned3"), b"x", 0o644, 0)
                .bytes(),
            None,
        ),
        (
            "symlink-then-file",
            Tar::new()
                .link(tar::EntryType::Symlink, "f", &format!("{o}/pwned4"))
                .file("f", b"x", 0o644, 0)
                .bytes(),
            None,
        ),
    ];
    for (name, layer, want_err) in cases {
        let dest = tempfile::tempdir().unwrap();
        let r = unpack(&layer[..], dest.path());
        match want_err {
            Some(needle) => {
                let e = r.expect_err(name).to_string();
                assert!(e.contains(needle), "{name}: {e}");
            }
            None => {
                r.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{name}: something escaped"
        );
        assert!(
            !dest.path().parent().unwrap().join("escape").exists(),
            "{name}"
        );
    }
}

#[test]
fn compressed_layers_are_detected() {
    if !root() {
        return;
    }
    let tar = Tar::new().file("hello", b"world", 0o644, 0).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (name, blob) in [("plain", tar.clone()), ("gzip", gz), ("zstd", zst)] {
        let dest = tempfile::tempdir().unwrap();
        unpack(decompress(&blob[..]).unwrap(), dest.path())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            fs::read(dest.path().join("hello")).unwrap(),
            b"world",
            "{name}"
        );
    }
    let dest = tempfile::tempdir().unwrap();
    let e = unpack(
        decompress(&b"\x1f\x8bnot really gzip"[..]).unwrap(),
        dest.path(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("layer"), "{e}");
}

#[test]
fn later_entries_replace_earlier_ones_at_the_same_path() {
    if !root() {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let layer = Tar::new()
        .file("twice", b"first", 0o644, 0)
        .file("twice", b"second", 0o600, 0)
        .dir("d")
        .file("d", b"a file now", 0o644, 0)
        .file("implicit/child", b"x", 0o644, 0)
        .file("implicit", b"replaces the implicit dir", 0o644, 0)
        .link(tar::EntryType::Symlink, "l", "/nowhere")
        .file("l", b"not a link any more", 0o644, 0)
        .file("plain", b"x", 0o640, 0)
        .bytes();
    unpack(&layer[..], dest.path()).unwrap();
    let p = |r: &str| dest.path().join(r);
    assert_eq!(fs::read(p("twice")).unwrap(), b"second");
    assert_eq!(
        fs::metadata(p("twice")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read(p("d")).unwrap(), b"a file now");
    assert_eq!(
        fs::read(p("implicit")).unwrap(),
        b"replaces the implicit dir"
    );
    assert!(fs::symlink_metadata(p("l")).unwrap().is_file());
    assert_eq!(
        fs::metadata(p("plain")).unwrap().permissions().mode() & 0o777,
        0o640,
        "mode exact under any umask"
    );
}
