//! The content-addressed blob store: `blobs/sha256/<hex>`, each blob verified against its
//! digest (and size, when known) before it is committed. A write goes to a temp file that is
//! fsync'd and renamed into place, so a crash or `kill -9` leaves the old or the new state,
//! never a half-written blob under a digest's name; two writers of one blob both succeed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};

pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["blobs/sha256", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p)
                .map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.blob_path(d)).map_err(|e| Error::io(format!("cannot open blob {d}"), e))
    }

    /// Blob `d`'s bytes (a manifest or config: small documents).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("cannot read blob {d}"), e))?;
        Ok(bytes)
    }

    /// A scratch file in `tmp/`, unlinked at once: nothing of it outlives this process,
    /// however it ends.
    pub fn scratch(&self, name: &str) -> Result<File> {
        let path =
            self.root
                .join("tmp")
                .join(format!("{name}-{}-{}", std::process::id(), unique()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        let _ = fs::remove_file(&path);
        Ok(file)
    }

    /// Store what `data` yields as blob `expected`, refusing content that does not hash to it.
    pub fn put(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
        data: &mut dyn Read,
    ) -> Result<PathBuf> {
        let dest = self.blob_path(expected);
        if dest.is_file() {
            return Ok(dest);
        }
        let tmp = tempfile_in(&self.root.join("tmp"), expected.hex())?;
        let result = (|| {
            let file = File::create(&tmp)
                .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
            let mut w = HashingWriter::new(io::BufWriter::new(file));
            io::copy(data, &mut w)
                .map_err(|e| Error::io(format!("cannot write blob {expected}"), e))?;
            let (buf, actual, size) = w.finish();
            if let Some(want) = expected_size {
                if want != size {
                    return Err(Error::SizeMismatch {
                        digest: expected.to_string(),
                        expected: want,
                        actual: size,
                    });
                }
            }
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
            let file = buf
                .into_inner()
                .map_err(|e| Error::io(format!("cannot write blob {expected}"), e.into_error()))?;
            file.sync_all()
                .map_err(|e| Error::io(format!("cannot sync blob {expected}"), e))?;
            fs::rename(&tmp, &dest)
                .map_err(|e| Error::io(format!("cannot commit blob {expected}"), e))?;
            sync_dir(dest.parent().unwrap_or(&self.root))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| dest)
    }

    /// An exclusive flock on `tmp/<name>.lock`, held until the returned file is dropped.
    pub fn lock(&self, name: &str) -> Result<File> {
        self.flock(name, true)
    }

    /// Held (shared) by every pull and load while it adds blobs and layers no image names yet;
    /// `image prune` takes it exclusively, so it never frees what is being added.
    pub fn adding(&self) -> Result<File> {
        self.flock("gc", false)
    }

    /// `image prune`'s side of `adding`.
    pub fn collecting(&self) -> Result<File> {
        self.flock("gc", true)
    }

    fn flock(&self, name: &str, exclusive: bool) -> Result<File> {
        let path = self.root.join("tmp").join(format!("{name}.lock"));
        husk_sys::lock_file(&path, exclusive)
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))
    }

    /// Where `put_resumable` keeps the bytes of `d` downloaded so far.
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root.join("tmp").join(format!("{}.partial", d.hex()))
    }

    /// Download-friendly `put`: bytes already fetched for this blob (by this process before a
    /// broken connection, or by one killed mid-download) are kept in `tmp/<hex>.partial` and
    /// `fetch(offset)` is asked only for the rest (a Range request). The partial file is
    /// flocked, so two pulls of one blob at once download it once.
    pub fn put_resumable<'r>(
        &self,
        expected: &Digest,
        size: Option<u64>,
        fetch: &mut dyn FnMut(u64) -> Result<Box<dyn Read + Send + Sync + 'r>>,
    ) -> Result<PathBuf> {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::fd::AsRawFd;
        let dest = self.blob_path(expected);
        if dest.is_file() {
            return Ok(dest);
        }
        let partial = self.partial_path(expected);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial)
            .map_err(|e| Error::io(format!("cannot open {}", partial.display()), e))?;
        // SAFETY: flock on an fd we own; released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(
                "cannot lock a partial download",
                io::Error::last_os_error(),
            ));
        }
        if dest.is_file() {
            // Another pull finished it while we waited for the lock.
            let _ = fs::remove_file(&partial);
            return Ok(dest);
        }
        let io_err = |e: io::Error| {
            Error::io(
                format!("cannot write blob {expected} to {}", partial.display()),
                e,
            )
        };
        let mut last = None;
        for _attempt in 0..4 {
            let mut have = file.metadata().map_err(io_err)?.len();
            if size.is_some_and(|s| have > s) {
                file.set_len(0).map_err(io_err)?;
                have = 0;
            }
            // Hash what is already there, then append the rest.
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let mut w = HashingWriter::new(io::sink());
            io::copy(&mut (&mut file).take(have), &mut w).map_err(io_err)?;
            let mut hasher_state = w;
            file.seek(SeekFrom::End(0)).map_err(io_err)?;
            // All of it arrived before a crash: verify it as it is. Asking for the rest would
            // be a Range past the end, which registries answer with 416.
            let whole = have > 0 && size == Some(have);
            if !whole {
                let mut reader = match fetch(have) {
                    Ok(r) => r,
                    Err(e @ Error::RangeRefused { .. }) => {
                        // The registry will not resume from here: start over.
                        file.set_len(0).map_err(io_err)?;
                        last = Some(e);
                        continue;
                    }
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                let mut buf = vec![0u8; 256 * 1024];
                let broke = loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break None,
                        Ok(n) => {
                            file.write_all(&buf[..n]).map_err(io_err)?;
                            hasher_state.write_all(&buf[..n]).map_err(io_err)?;
                            crate::failpoint::hit("blob.downloading");
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => break Some(e),
                    }
                };
                if let Some(e) = broke {
                    // Keep what arrived; the next attempt asks only for the rest.
                    last = Some(Error::io(format!("download of {expected} broke off"), e));
                    continue;
                }
            }
            crate::failpoint::hit("blob.downloaded");
            let (_, actual, total) = hasher_state.finish();
            if let Some(want) = size {
                if want != total {
                    file.set_len(0).map_err(io_err)?;
                    return Err(Error::SizeMismatch {
                        digest: expected.to_string(),
                        expected: want,
                        actual: total,
                    });
                }
            }
            if &actual != expected {
                file.set_len(0).map_err(io_err)?;
                if have > 0 {
                    // The kept part may be what was wrong: once more from the start.
                    last = Some(Error::DigestMismatch {
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                    continue;
                }
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
            crate::failpoint::hit("blob.verified");
            file.sync_all().map_err(io_err)?;
            fs::rename(&partial, &dest)
                .map_err(|e| Error::io(format!("cannot commit blob {expected}"), e))?;
            sync_dir(dest.parent().unwrap_or(&self.root))?;
            crate::failpoint::hit("blob.committed");
            return Ok(dest);
        }
        Err(last.unwrap_or_else(|| {
            Error::io(
                format!("cannot download {expected}"),
                io::Error::other("retries exhausted"),
            )
        }))
    }

    /// Re-hash a stored blob (after a crash, or to check the store).
    pub fn verify(&self, d: &Digest) -> Result<()> {
        let mut f = self.open_blob(d)?;
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut f, &mut w).map_err(|e| Error::io(format!("cannot read blob {d}"), e))?;
        let (_, actual, _) = w.finish();
        if &actual != d {
            return Err(Error::DigestMismatch {
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

fn tempfile_in(dir: &Path, hint: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    // Temp files of this blob that a killed husk left (`<hint>.<pid>.<n>`, that pid gone) go
    // now: nothing else would ever finish or remove them.
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(hint)) else {
                continue;
            };
            let pid = rest.strip_prefix('.').and_then(|r| r.split('.').next());
            if let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill with signal 0 only asks whether the pid exists.
                let gone = unsafe { libc::kill(pid, 0) } != 0
                    && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
                if gone {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    let name = format!(
        "{hint}.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Ok(dir.join(name))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), e))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_blobs_are_committed_and_lies_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"layer bytes");
        let p = store.put(&d, Some(11), &mut &b"layer bytes"[..]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"layer bytes");
        store.verify(&d).unwrap();
        // Again: a no-op.
        store.put(&d, None, &mut &b"ignored"[..]).unwrap();

        // A registry that lies about the content or the size.
        let claimed = Digest::of(b"what the manifest says");
        let e = store
            .put(&claimed, None, &mut &b"tampered"[..])
            .unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(!store.has(&claimed));
        let e = store
            .put(&Digest::of(b"abc"), Some(4), &mut &b"abc"[..])
            .unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temp file left"
        );
    }

    #[test]
    fn a_corrupted_blob_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"good");
        store.put(&d, None, &mut &b"good"[..]).unwrap();
        fs::write(store.blob_path(&d), b"evil").unwrap();
        assert!(store.verify(&d).is_err());
    }
}
