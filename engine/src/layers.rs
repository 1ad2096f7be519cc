//! A container's root filesystem: its image's layers plus its upper directory, mounted and
//! unmounted; and the release of the layers' shared mounts.
//!
//! Releasing layer mounts. A layer's shared EROFS mount outlives its last user by a grace
//! period (`snapshot::mount_grace`), so that back-to-back containers find the layer mounted
//! with its page cache warm. The mount still goes without a daemon: the last user starts a
//! reaper, `husk reap-layer-mounts`, a process of its own that waits out the grace and unmounts
//! what is still idle. One reaper watches a layer at a time (it holds an flock), so a loop of
//! `run --rm` starts one reaper per grace period, not one per container.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use husk_image::Digest;

use crate::error::Result;
use crate::store::{self, Container};

static REAPER: OnceLock<PathBuf> = OnceLock::new();

/// The program that is `husk reap-layer-mounts` (the husk binary). Without one, a layer's
/// mount goes as soon as its last user leaves, with no grace period.
pub fn set_reaper(program: PathBuf) {
    let _ = REAPER.set(program);
}

/// Mount the container's root (its image's layers plus its upper directory) unless mounted.
pub fn mount_rootfs(root: &Path, c: &Container) -> Result<()> {
    let dir = store::dir(root, &c.id);
    let rootfs = dir.join("rootfs");
    if husk_sys::is_mount_point(&rootfs) {
        return Ok(());
    }
    let diff_ids: Vec<husk_image::Digest> = c
        .diff_ids
        .iter()
        .map(|d| husk_image::Digest::parse(d))
        .collect::<husk_image::Result<_>>()?;
    mount_root(
        root,
        &dir,
        &diff_ids,
        c.rootfs_dir.as_deref(),
        c.auto_remove,
        c.id_maps.as_ref(),
    )
}

/// Mount container directory `dir`'s root on `dir/rootfs`: the layers `diff_ids` (or, with
/// `--rootfs`, the directory `rootfs_dir`) under its upper directory. A --rm container's
/// upper directory goes when it exits: it is `volatile`, skipping overlayfs's syncs (podman
/// does the same), so its end does not wait for a syncfs of the host's file system, dirty
/// with whatever else the machine writes.
pub fn mount_root(
    root: &Path,
    dir: &Path,
    diff_ids: &[husk_image::Digest],
    rootfs_dir: Option<&Path>,
    volatile: bool,
    id_maps: Option<&crate::options::IdMaps>,
) -> Result<()> {
    use crate::options::IdMaps;
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    let upper = husk_image::snapshot::Upper {
        dir: &upper,
        work: &work,
        volatile,
    };
    match (rootfs_dir, id_maps) {
        (Some(d), _) => husk_image::snapshot::mount_directory(d, upper, &rootfs)?,
        (None, None) => husk_image::snapshot::mount(root, diff_ids, Some(upper), &rootfs)?,
        // Rootless, idmapping the layers takes privilege: fuse-overlayfs shifts them instead.
        (None, Some(m)) if crate::rootless::is_rootless() => {
            let lines = |maps: &[crate::options::IdMap]| -> Vec<(u32, u32, u32)> {
                maps.iter().map(|m| (m.container, m.host, m.size)).collect()
            };
            husk_image::snapshot::mount_shifted(
                root,
                diff_ids,
                upper,
                &rootfs,
                &lines(&m.uid),
                &lines(&m.gid),
            )?;
        }
        (None, Some(m)) => {
            let userns =
                husk_sys::idmap::userns_with_maps(&IdMaps::lines(&m.uid), &IdMaps::lines(&m.gid))
                    .map_err(|e| {
                    crate::error::Error::Failed(format!(
                        "cannot make the user namespace of --uidmap: {e}"
                    ))
                })?;
            let scratch = dir.join("idmapped");
            husk_image::snapshot::mount_idmapped(
                root,
                diff_ids,
                upper,
                &rootfs,
                &userns,
                (IdMaps::host_of(&m.uid, 0), IdMaps::host_of(&m.gid, 0)),
                &scratch,
            )?;
        }
    }
    Ok(())
}

pub fn unmount_rootfs(root: &Path, id: &str) {
    // A --uidmap start that a kill interrupted may have left its idmapped layers attached.
    husk_image::snapshot::clear_idmapped(&store::dir(root, id).join("idmapped"));
    let rootfs = store::dir(root, id).join("rootfs");
    if !husk_sys::is_mount_point(&rootfs) {
        return;
    }
    let _ = husk_image::snapshot::unmount(&rootfs);
    // This container no longer uses its layers' shared EROFS mounts; the last user unmounts.
    if let Ok(c) = Container::load(root, id) {
        let diff_ids: Vec<husk_image::Digest> = c
            .diff_ids
            .iter()
            .filter_map(|d| husk_image::Digest::parse(d).ok())
            .collect();
        release_layers(root, &diff_ids);
    }
}

/// This user of `diff_ids` is done: hand the layers it leaves idle to a reaper.
pub fn release_layers(root: &Path, diff_ids: &[Digest]) {
    let idle = husk_image::snapshot::release_layers(root, diff_ids);
    if idle.is_empty() {
        return;
    }
    let reaped = REAPER.get().is_some_and(|p| spawn(p, root, &idle).is_ok());
    if !reaped {
        // No reaper: unmount them now rather than leave them up.
        husk_image::snapshot::reap_idle_mounts(root, &idle, &mut |_| false);
    }
}

fn spawn(program: &Path, root: &Path, layers: &[Digest]) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // Its own process group: a ^C at the terminal is for the container, not for the reaper.
    // No stdio: a caller reading husk's output must see EOF when husk exits.
    Command::new(program)
        .arg0("husk")
        .arg("--root")
        .arg(root)
        .arg("reap-layer-mounts")
        .args(layers.iter().map(Digest::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()
        .map(drop)
}

/// The reaper's own body (`husk reap-layer-mounts DIGEST...`). SIGTERM, SIGINT or SIGHUP (a
/// service or CI job being stopped) end the wait: the idle mounts go at once.
pub fn reap(root: &Path, layers: &[String]) -> Result<()> {
    let layers: Vec<Digest> = layers
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<husk_image::Result<_>>()?;
    let mut stops = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        stops.add(s);
    }
    stops.thread_block()?;
    husk_image::snapshot::reap_idle_mounts(root, &layers, &mut |d| {
        let ts = libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        // SAFETY: sigtimedwait on a valid set and timeout; no siginfo wanted.
        let r = unsafe { libc::sigtimedwait(stops.as_ref(), std::ptr::null_mut(), &ts) };
        // A signal number: told to stop. EAGAIN: the time is up. EINTR: wait again.
        r < 0
    });
    Ok(())
}
