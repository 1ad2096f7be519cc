//! Namespaces: which to create, which to join by path, the user namespace's id maps and the
//! time namespace's offsets.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};
use crate::util::write_file;

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of a namespace under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The namespace plan of a container: the ones to create and the ones to join.
#[derive(Debug)]
pub struct Plan {
    /// Namespaces to unshare (user excluded: it goes first, on its own; cgroup excluded: the
    /// init unshares it once it is inside its cgroup, which becomes the namespace's root).
    pub new: CloneFlags,
    pub new_cgroup: bool,
    pub new_user: bool,
    /// Opened before anything changes, so paths are resolved in the runtime's mount namespace.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
}

impl Plan {
    pub fn from_spec(linux: &Linux) -> Result<Plan> {
        let mut plan = Plan {
            new: CloneFlags::empty(),
            new_cgroup: false,
            new_user: false,
            join: Vec::new(),
        };
        for ns in linux.namespaces().iter().flatten() {
            match ns.path() {
                Some(path) => {
                    let f = File::open(path).ctx(format_args!(
                        "cannot open {} namespace {}",
                        proc_name(ns.typ()),
                        path.display()
                    ))?;
                    plan.join.push((ns.typ(), f.into()));
                }
                None if ns.typ() == LinuxNamespaceType::User => plan.new_user = true,
                None if ns.typ() == LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                None => plan.new |= clone_flag(ns.typ()),
            }
        }
        // The user namespace is joined first: the others are then owned by (or entered with the
        // privileges of) it. Mount last, so every other path was resolved on the host.
        plan.join.sort_by_key(|(t, _)| match t {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        Ok(plan)
    }

    pub fn has(&self, linux: &Linux, t: LinuxNamespaceType) -> bool {
        linux.namespaces().iter().flatten().any(|n| n.typ() == t)
    }

    pub fn join_all(&self) -> Result<()> {
        for (t, fd) in &self.join {
            setns(fd.as_fd(), clone_flag(*t))
                .ctx(format_args!("cannot join {} namespace", proc_name(*t)))?;
        }
        Ok(())
    }

    pub fn unshare_user(&self) -> Result<()> {
        if self.new_user {
            unshare(CloneFlags::CLONE_NEWUSER).ctx("cannot create user namespace")?;
        }
        Ok(())
    }

    pub fn unshare_cgroup(&self) -> Result<()> {
        if self.new_cgroup {
            unshare(CloneFlags::CLONE_NEWCGROUP).ctx("cannot create cgroup namespace")?;
        }
        Ok(())
    }

    pub fn unshare_rest(&self) -> Result<()> {
        if !self.new.is_empty() {
            unshare(self.new).ctx(format_args!("cannot create namespaces ({:?})", self.new))?;
        }
        Ok(())
    }
}

fn format_map(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write uid_map and gid_map of `pid` (which has just unshared its user namespace).
pub fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    let uid = linux.uid_mappings().as_deref().unwrap_or_default();
    let gid = linux.gid_mappings().as_deref().unwrap_or_default();
    // An unprivileged writer may only map itself, and only after refusing setgroups.
    if !nix::unistd::geteuid().is_root() {
        write_file(Path::new(&format!("/proc/{pid}/setgroups")), "deny")?;
    }
    write_file(Path::new(&format!("/proc/{pid}/uid_map")), &format_map(uid))?;
    write_file(Path::new(&format!("/proc/{pid}/gid_map")), &format_map(gid))?;
    Ok(())
}

/// Offsets of a new time namespace: written by its first process before any child enters it.
pub fn write_time_offsets(linux: &Linux) -> Result<()> {
    let Some(offsets) = linux.time_offsets() else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        let name = match clock.as_str() {
            "monotonic" | "boottime" => clock.as_str(),
            other => {
                return Err(Error::InvalidConfig(format!(
                    "timeOffsets: unknown clock {other:?}"
                )))
            }
        };
        text.push_str(&format!(
            "{name} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    write_file(Path::new("/proc/self/timens_offsets"), &text)
}

/// True when `pid`'s namespace of kind `name` is a different one from ours.
pub fn differs_from_ours(pid: i32, name: &str) -> Result<bool> {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"))
        .ctx(format_args!("cannot inspect {name} namespace of pid {pid}"))?;
    let ours = match std::fs::metadata(format!("/proc/self/ns/{name}")) {
        Ok(m) => m,
        Err(_) => return Ok(true),
    };
    Ok(theirs.ino() != ours.ino() || theirs.dev() != ours.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_written_as_the_kernel_reads_them() {
        let m: Vec<LinuxIdMapping> = serde_json::from_value(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 0, "size": 1}
        ]))
        .expect("mapping parses");
        assert_eq!(format_map(&m), "0 100000 65536\n65536 0 1\n");
    }
}
