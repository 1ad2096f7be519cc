//! `import`: a file system tarball (what `export` writes, or any rootfs tar, plain, gzip or
//! zstd) becomes a one-layer image: the tar, uncompressed, is the layer blob and its
//! digest the diff_id; a config for this machine's platform and an OCI manifest are made
//! around it, and the image is completed (unpacked, checked) as `load` completes one.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use serde_json::{json, Value};

use crate::digest::HashingWriter;
use crate::error::{Error, Result};
use crate::manifest::Platform;
use crate::pull::{Progress, Pulled};
use crate::store::Store;

/// Make an image of the tar `input` in the store at `root`, with `config` as its config's
/// `config` (docker's `--change`s) and `comment` in its history (`--message`).
pub fn import(
    root: &Path,
    input: impl Read,
    config: Value,
    comment: &str,
    created: &str,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Pulled> {
    let store = Store::open(root)?;
    let _adding = store.adding()?;
    let mut scratch = store.scratch("import")?;
    // The layer is the tar itself: its digest is its diff_id.
    let (diff_id, size) = {
        let mut w = HashingWriter::new(std::io::BufWriter::new(&mut scratch));
        let mut tar = crate::unpack::decompress(input)?;
        std::io::copy(&mut tar, &mut w)
            .map_err(|e| Error::io("cannot read the tarball to import", e))?;
        let (buf, digest, size) = w.finish();
        buf.into_inner()
            .map_err(|e| Error::io("cannot write the tarball to import", e.into_error()))?;
        (digest, size)
    };
    if size == 0 {
        return Err(Error::Manifest("the tarball to import is empty".into()));
    }
    check_tar(&mut scratch)?;
    scratch
        .rewind()
        .map_err(|e| Error::io("cannot reread the tarball to import", e))?;
    store.put(&diff_id, Some(size), &mut scratch)?;

    let platform = Platform::host();
    let mut image = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "created_by": "husk import", "comment": comment}],
    });
    if let Some(v) = &platform.variant {
        image["variant"] = json!(v);
    }
    let layer = crate::manifest::Descriptor {
        media_type: crate::compose::OCI_LAYER_TAR.into(),
        digest: diff_id.to_string(),
        size,
        platform: None,
    };
    crate::compose::compose(root, &store, &image, &[layer], progress)
}

/// The start of a tar: a first header whose checksum holds (a tarball that is not one
/// fails here, with a clear word, before anything is stored).
fn check_tar(f: &mut File) -> Result<()> {
    f.rewind()
        .map_err(|e| Error::io("cannot reread the tarball to import", e))?;
    let mut a = tar::Archive::new(&mut *f);
    let first = a
        .entries()
        .and_then(|mut e| e.next().transpose())
        .map_err(|e| Error::Manifest(format!("what was given to import is not a tar: {e}")))?;
    if first.is_none() {
        return Err(Error::Manifest(
            "the tarball to import has no entries".into(),
        ));
    }
    Ok(())
}
