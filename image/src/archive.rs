//! `save` and `load`: images as tar archives, in the two shapes the ecosystem exchanges.
//!
//! `save` writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) and, for
//! the docker-archive format, docker's `manifest.json` next to it pointing at the same blobs
//! (the shape `docker save` has written since 25.0, which older docker, podman and skopeo
//! read as a docker-archive). Blobs go out exactly as stored, so their digests hold.
//!
//! `load` reads either shape, including the legacy docker layout (`<id>/layer.tar`, with
//! symlinks for repeated layers) and archives whose layers are compressed or not. Every blob is
//! checked against its digest and every layer against the config's diff_ids before an image
//! name is recorded; a corrupt archive leaves the store as it was, apart from verified blobs.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde_json::json;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::images::ImageRecord;
use crate::manifest::{self, Parsed};
use crate::pull::{Progress, Pulled};
use crate::reference::Reference;
use crate::store::Store;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI layout plus docker's manifest.json.
    DockerArchive,
    /// OCI layout only.
    OciArchive,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Archive(why.into())
}

fn append(
    tar: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    tar.append_data(&mut h, path, data)
        .map_err(|e| Error::io(format!("cannot write {path} to the archive"), e))
}

/// Write `images` (all from the store at `root`) as one archive.
pub fn save(root: &Path, images: &[ImageRecord], format: Format, out: impl Write) -> Result<()> {
    let store = Store::open(root)?;
    let mut tar = tar::Builder::new(out);
    let mut written: Vec<Digest> = Vec::new();
    let mut index = Vec::new();
    let mut docker_manifest = Vec::new();
    for image in images {
        let manifest_digest = Digest::parse(&image.manifest)?;
        let bytes = store.read_blob(&manifest_digest)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Manifest(format!("{manifest_digest}: {e}")))?;
        let media_type = value["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        let Parsed::Manifest(m) = manifest::parse(&bytes, "")? else {
            return Err(Error::Manifest(format!(
                "{manifest_digest} is not an image manifest"
            )));
        };
        let mut blobs = vec![(manifest_digest.clone(), bytes.len() as u64)];
        blobs.push((Digest::parse(&m.config.digest)?, m.config.size));
        for l in &m.layers {
            blobs.push((Digest::parse(&l.digest)?, l.size));
        }
        for (d, size) in &blobs {
            if written.contains(d) {
                continue;
            }
            let f = store.open_blob(d)?;
            let actual = f
                .metadata()
                .map_err(|e| Error::io(format!("cannot stat blob {d}"), e))?
                .len();
            if actual != *size {
                return Err(Error::SizeMismatch {
                    digest: d.to_string(),
                    expected: *size,
                    actual,
                });
            }
            append(&mut tar, &format!("blobs/sha256/{}", d.hex()), actual, f)?;
            written.push(d.clone());
        }
        let full = match &image.tag {
            Some(t) => format!("{}:{t}", image.name),
            None => image.name.clone(),
        };
        let mut annotations = json!({ CONTAINERD_NAME: full });
        if let Some(t) = &image.tag {
            annotations[REF_NAME] = json!(t);
        }
        index.push(json!({
            "mediaType": media_type, "digest": image.manifest, "size": bytes.len(),
            "annotations": annotations,
        }));
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", m.config.digest.trim_start_matches("sha256:")),
            "RepoTags": if image.tag.is_some() { json!([full]) } else { json!([]) },
            "Layers": m.layers.iter()
                .map(|l| format!("blobs/sha256/{}", l.digest.trim_start_matches("sha256:")))
                .collect::<Vec<_>>(),
        }));
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(&mut tar, "oci-layout", layout.len() as u64, &layout[..])?;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}).to_string();
    append(&mut tar, "index.json", index.len() as u64, index.as_bytes())?;
    if format == Format::DockerArchive {
        let m = serde_json::Value::Array(docker_manifest).to_string();
        append(&mut tar, "manifest.json", m.len() as u64, m.as_bytes())?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("cannot finish the archive", e))
}

/// An archive unpacked into a scratch directory: regular files and the symlinks between them
/// (legacy docker archives link repeated layers). Nothing else is accepted.
struct Unpacked {
    dir: PathBuf,
    links: HashMap<PathBuf, PathBuf>,
}

