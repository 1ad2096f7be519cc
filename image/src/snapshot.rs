//! Snapshots: an image's layers stacked as an overlayfs mount. Nothing is copied: the lower
//! layers are the unpacked layer directories, a container adds its own upper directory.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::pull::layer_dir;

/// Mount the layers (lowest first) at `target`: read-only without `upper`, writable with an
/// (upper, work) pair. With the new mount API each layer is its own `lowerdir+` option, so any
/// number of layers the kernel stacks (500) mounts; kernels before 6.8 get one mount(2) whose
/// layer paths are relative to the layers directory, which keeps the options under their
/// one-page limit for images of about sixty layers.
pub fn mount(
    root: &Path,
    diff_ids: &[Digest],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    if diff_ids.is_empty() {
        return Err(Error::Manifest(
            "an image without layers cannot be mounted".into(),
        ));
    }
    let layers_dir = root.join("layers");
    for d in diff_ids {
        let dir = layer_dir(root, d);
        if !dir.is_dir() {
            return Err(Error::io(
                format!("layer {d} is not in the store"),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
    }
    let lower_paths: Vec<PathBuf> = diff_ids.iter().rev().map(|d| layer_dir(root, d)).collect();
    let lower_refs: Vec<&Path> = lower_paths.iter().map(PathBuf::as_path).collect();
    match husk_sys::mount_overlay(&lower_refs, upper, target) {
        Ok(()) => return Ok(()),
        Err(husk_sys::OverlayError::Failed(e)) => {
            return Err(Error::io(
                format!("cannot mount the image's layers on {}", target.display()),
                e,
            ))
        }
        // A kernel before 6.8: one mount(2) option string, below.
        Err(husk_sys::OverlayError::Unsupported(_)) => {}
    }
    let lower: Vec<String> = diff_ids.iter().rev().map(|d| d.hex().to_string()).collect();
    let mut opts = format!("lowerdir={}", lower.join(":"));
    if let Some((u, w)) = upper {
        opts.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    if opts.len() >= 4096 {
        return Err(Error::Manifest(format!(
            "{} layers do not fit in one overlayfs mount",
            diff_ids.len()
        )));
    }
    // Relative lowerdir paths are resolved against the cwd of the mounting process: do the
    // mount from a child whose cwd is the layers directory, leaving ours alone.
    let c = |s: &str| {
        CString::new(s).map_err(|_| Error::Manifest(format!("path {s:?} has a NUL byte")))
    };
    let target_c = c(&target.to_string_lossy())?;
    let opts_c = c(&opts)?;
    let dir_c = c(&layers_dir.to_string_lossy())?;
    let flags = if upper.is_some() { 0 } else { libc::MS_RDONLY };
    // SAFETY: fork of a process that only calls async-signal-safe functions in the child.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io(
            "cannot fork to mount",
            std::io::Error::last_os_error(),
        )),
        0 => {
            // SAFETY: chdir and mount with valid C strings, then _exit.
            unsafe {
                let ok = libc::chdir(dir_c.as_ptr()) == 0
                    && libc::mount(
                        c"overlay".as_ptr(),
                        target_c.as_ptr(),
                        c"overlay".as_ptr(),
                        flags,
                        opts_c.as_ptr().cast(),
                    ) == 0;
                let code = if ok { 0 } else { *libc::__errno_location() };
                libc::_exit(code)
            }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waiting for the child we forked.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let code = libc::WEXITSTATUS(status);
            if libc::WIFEXITED(status) && code == 0 {
                Ok(())
            } else {
                Err(Error::io(
                    format!("cannot mount the image's layers on {}", target.display()),
                    std::io::Error::from_raw_os_error(code),
                ))
            }
        }
    }
}

pub fn unmount(target: &Path) -> Result<()> {
    let t = CString::new(target.to_string_lossy().as_bytes())
        .map_err(|_| Error::Manifest("bad path".into()))?;
    // SAFETY: umount2 with a valid path.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(Error::io(
            format!("cannot unmount {}", target.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Where a read-only mount of an image lives (`husk image mount`).
pub fn image_mount_point(root: &Path, config: &str) -> PathBuf {
    root.join("mounts")
        .join(config.trim_start_matches("sha256:"))
}
