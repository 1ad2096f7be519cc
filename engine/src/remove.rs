//! Removing a stopped container: its runtime state, root mount, record, name and directory,
//! in an order a crash at any point leaves readable (the record goes before the directory).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::layers;
use crate::store::{self, Container, Status};
use crate::volumes;

/// Remove a stopped container: its runtime state, mount, directory and name, and with
/// `anonymous_volumes` the anonymous volumes made for it.
pub fn remove(root: &Path, c: &Container, anonymous_volumes: bool) -> Result<()> {
    let dir = store::dir(root, &c.id);
    // A monitor that just recorded the exit is finishing up (unmounting, or removing a --rm
    // container itself): give it a moment, without holding the lock it may need.
    if let Ok(cur) = Container::load(root, &c.id) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while cur.busy()
            && cur.state.monitor_pid != std::process::id() as i32
            && cur.observed().status != Status::Running
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The name as the record has it now (a rename may have come after the caller read it).
    let mut name = c.name.clone();
    {
        let _l = match store::lock(root, &c.id) {
            Ok(l) => l,
            // Gone meanwhile: its monitor removed it (`--rm`), which is what was asked.
            Err(_) if !dir.exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        // Decide on what is on disk now, not on what the caller read earlier.
        let current = match Container::load(root, &c.id) {
            Ok(cur) => Some(cur),
            Err(_) if !dir.join("container.json").exists() => None,
            Err(e) => return Err(e),
        };
        if let Some(cur) = &current {
            name = cur.name.clone();
            if cur.observed().status == Status::Running {
                return Err(running_conflict(&c.name));
            }
            if cur.busy() && cur.state.monitor_pid != std::process::id() as i32 {
                return Err(Error::Conflict(format!(
                    "container {} is being started or stopped by another husk",
                    c.name
                )));
            }
            // The exit code outlives the record, for `wait` on a --rm container.
            let _ = store::save_exit(root, &c.id, cur.state.exit_code);
        }
        let _ = store::runtime(root).delete(&c.id, true);
        // A monitor that was SIGKILLed left its network behind: addresses, ports, rules.
        crate::networking::detach(root, &c.id);
        layers::unmount_rootfs(root, &c.id);
        match std::fs::remove_file(dir.join("container.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove container {}", c.name)),
        }
        if let Some(cur) = &current {
            crate::events::emit(root, "container", "destroy", &c.id, &cur.event_attributes());
        }
    }
    // The name goes with the record, whatever happens to the directory.
    store::release_name(root, &name, &c.id);
    crate::userns::release(root, &c.id);
    if anonymous_volumes {
        for v in &c.anonymous_volumes {
            let _ = volumes::remove(root, v, false);
        }
    }
    // Out of the way first, in one step: a command that raced this one (a lock taken, a
    // log opened) then finds no directory rather than recreating a file in one half
    // deleted, which would leave it behind without its record.
    let gone = dir.with_file_name(format!(".gone-{}", c.id));
    let target = match std::fs::rename(&dir, &gone) {
        Ok(()) => gone,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => dir,
    };
    match std::fs::remove_dir_all(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", target.display())),
    }
}

/// Removing a running container without force, refused as docker words it (whether seen
/// before or, after a concurrent start, under the record's lock).
pub(crate) fn running_conflict(name: &str) -> Error {
    Error::Conflict(format!(
        "cannot remove container {name}: container is running: stop the container before removing or force remove"
    ))
}
