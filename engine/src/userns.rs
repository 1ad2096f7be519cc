//! The host ids of containers in user namespaces of their own. `--userns auto` (podman's)
//! gives each container a block of ids out of the ranges `/etc/subuid` and `/etc/subgid` give
//! the user `containers`, overlapping no other container's ids. Every such container, `auto`
//! or `--uidmap`, has a record `userns/ID` of the host ids it uses; a claim reads them all and
//! writes its own under one lock, so two `run`s at once never get one block. A record whose
//! container is gone is dropped by the next claim.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{invalid, Error, Result};
use crate::options::{IdMap, IdMaps};
use crate::rootless::{subordinate_ranges, IdRange};
use crate::store;

/// The user whose subordinate ranges `--userns auto` draws from, as podman's.
const RANGE_USER: &str = "containers";

fn records_dir(root: &Path) -> PathBuf {
    root.join("userns")
}

fn failed(what: String, e: std::io::Error) -> Error {
    Error::Failed(format!("{what}: {e}"))
}

/// The largest range the file gives `containers`, checked to fit in 32 bits and to leave
/// out host id 0 (the host's root must never be a container's id).
fn range_of(file: &str) -> Result<IdRange> {
    let text = fs::read_to_string(file).unwrap_or_default();
    // `containers` is a name: no uid matches u32::MAX.
    let r = subordinate_ranges(&text, RANGE_USER, u32::MAX)
        .into_iter()
        .max_by_key(|r| r.count)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "--userns auto needs ids for the user {RANGE_USER:?} in {file} (add a line such as {RANGE_USER}:2147483647:2147483648 to /etc/subuid and /etc/subgid)"
            ))
        })?;
    if r.start == 0 || u64::from(r.start) + u64::from(r.count) > u64::from(u32::MAX) {
        invalid!(
            "--userns auto: the range {}:{} of {RANGE_USER:?} in {file} is not usable (it must leave out id 0 and end below 2^32-1)",
            r.start,
            r.count
        );
    }
    Ok(r)
}

/// The host ids (uids, gids: [start, end) each) the other containers' records hold; records of
/// containers that are gone are dropped.
fn taken(root: &Path) -> Vec<((u64, u64), (u64, u64))> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(records_dir(root)) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lock" {
            continue;
        }
        if !store::dir(root, &name).exists() {
            let _ = fs::remove_file(e.path());
            continue;
        }
        let Ok(maps) = fs::read(e.path())
            .map_err(|_| ())
            .and_then(|b| serde_json::from_slice::<IdMaps>(&b).map_err(|_| ()))
        else {
            continue;
        };
        let span = |v: &[IdMap]| -> Vec<(u64, u64)> {
            v.iter()
                .map(|m| (u64::from(m.host), u64::from(m.host) + u64::from(m.size)))
                .collect()
        };
        for u in span(&maps.uid) {
            for g in span(&maps.gid) {
                out.push((u, g));
            }
        }
    }
    out
}

fn write_record(root: &Path, id: &str, maps: &IdMaps) -> Result<()> {
    let file = records_dir(root).join(id);
    let body = serde_json::to_vec(maps)?;
    fs::write(&file, body).map_err(|e| failed(format!("cannot write {}", file.display()), e))
}

fn lock(root: &Path) -> Result<fs::File> {
    let dir = records_dir(root);
    fs::create_dir_all(&dir).map_err(|e| failed(format!("cannot create {}", dir.display()), e))?;
    husk_sys::lock_file(&dir.join("lock"), true)
        .map_err(|e| failed(format!("cannot lock {}", dir.display()), e))
}

/// Keeps the record of container `id`'s `--uidmap` ids, so that `auto` leaves them be.
pub fn record(root: &Path, id: &str, maps: &IdMaps) -> Result<()> {
    let _lock = lock(root)?;
    write_record(root, id, maps)
}

/// Claims the first block of `size` ids (uids and gids at the same offset into their ranges)
/// that no other container uses, for container `id`: its maps (0 inside is the block's first
/// id on the host).
pub fn claim(root: &Path, id: &str, size: u32) -> Result<IdMaps> {
    let ((uids, gids), source) = if crate::rootless::is_rootless() {
        (
            rootless_ranges()?,
            "ids of rootless husk's user namespace (your ranges in /etc/subuid and /etc/subgid)",
        )
    } else {
        (
            (range_of("/etc/subuid")?, range_of("/etc/subgid")?),
            "\"containers\" ranges of /etc/subuid and /etc/subgid",
        )
    };
    let room = uids.count.min(gids.count);
    if size > room {
        invalid!("--userns auto:size={size}: the {source} hold {room} ids");
    }
    let _lock = lock(root)?;
    let used = taken(root);
    let overlaps = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
    let size64 = u64::from(size);
    let mut offset: u64 = 0;
    while offset + size64 <= u64::from(room) {
        let u = (
            u64::from(uids.start) + offset,
            u64::from(uids.start) + offset + size64,
        );
        let g = (
            u64::from(gids.start) + offset,
            u64::from(gids.start) + offset + size64,
        );
        // The first container in the way: skip past it.
        let blocker = used
            .iter()
            .filter(|(tu, tg)| overlaps(u, *tu) || overlaps(g, *tg))
            .map(|(tu, tg)| {
                let mut end = offset + 1;
                if overlaps(u, *tu) {
                    end = end.max(tu.1 - u64::from(uids.start));
                }
                if overlaps(g, *tg) {
                    end = end.max(tg.1 - u64::from(gids.start));
                }
                end
            })
            .max();
        match blocker {
            Some(next) => offset = next,
            None => {
                let maps = IdMaps {
                    uid: vec![IdMap {
                        container: 0,
                        host: u.0 as u32,
                        size,
                    }],
                    gid: vec![IdMap {
                        container: 0,
                        host: g.0 as u32,
                        size,
                    }],
                };
                write_record(root, id, &maps)?;
                return Ok(maps);
            }
        }
    }
    invalid!("--userns auto: no {size} ids are free in the {source}; remove containers or add ids")
}

/// Rootless, a container's host ids are ids of the user namespace husk runs in: its largest
/// block besides id 0 (the user), which `/etc/subuid` and `/etc/subgid` gave it.
fn rootless_ranges() -> Result<(IdRange, IdRange)> {
    let read = |file: &str| {
        let text =
            fs::read_to_string(file).map_err(|e| failed(format!("cannot read {file}"), e))?;
        crate::rootless::namespace_range(&text).ok_or_else(|| {
            Error::Invalid(format!(
                "--userns auto needs subordinate ids: rootless husk's user namespace maps only you ({file}); add a line for you to /etc/subuid and /etc/subgid, then run husk system migrate"
            ))
        })
    };
    Ok((read("/proc/self/uid_map")?, read("/proc/self/gid_map")?))
}

/// Drops container `id`'s record, if any.
pub fn release(root: &Path, id: &str) {
    let _ = fs::remove_file(records_dir(root).join(id));
}