impl Unpacked {
    fn read(input: impl Read, dir: PathBuf) -> Result<Unpacked> {
        let mut links = HashMap::new();
        let mut ar = tar::Archive::new(input);
        let entries = ar
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("unreadable tar entry: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| bad(format!("bad entry name: {e}")))?
                .into_owned();
            let Some(rel) = clean(&raw) else {
                return Err(bad(format!("entry {raw:?} points outside the archive")));
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            match entry.header().entry_type() {
                tar::EntryType::Directory => {}
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = dir.join(&rel);
                    if let Some(p) = dest.parent() {
                        fs::create_dir_all(p)
                            .map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?;
                    }
                    let mut f = File::create(&dest)
                        .map_err(|e| Error::io(format!("cannot create {}", dest.display()), e))?;
                    io::copy(&mut entry, &mut f)
                        .map_err(|e| bad(format!("cannot read {}: {e}", rel.display())))?;
                }
                tar::EntryType::Symlink => {
                    let target =
                        entry.link_name().ok().flatten().ok_or_else(|| {
                            bad(format!("symlink {} has no target", rel.display()))
                        })?;
                    let joined = rel.parent().unwrap_or(Path::new("")).join(target);
                    let target = clean(&joined).ok_or_else(|| {
                        bad(format!(
                            "symlink {} points outside the archive",
                            rel.display()
                        ))
                    })?;
                    links.insert(rel, target);
                }
                other => {
                    return Err(bad(format!(
                        "entry {} is a {other:?}; image archives hold only files",
                        rel.display()
                    )))
                }
            }
        }
        Ok(Unpacked { dir, links })
    }

    /// The file an archive path names, through the archive's symlinks.
    fn path(&self, name: &str) -> Result<PathBuf> {
        let mut rel = clean(Path::new(name))
            .ok_or_else(|| bad(format!("{name:?} points outside the archive")))?;
        for _ in 0..16 {
            match self.links.get(&rel) {
                Some(t) => rel = t.clone(),
                None => {
                    let p = self.dir.join(&rel);
                    return if p.is_file() {
                        Ok(p)
                    } else {
                        Err(bad(format!("the archive has no file {name}")))
                    };
                }
            }
        }
        Err(bad(format!("{name}: too many symlinks")))
    }

    fn read_json(&self, name: &str) -> Result<serde_json::Value> {
        let data =
            fs::read(self.path(name)?).map_err(|e| Error::io(format!("cannot read {name}"), e))?;
        serde_json::from_slice(&data).map_err(|e| bad(format!("{name}: {e}")))
    }

    fn has(&self, name: &str) -> bool {
        self.path(name).is_ok()
    }
}

/// `p` without `.`, refusing `..` and absolute names.
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Store a file as a blob: under `expected` when the archive names its digest (and refused when
/// the content does not match), else under what it hashes to.
fn put_file(store: &Store, path: &Path, expected: Option<&Digest>) -> Result<(Digest, u64)> {
    let open =
        || File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e));
    let digest = match expected {
        Some(d) => d.clone(),
        None => {
            let mut h = HashingReader::new(open()?);
            io::copy(&mut h, &mut io::sink())
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            h.finish().0
        }
    };
    let size = open()?
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
        .len();
    store.put(&digest, Some(size), &mut open()?)?;
    Ok((digest, size))
}

/// What `load` made of one image in the archive.
pub struct Loaded {
    pub names: Vec<Reference>,
    pub pulled: Pulled,
}

