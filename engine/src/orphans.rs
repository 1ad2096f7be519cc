//! Containers whose husk died: a detached container's monitor SIGKILLed, an attached
//! `husk run` killed, a husk killed while it made or started one. What they leave (processes,
//! the cgroup, the root mount, the network, the record) is reaped
//! - by the next husk command, which finds them in the monitored index (`store::monitored`)
//!   without reading every record (containerd does the same for a dead shim);
//! - at once, with `--die-with-parent` (bubblewrap's name), by a watcher process forked
//!   before the container is made, which wakes when its husk dies, however it dies.
//!
//! A detached container whose monitor died is killed: nothing would log its output or record
//! its exit. An attached one goes on (docker's client dies without taking the container),
//! and is reaped once it exits, unless it asked to die with its husk.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Context, Result};
use crate::layers;
use crate::store::{self, Container, Holder, Status};

/// Reap what dead monitors left in the store at `root` (every husk command calls this).
pub fn reap_all(root: &Path) {
    for (id, entry) in store::monitored(root) {
        let (tag, holder) = store::parse_monitored(&entry);
        if holder.is_some_and(|(pid, start)| husk_runtime::util::process_alive(pid, start)) {
            // Held by a live husk: nothing to reap, and no lock or record to read.
            continue;
        }
        let _ = reap(root, &id, Holder::from_tag(tag), false);
    }
}

/// Reap container `id` if no live husk holds it: kill it unless it is an attached one that
/// may go on (`kill_attached` false and it did not ask to die with its husk), release its
/// cgroup, mount and network, record how it ended, and remove it when `--rm` or
/// `--die-with-parent` says so. True when it did something.
pub fn reap(root: &Path, id: &str, holder: Holder, kill_attached: bool) -> Result<bool> {
    let dir = store::dir(root, id);
    if !dir.join("container.json").exists() {
        store::unmark_monitored(root, id);
        return Ok(false);
    }
    let removing;
    let snapshot;
    {
        // Under the record's lock: a `start` that takes the container meanwhile waits, and
        // then finds it reaped, never half.
        let _l = store::lock(root, id)?;
        let mut c = Container::load(root, id)?;
        if c.busy() {
            return Ok(false);
        }
        let observed = c.observed();
        let kill = holder == Holder::Detached || kill_attached || c.die_with_parent;
        if !kill && observed.status == Status::Running {
            // An attached container that goes on; reaped once it has exited.
            return Ok(false);
        }
        let rt = store::runtime(root);
        let _ = rt.kill(id, nix::sys::signal::Signal::SIGKILL, true);
        // Frozen processes die once thawed (the v1 freezer holds even SIGKILL).
        let _ = rt.resume(id);
        let _ = rt.delete(id, true);
        crate::networking::detach(root, id);
        layers::unmount_rootfs(root, id);
        if c.state.status == Status::Running {
            c.state.status = Status::Exited;
            c.state.exit_code = if observed.status == Status::Running {
                // Killed here, SIGKILL's code.
                128 + libc::SIGKILL
            } else {
                255
            };
            c.state.error = format!(
                "its husk (pid {}) died; husk reaped what it left",
                c.state.monitor_pid
            );
            c.state.pid = 0;
            c.state.finished_at = Some(crate::time::now());
        }
        c.state.monitor_pid = 0;
        c.state.monitor_start = 0;
        c.state.restarting = false;
        c.save(root)?;
        removing = c.auto_remove || c.die_with_parent;
        snapshot = c;
    }
    store::unmark_monitored(root, id);
    if removing {
        crate::remove::remove(root, &snapshot, true)?;
    }
    Ok(true)
}

/// What a husk killed while it made container `id` left, before there was a record: the
/// root mount, the runtime's state, the name, the directory.
fn reap_unrecorded(root: &Path, id: &str) {
    let dir = store::dir(root, id);
    if !dir.exists() || dir.join("container.json").exists() {
        return;
    }
    let _ = store::runtime(root).delete(id, true);
    crate::networking::detach(root, id);
    layers::unmount_rootfs(root, id);
    for name in store::names_of(root, id) {
        store::release_name(root, &name, id);
    }
    crate::userns::release(root, id);
    let _ = fs::remove_dir_all(&dir);
}

/// The `--die-with-parent` watcher of this process: told the container's id once it has
/// one, and that all went well when it did.
pub struct Watcher {
    to: Option<fs::File>,
}

impl Watcher {
    /// Fork the watcher (twice, so it is nobody's zombie): its own session, stdio on
    /// /dev/null, out of the caller's directory. The caller must be single-threaded.
    pub fn spawn(root: &Path) -> Result<Watcher> {
        // SAFETY: pidfd_open of ourselves; the fd is ours. Opened here, so the watcher
        // watches this process whatever pid it has by the time it looks.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id() as i32, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("--die-with-parent needs pidfd_open (Linux 5.3+)");
        }
        // SAFETY: just opened.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
        // SAFETY: the caller is single-threaded (see above).
        match unsafe { nix::unistd::fork() }.context("cannot fork the watcher")? {
            nix::unistd::ForkResult::Child => {
                drop(w);
                // SAFETY: the watcher proper, in a second child; this one leaves at once.
                if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
                    let _ = nix::unistd::setsid();
                    let _ = nix::unistd::chdir("/");
                    if let Ok(n) = fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/null")
                    {
                        for fd in 0..3 {
                            // SAFETY: dup2 onto our own stdio.
                            unsafe { libc::dup2(n.as_raw_fd(), fd) };
                        }
                    }
                    let _ = nix::sys::signal::SigSet::all().thread_unblock();
                    watch(root, pidfd, r);
                }
                // SAFETY: leave without running the parent's destructors twice.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(r);
                let _ = nix::sys::wait::waitpid(child, None);
                Ok(Watcher {
                    to: Some(fs::File::from(w)),
                })
            }
        }
    }

    /// The container's id, as soon as it has one.
    pub fn container(&mut self, id: &str) {
        if let Some(f) = &mut self.to {
            let _ = f.write_all(format!("id {id}\n").as_bytes());
        }
    }

    /// The run ended as it should (its monitor recorded it): the watcher leaves.
    pub fn done(mut self) {
        if let Some(mut f) = self.to.take() {
            let _ = f.write_all(b"done\n");
        }
    }
}

/// The watcher's life: until the parent says done, or dies, which reaps the container.
fn watch(root: &Path, parent: OwnedFd, from: OwnedFd) {
    let mut from = Some(fs::File::from(from));
    let mut said = Vec::new();
    loop {
        let mut fds = vec![PollFd::new(parent.as_fd(), PollFlags::POLLIN)];
        if let Some(f) = &from {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let parent_gone = fds[0].revents().is_some_and(|r| !r.is_empty());
        let readable = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        if readable {
            let mut buf = [0u8; 256];
            match from.as_mut().map(|f| f.read(&mut buf)) {
                Some(Ok(n)) if n > 0 => said.extend_from_slice(&buf[..n]),
                // The parent's end closed: only its death (the pidfd) says more now.
                _ => from = None,
            }
            if said.ends_with(b"done\n") {
                return;
            }
        }
        if parent_gone {
            let text = String::from_utf8_lossy(&said);
            let Some(id) = text.lines().rev().find_map(|l| l.strip_prefix("id ")) else {
                return;
            };
            if reap(root, id, Holder::Attached, true).is_err() {
                // A record too broken to read: take what is there by force.
                reap_unrecorded(root, id);
            }
            reap_unrecorded(root, id);
            return;
        }
    }
}
