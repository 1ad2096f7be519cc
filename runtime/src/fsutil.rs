//! Path resolution inside a container root that never follows a symlink out of it, and mounting
//! through the resulting fd. This is the guard against the CVE-2021-30465 class: a container's
//! image can hold `/proc -> /` style links, and a mount target must land inside the root anyway.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result};

/// openat2 with `RESOLVE_IN_ROOT` (see husk_sys::open_in_root), as a nix error.
pub fn open_in_root(
    root: RawFd,
    path: &Path,
    flags: i32,
    mode: u32,
) -> std::result::Result<OwnedFd, Errno> {
    husk_sys::open_in_root(root, path, flags, mode)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Open (O_PATH) `path` inside `root`, creating missing directories on the way, and the last
/// component as a directory (`dir == true`) or an empty file.
pub fn ensure_in_root(root: RawFd, path: &Path, dir: bool) -> Result<OwnedFd> {
    ensure_in_root_depth(root, path, dir, 0)
}

/// Symlinks followed while creating one path, as the kernel's own limit (SYMLOOP_MAX).
const MAX_SYMLINKS: usize = 40;

fn ensure_in_root_depth(root: RawFd, path: &Path, dir: bool, depth: usize) -> Result<OwnedFd> {
    if depth > MAX_SYMLINKS {
        return Err(Error::sys(
            format!("cannot resolve {}", path.display()),
            Errno::ELOOP,
        ));
    }
    // Most targets already exist (the image has /proc, /dev, /sys): one lookup does it.
    match open_in_root(root, path, libc::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("cannot resolve {}", path.display()), e)),
    }
    // ".." stops at the root, as RESOLVE_IN_ROOT resolves it.
    let mut normal = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => normal.push(n),
            Component::ParentDir => {
                normal.pop();
            }
            _ => {}
        }
    }
    let mut cur = open_in_root(root, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| Error::sys("cannot open container root", e))?;
    let comps: Vec<_> = normal.components().collect();
    let mut so_far = PathBuf::from("/");
    for (i, comp) in comps.iter().enumerate() {
        so_far.push(comp);
        let last = i + 1 == comps.len();
        match open_in_root(root, &so_far, libc::O_PATH, 0) {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) => {
                let name = CString::new(comp.as_os_str().as_encoded_bytes()).map_err(|_| {
                    Error::InvalidConfig(format!("path {} has a NUL byte", path.display()))
                })?;
                // Parent is an O_PATH fd: create through /proc/self/fd would follow; use *at
                // calls against a real directory fd reopened from it.
                let parent = reopen_dir(&cur).map_err(|e| {
                    Error::sys(format!("cannot open parent of {}", so_far.display()), e)
                })?;
                // SAFETY: plain *at syscalls on an fd we own.
                let rc = if last && !dir {
                    unsafe {
                        libc::mknodat(parent.as_raw_fd(), name.as_ptr(), libc::S_IFREG | 0o644, 0)
                    }
                } else {
                    unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) }
                };
                if rc != 0 && Errno::last() != Errno::EEXIST {
                    return Err(Error::sys(
                        format!("cannot create {}", so_far.display()),
                        Errno::last(),
                    ));
                }
                if rc != 0 {
                    // A dangling symlink (an image may point /data at /mnt/data): create what
                    // it points at, resolved inside the root like everything else here.
                    if let Some(target) = read_link_at(&parent, &name) {
                        let base = so_far.parent().unwrap_or(Path::new("/")).to_path_buf();
                        let mut next = if target.is_absolute() {
                            target
                        } else {
                            base.join(target)
                        };
                        for rest in &comps[i + 1..] {
                            next.push(rest);
                        }
                        return ensure_in_root_depth(root, &next, dir, depth + 1);
                    }
                }
                cur = open_in_root(root, &so_far, libc::O_PATH, 0)
                    .map_err(|e| Error::sys(format!("cannot open {}", so_far.display()), e))?;
            }
            Err(e) => {
                return Err(Error::sys(
                    format!("cannot resolve {}", so_far.display()),
                    e,
                ))
            }
        }
    }
    Ok(cur)
}

/// The target of symlink `name` in directory `dir`, if it is one.
fn read_link_at(dir: &OwnedFd, name: &CString) -> Option<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a buffer of the given size.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

pub fn reopen_dir(fd: &OwnedFd) -> std::result::Result<OwnedFd, Errno> {
    let dot = c".";
    // SAFETY: openat relative to a directory O_PATH fd.
    let r = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            dot.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: new fd from the kernel.
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    }
}

/// The magic-link path of an fd, for mount(2) calls that must act on exactly that inode.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

pub use husk_sys::idmap::{
    userns_with_maps, MountAttr, AT_EMPTY_PATH, AT_RECURSIVE, MOUNT_ATTR_IDMAP, MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL))
}

/// `husk_sys::idmap::attach_tree`, its error as an errno.
pub fn attach_tree(tree: &OwnedFd, target: &OwnedFd) -> std::result::Result<(), Errno> {
    husk_sys::idmap::attach_tree(tree, target).map_err(errno)
}

/// `husk_sys::idmap::idmapped_tree`, its error as an errno.
pub fn idmapped_tree(
    source: &Path,
    recursive: bool,
    userns: &OwnedFd,
) -> std::result::Result<OwnedFd, Errno> {
    husk_sys::idmap::idmapped_tree(source, recursive, userns, 0).map_err(errno)
}

/// mount_setattr(2) on the mount at `fd`, recursively (the `rro`, `rnosuid`, ... options).
pub fn mount_setattr_recursive(fd: &OwnedFd, set: u64, clr: u64) -> std::result::Result<(), Errno> {
    // The atime mode is one field: the kernel takes a new one only with the whole field cleared.
    let clr = if (set | clr) & MOUNT_ATTR__ATIME != 0 {
        clr | MOUNT_ATTR__ATIME
    } else {
        clr
    };
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: valid struct pointer and size; empty path with AT_EMPTY_PATH acts on fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_cannot_lead_out_of_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        symlink(outside.path(), root.path().join("escape")).expect("symlink");
        symlink("../../../../..", root.path().join("up")).expect("symlink");
        let rootfd = std::fs::File::open(root.path()).expect("open root");
        // Creating through the links lands inside the root (or is refused), never in `outside`.
        let _ = ensure_in_root(rootfd.as_raw_fd(), Path::new("/escape/made"), true);
        ensure_in_root(rootfd.as_raw_fd(), Path::new("/up/etc/made2"), false).expect("ensure");
        assert!(
            std::fs::read_dir(outside.path())
                .expect("read")
                .next()
                .is_none(),
            "nothing escaped"
        );
        let escaped = outside.path().join("made");
        assert!(!escaped.exists());
        assert!(root.path().join("etc/made2").is_file());
    }

    #[test]
    fn dotdot_stays_in_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let rootfd = std::fs::File::open(root.path()).expect("open root");
        ensure_in_root(rootfd.as_raw_fd(), Path::new("/../../x"), true).expect("ensure");
        assert!(root.path().join("x").is_dir());
    }
}
