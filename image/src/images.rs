//! The store's image names: which manifest each `name:tag` points at (`images.json`), kept
//! consistent under several husk processes at once (flock) and across crashes (rename).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// "os/arch[/variant]": one name:tag may have an image per platform (`pull --platform`
    /// adds one beside the host's, as docker's containerd store keeps them). Records from
    /// before this field are the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl ImageRecord {
    /// The record naming `pulled` as `name` (`registry/repository`) and `tag`.
    pub fn of(name: String, tag: Option<String>, pulled: &Pulled) -> ImageRecord {
        ImageRecord {
            name,
            tag,
            manifest: pulled.manifest.to_string(),
            config: pulled.config.to_string(),
            diff_ids: pulled.diff_ids.iter().map(|d| d.to_string()).collect(),
            size: pulled.size,
            created: pulled.config_created.clone(),
            platform: Some(pulled.platform.clone()),
        }
    }

    /// Its platform, "os/arch[/variant]".
    pub fn platform(&self) -> String {
        self.platform
            .clone()
            .unwrap_or_else(|| crate::manifest::Platform::host().to_string())
    }
}

/// The name of an image no name points at (`build` or `commit` without one), as docker
/// shows it.
pub const UNTAGGED: &str = "<none>";

pub(crate) fn lock(root: &Path) -> Result<File> {
    fs::create_dir_all(root)
        .map_err(|e| Error::io(format!("cannot create {}", root.display()), e))?;
    husk_sys::lock_file(&root.join("images.lock"), true)
        .map_err(|e| Error::io("cannot lock the image index", e))
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
/// The caller holds `Store::adding` from before the pull until this returns, so a prune in
/// between cannot free what the record is about to name.
pub fn record(root: &Path, reference: &Reference, pulled: &Pulled) -> Result<bool> {
    let _lock = lock(root)?;
    let mut all = list(root)?;
    let rec = ImageRecord::of(reference.name(), reference.tag.clone(), pulled);
    // The same name, tag and platform: what this pull replaces.
    let same_name = |r: &ImageRecord| {
        r.name == rec.name
            && r.tag == rec.tag
            && (rec.tag.is_some() || r.manifest == rec.manifest)
            && r.platform() == pulled.platform
    };
    if all
        .iter()
        .any(|r| same_name(r) && r.manifest == rec.manifest)
    {
        return Ok(false);
    }
    // The image, named now, is no longer an untagged one.
    all.retain(|r| !(same_name(r) || r.name == UNTAGGED && r.config == rec.config));
    all.push(rec);
    save(root, &all)?;
    Ok(true)
}

/// Keep what was just made (`build`, `commit`) with no name: listed as `<none>`, found by its
/// id, removed by `image prune`. Nothing changes when a record names it already.
pub fn record_untagged(root: &Path, pulled: &Pulled) -> Result<()> {
    let _lock = lock(root)?;
    let mut all = list(root)?;
    let config = pulled.config.to_string();
    if all.iter().any(|r| r.config == config) {
        return Ok(());
    }
    all.push(ImageRecord::of(UNTAGGED.into(), None, pulled));
    save(root, &all)
}

/// `image prune`'s first half: the untagged images nothing uses go (then what no image
/// references). Returns them and what was freed.
pub fn remove_untagged(
    root: &Path,
    in_use: &dyn Fn(&ImageRecord) -> Option<String>,
) -> Result<(Vec<ImageRecord>, Reclaimed)> {
    let _collecting = crate::store::Store::open(root)?.collecting()?;
    let _lock = lock(root)?;
    let all = list(root)?;
    let (gone, keep): (Vec<ImageRecord>, Vec<ImageRecord>) = all
        .into_iter()
        .partition(|r| r.name == UNTAGGED && in_use(r).is_none());
    if !gone.is_empty() {
        save(root, &keep)?;
    }
    let reclaimed = gc_locked(root, &keep)?;
    Ok((gone, reclaimed))
}

/// Records matching `query`: a reference (`name[:tag]`, `name@digest`) or an image ID prefix.
pub fn find(root: &Path, query: &str) -> Result<Vec<ImageRecord>> {
    let all = list(root)?;
    let hexlike = query.len() >= 4
        && query
            .trim_start_matches("sha256:")
            .bytes()
            .all(|b| b.is_ascii_hexdigit());
    if hexlike {
        let q = query.trim_start_matches("sha256:");
        let hits: Vec<ImageRecord> = all
            .iter()
            .filter(|r| r.config.trim_start_matches("sha256:").starts_with(q))
            .cloned()
            .collect();
        if !hits.is_empty() {
            return Ok(hits);
        }
    }
    let r = Reference::parse(query)?;
    let mut hits: Vec<ImageRecord> = all
        .into_iter()
        .filter(|i| {
            i.name == r.name()
                && match (&r.digest, &r.tag) {
                    (Some(d), _) => i.manifest == d.to_string(),
                    (None, t) => &i.tag == t,
                }
        })
        .collect();
    // The host's platform first: what a name means when no platform is asked for.
    let host = crate::manifest::Platform::host().to_string();
    hits.sort_by_key(|i| i.platform() != host);
    Ok(hits)
}

fn save(root: &Path, all: &[ImageRecord]) -> Result<()> {
    let data = serde_json::to_vec_pretty(all)
        .map_err(|e| Error::io("cannot encode the image index", std::io::Error::other(e)))?;
    let tmp = root.join(format!(".images.json.{}", std::process::id()));
    // The index lock is held: any other temp index is a killed writer's.
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".images.json.") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(&data).and_then(|()| f.sync_all()))
        .and_then(|()| {
            crate::failpoint::hit("record.written");
            fs::rename(&tmp, root.join("images.json"))
        })
        .map(|()| crate::failpoint::hit("record.committed"));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot write the image index", e));
    }
    Ok(())
}

