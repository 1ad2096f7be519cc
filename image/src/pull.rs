//! `pull`: manifest (through an index to this platform's image), config, layers; every byte
//! verified against its digest before it enters the store, every layer unpacked once into its
//! own directory and checked against the config's diff_ids.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::manifest::{self, ImageConfig, Parsed, Platform};
use crate::reference::Reference;
use crate::registry::{Options, Registry};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Digest,
    pub config: Digest,
    pub diff_ids: Vec<Digest>,
    /// The unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Compressed size of the layers, as the manifest gives it.
    pub size: u64,
    pub config_created: Option<String>,
    /// "os/arch[/variant]" as the image's config says.
    pub platform: String,
    /// Per layer: downloaded by this pull (true) or already in the store.
    pub fresh: Vec<bool>,
}

/// What a pull is doing, for progress displays. Layers are numbered as in the manifest.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// The manifest is resolved: each layer's diff_id, compressed size and whether it is
    /// already in the store.
    Layers(&'a [(Digest, u64, bool)]),
    /// Compressed bytes of layer `index` in the store so far (a resumed download starts above 0).
    Downloaded {
        index: usize,
        bytes: u64,
    },
    /// Layer `index` is downloaded and verified; now it is being unpacked.
    Extracting {
        index: usize,
    },
    Complete {
        index: usize,
    },
}

/// Counts the bytes read through it for `Progress::Downloaded`, at most every 64 KiB.
struct Counting<'a, R> {
    inner: R,
    index: usize,
    bytes: u64,
    reported: u64,
    progress: &'a (dyn Fn(Progress) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes - self.reported >= 64 * 1024 || n == 0 {
            self.reported = self.bytes;
            (self.progress)(Progress::Downloaded {
                index: self.index,
                bytes: self.bytes,
            });
        }
        Ok(n)
    }
}

/// How `complete` gets a layer blob into the store: (blob, size, layer index, where the bytes
/// also go while they arrive).
pub(crate) type Obtain<'a> = dyn Fn(&Digest, u64, usize, Option<&Tee>) -> Result<()> + Sync + 'a;

pub fn pull(
    root: &Path,
    reference: &Reference,
    platform: &Platform,
    opts: &Options,
) -> Result<Pulled> {
    pull_with_progress(root, reference, platform, opts, &|_| {})
}

