//! Releasing layer mounts. A layer's shared EROFS mount outlives its last user by a grace
//! period (`snapshot::mount_grace`), so that back-to-back containers find the layer mounted
//! with its page cache warm. The mount still goes without a daemon: the last user starts a
//! reaper, `husk reap-layer-mounts`, a process of its own that waits out the grace and unmounts
//! what is still idle. One reaper watches a layer at a time (it holds an flock), so a loop of
//! `run --rm` starts one reaper per grace period, not one per container.

use std::path::Path;
use std::process::{Command, Stdio};

use husk_image::Digest;

/// This user of `diff_ids` is done: hand the layers it leaves idle to a reaper.
pub fn release_layers(root: &Path, diff_ids: &[Digest]) {
    let idle = husk_image::snapshot::release_layers(root, diff_ids);
    if idle.is_empty() {
        return;
    }
    if spawn(root, &idle).is_err() {
        // No reaper: unmount them now rather than leave them up.
        husk_image::snapshot::reap_idle_mounts(root, &idle, &mut |_| false);
    }
}

fn spawn(root: &Path, layers: &[Digest]) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // Its own process group: a ^C at the terminal is for the container, not for the reaper.
    // No stdio: a caller reading husk's output must see EOF when husk exits.
    Command::new("/proc/self/exe")
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
pub fn reap(root: &Path, layers: &[String]) -> anyhow::Result<()> {
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
