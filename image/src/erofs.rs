//! A layer tar stream written as one EROFS image, the way the kernel mounts it (file-backed,
//! no files created): uncompressed, 4 KiB blocks, extended inodes (32-bit ids, mtimes),
//! inline xattrs, every file's data in whole blocks (FLAT_PLAIN).
//!
//! Layout: block 0 holds the superblock (at byte 1024); file data follows in the order the
//! tar stream brings it; then the inodes (the meta area, root first so its nid fits the
//! superblock's 16 bits); then the directory blocks.
//!
//! The OCI rules are the directory unpacker's (`unpack`): whiteouts become overlayfs whiteouts
//! (0:0 character devices, `trusted.overlay.opaque` for opaque directories), a whiteout only
//! hides lower layers, later entries replace earlier ones, hardlinks only to earlier entries of
//! the layer. Names are checked before they reach the image (no `..`, no `/`, at most 255
//! bytes), and a path through a symlink is resolved inside the layer's tree; nothing is ever
//! created on the host but the image file, so a hostile layer has nothing to escape into.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const BLOCK: u64 = 4096;
const MAGIC: u32 = 0xE0F5_E1E2;
const INODE_SIZE: usize = 64;
const DIRENT_SIZE: usize = 12;
const MAX_NAME: usize = 255;
/// Entries (inodes, directories made on the way) one layer may have: a bound on what a
/// hostile layer makes husk hold in memory (real images have tens of thousands).
const MAX_NODES: usize = 4_000_000;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub entries: usize,
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone)]
enum Data {
    None,
    /// Whole blocks from this block address.
    Blocks(u32),
    Device(u32),
}

#[derive(Debug, Clone)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    data: Data,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    children: BTreeMap<Vec<u8>, usize>,
    nlink: u32,
    /// A symlink's target, to resolve paths through it inside the layer.
    link: Vec<u8>,
}

impl Node {
    fn dir(mode: u32) -> Node {
        Node {
            mode: S_IFDIR | mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            data: Data::None,
            xattrs: Vec::new(),
            children: BTreeMap::new(),
            nlink: 1,
            link: Vec::new(),
        }
    }

    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

fn hostile(entry: &Path, why: impl Into<String>) -> Error {
    let mut name = entry.display().to_string();
    if name.len() > 200 {
        let mut cut = 200;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push('…');
    }
    Error::HostileEntry {
        entry: name,
        why: why.into(),
    }
}

/// Builds the image: data streams into `out` as entries arrive; `finish` adds the rest.
struct Writer<W: Write + Seek> {
    out: W,
    /// Next free block.
    next_block: u32,
    nodes: Vec<Node>,
    /// Paths entries of this layer created (whiteouts do not hide them).
    added: HashSet<PathBuf>,
    report: Report,
}

impl<W: Write + Seek> Writer<W> {
    fn new(mut out: W) -> Result<Writer<W>> {
        // Block 0 is the superblock's; written last.
        out.write_all(&[0u8; BLOCK as usize])
            .map_err(|e| Error::io("cannot write the EROFS image", e))?;
        Ok(Writer {
            out,
            next_block: 1,
            nodes: vec![Node::dir(0o755)],
            added: HashSet::new(),
            report: Report::default(),
        })
    }

