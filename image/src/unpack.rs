//! Unpacking one OCI layer into its own directory, ready to be an overlayfs lower layer.
//!
//! Every path is resolved inside the layer directory (openat2 `RESOLVE_IN_ROOT`), so `..`
//! names, absolute names and symlinks planted earlier in the layer cannot reach outside it;
//! names with `..` and hardlinks to anything but an earlier entry of the same layer are refused.
//! OCI whiteouts become overlayfs whiteouts (`.wh.NAME` a 0:0 character device, `.wh..wh..opq`
//! the `trusted.overlay.opaque` xattr); a whiteout only hides lower layers, never a path this
//! layer itself adds (the image spec's rule, which podman gets wrong).

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The tar stream inside a (possibly compressed) layer blob.
pub fn decompress<'a>(blob: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(256 * 1024, blob);
    let kind = detect(
        r.fill_buf()
            .map_err(|e| Error::io("cannot read layer", e))?,
    );
    Ok(match kind {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| Error::io("cannot start zstd", e))?,
        ),
        Compression::None => Box::new(r),
    })
}

#[derive(Debug, Default)]
pub struct Report {
    pub entries: u64,
    /// Things skipped with a reason (device nodes where mknod is not allowed, ...).
    pub warnings: Vec<String>,
}

fn openat2(root: RawFd, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    husk_sys::open_in_root(root, rel, flags, 0)
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::HostileEntry {
        entry: s.to_string_lossy().into(),
        why: "the name holds a NUL byte".into(),
    })
}

fn check(rc: libc::c_int, what: impl FnOnce() -> String) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(what(), io::Error::last_os_error()))
    }
}

/// The entry's path relative to the layer root; `..` anywhere is hostile.
fn clean(raw: &Path, what: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(Error::HostileEntry {
                    entry: raw.display().to_string(),
                    why: format!("{what} contains `..`"),
                })
            }
            Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

struct Layer {
    root: OwnedFd,
    dest: PathBuf,
    /// Paths this layer has created, for whiteouts and hardlinks.
    added: HashSet<PathBuf>,
    /// Directories created on the way to an entry (not entries themselves).
    implicit: HashSet<PathBuf>,
    /// The process umask, to know when a created mode needs a chmod.
    umask: u32,
    euid_root: bool,
    dir_times: Vec<(PathBuf, i64)>,
    report: Report,
}

