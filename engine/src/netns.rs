//! Network namespaces that outlive no process: made before the container (the CNI plugins
//! need one to put the interface in), kept by a bind mount of nsfs on a file, as `ip netns`
//! and podman keep theirs, and passed to the runtime as the spec's namespace path.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{failed, Context, Result};

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| failed!("{} has a NUL byte", p.display()))
}

fn bind(from: &Path, to: &Path) -> Result<()> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    // SAFETY: a bind mount between two paths we own; no pointers kept.
    let rc = unsafe {
        libc::mount(
            f.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot bind {} to {}", from.display(), to.display()));
    }
    Ok(())
}

fn mount_target(path: &Path) -> Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(())
}

/// A new network namespace with `lo` up, kept at `path`. A thread of its own unshares, so
/// this process keeps its namespace (unshare of a network namespace is per thread).
pub fn create(path: &Path) -> Result<()> {
    mount_target(path)?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("cannot create a network namespace")?;
            husk_sys::loopback_up().context("cannot bring up lo in the new network namespace")?;
            bind(Path::new("/proc/thread-self/ns/net"), &target)
        })
        .context("cannot start a thread")?
        .join()
        .map_err(|_| failed!("the network namespace thread panicked"))?;
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Keep another process's network namespace at `path` (`--network container:NAME`).
pub fn share(pid: i32, path: &Path) -> Result<()> {
    mount_target(path)?;
    let made = bind(Path::new(&format!("/proc/{pid}/ns/net")), path);
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Let go of the namespace at `path`: it ends with its last process.
pub fn remove(path: &Path) {
    if let Ok(c) = cpath(path) {
        // SAFETY: umount2 of a path; EINVAL when it is not mounted, which is fine.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = fs::remove_file(path);
}