    /// Copy `data` into whole blocks at the end of the image; its first block.
    fn write_blocks(&mut self, data: &mut dyn Read, size: u64) -> Result<u32> {
        let start = self.next_block;
        let copied = io::copy(&mut data.take(size), &mut self.out)
            .map_err(|e| Error::io("cannot write the EROFS image", e))?;
        if copied != size {
            return Err(Error::io(
                "the layer's tar stream ended inside a file",
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        self.out
            .write_all(&vec![0u8; pad as usize])
            .map_err(|e| Error::io("cannot write the EROFS image", e))?;
        let blocks = size.div_ceil(BLOCK);
        self.next_block = u32::try_from(u64::from(self.next_block) + blocks)
            .map_err(|_| Error::Manifest("the layer is too large for one EROFS image".into()))?;
        Ok(start)
    }

    /// The directory node at `rel` (components already checked), made on the way where
    /// missing; symlinks on the way are followed inside the layer.
    fn dir_at(&mut self, rel: &Path, entry: &Path) -> Result<usize> {
        let mut stack: Vec<usize> = vec![0];
        let mut todo: Vec<Vec<u8>> = rel
            .components()
            .rev()
            .map(|c| c.as_os_str().as_encoded_bytes().to_vec())
            .collect();
        let mut hops = 0;
        while let Some(name) = todo.pop() {
            let cur = *stack.last().unwrap_or(&0);
            if name == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            if name == b"." || name.is_empty() {
                continue;
            }
            // Names that come from a symlink's target were never checked as entry names.
            if name.len() > MAX_NAME || name.contains(&0) {
                return Err(hostile(
                    entry,
                    "a symlink on the way has an invalid name in its target",
                ));
            }
            let next = match self.nodes[cur].children.get(&name) {
                Some(&n) => n,
                None => {
                    self.room()?;
                    self.nodes.push(Node::dir(0o755));
                    let n = self.nodes.len() - 1;
                    self.nodes[cur].children.insert(name.clone(), n);
                    n
                }
            };
            let node = &self.nodes[next];
            if node.is_dir() {
                stack.push(next);
            } else if node.mode & S_IFMT == S_IFLNK {
                hops += 1;
                if hops > 40 {
                    return Err(hostile(entry, "too many symlinks on the way"));
                }
                let target = self.nodes[next].link.clone();
                if target.starts_with(b"/") {
                    stack.truncate(1);
                }
                todo.extend(target.split(|b| *b == b'/').rev().map(|c| c.to_vec()));
            } else {
                return Err(hostile(entry, "a path component is not a directory"));
            }
        }
        Ok(*stack.last().unwrap_or(&0))
    }

    /// Room for one more node? A layer may not make husk hold unbounded metadata.
    fn room(&self) -> Result<()> {
        if self.nodes.len() >= MAX_NODES {
            return Err(Error::Manifest(format!(
                "the layer has more than {MAX_NODES} entries; husk refuses to build such an EROFS image"
            )));
        }
        Ok(())
    }

    /// Replace (or add) `name` in directory `parent` with node `n`.
    fn put(&mut self, parent: usize, name: Vec<u8>, n: usize) {
        if let Some(old) = self.nodes[parent].children.insert(name, n) {
            if old != n {
                self.nodes[old].nlink = self.nodes[old].nlink.saturating_sub(1);
            }
        }
    }
}

/// Names of a path, each checked.
fn components(raw: &Path) -> Result<PathBuf> {
    if raw.as_os_str().len() > 4096 {
        return Err(hostile(raw, "the name is longer than PATH_MAX"));
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => {
                if n.len() > MAX_NAME {
                    return Err(hostile(raw, "a name is longer than 255 bytes"));
                }
                out.push(n);
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(hostile(raw, "the name contains `..`")),
        }
    }
    Ok(out)
}

/// The xattr name prefixes EROFS stores as an index, and the rest of the name.
fn xattr_index(key: &[u8]) -> Option<(u8, &[u8])> {
    for (prefix, index) in [
        (&b"user."[..], 1u8),
        (b"system.posix_acl_access", 2),
        (b"system.posix_acl_default", 3),
        (b"trusted.", 4),
        (b"security.", 6),
    ] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return Some((index, rest));
        }
    }
    None
}

fn xattr_body(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    if xattrs.is_empty() {
        return Vec::new();
    }
    // erofs_xattr_ibody_header: name filter, shared count, reserved.
    let mut b = vec![0u8; 12];
    for (k, v) in xattrs {
        let Some((index, suffix)) = xattr_index(k) else {
            continue;
        };
        // What the on-disk fields can hold (u8 name length, u16 value size), and an inode's
        // xattr area within what i_xattr_icount (u16) counts.
        if suffix.len() > 255 || v.len() > 65535 || b.len() + 4 + suffix.len() + v.len() > 60_000 {
            continue;
        }
        b.push(suffix.len() as u8);
        b.push(index);
        b.extend_from_slice(&(v.len() as u16).to_le_bytes());
        b.extend_from_slice(suffix);
        b.extend_from_slice(v);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
    }
    b
}

fn file_type(mode: u32) -> u8 {
    match mode & S_IFMT {
        S_IFREG => 1,
        S_IFDIR => 2,
        S_IFCHR => 3,
        S_IFBLK => 4,
        S_IFIFO => 5,
        0o140000 => 6,
        S_IFLNK => 7,
        _ => 0,
    }
}

/// Linux's new_encode_dev.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Write the layer `tar` as an EROFS image into `out`.
pub fn write_layer(tar: impl Read, out: impl Write + Seek) -> Result<Report> {
    let mut w = Writer::new(out)?;
    let mut archive = tar::Archive::new(tar);
    for entry in archive
        .entries()
        .map_err(|e| Error::io("cannot read the layer's tar stream", e))?
    {
        let mut e = entry.map_err(|e| Error::io("corrupt tar stream in layer", e))?;
        let raw = PathBuf::from(std::ffi::OsStr::from_bytes(&e.path_bytes()));
        let rel = components(&raw)?;
        let Some(name) = rel.file_name().map(|n| n.as_encoded_bytes().to_vec()) else {
            continue; // the layer root itself
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let parent = w.dir_at(&parent_rel, &raw)?;
        w.report.entries += 1;
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                let xa = &mut w.nodes[parent].xattrs;
                xa.retain(|(k, _)| k != b"trusted.overlay.opaque");
                xa.push((b"trusted.overlay.opaque".to_vec(), b"y".to_vec()));
                continue;
            }
            if hidden.is_empty() || hidden.len() > MAX_NAME || hidden == b"." || hidden == b".." {
                return Err(hostile(&raw, "a whiteout without a valid name"));
            }
            // Hides only what lower layers have there; this layer's own entry stays.
            if w.added
                .contains(&parent_rel.join(std::ffi::OsStr::from_bytes(hidden)))
            {
                continue;
            }
            let mut node = Node::dir(0);
            node.mode = S_IFCHR;
            node.data = Data::Device(0);
            w.room()?;
            w.nodes.push(node);
            let n = w.nodes.len() - 1;
            w.put(parent, hidden.to_vec(), n);
            continue;
        }
        let h = e.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = h.entry_type();
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = match e.pax_extensions() {
            Ok(Some(exts)) => exts
                .flatten()
                .filter_map(|x| {
                    x.key_bytes()
                        .strip_prefix(b"SCHILY.xattr.")
                        .map(|k| (k.to_vec(), x.value_bytes().to_vec()))
                })
                .filter(|(k, v)| crate::unpack::xattr_allowed(k, v))
                .collect(),
            _ => Vec::new(),
        };
        let mut node = Node {
            mode,
            uid,
            gid,
            mtime,
            size: 0,
            data: Data::None,
            xattrs,
            children: BTreeMap::new(),
            nlink: 1,
            link: Vec::new(),
        };
        use tar::EntryType::*;
        match kind {
            Directory => {
                // An existing directory keeps its children: later entries update its metadata.
                if let Some(&old) = w.nodes[parent].children.get(&name) {
                    if w.nodes[old].is_dir() {
                        let o = &mut w.nodes[old];
                        o.mode = S_IFDIR | mode;
                        o.uid = uid;
                        o.gid = gid;
                        o.mtime = mtime;
                        let opaque: Vec<_> = o
                            .xattrs
                            .iter()
                            .filter(|(k, _)| k == b"trusted.overlay.opaque")
                            .cloned()
                            .collect();
                        o.xattrs = node.xattrs;
                        o.xattrs.extend(opaque);
                        w.added.insert(rel.clone());
                        continue;
                    }
                }
                node.mode |= S_IFDIR;
            }
            GNUSparse => {
                // A sparse entry's size is what it expands to: not worth the risk in a layer.
                return Err(hostile(&raw, "sparse files are not supported in layers"));
            }
            Regular | Continuous => {
                node.mode |= S_IFREG;
                let size = e.size();
                node.size = size;
                if size > 0 {
                    node.data = Data::Blocks(w.write_blocks(&mut e, size)?);
                }
            }
            Symlink => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                node.mode |= S_IFLNK;
                node.size = target.len() as u64;
                node.data = Data::Blocks(w.write_blocks(&mut &target[..], target.len() as u64)?);
                node.mode = S_IFLNK | 0o777;
                node.link = target;
            }
            Link => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = components(&PathBuf::from(std::ffi::OsStr::from_bytes(&target)))?;
                let (Some(tname), tparent) =
                    (target.file_name(), target.parent().unwrap_or(Path::new("")))
                else {
                    return Err(hostile(&raw, "a hardlink to the layer root"));
                };
                let tdir = w.dir_at(tparent, &raw)?;
                let Some(&tn) = w.nodes[tdir].children.get(tname.as_encoded_bytes()) else {
                    return Err(hostile(&raw, "a hardlink to a path not in this layer"));
                };
                if w.nodes[tn].is_dir() {
                    return Err(hostile(&raw, "a hardlink to a directory"));
                }
                w.nodes[tn].nlink += 1;
                w.put(parent, name, tn);
                w.added.insert(rel);
                continue;
            }
            Char | Block => {
                node.mode |= if kind == Char { S_IFCHR } else { S_IFBLK };
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                node.data = Data::Device(encode_dev(major, minor));
            }
            Fifo => node.mode |= S_IFIFO,
            other => {
                w.report
                    .skipped
                    .push(format!("{} ({other:?})", raw.display()));
                continue;
            }
        }
        w.room()?;
        w.nodes.push(node);
        let n = w.nodes.len() - 1;
        w.put(parent, name, n);
        w.added.insert(rel);
    }
    w.finish()
}