impl Layer {
    /// A directory fd for `rel`, creating missing directories (mode 0755) on the way.
    fn dir(&mut self, rel: &Path) -> Result<OwnedFd> {
        if let Ok(fd) = openat2(
            self.root.as_raw_fd(),
            rel,
            libc::O_RDONLY | libc::O_DIRECTORY,
        ) {
            return Ok(fd);
        }
        let mut cur = openat2(
            self.root.as_raw_fd(),
            Path::new(""),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
        .map_err(|e| Error::io("cannot open the layer directory", e))?;
        let mut so_far = PathBuf::new();
        for comp in rel.components() {
            so_far.push(comp);
            match openat2(
                self.root.as_raw_fd(),
                &so_far,
                libc::O_RDONLY | libc::O_DIRECTORY,
            ) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = cstr(comp.as_os_str())?;
                    self.implicit.insert(so_far.clone());
                    // SAFETY: mkdirat on a directory fd we hold.
                    let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
                    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                        return Err(Error::io(
                            format!("cannot create {}", so_far.display()),
                            io::Error::last_os_error(),
                        ));
                    }
                    cur = openat2(
                        self.root.as_raw_fd(),
                        &so_far,
                        libc::O_RDONLY | libc::O_DIRECTORY,
                    )
                    .map_err(|e| Error::io(format!("cannot open {}", so_far.display()), e))?;
                }
                Err(e) => {
                    return Err(Error::HostileEntry {
                        entry: rel.display().to_string(),
                        why: format!("its parent {} is not a directory ({e})", so_far.display()),
                    })
                }
            }
        }
        Ok(cur)
    }

    /// Remove whatever is at `name` in `parent` (a later entry replaces an earlier one).
    fn clear(&self, parent: &OwnedFd, rel: &Path, name: &CString, keep_dir: bool) -> Result<()> {
        // The layer directory starts empty: only paths this unpack made can be in the way.
        if !self.added.contains(rel) && !self.implicit.contains(rel) {
            return Ok(());
        }
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat on our fd, not following a final symlink.
        if unsafe {
            libc::fstatat(
                parent.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
        {
            return Ok(());
        }
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(());
        }
        // SAFETY: unlinkat on our fd.
        if unsafe {
            libc::unlinkat(
                parent.as_raw_fd(),
                name.as_ptr(),
                if is_dir { libc::AT_REMOVEDIR } else { 0 },
            )
        } == 0
        {
            return Ok(());
        }
        if is_dir {
            // A non-empty directory replaced by a file: its whole tree goes. Every component of
            // the path was resolved in the root and this one is a real directory, so removing by
            // path cannot leave the layer.
            let real = self.dest.join(rel);
            return std::fs::remove_dir_all(&real)
                .map_err(|e| Error::io(format!("cannot replace directory {}", rel.display()), e));
        }
        Err(Error::io(
            format!("cannot replace {}", rel.display()),
            io::Error::last_os_error(),
        ))
    }

    fn whiteout(&mut self, dir: &Path, name: &OsStr) -> Result<()> {
        let parent = self.dir(dir)?;
        if name == ".wh..opq" {
            // ".wh..wh..opq": the directory hides everything below it in lower layers.
            let key = cstr(OsStr::new(&format!(
                "{}opaque",
                husk_sys::overlay_xattr_prefix()
            )))?;
            // SAFETY: fsetxattr on a directory fd we hold.
            let rc = unsafe {
                libc::fsetxattr(parent.as_raw_fd(), key.as_ptr(), b"y".as_ptr().cast(), 1, 0)
            };
            return check(rc, || format!("cannot mark {} opaque", dir.display()));
        }
        let hidden = dir.join(name);
        if self.added.contains(&hidden) {
            // The layer adds this path itself: it already hides the lower one.
            return Ok(());
        }
        let cname = cstr(name)?;
        self.clear(&parent, &hidden, &cname, false)?;
        // SAFETY: mknodat of a 0:0 character device: overlayfs's whiteout.
        let rc = unsafe { libc::mknodat(parent.as_raw_fd(), cname.as_ptr(), libc::S_IFCHR, 0) };
        check(rc, || {
            format!(
                "cannot create the whiteout for {} (needs root)",
                hidden.display()
            )
        })?;
        // A later entry of this layer at the same path replaces the whiteout.
        self.implicit.insert(hidden);
        Ok(())
    }

    fn entry(&mut self, mut e: tar::Entry<'_, impl Read>) -> Result<()> {
        let raw = PathBuf::from(OsStr::from_bytes(&e.path_bytes()));
        let rel = clean(&raw, "the name")?;
        let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
            return Ok(()); // the layer root itself
        };
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
            return self.whiteout(&dir, OsStr::from_bytes(hidden));
        }
        let kind = e.header().entry_type();
        let (uid, gid) = (
            e.header().uid().unwrap_or(0) as u32,
            e.header().gid().unwrap_or(0) as u32,
        );
        let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = e.header().mtime().unwrap_or(0) as i64;
        let parent = self.dir(&dir)?;
        let cname = cstr(&name)?;
        let at = parent.as_raw_fd();
        let what = || rel.display().to_string();
        use tar::EntryType::*;
        match kind {
            Directory => {
                self.clear(&parent, &rel, &cname, true)?;
                // SAFETY: *at syscalls on our directory fd.
                let rc = unsafe { libc::mkdirat(at, cname.as_ptr(), mode & 0o777) };
                if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(Error::io(
                        format!("cannot create directory {}", what()),
                        io::Error::last_os_error(),
                    ));
                }
                self.dir_times.push((rel.clone(), mtime));
            }
            GNUSparse => {
                // A sparse entry's size is what it expands to: not worth the risk in a layer.
                return Err(Error::HostileEntry {
                    entry: rel.display().to_string(),
                    why: "sparse files are not supported in layers".into(),
                });
            }
            Regular | Continuous => {
                self.clear(&parent, &rel, &cname, false)?;
                // SAFETY: as above; O_EXCL|O_NOFOLLOW: never through a planted link.
                let fd = unsafe {
                    libc::openat(
                        at,
                        cname.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        mode & 0o777,
                    )
                };
                if fd < 0 {
                    return Err(Error::io(
                        format!("cannot create {}", what()),
                        io::Error::last_os_error(),
                    ));
                }
                // SAFETY: a new fd from the kernel.
                let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                // Large writes: a layer holds thousands of files and each syscall counts.
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = match e.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => {
                            return Err(Error::io(
                                format!("cannot read {} from the layer", what()),
                                err,
                            ))
                        }
                    };
                    std::io::Write::write_all(&mut f, &buf[..n])
                        .map_err(|err| Error::io(format!("cannot write {}", what()), err))?;
                }
            }
            Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| Error::HostileEntry {
                    entry: what(),
                    why: "a symlink without a target".into(),
                })?;
                let target = CString::new(target.as_ref()).map_err(|_| Error::HostileEntry {
                    entry: what(),
                    why: "the target holds a NUL byte".into(),
                })?;
                self.clear(&parent, &rel, &cname, false)?;
                // SAFETY: as above. The target is stored, never followed here.
                check(
                    unsafe { libc::symlinkat(target.as_ptr(), at, cname.as_ptr()) },
                    || format!("cannot create symlink {}", what()),
                )?;
            }
            Link => {
                let target = e.link_name_bytes().ok_or_else(|| Error::HostileEntry {
                    entry: what(),
                    why: "a hardlink without a target".into(),
                })?;
                let target = clean(Path::new(OsStr::from_bytes(&target)), "the hardlink target")?;
                if !self.added.contains(&target) {
                    return Err(Error::HostileEntry {
                        entry: what(),
                        why: format!(
                            "hardlink to {}, which is not an earlier entry of this layer",
                            target.display()
                        ),
                    });
                }
                let src = openat2(
                    self.root.as_raw_fd(),
                    &target,
                    libc::O_PATH | libc::O_NOFOLLOW,
                )
                .map_err(|err| {
                    Error::io(
                        format!("cannot open hardlink target {}", target.display()),
                        err,
                    )
                })?;
                self.clear(&parent, &rel, &cname, false)?;
                let src_path =
                    CString::new(format!("/proc/self/fd/{}", src.as_raw_fd())).unwrap_or_default();
                // SAFETY: linkat through the magic link of the fd we resolved in the root.
                let rc = unsafe {
                    libc::linkat(
                        libc::AT_FDCWD,
                        src_path.as_ptr(),
                        at,
                        cname.as_ptr(),
                        libc::AT_SYMLINK_FOLLOW,
                    )
                };
                check(rc, || format!("cannot create hardlink {}", what()))?;
                self.added.insert(rel);
                self.report.entries += 1;
                return Ok(()); // a hardlink shares the target's metadata
            }
            Char | Block | Fifo => {
                let dev = libc::makedev(
                    e.header().device_major().ok().flatten().unwrap_or(0),
                    e.header().device_minor().ok().flatten().unwrap_or(0),
                );
                let t = match kind {
                    Char => libc::S_IFCHR,
                    Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.clear(&parent, &rel, &cname, false)?;
                // SAFETY: as above.
                if unsafe { libc::mknodat(at, cname.as_ptr(), t | 0o600, dev) } != 0 {
                    let err = io::Error::last_os_error();
                    if err.raw_os_error() == Some(libc::EPERM) {
                        self.report.warnings.push(format!(
                            "{}: device node skipped (mknod not permitted)",
                            what()
                        ));
                        return Ok(());
                    }
                    return Err(Error::io(format!("cannot create device {}", what()), err));
                }
            }
            XGlobalHeader | XHeader | GNULongName | GNULongLink => return Ok(()),
            other => {
                self.report
                    .warnings
                    .push(format!("{}: entry type {other:?} skipped", what()));
                return Ok(());
            }
        }
        // Ownership, then mode (chown clears setuid bits), xattrs, times. As root, what we
        // create is already 0:0, and a mode the umask left alone needs no chmod: most entries
        // of a layer need neither syscall.
        let chown = !(self.euid_root && uid == 0 && gid == 0);
        if chown {
            // SAFETY: *at calls on our fd, never following a final symlink.
            let rc =
                unsafe { libc::fchownat(at, cname.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) };
            if rc != 0
                && husk_sys::in_user_namespace()
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
            {
                return Err(Error::Config(format!(
                    "cannot give {} to {uid}:{gid}: this user namespace does not map that id (rootless husk maps the ranges /etc/subuid and /etc/subgid give your user: add a line such as USER:100000:65536 to each, then run `husk system migrate`)",
                    what()
                )));
            }
            check(rc, || format!("cannot chown {}", what()))?;
        }
        let existed_dir = kind == Directory && self.implicit.contains(&rel);
        if kind != Symlink && (chown || existed_dir || mode & 0o7000 != 0 || mode & self.umask != 0)
        {
            // SAFETY: as above (fchmodat has no NOFOLLOW; the entry is not a symlink).
            check(
                unsafe { libc::fchmodat(at, cname.as_ptr(), mode, 0) },
                || format!("cannot chmod {}", what()),
            )?;
        }
        if kind != Symlink {
            if let Ok(Some(exts)) = e.pax_extensions() {
                let xattrs: Vec<(Vec<u8>, Vec<u8>)> = exts
                    .flatten()
                    .filter_map(|x| {
                        x.key_bytes()
                            .strip_prefix(b"SCHILY.xattr.")
                            .map(|k| (k.to_vec(), x.value_bytes().to_vec()))
                    })
                    .filter(|(k, v)| xattr_allowed(k, v))
                    .collect();
                if !xattrs.is_empty() {
                    let fd = openat2(
                        self.root.as_raw_fd(),
                        &rel,
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                    )
                    .map_err(|err| Error::io(format!("cannot open {} for xattrs", what()), err))?;
                    for (k, v) in xattrs {
                        let key = CString::new(k).unwrap_or_default();
                        // SAFETY: fsetxattr on the fd just opened.
                        let rc = unsafe {
                            libc::fsetxattr(
                                fd.as_raw_fd(),
                                key.as_ptr(),
                                v.as_ptr().cast(),
                                v.len(),
                                0,
                            )
                        };
                        check(rc, || {
                            format!("cannot set xattr {} on {}", key.to_string_lossy(), what())
                        })?;
                    }
                }
            }
        }
        if kind != Directory {
            let ts = [
                libc::timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
                libc::timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
            ];
            // SAFETY: as above.
            check(
                unsafe {
                    libc::utimensat(at, cname.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
                },
                || format!("cannot set times of {}", what()),
            )?;
        }
        self.added.insert(rel);
        self.report.entries += 1;
        Ok(())
    }
}

