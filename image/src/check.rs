//! `husk system check`: the store re-verified against its digests. Every blob is re-hashed;
//! every layer an image uses is rebuilt from its (verified) blob and compared with what is
//! stored; what a killed command left behind, and what no image uses, is listed. With
//! `repair`, a corrupt blob goes (the next pull fetches it), a corrupt layer is replaced by its
//! rebuild (or goes, when its blob is gone too), and the leftovers go.
//!
//! It holds the store's gc lock and the index lock throughout: no pull, load, prune or rmi
//! runs meanwhile, so nothing it sees is half-made by a live command.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::images::{self, ImageRecord};
use crate::store::Store;

/// One thing wrong with the store.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The blob, layer or file, by digest or path.
    pub what: String,
    pub why: String,
    /// `repair` dealt with it.
    pub repaired: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub images: usize,
    pub blobs: usize,
    pub layers: usize,
    pub problems: Vec<Problem>,
}

pub fn check(root: &Path, repair: bool) -> Result<Report> {
    let store = Store::open(root)?;
    let _collecting = store.collecting()?;
    let _index = images::lock(root)?;
    let all = images::list(root)?;
    let mut report = Report {
        images: all.len(),
        ..Report::default()
    };
    let mut problem = |what: String, why: String, repaired: bool| {
        report.problems.push(Problem {
            what,
            why,
            repaired,
        })
    };

    // Blobs: each file's content must hash to its name.
    let (used_blobs, used_layers) = images::referenced(root, &all)?;
    let mut blobs = 0;
    if let Ok(rd) = fs::read_dir(root.join("blobs/sha256")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            blobs += 1;
            let why = match Digest::parse(&format!("sha256:{name}")) {
                Err(_) => Some("not named by a digest".to_string()),
                Ok(d) => match hash_file(&e.path()) {
                    Ok(actual) if actual == d => None,
                    Ok(actual) => Some(format!("its content hashes to {actual}")),
                    Err(err) => Some(format!("cannot be read: {err}")),
                },
            };
            if let Some(why) = why {
                let gone = repair && fs::remove_file(e.path()).is_ok();
                problem(format!("blob sha256:{name}"), why, gone);
            } else if !used_blobs.contains(&name) {
                let gone = repair && fs::remove_file(e.path()).is_ok();
                problem(
                    format!("blob sha256:{name}"),
                    "no image uses it".into(),
                    gone,
                );
            }
        }
    }

    // Images: what each names must be there; each layer must be what its blob unpacks to.
    let mut layer_blob: BTreeMap<String, Digest> = BTreeMap::new();
    for r in &all {
        let name = image_name(r);
        for (what, digest) in [("manifest", &r.manifest), ("config", &r.config)] {
            match Digest::parse(digest) {
                Ok(d) if store.has(&d) => {}
                _ => problem(
                    format!("image {name}"),
                    format!("its {what} {digest} is missing: pull the image again"),
                    false,
                ),
            }
        }
        if let Some(m) = manifest_of(&store, r) {
            for (l, diff) in m.layers.iter().zip(&r.diff_ids) {
                if let Ok(d) = Digest::parse(&l.digest) {
                    layer_blob.insert(diff.trim_start_matches("sha256:").to_string(), d);
                }
            }
        }
        for diff in &r.diff_ids {
            let hex = diff.trim_start_matches("sha256:");
            if stored_layer(root, hex).is_none() {
                problem(
                    format!("image {name}"),
                    format!("its layer {diff} is missing: pull the image again"),
                    false,
                );
            }
        }
    }
    let mut layers = 0;
    for hex in &used_layers {
        let Some(stored) = stored_layer(root, hex) else {
            continue;
        };
        layers += 1;
        let blob = layer_blob.get(hex).filter(|b| store.has(b));
        let Some(blob) = blob else {
            // Nothing to rebuild it from: it cannot be verified, so it cannot be trusted.
            let gone = repair && remove_layer(root, hex, &stored);
            problem(
                format!("layer sha256:{hex}"),
                "its blob is gone, so it cannot be verified: pull its image again".into(),
                gone,
            );
            continue;
        };
        match verify_layer(root, &store, blob, hex, &stored) {
            Ok(None) => {}
            Ok(Some((why, rebuilt))) => {
                let fixed = repair && replace_layer(root, hex, &stored, &rebuilt);
                if !fixed {
                    images::remove_path(&rebuilt);
                }
                problem(format!("layer sha256:{hex}"), why, fixed);
            }
            Err(e) => problem(
                format!("layer sha256:{hex}"),
                format!("cannot be checked: {e}"),
                false,
            ),
        }
    }
    if let Ok(rd) = fs::read_dir(root.join("layers")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.trim_end_matches(".erofs");
            if name.starts_with('.') || used_layers.contains(hex) {
                continue;
            }
            let gone = repair && remove_layer(root, hex, &e.path());
            problem(
                format!("layer sha256:{hex}"),
                "no image uses it".into(),
                gone,
            );
        }
    }
    for p in images::leftovers(root) {
        let gone = repair && images::remove_path(&p);
        problem(
            p.display().to_string(),
            "left behind by a command that did not finish".into(),
            gone,
        );
    }
    report.blobs = blobs;
    report.layers = layers;
    Ok(report)
}