/// `pull`, telling `progress` what happens (from several threads: layers go in parallel).
pub fn pull_with_progress(
    root: &Path,
    reference: &Reference,
    platform: &Platform,
    opts: &Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Pulled> {
    let store = Store::open(root)?;
    let _adding = store.adding()?;
    let mut reg = Registry::new(reference, opts)?;
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let (mut bytes, mut ct) = reg.manifest(&wanted)?;
    let mut digest = Digest::of(&bytes);
    if let Some(d) = &reference.digest {
        if &digest != d {
            return Err(Error::DigestMismatch {
                expected: d.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    let mut parsed = manifest::parse(&bytes, &ct)?;
    if let Parsed::Index(index) = &parsed {
        let chosen = manifest::select(index, platform)?.clone();
        let want = Digest::parse(&chosen.digest)?;
        (bytes, ct) = reg.manifest(&chosen.digest)?;
        digest = Digest::of(&bytes);
        if digest != want {
            return Err(Error::DigestMismatch {
                expected: want.to_string(),
                actual: digest.to_string(),
            });
        }
        parsed = manifest::parse(&bytes, &ct)?;
    }
    let Parsed::Manifest(m) = parsed else {
        return Err(Error::Manifest("an index points at another index".into()));
    };
    crate::failpoint::hit("pull.manifest");
    store.put(&digest, Some(bytes.len() as u64), &mut &bytes[..])?;

    let config_digest = Digest::parse(&m.config.digest)?;
    fetch(
        &store,
        &mut reg,
        &config_digest,
        m.config.size,
        0,
        &|_| {},
        None,
    )?;
    crate::failpoint::hit("pull.config");
    let obtain = |blob: &Digest, size: u64, index: usize, tee: Option<&Tee>| {
        fetch(&store, &mut reg.clone(), blob, size, index, progress, tee)
    };
    complete(root, &store, digest, &m, &obtain, progress)
}

/// The layers of manifest `m` (stored under `manifest_digest`, its config already in the store):
/// each one not yet unpacked is obtained with `obtain(blob, size, index)` (downloaded, or
/// already there for `load`), then unpacked and checked against the config's diff_ids, all
/// layers in parallel.
pub(crate) fn complete(
    root: &Path,
    store: &Store,
    manifest_digest: Digest,
    m: &manifest::Manifest,
    obtain: &Obtain,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Pulled> {
    let config_digest = Digest::parse(&m.config.digest)?;
    let mut config_bytes = Vec::new();
    store
        .open_blob(&config_digest)?
        .read_to_end(&mut config_bytes)
        .map_err(|e| Error::io(format!("cannot read config {config_digest}"), e))?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::Manifest(format!("image config {config_digest}: {e}")))?;
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(Error::Manifest(format!(
            "the manifest has {} layers but the config lists {} diff_ids",
            m.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    let mut jobs = Vec::new();
    // New layers are stored the way the store's driver says; a layer already stored either
    // way is used as it is.
    let (driver, _) = crate::snapshot::choose(root)?;
    for (desc, diff) in m.layers.iter().zip(&config.rootfs.diff_ids) {
        let blob = Digest::parse(&desc.digest)?;
        let diff_id = Digest::parse(diff)?;
        let image = crate::snapshot::erofs_path(root, &diff_id);
        let dir = match driver {
            _ if image.is_file() => image,
            crate::snapshot::Driver::Erofs
                if !crate::snapshot::layer_dir(root, &diff_id).is_dir() =>
            {
                image
            }
            _ => crate::snapshot::layer_dir(root, &diff_id),
        };
        let present = dir.exists();
        if !present
            && !jobs
                .iter()
                .any(|(_, d, _, _): &(Digest, Digest, PathBuf, u64)| d == &diff_id)
        {
            jobs.push((blob, diff_id.clone(), dir.clone(), desc.size));
        }
        diff_ids.push(diff_id);
        layers.push(dir);
    }
    // Layers download, decompress and unpack concurrently, each with its own connection. The
    // threads are joined before pull returns: husk forks containers only when single-threaded.
    let fresh: Vec<bool> = diff_ids
        .iter()
        .map(|d| jobs.iter().any(|(_, j, _, _)| j == d))
        .collect();
    let listing: Vec<(Digest, u64, bool)> = diff_ids
        .iter()
        .zip(&m.layers)
        .zip(&fresh)
        .map(|((d, l), f)| (d.clone(), l.size, !f))
        .collect();
    progress(Progress::Layers(&listing));
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(blob, diff_id, dir, size)| {
                let index = diff_ids.iter().position(|d| d == diff_id).unwrap_or(0);
                s.spawn(move || -> Result<()> {
                    // One husk per layer at a time: a second one waits here and then finds it
                    // done (the lock covers the download and the unpack).
                    let _lock = store.lock(&format!("layer-{}", diff_id.hex()))?;
                    if dir.exists() {
                        progress(Progress::Complete { index });
                        return Ok(());
                    }
                    let unpack = |raw: &mut dyn Read| store_layer(raw, diff_id, dir);
                    if store.has(blob) {
                        // Downloaded before: unpack from the store.
                        progress(Progress::Extracting { index });
                        unpack(&mut store.open_blob(blob)?)?;
                    } else {
                        // Download, decompress and unpack at once: the bytes that reach the
                        // store's partial file are teed to an unpacker thread. The layer is
                        // committed only when its diff_id checks out, the blob only when its
                        // digest does.
                        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
                        let tee = Tee::new(tx, store.partial_path(blob));
                        let streamed = std::thread::scope(|inner| {
                            let unpacker = inner.spawn(move || unpack(&mut ChannelReader::new(rx)));
                            // Closed however obtain ends (a panic too), or the unpacker would
                            // wait for bytes forever and the scope with it.
                            let closer = CloseOnDrop(&tee);
                            let fetched = obtain(blob, *size, index, Some(&tee));
                            drop(closer);
                            let broken = tee.close();
                            let unpacked = unpacker.join().unwrap_or_else(|_| {
                                Err(Error::Manifest("a layer unpack thread panicked".into()))
                            });
                            (fetched, unpacked, broken)
                        });
                        match streamed {
                            (Err(e), _, _) => return Err(e),
                            (Ok(()), Ok(()), false) => {}
                            // The stream could not follow the download (a partial file was
                            // restarted, or the blob arrived by another way and nothing was
                            // streamed): unpack the stored blob, unless the layer made it.
                            (Ok(()), unpacked, true) => {
                                if unpacked.is_err() || !dir.exists() {
                                    progress(Progress::Extracting { index });
                                    unpack(&mut store.open_blob(blob)?)?;
                                }
                            }
                            (Ok(()), Err(e), false) => return Err(e),
                        }
                    }
                    progress(Progress::Complete { index });
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Manifest("a layer download thread panicked".into()))
                })
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(Pulled {
        manifest: manifest_digest,
        config: config_digest,
        diff_ids,
        layers,
        size: m.layers.iter().map(|l| l.size).sum(),
        fresh,
        platform: Platform {
            os: if config.os.is_empty() {
                "linux".into()
            } else {
                config.os
            },
            architecture: config.architecture,
            variant: config.variant,
        }
        .to_string(),
        config_created: config.created,
    })
}

/// Download a blob into the store unless it is there; a broken transfer (or one a killed
/// husk left behind) resumes where it stopped.
fn fetch(
    store: &Store,
    reg: &mut Registry,
    digest: &Digest,
    size: u64,
    index: usize,
    progress: &(dyn Fn(Progress) + Sync),
    tee: Option<&Tee>,
) -> Result<()> {
    if store.has(digest) {
        return Ok(());
    }
    let name = digest.to_string();
    store.put_resumable(digest, Some(size), &mut |from| {
        let reader = reg.blob(&name, from)?.reader;
        let counted = Counting {
            inner: reader,
            index,
            bytes: from,
            reported: from,
            progress,
        };
        Ok(match tee {
            Some(t) => {
                t.catch_up(from);
                Box::new(Teeing {
                    inner: counted,
                    tee: t,
                })
            }
            None => Box::new(counted),
        })
    })?;
    Ok(())
}

/// Where a download's bytes go besides the store: an unpacker thread, through a channel.
/// It follows the partial file exactly: bytes a killed pull left there are sent first, and a
/// download restarted from an earlier offset than was sent breaks the stream (the caller then
/// unpacks the stored blob).
pub(crate) struct Tee {
    tx: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Vec<u8>>>>,
    sent: std::sync::atomic::AtomicU64,
    broken: std::sync::atomic::AtomicBool,
    started: std::sync::atomic::AtomicBool,
    partial: PathBuf,
}

impl Tee {
    fn new(tx: std::sync::mpsc::SyncSender<Vec<u8>>, partial: PathBuf) -> Tee {
        Tee {
            tx: std::sync::Mutex::new(Some(tx)),
            sent: Default::default(),
            broken: Default::default(),
            started: Default::default(),
            partial,
        }
    }

    fn send(&self, data: &[u8]) {
        use std::sync::atomic::Ordering;
        if self.broken.load(Ordering::SeqCst) {
            return;
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            // An unpacker that gave up (a bad layer) reports that itself.
            let _ = tx.send(data.to_vec());
        }
        self.sent.fetch_add(data.len() as u64, Ordering::SeqCst);
    }

    /// A download (re)starting at `from`: send what the partial file holds before it.
    fn catch_up(&self, from: u64) {
        use std::sync::atomic::Ordering;
        self.started.store(true, Ordering::SeqCst);
        let sent = self.sent.load(Ordering::SeqCst);
        if from < sent {
            self.broken.store(true, Ordering::SeqCst);
            return;
        }
        if from > sent {
            let ok = (|| -> io::Result<()> {
                let mut f = fs::File::open(&self.partial)?;
                io::Seek::seek(&mut f, io::SeekFrom::Start(sent))?;
                let mut rest = f.take(from - sent);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = rest.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    self.send(&buf[..n]);
                }
                Ok(())
            })();
            if ok.is_err() || self.sent.load(Ordering::SeqCst) != from {
                self.broken.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The end of the stream; true when it broke on the way, or never started (the blob was
    /// already in the store when the download would have begun).
    fn close(&self) -> bool {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.broken.load(std::sync::atomic::Ordering::SeqCst)
            || !self.started.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct CloseOnDrop<'a>(&'a Tee);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Teeing<'a, R> {
    inner: R,
    tee: &'a Tee,
}

impl<R: Read> Read for Teeing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tee.send(&buf[..n]);
        Ok(n)
    }
}

/// The unpacker's side of a `Tee`.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Store a layer from its compressed stream at `dest`: an EROFS image (`<hex>.erofs`) or an
/// unpacked directory. The uncompressed stream is checked against the diff_id and only a
/// verified layer is renamed into place. The caller holds the layer's lock, so the scratch
/// copy a killed husk left behind can be cleared.
fn store_layer(raw: &mut dyn Read, diff_id: &Digest, dest: &Path) -> Result<()> {
    let erofs = dest.extension().is_some_and(|e| e == "erofs");
    let tmp = dest.with_file_name(format!(
        ".tmp-{}{}",
        diff_id.hex(),
        if erofs { ".erofs" } else { "" }
    ));
    let clear = |p: &Path| {
        let _ = if erofs {
            fs::remove_file(p)
        } else {
            fs::remove_dir_all(p)
        };
    };
    clear(&tmp);
    let result = (|| {
        fs::create_dir_all(dest.parent().unwrap_or(Path::new(".")))
            .map_err(|e| Error::io("cannot create the layers directory", e))?;
        let mut tar = HashingReader::new(crate::unpack::decompress(raw)?);
        crate::failpoint::hit("layer.writing");
        if erofs {
            let out = fs::File::create(&tmp)
                .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
            crate::erofs::write_layer(&mut tar, io::BufWriter::with_capacity(1 << 20, out))?;
        } else {
            crate::unpack::unpack(&mut tar, &tmp)?;
        }
        // The tar reader stops at the end-of-archive marker; the diff_id covers all bytes.
        io::copy(&mut tar, &mut io::sink())
            .map_err(|e| Error::io(format!("cannot read layer {diff_id}"), e))?;
        let (actual, _) = tar.finish();
        if &actual != diff_id {
            return Err(Error::DigestMismatch {
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        crate::failpoint::hit("layer.written");
        fs::rename(&tmp, dest)
            .map_err(|e| Error::io(format!("cannot commit layer {diff_id}"), e))?;
        crate::failpoint::hit("layer.committed");
        Ok(())
    })();
    if result.is_err() {
        clear(&tmp);
    }
    result
}
