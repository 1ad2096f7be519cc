//! The store's image names: which manifest each `name:tag` points at (`images.json`), kept
//! consistent under several husk processes at once (flock) and across crashes (rename).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pull::Pulled;
use crate::reference::Reference;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// `registry/repository`.
    pub name: String,
    pub tag: Option<String>,
    pub manifest: String,
    /// The config digest: docker's IMAGE ID.
    pub config: String,
    pub diff_ids: Vec<String>,
    pub size: u64,
    pub created: Option<String>,
}

fn lock(root: &Path) -> Result<File> {
    fs::create_dir_all(root)
        .map_err(|e| Error::io(format!("cannot create {}", root.display()), e))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("images.lock"))
        .map_err(|e| Error::io("cannot open the image index lock", e))?;
    // SAFETY: flock on an fd we own; released when the file is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(
            "cannot lock the image index",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(f)
}

pub fn list(root: &Path) -> Result<Vec<ImageRecord>> {
    let path = root.join("images.json");
    match fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| {
            Error::io(
                format!("{} is corrupt", path.display()),
                std::io::Error::other(e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

/// Point `reference` at what was just pulled. Returns false when it already pointed there.
pub fn record(root: &Path, reference: &Reference, pulled: &Pulled) -> Result<bool> {
    let _lock = lock(root)?;
    let mut all = list(root)?;
    let rec = ImageRecord {
        name: reference.name(),
        tag: reference.tag.clone(),
        manifest: pulled.manifest.to_string(),
        config: pulled.config.to_string(),
        diff_ids: pulled.diff_ids.iter().map(|d| d.to_string()).collect(),
        size: pulled.size,
        created: pulled.config_created.clone(),
    };
    let same_name = |r: &ImageRecord| {
        r.name == rec.name && r.tag == rec.tag && (rec.tag.is_some() || r.manifest == rec.manifest)
    };
    if all
        .iter()
        .any(|r| same_name(r) && r.manifest == rec.manifest)
    {
        return Ok(false);
    }
    all.retain(|r| !same_name(r));
    all.push(rec);
    let data = serde_json::to_vec_pretty(&all)
        .map_err(|e| Error::io("cannot encode the image index", std::io::Error::other(e)))?;
    let tmp = root.join(format!(".images.json.{}", std::process::id()));
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(&data).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, root.join("images.json")));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot write the image index", e));
    }
    Ok(true)
}
