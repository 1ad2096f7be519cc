//! `diff`: what a container changed in its image's file system, read from its overlay's
//! upper directory: an overlayfs whiteout (a 0:0 character device) is a deletion, an entry
//! its image has too is a change, any other an addition, each directory above a change a
//! change too (docker's `A`, `C`, `D`).
//!
//! The empty files husk makes as the targets of its /etc bind mounts (hosts, hostname,
//! resolv.conf) are not changes, nor a directory changed only to hold them: docker keeps
//! its equivalents in an init layer that `diff` leaves out.
//!
//! Whether the image has a path is asked of the image's layers, mounted read-only for the
//! question, with every path resolved inside them (RESOLVE_IN_ROOT): an image's absolute
//! symlink names a path of the image, never one of the host.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use crate::store::{self, Container};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// docker's letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute, inside the container.
    pub path: String,
    /// A directory that hides what the image had under it (overlayfs's opaque mark: it was
    /// removed and made anew).
    pub opaque: bool,
}

/// Container `c`'s changes to its image, sorted by path.
pub fn changes(root: &Path, c: &Container) -> Result<Vec<Change>> {
    let upper = store::dir(root, &c.id).join("upper");
    let lower = Lower::open(root, c)?;
    let mut out = Vec::new();
    walk(&upper, Path::new("/"), &lower, c.upper_id_maps(), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Mount targets husk makes for its /etc files.
const STUBS: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// The changes under upper directory `dir` (the container's `at`) into `out`; whether there
/// were any. A running container may remove what is being read: what went is skipped.
/// `maps`: a container in a user namespace of its own writes its host ids; compared as the
/// container's.
fn walk(
    dir: &Path,
    at: &Path,
    lower: &Lower,
    maps: Option<&crate::options::IdMaps>,
    out: &mut Vec<Change>,
) -> Result<bool> {
    let mut entries: Vec<fs::DirEntry> = match fs::read_dir(dir) {
        Ok(rd) => rd.flatten().collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    entries.sort_by_key(|e| e.file_name());
    let mut any = false;
    for e in entries {
        let path = at.join(e.file_name());
        let meta = match e.metadata() {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot stat {}", e.path().display()))
            }
        };
        let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
        let below = lower.stat(&path);
        let kind = match &below {
            _ if whiteout => ChangeKind::Deleted,
            Some(_) => ChangeKind::Changed,
            None => ChangeKind::Added,
        };
        let text = path.display().to_string();
        if kind == ChangeKind::Added
            && meta.is_file()
            && meta.len() == 0
            && STUBS.contains(&text.as_str())
        {
            // An empty mount target husk made: not the container's change.
            continue;
        }
        let opaque = meta.is_dir() && below.is_some() && is_opaque(&e.path());
        let inside = meta.is_dir() && !whiteout && walk(&e.path(), &path, lower, maps, out)?;
        let (uid, gid) = maps.map_or((meta.uid(), meta.gid()), |m| {
            m.to_container(meta.uid(), meta.gid())
        });
        // A directory of the image in the upper directory with its own metadata unchanged
        // was copied up for what is under it: a change only if something under it is.
        let only_holds = meta.is_dir()
            && below
                .as_ref()
                .is_some_and(|b| b.st_mode == meta.mode() && b.st_uid == uid && b.st_gid == gid);
        if !only_holds || inside || opaque {
            out.push(Change {
                kind,
                path: text,
                opaque,
            });
            any = true;
        }
    }
    Ok(any)
}

/// Whether overlayfs marked directory `p` opaque (root mounts use `trusted.`, unprivileged
/// ones `user.`).
pub fn is_opaque(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|k| husk_sys::xattr(p, k).is_some_and(|v| v == b"y"))
}

/// The image's file system, read-only, for the question "does the image have this path";
/// unmounted when dropped.
struct Lower {
    fd: Option<OwnedFd>,
    mounted: Option<(PathBuf, PathBuf, Vec<husk_image::Digest>)>,
    /// Held while the mount is up: two `diff`s of one container take turns with it.
    _lock: Option<fs::File>,
}

impl Lower {
    fn open(root: &Path, c: &Container) -> Result<Lower> {
        if let Some(dir) = &c.rootfs_dir {
            let fd =
                fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
            return Ok(Lower {
                fd: Some(fd.into()),
                mounted: None,
                _lock: None,
            });
        }
        let diff_ids: Vec<husk_image::Digest> = c
            .diff_ids
            .iter()
            .map(|d| husk_image::Digest::parse(d))
            .collect::<husk_image::Result<_>>()?;
        if diff_ids.is_empty() {
            return Ok(Lower {
                fd: None,
                mounted: None,
                _lock: None,
            });
        }
        let mp = store::dir(root, &c.id).join("diff-lower");
        let lock = husk_sys::lock_file(&store::dir(root, &c.id).join("diff.lock"), true)
            .map_err(|e| crate::error::failed!("cannot lock the diff of {}: {e}", c.name))?;
        fs::create_dir_all(&mp).with_context(|| format!("cannot create {}", mp.display()))?;
        if husk_sys::is_mount_point(&mp) {
            // A diff killed before its unmount left it: ours to reuse, and to take down.
            let _ = husk_image::snapshot::unmount(&mp);
            crate::layers::release_layers(root, &diff_ids);
        }
        husk_image::snapshot::mount(root, &diff_ids, None, &mp)?;
        // Made before the open: a failed open drops it, which unmounts.
        let mut lower = Lower {
            fd: None,
            mounted: Some((root.to_path_buf(), mp.clone(), diff_ids)),
            _lock: Some(lock),
        };
        let fd = fs::File::open(&mp).with_context(|| format!("cannot open {}", mp.display()))?;
        lower.fd = Some(fd.into());
        Ok(lower)
    }

    /// The image's entry at `path`, if it has one.
    fn stat(&self, path: &Path) -> Option<libc::stat> {
        let fd = self.fd.as_ref()?;
        let entry =
            husk_sys::open_in_root(fd.as_raw_fd(), path, libc::O_PATH | libc::O_NOFOLLOW, 0)
                .ok()?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat of an fd we own into a buffer of the right type.
        let r = unsafe { libc::fstat(entry.as_raw_fd(), st.as_mut_ptr()) };
        // SAFETY: fstat filled it when it returned 0.
        (r == 0).then(|| unsafe { st.assume_init() })
    }
}

impl Drop for Lower {
    fn drop(&mut self) {
        self.fd = None;
        if let Some((root, mp, diff_ids)) = self.mounted.take() {
            if husk_image::snapshot::unmount(&mp).is_ok() {
                crate::layers::release_layers(&root, &diff_ids);
                let _ = fs::remove_dir(&mp);
            }
        }
    }
}
