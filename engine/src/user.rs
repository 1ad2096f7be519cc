//! Users and groups of an image: `--user name:group` resolved against the image's own
//! /etc/passwd and /etc/group, read inside its root (never through a symlink out of it).

use std::fs;
use std::path::Path;

use crate::error::{failed, Result};

/// A small regular file of the image, resolved inside its root (an image's /etc/passwd may be
/// a symlink to a host path, or a FIFO to hang us); empty when it is not there or not regular.
fn read_in_root(rootfs: &Path, path: &str) -> String {
    use std::io::Read;
    let Ok(root) = fs::File::open(rootfs) else {
        return String::new();
    };
    let Ok(fd) = husk_sys::open_in_root(
        std::os::fd::AsRawFd::as_raw_fd(&root),
        Path::new(path),
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    ) else {
        return String::new();
    };
    let f = fs::File::from(fd);
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut s = String::new();
    let _ = f.take(1 << 20).read_to_string(&mut s);
    s
}

/// The groups of the image's /etc/group that list the user (by its /etc/passwd name) as a
/// member, besides its primary group, as docker gives them.
pub fn supplementary_groups(rootfs: &Path, uid: u32, gid: u32) -> Vec<u32> {
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let Some(name) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    }) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = read_in_root(rootfs, "/etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            let g: u32 = f.get(2)?.parse().ok()?;
            (g != gid && members.split(',').any(|m| m.trim() == name)).then_some(g)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// uid and gid for `--user` (or the image's USER): numbers, or names from the image.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let (uid, default_gid) = match user.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 3 && f[2] == user)
                        .then(|| f[3].parse().ok())
                        .flatten()
                })
                .unwrap_or(0),
        ),
        Err(_) => passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[0] == user)
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
            .ok_or_else(|| {
                failed!(
                    "unable to find user {user}: no matching entries in the image's /etc/passwd"
                )
            })?,
    };
    let gid = match group {
        None => default_gid,
        Some(g) => group_id(rootfs, g)?,
    };
    Ok((uid, gid))
}

/// A group by number, or by name from the image's /etc/group (`--user u:g`, `--group-add`).
pub fn group_id(rootfs: &Path, g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    read_in_root(rootfs, "/etc/group")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == g)
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .ok_or_else(|| {
            failed!("unable to find group {g}: no matching entries in the image's /etc/group")
        })
}