/// The umask, read without changing it (umask(2) would race with other unpacking threads).
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Umask:")
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
        })
        .unwrap_or(0o022)
}

/// Whether a layer may carry this xattr. overlayfs's own (`trusted.overlay.*`: redirect,
/// origin, metacopy, …) would steer how lower layers are merged, so a layer gets none of them,
/// except the opaque mark, which is what `.wh..wh..opq` means anyway.
/// The same holds for `user.overlay.*`, which overlayfs reads in a user namespace (rootless).
pub fn xattr_allowed(key: &[u8], value: &[u8]) -> bool {
    let overlay = key
        .strip_prefix(b"trusted.overlay.")
        .or_else(|| key.strip_prefix(b"user.overlay."));
    match overlay {
        None => true,
        Some(b"opaque") => value == b"y",
        Some(_) => false,
    }
}

/// Unpack the tar stream `tar` into `dest` (created if missing).
pub fn unpack(tar: impl Read, dest: &Path) -> Result<Report> {
    std::fs::create_dir_all(dest)
        .map_err(|e| Error::io(format!("cannot create {}", dest.display()), e))?;
    let root: OwnedFd = std::fs::File::open(dest)
        .map_err(|e| Error::io(format!("cannot open {}", dest.display()), e))?
        .into();
    let mut layer = Layer {
        root,
        dest: dest.to_path_buf(),
        added: HashSet::new(),
        implicit: HashSet::new(),
        umask: current_umask(),
        // SAFETY: geteuid has no preconditions.
        euid_root: unsafe { libc::geteuid() } == 0,
        dir_times: Vec::new(),
        report: Report::default(),
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive
        .entries()
        .map_err(|e| Error::io("cannot read the layer's tar stream", e))?
    {
        let entry = entry.map_err(|e| Error::io("corrupt tar stream in layer", e))?;
        layer.entry(entry)?;
    }
    // Directory times last: creating their children changed them.
    for (rel, mtime) in layer.dir_times.iter().rev() {
        if let Ok(fd) = openat2(
            layer.root.as_raw_fd(),
            rel,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        ) {
            let ts = [
                libc::timespec {
                    tv_sec: *mtime,
                    tv_nsec: 0,
                },
                libc::timespec {
                    tv_sec: *mtime,
                    tv_nsec: 0,
                },
            ];
            // SAFETY: futimens on the fd just opened.
            unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) };
        }
    }
    Ok(layer.report)
}