/// `tag SOURCE TARGET`: another name for the same image.
pub fn tag(root: &Path, source: &str, target: &Reference) -> Result<()> {
    let _lock = lock(root)?;
    let src = find(root, source)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoSuchImage(source.to_string()))?;
    let mut all = list(root)?;
    all.retain(|r| {
        let replaced =
            r.name == target.name() && r.tag == target.tag && r.platform() == src.platform();
        !(replaced || r.name == UNTAGGED && r.config == src.config)
    });
    all.push(ImageRecord {
        name: target.name(),
        tag: target.tag.clone(),
        ..src
    });
    save(root, &all)
}

/// What `gc` removed.
#[derive(Debug, Default, PartialEq)]
pub struct Reclaimed {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// Remove the records matching `query`, refusing images `in_use` says are used, then free
/// what no remaining image references.
pub fn remove(
    root: &Path,
    query: &str,
    force: bool,
    in_use: &dyn Fn(&ImageRecord) -> Option<String>,
) -> Result<(Vec<ImageRecord>, Reclaimed)> {
    // Lock order, everywhere: the store's gc lock, then the index.
    let _collecting = crate::store::Store::open(root)?.collecting()?;
    let _lock = lock(root)?;
    let hits = find(root, query)?;
    if hits.is_empty() {
        return Err(Error::NoSuchImage(query.to_string()));
    }
    // docker's rule: an id that several names tag goes only with -f (a name removes one tag).
    let by_name = hits
        .iter()
        .any(|h| Reference::parse(query).is_ok_and(|r| r.name() == h.name));
    if hits.len() > 1 && !by_name && !force {
        let id = hits[0].config.trim_start_matches("sha256:");
        return Err(Error::Conflict(format!(
            "unable to delete {} (must be forced) - image is referenced in multiple repositories",
            &id[..12.min(id.len())]
        )));
    }
    for h in &hits {
        if let Some(who) = in_use(h) {
            return Err(Error::Conflict(format!(
                "unable to remove image {query}: it is in use by {who}"
            )));
        }
    }
    let mut all = list(root)?;
    all.retain(|r| !hits.contains(r));
    save(root, &all)?;
    let reclaimed = gc_locked(root, &all)?;
    Ok((hits, reclaimed))
}

/// Free blobs and unpacked layers no image references (`image prune`).
pub fn gc(root: &Path) -> Result<Reclaimed> {
    let _collecting = crate::store::Store::open(root)?.collecting()?;
    let _lock = lock(root)?;
    let all = list(root)?;
    gc_locked(root, &all)
}

/// Bytes under `p`: files by their length, directories by what they hold.
pub fn dir_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// What the images `keep` use: blob hexes (manifests, configs, layer blobs) and layer hexes
/// (diff_ids).
pub(crate) fn referenced(
    root: &Path,
    keep: &[ImageRecord],
) -> Result<(
    std::collections::HashSet<String>,
    std::collections::HashSet<String>,
)> {
    use std::collections::HashSet;
    let store = crate::store::Store::open(root)?;
    let mut blobs: HashSet<String> = HashSet::new();
    let mut layers: HashSet<String> = HashSet::new();
    for r in keep {
        blobs.insert(r.manifest.trim_start_matches("sha256:").to_string());
        blobs.insert(r.config.trim_start_matches("sha256:").to_string());
        layers.extend(
            r.diff_ids
                .iter()
                .map(|d| d.trim_start_matches("sha256:").to_string()),
        );
        // The layer blobs are listed in the manifest (gone if the store lost it: then there
        // is nothing more to keep for this image).
        let d = crate::Digest::parse(&r.manifest)?;
        let Ok(mut f) = store.open_blob(&d) else {
            continue;
        };
        let mut bytes = Vec::new();
        use std::io::Read;
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("cannot read manifest {d}"), e))?;
        if let Ok(crate::manifest::Parsed::Manifest(m)) = crate::manifest::parse(&bytes, "") {
            blobs.extend(
                m.layers
                    .iter()
                    .map(|l| l.digest.trim_start_matches("sha256:").to_string()),
            );
        }
    }
    Ok((blobs, layers))
}