impl<W: Write + Seek> Writer<W> {
    fn finish(mut self) -> Result<Report> {
        // Inodes reachable from the root, in breadth-first order (root first: nid 0).
        let mut order = vec![0usize];
        let mut seen = vec![false; self.nodes.len()];
        seen[0] = true;
        let mut i = 0;
        while i < order.len() {
            let n = order[i];
            for &c in self.nodes[n].children.values() {
                if !seen[c] {
                    seen[c] = true;
                    order.push(c);
                }
            }
            i += 1;
        }
        // Links: directories count "." and their subdirectories' "..".
        let mut nlink: Vec<u32> = vec![0; self.nodes.len()];
        for &n in &order {
            let node = &self.nodes[n];
            if node.is_dir() {
                nlink[n] += 2;
                for &c in node.children.values() {
                    if self.nodes[c].is_dir() {
                        nlink[n] += 1;
                    } else {
                        nlink[c] += 1;
                    }
                }
            }
        }
        // nids: 32-byte slots in the meta area.
        let meta_block = self.next_block;
        let mut nid = vec![0u64; self.nodes.len()];
        let mut xbodies: Vec<Vec<u8>> = vec![Vec::new(); self.nodes.len()];
        let mut off = 0u64;
        for &n in &order {
            nid[n] = off / 32;
            xbodies[n] = xattr_body(&self.nodes[n].xattrs);
            let len = (INODE_SIZE + xbodies[n].len()) as u64;
            off += len.div_ceil(32) * 32;
        }
        if nid[0] != 0 {
            return Err(Error::Manifest("the EROFS root inode is not first".into()));
        }
        let meta_blocks = off.div_ceil(BLOCK);
        let mut next_dir_block = u64::from(meta_block) + meta_blocks;
        // ".." of each directory: its parent's nid (the root's is its own).
        let mut parent_of = vec![0usize; self.nodes.len()];
        for &n in &order {
            for &c in self.nodes[n].children.values() {
                if self.nodes[c].is_dir() {
                    parent_of[c] = n;
                }
            }
        }
        let mut dir_addr = vec![0u32; self.nodes.len()];
        let mut dir_size = vec![0u64; self.nodes.len()];
        // Directory blocks follow the meta area: their sizes first (for the inodes), their
        // bytes after the meta area is written, one directory at a time.
        let dir_entries = |n: usize| -> Vec<(Vec<u8>, u64, u8)> {
            let mut entries: Vec<(Vec<u8>, u64, u8)> = vec![
                (b".".to_vec(), nid[n], 2),
                (b"..".to_vec(), nid[parent_of[n]], 2),
            ];
            for (name, &c) in &self.nodes[n].children {
                entries.push((name.clone(), nid[c], file_type(self.nodes[c].mode)));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries
        };
        let dirs: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&n| self.nodes[n].is_dir())
            .collect();
        for &n in &dirs {
            let (blocks, size) = dirent_blocks(&dir_entries(n), None);
            dir_addr[n] = u32::try_from(next_dir_block).map_err(|_| {
                Error::Manifest("the layer is too large for one EROFS image".into())
            })?;
            dir_size[n] = size;
            next_dir_block += blocks;
        }
        // The meta area.
        let mut meta = vec![0u8; (meta_blocks * BLOCK) as usize];
        for (ino, &n) in order.iter().enumerate() {
            let node = &self.nodes[n];
            let at = (nid[n] * 32) as usize;
            let (size, iu) = if node.is_dir() {
                (dir_size[n], dir_addr[n])
            } else {
                match node.data {
                    Data::Blocks(b) => (node.size, b),
                    Data::Device(d) => (0, d),
                    Data::None => (node.size, 0),
                }
            };
            let xcount: u16 = if xbodies[n].is_empty() {
                0
            } else {
                ((xbodies[n].len() - 12) / 4 + 1) as u16
            };
            let b = &mut meta[at..at + INODE_SIZE];
            b[0..2].copy_from_slice(&1u16.to_le_bytes()); // extended inode, FLAT_PLAIN
            b[2..4].copy_from_slice(&xcount.to_le_bytes());
            b[4..6].copy_from_slice(&(node.mode as u16).to_le_bytes());
            b[8..16].copy_from_slice(&size.to_le_bytes());
            b[16..20].copy_from_slice(&iu.to_le_bytes());
            b[20..24].copy_from_slice(&(ino as u32 + 1).to_le_bytes());
            b[24..28].copy_from_slice(&node.uid.to_le_bytes());
            b[28..32].copy_from_slice(&node.gid.to_le_bytes());
            b[32..40].copy_from_slice(&(node.mtime.max(0) as u64).to_le_bytes());
            b[44..48].copy_from_slice(&nlink[n].max(1).to_le_bytes());
            meta[at + INODE_SIZE..at + INODE_SIZE + xbodies[n].len()].copy_from_slice(&xbodies[n]);
        }
        let io_err = |e| Error::io("cannot write the EROFS image", e);
        self.out.write_all(&meta).map_err(io_err)?;
        for &n in &dirs {
            let mut bytes = Vec::new();
            dirent_blocks(&dir_entries(n), Some(&mut bytes));
            self.out.write_all(&bytes).map_err(io_err)?;
        }
        // The superblock.
        let mut sb = [0u8; 128];
        sb[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        sb[12] = 12; // blkszbits
        sb[14..16].copy_from_slice(&(nid[0] as u16).to_le_bytes());
        sb[16..24].copy_from_slice(&(order.len() as u64).to_le_bytes());
        sb[36..40].copy_from_slice(&(next_dir_block as u32).to_le_bytes());
        sb[40..44].copy_from_slice(&meta_block.to_le_bytes());
        self.out.seek(SeekFrom::Start(1024)).map_err(io_err)?;
        self.out.write_all(&sb).map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
        Ok(self.report)
    }
}

/// Sorted dirents packed into blocks: each block holds its dirents, then their names. Returns
/// the number of blocks and the directory's i_size (the last block ends at its last name);
/// with `out`, also the blocks' bytes.
fn dirent_blocks(entries: &[(Vec<u8>, u64, u8)], mut out: Option<&mut Vec<u8>>) -> (u64, u64) {
    let mut blocks = 0u64;
    let mut size = 0u64;
    let mut i = 0;
    while i < entries.len() {
        // As many entries as fit in one block.
        let mut n = 0;
        let mut used = 0usize;
        while i + n < entries.len() {
            let need = DIRENT_SIZE + entries[i + n].0.len();
            if used + need > BLOCK as usize {
                break;
            }
            used += need;
            n += 1;
        }
        if n == 0 {
            // Names are at most 255 bytes, so this cannot happen; never loop on it.
            break;
        }
        let nameoff_end =
            n * DIRENT_SIZE + entries[i..i + n].iter().map(|e| e.0.len()).sum::<usize>();
        if let Some(out) = out.as_deref_mut() {
            let mut block = vec![0u8; BLOCK as usize];
            let mut nameoff = n * DIRENT_SIZE;
            for (k, (name, nid, ft)) in entries[i..i + n].iter().enumerate() {
                let d = &mut block[k * DIRENT_SIZE..(k + 1) * DIRENT_SIZE];
                d[0..8].copy_from_slice(&nid.to_le_bytes());
                d[8..10].copy_from_slice(&(nameoff as u16).to_le_bytes());
                d[10] = *ft;
                block[nameoff..nameoff + name.len()].copy_from_slice(name);
                nameoff += name.len();
            }
            out.extend_from_slice(&block);
        }
        size = blocks * BLOCK + nameoff_end as u64;
        blocks += 1;
        i += n;
    }
    (blocks, size)
}