fn image_name(r: &ImageRecord) -> String {
    match &r.tag {
        Some(t) => format!("{}:{t}", r.name),
        None => format!("{}@{}", r.name, r.manifest),
    }
}

fn manifest_of(store: &Store, r: &ImageRecord) -> Option<crate::manifest::Manifest> {
    let d = Digest::parse(&r.manifest).ok()?;
    let mut bytes = Vec::new();
    store.open_blob(&d).ok()?.read_to_end(&mut bytes).ok()?;
    match crate::manifest::parse(&bytes, "").ok()? {
        crate::manifest::Parsed::Manifest(m) => Some(m),
        _ => None,
    }
}

fn hash_file(p: &Path) -> io::Result<Digest> {
    let mut r = HashingReader::new(fs::File::open(p)?);
    io::copy(&mut r, &mut io::sink())?;
    Ok(r.finish().0)
}

/// The stored form of layer `hex`: its EROFS image or its directory.
fn stored_layer(root: &Path, hex: &str) -> Option<PathBuf> {
    let erofs = root.join("layers").join(format!("{hex}.erofs"));
    let dir = root.join("layers").join(hex);
    [erofs, dir].into_iter().find(|p| p.exists())
}

/// Rebuild the layer from its blob beside the stored one and compare: None when they agree,
/// else why not and the rebuild (for `repair` to put in place).
fn verify_layer(
    root: &Path,
    store: &Store,
    blob: &Digest,
    hex: &str,
    stored: &Path,
) -> Result<Option<(String, PathBuf)>> {
    let erofs = stored.extension().is_some_and(|e| e == "erofs");
    let rebuilt = root
        .join("tmp")
        .join(format!("check-{hex}{}", if erofs { ".erofs" } else { "" }));
    images::remove_path(&rebuilt);
    let diff_id = Digest::parse(&format!("sha256:{hex}"))?;
    let built = (|| -> Result<()> {
        let mut tar = HashingReader::new(crate::unpack::decompress(store.open_blob(blob)?)?);
        if erofs {
            let out = fs::File::create(&rebuilt)
                .map_err(|e| Error::io(format!("cannot create {}", rebuilt.display()), e))?;
            crate::erofs::write_layer(&mut tar, io::BufWriter::new(out))?;
        } else {
            crate::unpack::unpack(&mut tar, &rebuilt)?;
        }
        io::copy(&mut tar, &mut io::sink())
            .map_err(|e| Error::io(format!("cannot read blob {blob}"), e))?;
        let (actual, _) = tar.finish();
        if actual != diff_id {
            return Err(Error::DigestMismatch {
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    })();
    if let Err(e) = built {
        images::remove_path(&rebuilt);
        return Err(e);
    }
    let same = if erofs {
        hash_file(stored).ok() == hash_file(&rebuilt).ok()
    } else {
        tree(stored) == tree(&rebuilt)
    };
    if same {
        images::remove_path(&rebuilt);
        return Ok(None);
    }
    Ok(Some((
        format!("differs from what its blob {blob} unpacks to"),
        rebuilt,
    )))
}

/// Everything that makes a directory tree what it is, by relative path: type, mode, owner,
/// size, content hash, link target, device number, modification time (but a directory's).
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            let content = if ft.is_file() {
                hash_file(&p).map(|d| d.to_string()).unwrap_or_default()
            } else if ft.is_symlink() {
                fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            if ft.is_dir() {
                stack.push(p.clone());
            }
            let rel = p.strip_prefix(dir).unwrap_or(&p).to_path_buf();
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} {} {} {} {}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if ft.is_dir() { 0 } else { m.size() },
                    m.rdev(),
                    // A directory the tar did not list is made at unpack time, with that time.
                    if ft.is_dir() { 0 } else { m.mtime() },
                    content
                ),
            );
        }
    }
    out
}

fn remove_layer(root: &Path, hex: &str, stored: &Path) -> bool {
    if stored.extension().is_some_and(|e| e == "erofs") {
        crate::snapshot::drop_layer_mount(root, hex);
    }
    images::remove_path(stored)
}

/// Put the rebuild where the corrupt layer was (its shared mount goes first; containers
/// running on the old one keep it until they stop).
fn replace_layer(root: &Path, hex: &str, stored: &Path, rebuilt: &Path) -> bool {
    if stored.extension().is_some_and(|e| e == "erofs") {
        crate::snapshot::drop_layer_mount(root, hex);
        return fs::rename(rebuilt, stored).is_ok();
    }
    let aside = root.join("layers").join(format!(".tmp-{hex}-corrupt"));
    images::remove_path(&aside);
    let moved = fs::rename(stored, &aside).is_ok() && fs::rename(rebuilt, stored).is_ok();
    images::remove_path(&aside);
    moved
}
