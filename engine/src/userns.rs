//! `--userns auto` (podman's): each container gets a block of ids of its own, out of the
//! ranges `/etc/subuid` and `/etc/subgid` give the user `containers`, so no two containers
//! of a store share a host id. A block is claimed by a file `userns/K` (its index) holding the
//! container's id, made with O_EXCL, so two `run`s at once never get one block; a claim whose
//! container is gone is taken back.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{invalid, Error, Result};
use crate::options::{IdMap, IdMaps};
use crate::rootless::{subordinate_ranges, IdRange};
use crate::store;

/// The user whose subordinate ranges `--userns auto` draws from, as podman's.
const RANGE_USER: &str = "containers";

fn claims_dir(root: &Path) -> PathBuf {
    root.join("userns")
}

fn first_range(file: &str) -> Result<IdRange> {
    let text = fs::read_to_string(file).unwrap_or_default();
    // `containers` is a name, not a uid: no uid matches u32::MAX.
    let ranges = subordinate_ranges(&text, RANGE_USER, u32::MAX);
    ranges.into_iter().max_by_key(|r| r.count).ok_or_else(|| {
        Error::Invalid(format!(
            "--userns auto needs ids for the user {RANGE_USER:?} in {file} (add a line such as {RANGE_USER}:2147483647:2147483648 to /etc/subuid and /etc/subgid)"
        ))
    })
}

/// Claims a free block of `size` ids for container `id`: its maps (0 inside is the block's
/// first id on the host).
pub fn claim(root: &Path, id: &str, size: u32) -> Result<IdMaps> {
    let (uids, gids) = (first_range("/etc/subuid")?, first_range("/etc/subgid")?);
    let blocks = (uids.count / size).min(gids.count / size);
    let dir = claims_dir(root);
    fs::create_dir_all(&dir)
        .map_err(|e| Error::Failed(format!("cannot create {}: {e}", dir.display())))?;
    for k in 0..blocks {
        let file = dir.join(k.to_string());
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
            {
                Ok(mut f) => {
                    f.write_all(id.as_bytes()).map_err(|e| {
                        Error::Failed(format!("cannot write {}: {e}", file.display()))
                    })?;
                    let map = |r: &IdRange| {
                        vec![IdMap {
                            container: 0,
                            host: r.start + k * size,
                            size,
                        }]
                    };
                    return Ok(IdMaps {
                        uid: map(&uids),
                        gid: map(&gids),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Taken, unless its container is gone: then free it and try once more.
                    let owner = fs::read_to_string(&file).unwrap_or_default();
                    let gone = !owner.is_empty() && !store::dir(root, owner.trim()).exists();
                    if !gone || fs::remove_file(&file).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    return Err(Error::Failed(format!(
                        "cannot create {}: {e}",
                        file.display()
                    )))
                }
            }
        }
    }
    invalid!(
        "--userns auto: every block of {size} ids in the {RANGE_USER:?} ranges of /etc/subuid and /etc/subgid is taken ({blocks} blocks); remove containers or add ids"
    )
}

/// Gives back the block container `id` claimed, if any.
pub fn release(root: &Path, id: &str) {
    let Ok(entries) = fs::read_dir(claims_dir(root)) else {
        return;
    };
    for e in entries.flatten() {
        if fs::read_to_string(e.path()).is_ok_and(|o| o.trim() == id) {
            let _ = fs::remove_file(e.path());
        }
    }
}
