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
}

/// Container `c`'s changes to its image, sorted by path.
pub fn changes(root: &Path, c: &Container) -> Result<Vec<Change>> {
    let upper = store::dir(root, &c.id).join("upper");
    let lower = Lower::open(root, c)?;
    let mut found = Vec::new();
    walk(&upper, Path::new("/"), &lower, &mut found)?;
    let kept: Vec<&Found> = found.iter().filter(|f| !f.stub).collect();
    let mut out: Vec<Change> = kept
        .iter()
        .filter(|f| {
            // A directory copied up only for what is under it counts if something under it does.
            !f.only_holds
                || kept
                    .iter()
                    .any(|g| g.change.path.starts_with(&format!("{}/", f.change.path)))
        })
        .map(|f| f.change.clone())
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Mount targets husk makes for its /etc files.
const STUBS: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

struct Found {
    change: Change,
    /// An empty mount target husk made: not the container's change.
    stub: bool,
    /// A directory of the image, in the upper directory with its own metadata unchanged.
    only_holds: bool,
}

fn walk(dir: &Path, at: &Path, lower: &Lower, out: &mut Vec<Found>) -> Result<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = at.join(e.file_name());
        let meta = e
            .metadata()
            .with_context(|| format!("cannot stat {}", e.path().display()))?;
        let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
        let below = lower.stat(&path);
        let kind = match &below {
            _ if whiteout => ChangeKind::Deleted,
            Some(_) => ChangeKind::Changed,
            None => ChangeKind::Added,
        };
        let text = path.display().to_string();
        let stub = kind == ChangeKind::Added
            && meta.is_file()
            && meta.len() == 0
            && STUBS.contains(&text.as_str());
        let only_holds = meta.is_dir()
            && below.as_ref().is_some_and(|b| {
                b.st_mode == meta.mode() && b.st_uid == meta.uid() && b.st_gid == meta.gid()
            });
        out.push(Found {
            change: Change { kind, path: text },
            stub,
            only_holds,
        });
        if meta.is_dir() && !whiteout {
            walk(&e.path(), &path, lower, out)?;
        }
    }
    Ok(())
}

/// The image's file system, read-only, for the question "does the image have this path";
/// unmounted when dropped.
struct Lower {
    fd: Option<OwnedFd>,
    mounted: Option<(PathBuf, PathBuf, Vec<husk_image::Digest>)>,
}

impl Lower {
    fn open(root: &Path, c: &Container) -> Result<Lower> {
        if let Some(dir) = &c.rootfs_dir {
            let fd =
                fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
            return Ok(Lower {
                fd: Some(fd.into()),
                mounted: None,
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
            });
        }
        let mp = store::dir(root, &c.id).join("diff-lower");
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
