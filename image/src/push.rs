//! `push`: an image of the store into a registry's repository, as docker pushes one: each
//! blob the repository lacks (HEAD first) is mounted from another repository of the same
//! registry where one of our images came from there, else uploaded whole; the manifest goes
//! last, byte for byte as the store has it (OCI or Docker v2, as the image was pulled or
//! built), so its digest is the image's.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::ImageRecord;
use crate::manifest::{self, Parsed};
use crate::reference::Reference;
use crate::registry::{BlobPush, Options, Registry};
use crate::store::Store;

/// What a push is doing, for progress displays; blobs are numbered config last.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The blobs to push: digest and size, layers first, the config last.
    Blobs(Vec<(Digest, u64)>),
    /// Bytes of blob `index` sent so far.
    Sent { index: usize, bytes: u64 },
    /// Blob `index` is in the repository, how it got there, and from which repository
    /// when it was mounted.
    Done {
        index: usize,
        how: BlobPush,
        from: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest (the registry's, which is ours).
    pub digest: String,
    pub size: u64,
    pub tag: String,
}

/// Push `image` to `target` (registry, repository and tag).
pub fn push(
    root: &Path,
    image: &ImageRecord,
    target: &Reference,
    opts: &Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Pushed> {
    let tag = match (&target.tag, &target.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(_)) => {
            return Err(Error::Reference {
                reference: target.to_string(),
                why: "a push needs a tag, not a digest".into(),
            })
        }
        (None, None) => "latest".into(),
    };
    let store = Store::open(root)?;
    let manifest_digest = Digest::parse(&image.manifest)?;
    let bytes = store.read_blob(&manifest_digest)?;
    let Parsed::Manifest(m) = manifest::parse(&bytes, "")? else {
        return Err(Error::Manifest(format!(
            "{manifest_digest} is an index; push pushes one platform's image"
        )));
    };
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
    let mut blobs = Vec::new();
    for d in m.layers.iter().chain(std::iter::once(&m.config)) {
        let digest = Digest::parse(&d.digest)?;
        if !store.has(&digest) {
            return Err(Error::Manifest(format!(
                "blob {digest} of {} is not in the store (pull the image again)",
                image.name
            )));
        }
        blobs.push((digest, d.size));
    }
    progress(Progress::Blobs(blobs.clone()));
    let sources = mount_sources(root, target)?;
    let mut reg = Registry::new(target, opts)?.for_push();
    for (index, (digest, _)) in blobs.iter().enumerate() {
        let from = sources
            .iter()
            .find(|(_, has)| has.contains(digest))
            .map(|(repo, _)| repo.as_str());
        let sent = Arc::new(AtomicU64::new(0));
        let open = || -> Result<(Box<dyn Read + Send>, u64)> {
            let f = store.open_blob(digest)?;
            let size = f
                .metadata()
                .map_err(|e| Error::io(format!("cannot stat blob {digest}"), e))?
                .len();
            sent.store(0, Ordering::Relaxed);
            Ok((
                Box::new(Counting {
                    inner: f,
                    sent: sent.clone(),
                }),
                size,
            ))
        };
        let how = std::thread::scope(|s| {
            // Reports the bytes sent while the upload runs, four times a second.
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let counted = sent.clone();
            let reporter = s.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(std::time::Duration::from_millis(250))
                {
                    progress(Progress::Sent {
                        index,
                        bytes: counted.load(Ordering::Relaxed),
                    });
                }
            });
            let how = reg.push_blob(&digest.to_string(), from, &open);
            drop(stop_tx);
            let _ = reporter.join();
            how
        })?;
        progress(Progress::Done {
            index,
            how,
            from: (how == BlobPush::Mounted).then(|| from.unwrap_or_default().to_string()),
        });
    }
    let digest = reg.put_manifest(&tag, &media_type, &bytes)?;
    Ok(Pushed {
        digest: if digest.is_empty() {
            manifest_digest.to_string()
        } else {
            digest
        },
        size: bytes.len() as u64,
        tag,
    })
}

/// Other repositories of `target`'s registry that images in the store came from, each with
/// the blobs its images have there: where a blob can be mounted from.
fn mount_sources(root: &Path, target: &Reference) -> Result<Vec<(String, BTreeSet<Digest>)>> {
    let store = Store::open(root)?;
    let mut out: Vec<(String, BTreeSet<Digest>)> = Vec::new();
    for r in crate::images::list(root)? {
        let Ok(reference) = Reference::parse(&r.name) else {
            continue;
        };
        if reference.registry != target.registry || reference.repository == target.repository {
            continue;
        }
        let Ok(digest) = Digest::parse(&r.manifest) else {
            continue;
        };
        let Ok(bytes) = store.read_blob(&digest) else {
            continue;
        };
        let Ok(Parsed::Manifest(m)) = manifest::parse(&bytes, "") else {
            continue;
        };
        let has: BTreeSet<Digest> = m
            .layers
            .iter()
            .chain(std::iter::once(&m.config))
            .filter_map(|d| Digest::parse(&d.digest).ok())
            .collect();
        match out
            .iter_mut()
            .find(|(repo, _)| repo == &reference.repository)
        {
            Some((_, set)) => set.extend(has),
            None => out.push((reference.repository.clone(), has)),
        }
    }
    Ok(out)
}

/// A reader that counts what was read through it.
struct Counting<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