/// Read an archive (docker-archive or OCI layout) into the store at `root` and name its images.
pub fn load(
    root: &Path,
    input: impl Read,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<Loaded>> {
    let store = Store::open(root)?;
    let _adding = store.adding()?;
    let scratch = root
        .join("tmp")
        .join(format!("load-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)
        .map_err(|e| Error::io(format!("cannot create {}", scratch.display()), e))?;
    let result = (|| {
        let archive = Unpacked::read(input, scratch.clone())?;
        let images = if archive.has("manifest.json") {
            docker_images(&store, &archive)?
        } else if archive.has("index.json") {
            oci_images(&store, &archive)?
        } else {
            return Err(bad(
                "neither manifest.json (docker-archive) nor index.json (OCI layout) is in it",
            ));
        };
        let mut out = Vec::new();
        for (manifest_digest, names) in images {
            let mut bytes = Vec::new();
            store
                .open_blob(&manifest_digest)?
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(format!("cannot read manifest {manifest_digest}"), e))?;
            let Parsed::Manifest(m) = manifest::parse(&bytes, "")? else {
                return Err(bad(format!("{manifest_digest} is not an image manifest")));
            };
            // Every blob is in the store already: nothing to obtain.
            let present = |d: &Digest, _: u64, _: usize, _: Option<&crate::pull::Tee>| {
                if store.has(d) {
                    Ok(())
                } else {
                    Err(bad(format!("layer {d} is not in the archive")))
                }
            };
            let pulled =
                crate::pull::complete(root, &store, manifest_digest, &m, &present, progress)?;
            out.push(Loaded { names, pulled });
        }
        Ok(out)
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// docker's manifest.json: a manifest is made for each entry from its config and layer files.
fn docker_images(store: &Store, archive: &Unpacked) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let entries = archive.read_json("manifest.json")?;
    let entries = entries
        .as_array()
        .ok_or_else(|| bad("manifest.json is not a list"))?;
    let mut out = Vec::new();
    for e in entries {
        let config = e["Config"]
            .as_str()
            .ok_or_else(|| bad("a manifest.json entry has no Config"))?;
        let (config_digest, config_size) =
            put_file(store, &archive.path(config)?, named_digest(config).as_ref())?;
        let mut layers = Vec::new();
        for l in e["Layers"].as_array().into_iter().flatten() {
            let l = l
                .as_str()
                .ok_or_else(|| bad("a layer in manifest.json is not a path"))?;
            let path = archive.path(l)?;
            let (digest, size) = put_file(store, &path, named_digest(l).as_ref())?;
            let mut prefix = [0u8; 8];
            let n = File::open(&path)
                .and_then(|mut f| f.read(&mut prefix))
                .map_err(|e| Error::io(format!("cannot read {l}"), e))?;
            let media_type = match crate::unpack::detect(&prefix[..n]) {
                crate::unpack::Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                crate::unpack::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                crate::unpack::Compression::None => "application/vnd.oci.image.layer.v1.tar",
            };
            layers
                .push(json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}));
        }
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
            "layers": layers,
        })
        .to_string();
        let digest = Digest::of(manifest.as_bytes());
        store.put(
            &digest,
            Some(manifest.len() as u64),
            &mut manifest.as_bytes(),
        )?;
        let mut names = Vec::new();
        for t in e["RepoTags"].as_array().into_iter().flatten() {
            let t = t
                .as_str()
                .ok_or_else(|| bad("a RepoTags entry is not a string"))?;
            names.push(Reference::parse(t)?);
        }
        out.push((digest, names));
    }
    Ok(out)
}

/// `blobs/sha256/<hex>` names its digest; legacy names (`<id>/layer.tar`, `<id>.json`) do not.
fn named_digest(name: &str) -> Option<Digest> {
    let hex = clean(Path::new(name))?
        .strip_prefix("blobs/sha256")
        .ok()?
        .to_str()?
        .to_string();
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// An OCI layout: index.json's manifests (an index inside picks this host's platform), named
/// by their containerd or ref.name annotations.
fn oci_images(store: &Store, archive: &Unpacked) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let index = archive.read_json("index.json")?;
    let manifests: Vec<manifest::Descriptor> = serde_json::from_value(index["manifests"].clone())
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for (i, desc) in manifests.iter().enumerate() {
        let annotations = &index["manifests"][i]["annotations"];
        let name = annotations[CONTAINERD_NAME]
            .as_str()
            .or(annotations[REF_NAME].as_str())
            .ok_or_else(|| {
                bad(format!(
                    "manifest {} in index.json has no name annotation",
                    desc.digest
                ))
            })?;
        let names = vec![Reference::parse(name)?];
        let mut digest = Digest::parse(&desc.digest)?;
        let blob = |d: &Digest| archive.path(&format!("blobs/sha256/{}", d.hex()));
        put_file(store, &blob(&digest)?, Some(&digest))?;
        let mut bytes =
            fs::read(blob(&digest)?).map_err(|e| Error::io("cannot read a manifest", e))?;
        if let Parsed::Index(inner) = manifest::parse(&bytes, "")? {
            let chosen = manifest::select(&inner, &manifest::Platform::host())?;
            digest = Digest::parse(&chosen.digest)?;
            put_file(store, &blob(&digest)?, Some(&digest))?;
            bytes = fs::read(blob(&digest)?).map_err(|e| Error::io("cannot read a manifest", e))?;
        }
        let Parsed::Manifest(m) = manifest::parse(&bytes, "")? else {
            return Err(bad(format!("{digest} is not an image manifest")));
        };
        let config = Digest::parse(&m.config.digest)?;
        put_file(store, &blob(&config)?, Some(&config))?;
        for l in &m.layers {
            let d = Digest::parse(&l.digest)?;
            put_file(store, &blob(&d)?, Some(&d))?;
        }
        out.push((digest, names));
    }
    Ok(out)
}