/// What a killed pull, load or index write leaves behind: partial downloads, temp blobs, load
/// scratch directories, half-written layers, index temp files. Only while no pull, load or
/// index write can run (the gc lock and the index lock held) is all of it safe to remove.
pub(crate) fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut add = |dir: PathBuf, pick: &dyn Fn(&str) -> bool| {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if pick(&e.file_name().to_string_lossy()) {
                    out.push(e.path());
                }
            }
        }
    };
    // Lock files are not leftovers (locks are taken on them), nor the EROFS probe's files (it
    // runs under a lock of its own, outside the gc lock).
    add(root.join("tmp"), &|n| {
        !n.ends_with(".lock") && !n.starts_with("erofs-probe") && !n.starts_with("probe")
    });
    add(root.join("layers"), &|n| n.starts_with(".tmp-"));
    add(root.to_path_buf(), &|n| n.starts_with(".images.json."));
    out
}

/// Remove a file or a directory tree; whether it went.
pub(crate) fn remove_path(p: &Path) -> bool {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).is_ok(),
        Ok(_) => fs::remove_file(p).is_ok(),
        Err(_) => false,
    }
}

fn gc_locked(root: &Path, keep: &[ImageRecord]) -> Result<Reclaimed> {
    let (blobs, layers) = referenced(root, keep)?;
    let mut out = Reclaimed::default();
    for p in leftovers(root) {
        out.bytes += dir_size(&p);
        remove_path(&p);
    }
    // No pull or load runs while we hold the gc lock: their per-layer locks can go.
    if let Ok(rd) = fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("layer-") && name.ends_with(".lock") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    if let Ok(rd) = fs::read_dir(root.join("blobs/sha256")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !blobs.contains(&name) {
                out.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(e.path()).is_ok() {
                    out.blobs += 1;
                }
            }
        }
    }
    if let Ok(rd) = fs::read_dir(root.join("layers")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.trim_end_matches(".erofs");
            if name.starts_with('.') || layers.contains(hex) {
                continue;
            }
            out.bytes += dir_size(&e.path());
            let removed = if name.ends_with(".erofs") {
                // Its mount goes first (detached if something still had it open).
                crate::snapshot::drop_layer_mount(root, hex);
                fs::remove_file(e.path()).is_ok()
            } else {
                fs::remove_dir_all(e.path()).is_ok()
            };
            if removed {
                out.layers += 1;
            }
        }
    }
    // Short links (see snapshot's mount(2) fallback) whose layer went: a mount being set up
    // holds its layers in use, so none of those is dangling here.
    if let Ok(rd) = fs::read_dir(root.join("layers/.l")) {
        for e in rd.flatten() {
            if !e.path().exists() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_short_links_whose_layer_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let links = root.path().join("layers/.l");
        fs::create_dir_all(&links).unwrap();
        let kept = root.path().join("layer-mounts/kept");
        fs::create_dir_all(&kept).unwrap();
        std::os::unix::fs::symlink(&kept, links.join("aaaaaaaaaaaa")).unwrap();
        std::os::unix::fs::symlink("../gone", links.join("bbbbbbbbbbbb")).unwrap();
        gc(root.path()).unwrap();
        assert!(fs::symlink_metadata(links.join("aaaaaaaaaaaa")).is_ok());
        assert!(fs::symlink_metadata(links.join("bbbbbbbbbbbb")).is_err());
    }
}
