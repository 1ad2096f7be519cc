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

    /// Remove temp files left by writers that died (kill -9 mid-download).
    pub fn clean_tmp(&self) -> Result<usize> {
        let dir = self.root.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?
            .flatten()
        {
            if fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn tempfile_in(dir: &Path, hint: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
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
