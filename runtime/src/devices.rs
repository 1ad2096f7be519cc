//! /dev inside the container: the devices the spec says every container has, `linux.devices`,
//! and the standard symlinks.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use crate::error::{Context, Error, Result};
use crate::fsutil::{ensure_in_root, fd_path, open_in_root};

/// The devices the runtime spec requires (null, zero, full, random, urandom, tty).
pub fn default_devices() -> Vec<(PathBuf, u64, u64)> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, ma, mi)| (PathBuf::from(p), ma, mi))
    .collect()
}

/// Whether the container's /dev is a bind of the host's (then nothing is created).
fn dev_is_bound(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    })
}

pub fn create(spec: &Spec, rootfs: &Path, in_user_ns: bool) -> Result<()> {
    if dev_is_bound(spec) {
        return Ok(());
    }
    let root = std::fs::File::open(rootfs).ctx_path("cannot open rootfs", rootfs)?;
    let root = root.as_raw_fd();
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = (|| {
        let configured: Vec<&LinuxDevice> = spec
            .linux()
            .iter()
            .flat_map(|l| l.devices().iter().flatten())
            .collect();
        for (path, major, minor) in default_devices() {
            // A device of the same path in linux.devices wins.
            if configured.iter().any(|d| d.path() == &path) {
                continue;
            }
            make_node(
                root,
                &path,
                SFlag::S_IFCHR,
                major,
                minor,
                0o666,
                0,
                0,
                in_user_ns,
            )?;
        }
        for d in configured {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(Error::InvalidConfig(format!(
                        "device {}: type \"a\" is only valid in cgroup rules",
                        d.path().display()
                    )))
                }
            };
            check_existing(root, d.path(), kind, d.major() as u64, d.minor() as u64)?;
            make_node(
                root,
                d.path(),
                kind,
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
                in_user_ns,
            )?;
        }
        symlinks(root, spec)
    })();
    nix::sys::stat::umask(old_umask);
    result
}

/// The spec: a file already at a configured device's path that is not that device is an
/// error (the image's own node of the same device is replaced, with the config's mode).
fn check_existing(root: i32, path: &Path, kind: SFlag, major: u64, minor: u64) -> Result<()> {
    let Ok(fd) = open_in_root(root, path, libc::O_PATH | libc::O_NOFOLLOW, 0) else {
        return Ok(());
    };
    let st = nix::sys::stat::fstat(&fd).ctx_path("cannot stat", path)?;
    let same_kind = st.st_mode & libc::S_IFMT == kind.bits();
    let same_device =
        kind == SFlag::S_IFIFO || st.st_rdev == libc::makedev(major as u32, minor as u32);
    if same_kind && same_device {
        return Ok(());
    }
    Err(Error::InvalidConfig(format!(
        "device {}: a file that is not that device is already there",
        path.display()
    )))
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    root: i32,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    in_user_ns: bool,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/dev"));
    let name = path.file_name().ok_or_else(|| {
        Error::InvalidConfig(format!("device path {} has no name", path.display()))
    })?;
    let dir = ensure_in_root(root, parent, true)?;
    let dir = reopen(&dir, parent)?;
    let cname = CString::new(name.as_encoded_bytes()).map_err(|_| {
        Error::InvalidConfig(format!("device path {} has a NUL byte", path.display()))
    })?;
    // A leftover of the same name (from the image) is replaced.
    // SAFETY: *at calls on a directory fd we own.
    unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
    if in_user_ns {
        // mknod is not allowed in a user namespace: bind the host's node onto an empty file.
        // SAFETY: as above.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                libc::O_CREAT | libc::O_CLOEXEC | libc::O_WRONLY,
                0o644,
            )
        };
        if fd < 0 {
            return Err(Error::io(
                format!("cannot create {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: closing the fd just opened.
        unsafe { libc::close(fd) };
        let target = open_in_root(root, path, libc::O_PATH, 0).ctx_path("cannot reopen", path)?;
        return mount(
            Some(path),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx_path("cannot bind host device", path);
    }
    let dev = makedev(major, minor);
    // SAFETY: as above.
    let rc = unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            kind.bits() | (mode & 0o7777),
            dev,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            format!("cannot create device {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above; AT_SYMLINK_NOFOLLOW so a racing symlink cannot redirect the chown.
    let rc = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            format!("cannot chown device {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn reopen(fd: &std::os::fd::OwnedFd, what: &Path) -> Result<std::os::fd::OwnedFd> {
    crate::fsutil::reopen_dir(fd)
        .map_err(|e| Error::sys(format!("cannot open {}", what.display()), e))
}

fn symlinks(root: i32, spec: &Spec) -> Result<()> {
    let dev = ensure_in_root(root, Path::new("/dev"), true)?;
    let dev = reopen(&dev, Path::new("/dev"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let has_devpts = spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == Path::new("/dev/pts"));
    if has_devpts {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            let n = CString::new(name).unwrap_or_default();
            // SAFETY: unlinkat on our dir fd; an image's /dev/ptmx node is replaced.
            unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
        }
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("cannot create /dev/{name}"), e)),
        }
    }
    Ok(())
}
