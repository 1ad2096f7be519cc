//! Images made on this machine rather than pulled (`commit`, `build`, `import`): their new
//! layers are written here as gzip tars hashed both ways at once (the compressed digest for
//! the manifest, the uncompressed diff_id for the config), then a config and an OCI manifest
//! are stored around them and the image is completed as a pull completes one (each new layer
//! unpacked from its blob and checked against its diff_id).
//!
//! Every image made here has an OCI manifest: the layers of a Docker v2 base keep their
//! bytes and digests and take the OCI name of the same media type.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use serde_json::{json, Value};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Parsed};
use crate::pull::{Progress, Pulled};
use crate::store::Store;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer just written: its descriptor for the manifest and its diff_id for the config.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

type Compressed = HashingWriter<GzEncoder<HashingWriter<BufWriter<File>>>>;

/// Where a new layer's uncompressed tar is written: it is gzip-compressed into a scratch
/// file, unlinked at once so nothing of it outlives this process however it ends, and put
/// into the store by `finish`.
pub struct LayerWriter {
    out: Compressed,
}

impl LayerWriter {
    pub fn create(store: &Store) -> Result<LayerWriter> {
        let file = store.scratch("layer")?;
        // Level 1: layers made here are read back at once and pushed at most once; speed wins.
        let gz = GzEncoder::new(
            HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            flate2::Compression::fast(),
        );
        Ok(LayerWriter {
            out: HashingWriter::new(gz),
        })
    }

    /// Compress the rest, store the blob (verified as every blob is) and describe it.
    pub fn finish(self, store: &Store) -> Result<Layer> {
        let (gz, diff_id, _) = self.out.finish();
        let hashed = gz
            .finish()
            .map_err(|e| Error::io("cannot compress a new layer", e))?;
        let (buf, digest, size) = hashed.finish();
        let mut file = buf
            .into_inner()
            .map_err(|e| Error::io("cannot write a new layer", e.into_error()))?;
        file.rewind()
            .map_err(|e| Error::io("cannot reread a new layer", e))?;
        store.put(&digest, Some(size), &mut file)?;
        Ok(Layer {
            descriptor: Descriptor {
                media_type: OCI_LAYER_GZIP.into(),
                digest: digest.to_string(),
                size,
                platform: None,
            },
            diff_id,
        })
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A stored image's config (as JSON, to be changed and stored anew) and its layers'
/// descriptors, OCI-named.
pub fn open(store: &Store, manifest_digest: &Digest) -> Result<(Value, Vec<Descriptor>)> {
    let bytes = store.read_blob(manifest_digest)?;
    let Parsed::Manifest(m) = manifest::parse(&bytes, "")? else {
        return Err(Error::Manifest(format!(
            "{manifest_digest} is an index, not an image's manifest"
        )));
    };
    let config: Value =
        serde_json::from_reader(store.open_blob(&Digest::parse(&m.config.digest)?)?)
            .map_err(|e| Error::Manifest(format!("image config {}: {e}", m.config.digest)))?;
    let layers = m
        .layers
        .into_iter()
        .map(|mut d| {
            d.media_type = oci_layer_type(&d.media_type).to_string();
            d
        })
        .collect();
    Ok((config, layers))
}

/// The OCI name of a layer media type (Docker's gzip and plain tar have one; others stay).
fn oci_layer_type(t: &str) -> &str {
    match t {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" | "" => OCI_LAYER_TAR,
        other => other,
    }
}

/// Store `config` (whose `rootfs.diff_ids` lists every layer, lowest first) and an OCI
/// manifest naming `layers` (every blob already in the store), then complete the image.
/// The caller holds `Store::adding` until the image is named.
pub fn compose(
    root: &Path,
    store: &Store,
    config: &Value,
    layers: &[Descriptor],
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Pulled> {
    let config_bytes = serde_json::to_vec(config)
        .map_err(|e| Error::Manifest(format!("cannot encode the image config: {e}")))?;
    let config_digest = Digest::of(&config_bytes);
    store.put(&config_digest, None, &mut &config_bytes[..])?;
    let manifest_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(),
                   "size": config_bytes.len()},
        "layers": layers,
    }))
    .map_err(|e| Error::Manifest(format!("cannot encode the manifest: {e}")))?;
    let manifest_digest = Digest::of(&manifest_bytes);
    store.put(&manifest_digest, None, &mut &manifest_bytes[..])?;
    let Parsed::Manifest(m) = manifest::parse(&manifest_bytes, "")? else {
        return Err(Error::Manifest(
            "the manifest made here did not parse".into(),
        ));
    };
    let present = |d: &Digest, _: u64, _: usize, _: Option<&crate::pull::Tee>| {
        if store.has(d) {
            Ok(())
        } else {
            Err(Error::Manifest(format!(
                "layer blob {d} is not in the store (it was pruned; pull its image again)"
            )))
        }
    };
    crate::pull::complete(root, store, manifest_digest, &m, &present, progress)
}
