//! A container's changes to its image as a layer (`commit`, and each step of `build`): the
//! entries `diff` finds in the overlay's upper directory, written as an OCI layer tar. An
//! overlayfs whiteout (a 0:0 character device) becomes an OCI `.wh.NAME` entry and an opaque
//! directory gets its `.wh..wh..opq`, so the layer unpacks anywhere to the same tree. Extended
//! attributes (file capabilities from `setcap` among them) travel as PAX records; overlayfs's
//! own are left out.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use husk_image::compose::{Layer, LayerWriter};
use husk_image::store::Store;

use crate::changes::{Change, ChangeKind};
use crate::error::{failed, Context, Result};
use crate::store::{self, Container};

/// Container `c`'s changes as a new layer in the store; None when it changed nothing.
pub fn layer(root: &Path, c: &Container) -> Result<Option<Layer>> {
    let changes = crate::changes::changes(root, c)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let upper = store::dir(root, &c.id).join("upper");
    let store = Store::open(root)?;
    let mut w = LayerWriter::create(&store)?;
    write_tar(&upper, &changes, c.upper_id_maps(), &mut w)?;
    Ok(Some(w.finish(&store)?))
}

/// The tar of `changes` (sorted by path, parents first) read from upper directory `upper`.
/// A container in a user namespace of its own (`maps`) wrote its host ids: the layer gets the
/// container's, as the image's own are.
fn write_tar(
    upper: &Path,
    changes: &[Change],
    maps: Option<&crate::options::IdMaps>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    // (dev, inode) → the first path written: later names of one file are hard links to it.
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for ch in changes {
        let rel = ch.path.trim_start_matches('/');
        if ch.kind == ChangeKind::Deleted {
            let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let wh = if dir.is_empty() {
                format!(".wh.{name}")
            } else {
                format!("{dir}/.wh.{name}")
            };
            append_marker(&mut tar, &wh)?;
            continue;
        }
        let src = upper.join(rel);
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            // A running container removed it while we read: its absence is what it left.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", src.display())),
        };
        refuse_overlay_features(&src)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        let (uid, gid) = maps.map_or((meta.uid(), meta.gid()), |m| {
            m.to_container(meta.uid(), meta.gid())
        });
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        let ft = meta.file_type();
        let pax = xattrs(&src);
        if !pax.is_empty() {
            tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .with_context(|| format!("cannot write the layer entry {rel}"))?;
        }
        let wrote = if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, format!("{rel}/"), std::io::empty())
        } else if ft.is_symlink() {
            let target = fs::read_link(&src)
                .with_context(|| format!("cannot read link {}", src.display()))?;
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, rel, &target)
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match links.get(&key) {
                Some(first) if meta.nlink() > 1 => {
                    h.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut h, rel, first)
                }
                _ => {
                    if meta.nlink() > 1 {
                        links.insert(key, rel.to_string());
                    }
                    let f = fs::File::open(&src)
                        .with_context(|| format!("cannot open {}", src.display()))?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(meta.len());
                    // A file that grows while it is read is cut at the size in its header.
                    tar.append_data(&mut h, rel, std::io::Read::take(f, meta.len()))
                }
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev))
                .and_then(|()| h.set_device_minor(libc::minor(rdev)))
                .with_context(|| format!("cannot write the device {rel}"))?;
            tar.append_data(&mut h, rel, std::io::empty())
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            tar.append_data(&mut h, rel, std::io::empty())
        } else {
            // A socket: nothing a layer can hold (docker leaves them out too).
            continue;
        };
        wrote.with_context(|| format!("cannot write the layer entry {rel}"))?;
        if ch.opaque {
            append_marker(&mut tar, &format!("{rel}/.wh..wh..opq"))?;
        }
    }
    tar.into_inner()
        .and_then(|w| w.flush())
        .context("cannot finish the layer")?;
    Ok(())
}

/// An empty whiteout entry at `path`.
fn append_marker(tar: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(0);
    h.set_mtime(0);
    tar.append_data(&mut h, path, std::io::empty())
        .with_context(|| format!("cannot write the layer entry {path}"))
}

/// Overlayfs features whose upper directory no longer holds the whole change (a renamed
/// directory's redirect, a metadata-only copy-up): refused, never written as a wrong layer.
fn refuse_overlay_features(p: &Path) -> Result<()> {
    for key in [
        "trusted.overlay.redirect",
        "user.overlay.redirect",
        "trusted.overlay.metacopy",
        "user.overlay.metacopy",
    ] {
        if husk_sys::xattr(p, key).is_some() {
            return Err(failed!(
                "cannot make a layer of {}: overlayfs marked it {key} (mount overlayfs with redirect_dir=off and metacopy=off)",
                p.display()
            ));
        }
    }
    Ok(())
}

/// `path`'s extended attributes as PAX records, overlayfs's own left out.
fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    husk_sys::xattr_names(path)
        .into_iter()
        .filter(|k| !k.starts_with("trusted.overlay.") && !k.starts_with("user.overlay."))
        .filter_map(|k| husk_sys::xattr(path, &k).map(|v| (format!("SCHILY.xattr.{k}"), v)))
        .collect()
}
