//! `cp`: files between a container and the host (or a tar stream), with docker's archive
//! semantics: a directory lands inside an existing directory, or becomes a new one; `SRC/.`
//! copies the contents; a file replaces a file.
//!
//! Inside the container every path is resolved from a descriptor of its root with
//! RESOLVE_IN_ROOT, and every entry is opened, made or descended into relative to its
//! parent's descriptor with O_NOFOLLOW: a container that swaps a directory for a symlink
//! while the copy runs (CVE-2018-15664) can make it fail, never reach the host through it.
//! A running container is reached through its init's root (its volumes included); a stopped
//! one through its root mount, made for the copy.

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::layers;
use crate::store::{self, Container, Status};

/// Where `cp` takes from or puts to, besides a container.
pub enum Outside<'a> {
    Host(PathBuf),
    /// `-`: a tar stream (stdin or stdout).
    TarIn(&'a mut dyn Read),
    TarOut(&'a mut dyn Write),
}

fn bad(msg: String) -> Error {
    Error::Invalid(msg)
}

fn os_err(what: String, e: std::io::Error) -> Error {
    Error::Failed(format!("{what}: {e}"))
}

/// The container's root as a descriptor, and what to undo after.
struct RootFd {
    fd: OwnedFd,
    unmount: Option<(PathBuf, String)>,
}

impl Drop for RootFd {
    fn drop(&mut self) {
        if let Some((root, id)) = self.unmount.take() {
            layers::unmount_rootfs(&root, &id);
        }
    }
}

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(fs::File::open(path)?.into())
}

fn container_root(root: &Path, c: &Container) -> Result<RootFd> {
    let st = c.observed();
    if st.status == Status::Running && st.pid > 0 {
        let fd = open_dir(&PathBuf::from(format!("/proc/{}/root", st.pid)))
            .map_err(|e| os_err(format!("cannot reach the root of container {}", c.name), e))?;
        return Ok(RootFd { fd, unmount: None });
    }
    root_mount(root, c)
}

/// The container's root mount on the host (made for the copy when it is not up): its
/// image's layers and its own changes, without its volumes or the kernel's file systems.
fn root_mount(root: &Path, c: &Container) -> Result<RootFd> {
    let rootfs = store::dir(root, &c.id).join("rootfs");
    let mounted_here = !husk_sys::is_mount_point(&rootfs);
    layers::mount_rootfs(root, c)?;
    let unmount = mounted_here.then(|| (root.to_path_buf(), c.id.clone()));
    let fd = open_dir(&rootfs);
    let guard_fd = match fd {
        Ok(fd) => fd,
        Err(e) => {
            if let Some((r, id)) = unmount {
                layers::unmount_rootfs(&r, &id);
            }
            return Err(os_err(
                format!("cannot open the root of container {}", c.name),
                e,
            ));
        }
    };
    Ok(RootFd {
        fd: guard_fd,
        unmount,
    })
}

fn cstr(name: &OsStr) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| bad(format!("{name:?}: a name with a NUL byte")))
}

fn openat(dir: RawFd, name: &OsStr, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: openat on a descriptor we hold, with a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: just opened.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// What an entry is, from its own descriptor or its parent's.
fn stat_at(dir: RawFd, name: &OsStr) -> std::io::Result<libc::stat> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: fstatat into a zeroed struct, not following a last symlink.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(
            dir,
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }
}

fn readlink_at(dir: RawFd, name: &OsStr) -> std::io::Result<PathBuf> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a buffer we own.
    let n = unsafe { libc::readlinkat(dir, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// Names in directory `dir` (a descriptor), but `.` and `..`.
fn names(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    // A descriptor of its own: reading a directory moves its offset.
    let own = openat(
        dir.as_raw_fd(),
        OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    let d = nix::dir::Dir::from_fd(own).map_err(std::io::Error::from)?;
    let mut out = Vec::new();
    for e in d {
        let e = e.map_err(std::io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsString::from_vec(n.to_vec()));
        }
    }
    out.sort();
    Ok(out)
}

/// Where entries go: each `rel` is relative to the copy's base and free of `..`.
trait Sink {
    fn dir(&mut self, rel: &Path, mode: u32) -> Result<()>;
    fn file(&mut self, rel: &Path, mode: u32, size: u64, data: &mut dyn Read) -> Result<()>;
    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<()>;
}

/// Walk the tree at `name` in directory `dir` (a container's), never following a symlink.
fn walk_fd(
    dir: RawFd,
    name: &OsStr,
    rel: &Path,
    sink: &mut dyn Sink,
    bytes: &mut u64,
) -> Result<()> {
    let st = stat_at(dir, name).map_err(|e| os_err(format!("{}", rel.display()), e))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            sink.dir(rel, st.st_mode & 0o7777)?;
            let d = openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(|e| os_err(format!("{}", rel.display()), e))?;
            for n in names(&d).map_err(|e| os_err(format!("{}", rel.display()), e))? {
                walk_fd(d.as_raw_fd(), &n, &rel.join(&n), sink, bytes)?;
            }
            Ok(())
        }
        libc::S_IFREG => {
            let f = openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                0,
            )
            .map_err(|e| os_err(format!("{}", rel.display()), e))?;
            let mut f = fs::File::from(f);
            // What the open found, not what the stat saw: it may have been swapped between.
            let md = f
                .metadata()
                .map_err(|e| os_err(format!("{}", rel.display()), e))?;
            if !md.is_file() {
                return Err(bad(format!(
                    "{} changed while it was copied",
                    rel.display()
                )));
            }
            *bytes += md.len();
            sink.file(
                rel,
                md.mode() & 0o7777,
                md.len(),
                &mut (&mut f).take(md.len()),
            )
        }
        libc::S_IFLNK => {
            let t = readlink_at(dir, name).map_err(|e| os_err(format!("{}", rel.display()), e))?;
            sink.symlink(rel, &t)
        }
        _ => Err(bad(format!(
            "{}: cannot copy a device, FIFO or socket",
            rel.display()
        ))),
    }
}

/// Walk a host tree (trusted: the caller's own files).
fn walk_host(path: &Path, rel: &Path, sink: &mut dyn Sink, bytes: &mut u64) -> Result<()> {
    let md = fs::symlink_metadata(path).map_err(|e| os_err(format!("{}", path.display()), e))?;
    let ft = md.file_type();
    if ft.is_dir() {
        sink.dir(rel, md.mode() & 0o7777)?;
        let mut entries: Vec<_> = fs::read_dir(path)
            .map_err(|e| os_err(format!("{}", path.display()), e))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for n in entries {
            walk_host(&path.join(&n), &rel.join(&n), sink, bytes)?;
        }
        Ok(())
    } else if ft.is_file() {
        let mut f = fs::File::open(path).map_err(|e| os_err(format!("{}", path.display()), e))?;
        *bytes += md.len();
        sink.file(
            rel,
            md.mode() & 0o7777,
            md.len(),
            &mut (&mut f).take(md.len()),
        )
    } else if ft.is_symlink() {
        let t = fs::read_link(path).map_err(|e| os_err(format!("{}", path.display()), e))?;
        sink.symlink(rel, &t)
    } else {
        Err(bad(format!(
            "{}: cannot copy a device, FIFO or socket",
            path.display()
        )))
    }
}

/// Entries of a tar stream, each checked to stay below the base.
fn walk_tar(input: &mut dyn Read, sink: &mut dyn Sink, bytes: &mut u64) -> Result<()> {
    let mut a = tar::Archive::new(input);
    let entries = a
        .entries()
        .map_err(|e| bad(format!("the tar stream: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| bad(format!("the tar stream: {e}")))?;
        let path = e
            .path()
            .map_err(|e| bad(format!("the tar stream: {e}")))?
            .into_owned();
        let rel = clean(&path)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
        match e.header().entry_type() {
            tar::EntryType::Directory => sink.dir(&rel, mode)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                *bytes += size;
                sink.file(&rel, mode, size, &mut e)?
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad(format!("{}: a symlink without a target", rel.display())))?
                    .into_owned();
                sink.symlink(&rel, &t)?
            }
            other => {
                return Err(bad(format!(
                    "{}: entries of type {other:?} are not copied",
                    rel.display()
                )))
            }
        }
    }
    Ok(())
}

/// A relative path with no `..`, no root, no `.`: what a tar entry may name.
fn clean(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(bad(format!(
                    "{}: a path out of the destination",
                    p.display()
                )))
            }
        }
    }
    Ok(out)
}

struct HostSink {
    base: PathBuf,
}

impl Sink for HostSink {
    fn dir(&mut self, rel: &Path, mode: u32) -> Result<()> {
        let p = self.base.join(rel);
        if !p.is_dir() {
            fs::create_dir(&p).map_err(|e| os_err(format!("cannot create {}", p.display()), e))?;
        }
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o700));
        Ok(())
    }
    fn file(&mut self, rel: &Path, mode: u32, _: u64, data: &mut dyn Read) -> Result<()> {
        let p = self.base.join(rel);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = fs::remove_file(&p);
        }
        let mut f = fs::File::create(&p)
            .map_err(|e| os_err(format!("cannot create {}", p.display()), e))?;
        std::io::copy(data, &mut f)
            .map_err(|e| os_err(format!("cannot write {}", p.display()), e))?;
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
        Ok(())
    }
    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<()> {
        let p = self.base.join(rel);
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink(target, &p)
            .map_err(|e| os_err(format!("cannot create {}", p.display()), e))
    }
}

/// Who owns what `cp` makes in container `c`: its root, which is another host id in a user
/// namespace of its own (docker's cp with userns-remap does the same); None: the copier (root).
fn mapped_root(c: &Container) -> Option<(u32, u32)> {
    let m = c.id_maps.as_ref()?;
    Some((
        crate::options::IdMaps::host_of(&m.uid, 0)?,
        crate::options::IdMaps::host_of(&m.gid, 0)?,
    ))
}

/// Into a container: everything made relative to descriptors under `base`, never following a
/// symlink the container may have put in the way.
struct ContainerSink {
    base: OwnedFd,
    /// Who owns what is made (`COPY --chown`); None: the copier (root).
    owner: Option<(u32, u32)>,
}

impl ContainerSink {
    /// The directory that holds `rel`'s last component, and that component.
    fn parent(&self, rel: &Path) -> Result<(OwnedFd, OsString)> {
        let mut comps: Vec<&OsStr> = rel.iter().collect();
        let last = comps
            .pop()
            .ok_or_else(|| bad("an empty path".into()))?
            .to_os_string();
        let mut dir = openat(
            self.base.as_raw_fd(),
            OsStr::new("."),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| os_err("the destination".into(), e))?;
        for c in comps {
            dir = openat(
                dir.as_raw_fd(),
                c,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(|e| {
                os_err(
                    format!("{} (not a directory here, or a symlink)", rel.display()),
                    e,
                )
            })?;
        }
        Ok((dir, last))
    }
}

impl Sink for ContainerSink {
    fn dir(&mut self, rel: &Path, mode: u32) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        let c = cstr(&name)?;
        // SAFETY: mkdirat relative to a descriptor we hold.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) } != 0 {
            let e = std::io::Error::last_os_error();
            let is_dir = stat_at(dir.as_raw_fd(), &name)
                .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR);
            if !(e.raw_os_error() == Some(libc::EEXIST) && is_dir) {
                return Err(os_err(format!("cannot create {}", rel.display()), e));
            }
            // A directory that was there keeps its owner and mode.
            return Ok(());
        }
        self.own(&dir, &name)?;
        // SAFETY: fchmodat relative to a descriptor we hold (mkdirat's mode went through the
        // umask, and a chown clears set-id bits).
        unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) };
        Ok(())
    }
    fn file(&mut self, rel: &Path, mode: u32, _: u64, data: &mut dyn Read) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        let f = openat(
            dir.as_raw_fd(),
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            mode,
        )
        .map_err(|e| os_err(format!("cannot create {}", rel.display()), e))?;
        let mut f = fs::File::from(f);
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Err(bad(format!(
                "{}: not a regular file in the container",
                rel.display()
            )));
        }
        std::io::copy(data, &mut f)
            .map_err(|e| os_err(format!("cannot write {}", rel.display()), e))?;
        self.own(&dir, &name)?;
        // After the chown, which clears set-uid bits.
        let _ = f.set_permissions(fs::Permissions::from_mode(mode));
        Ok(())
    }
    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        self.symlink_at(&dir, &name, target, rel)?;
        self.own(&dir, &name)
    }
}

impl ContainerSink {
    /// Give `name` in `dir` to the sink's owner, if it has one (never following a symlink).
    fn own(&self, dir: &OwnedFd, name: &OsStr) -> Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let n = cstr(name)?;
        // SAFETY: fchownat relative to a descriptor we hold, not following symlinks.
        if unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                n.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
        {
            return Err(os_err(
                format!("cannot chown {}", Path::new(name).display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn symlink_at(&self, dir: &OwnedFd, name: &OsStr, target: &Path, rel: &Path) -> Result<()> {
        let (n, t) = (cstr(name)?, cstr(target.as_os_str())?);
        // SAFETY: unlinkat and symlinkat relative to a descriptor we hold.
        unsafe {
            libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), 0);
            if libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) != 0 {
                return Err(os_err(
                    format!("cannot create {}", rel.display()),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }
}

struct TarSink<'a> {
    out: tar::Builder<&'a mut dyn Write>,
}

impl Sink for TarSink<'_> {
    fn dir(&mut self, rel: &Path, mode: u32) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        self.out
            .append_data(&mut h, rel, std::io::empty())
            .map_err(|e| os_err("cannot write the tar stream".into(), e))
    }
    fn file(&mut self, rel: &Path, mode: u32, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(size);
        self.out
            .append_data(&mut h, rel, data)
            .map_err(|e| os_err("cannot write the tar stream".into(), e))
    }
    fn symlink(&mut self, rel: &Path, target: &Path) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        self.out
            .append_link(&mut h, rel, target)
            .map_err(|e| os_err("cannot write the tar stream".into(), e))
    }
}

/// docker's rule for where a copy lands, given whether the destination exists and is a
/// directory: (the directory the copy goes in, the name it gets there; None: the source's
/// contents go straight in).
/// `build`'s COPY and ADD into stopped container `c`: `make` is told whether `dest` is a
/// directory there already, and answers with the directory to unpack into and a tar of
/// what lands there. That directory is made (parents too) and the tar unpacked into it,
/// every entry owned by `chown` (a user[:group] of the container's image) when given.
/// Returns the bytes of file content copied.
pub fn unpack_in(
    root: &Path,
    c: &Container,
    dest: &str,
    chown: Option<&str>,
    make: &mut dyn FnMut(bool) -> Result<(String, Box<dyn Read>)>,
) -> Result<u64> {
    let rootfd = container_root(root, c)?;
    let fd = rootfd.fd.as_raw_fd();
    let dest_is_dir = husk_sys::open_in_root(fd, Path::new(dest), libc::O_PATH, 0)
        .ok()
        .and_then(|f| stat_at(f.as_raw_fd(), OsStr::new("")).ok())
        .is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR);
    let (landing, mut tar) = make(dest_is_dir)?;
    let owner = match chown {
        Some(spec) => Some(crate::user::resolve(
            Path::new(&format!("/proc/self/fd/{fd}")),
            spec,
        )?),
        None => None,
    };
    let top = openat(fd, OsStr::new("."), libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| os_err(format!("the root of container {}", c.name), e))?;
    let mut parents = ContainerSink {
        base: top,
        owner: None,
    };
    let rel = clean(Path::new(landing.trim_start_matches('/')))?;
    let mut at = PathBuf::new();
    for part in rel.iter() {
        at.push(part);
        parents.dir(&at, 0o755)?;
    }
    let base = husk_sys::open_in_root(fd, Path::new(&landing), libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| os_err(format!("{landing} in container {}", c.name), e))?;
    let mut sink = ContainerSink { base, owner };
    let mut bytes = 0;
    walk_tar(&mut tar, &mut sink, &mut bytes)?;
    Ok(bytes)
}

fn landing(
    src: &str,
    dest: &str,
    dest_is_dir: Option<bool>,
    src_is_dir: bool,
) -> Result<(String, Option<OsString>)> {
    let contents = src.ends_with("/.") || src == ".";
    let base_name = Path::new(src.trim_end_matches("/."))
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_else(|| OsString::from("."));
    match dest_is_dir {
        Some(true) => Ok((
            dest.to_string(),
            if contents { None } else { Some(base_name) },
        )),
        Some(false) if src_is_dir => Err(bad(format!("cannot copy a directory to a file: {dest}"))),
        None if dest.ends_with('/') => Err(bad(format!("no such directory: {dest}"))),
        // A new name: the source (file or directory) becomes it.
        Some(false) | None => {
            let p = Path::new(dest);
            let parent = p.parent().map_or("/".into(), |x| x.display().to_string());
            let parent = if parent.is_empty() {
                ".".into()
            } else {
                parent
            };
            let name = p
                .file_name()
                .map(OsStr::to_os_string)
                .ok_or_else(|| bad(format!("{dest}: no name to copy to")))?;
            Ok((parent, Some(name)))
        }
    }
}

/// `cp CONTAINER:SRC DEST`: out of container `c`. Returns the bytes of file content copied.
pub fn copy_out(root: &Path, c: &Container, src: &str, to: Outside) -> Result<u64> {
    copy_out_of(&container_root(root, c)?, c, src, to)
}

/// `export`: container `c`'s file system (its root mount: no volumes, no /proc) as a tar
/// stream, running or not. Returns the bytes of file content.
pub fn export(root: &Path, c: &Container, to: &mut dyn Write) -> Result<u64> {
    copy_out_of(&root_mount(root, c)?, c, "/.", Outside::TarOut(to))
}

fn copy_out_of(rootfd: &RootFd, c: &Container, src: &str, to: Outside) -> Result<u64> {
    let src_path = Path::new(src.trim_end_matches("/."));
    let src_fd = husk_sys::open_in_root(
        rootfd.fd.as_raw_fd(),
        src_path,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )
    .map_err(|e| {
        os_err(
            format!("could not find the file {src} in container {}", c.name),
            e,
        )
    })?;
    let st = stat_at(src_fd.as_raw_fd(), OsStr::new("")).map_err(|e| os_err(src.into(), e))?;
    let src_is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let mut bytes = 0;
    // Walk from the source's own descriptor: the empty name with AT_EMPTY_PATH is it.
    let walk = |rel: &Path, sink: &mut dyn Sink, bytes: &mut u64| -> Result<()> {
        if src.ends_with("/.") && src_is_dir {
            if !rel.as_os_str().is_empty() {
                sink.dir(rel, st.st_mode & 0o7777)?;
            }
            let d = openat(
                src_fd.as_raw_fd(),
                OsStr::new("."),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .map_err(|e| os_err(src.into(), e))?;
            for n in names(&d).map_err(|e| os_err(src.into(), e))? {
                walk_fd(d.as_raw_fd(), &n, &rel.join(&n), sink, bytes)?;
            }
            Ok(())
        } else {
            walk_entry(&src_fd, rel, sink, bytes)
        }
    };
    match to {
        Outside::Host(dest) => {
            let d = dest.display().to_string();
            let is_dir = fs::metadata(&dest).ok().map(|m| m.is_dir());
            let (base, name) = landing(src, &d, is_dir, src_is_dir)?;
            let mut sink = HostSink {
                base: PathBuf::from(&base),
            };
            if !sink.base.is_dir() {
                return Err(bad(format!("no such directory: {base}")));
            }
            walk(
                name.as_deref().map_or(Path::new(""), Path::new),
                &mut sink,
                &mut bytes,
            )?;
        }
        Outside::TarOut(w) => {
            let name = if src.ends_with("/.") {
                PathBuf::new()
            } else {
                PathBuf::from(src_path.file_name().unwrap_or(OsStr::new(".")))
            };
            let mut sink = TarSink {
                out: tar::Builder::new(w),
            };
            walk(&name, &mut sink, &mut bytes)?;
            sink.out
                .finish()
                .map_err(|e| os_err("cannot write the tar stream".into(), e))?;
        }
        Outside::TarIn(_) => return Err(bad("a tar stream cannot be a destination".into())),
    }
    Ok(bytes)
}

/// The entry an O_PATH descriptor is, walked (its contents, for a directory).
fn walk_entry(fd: &OwnedFd, rel: &Path, sink: &mut dyn Sink, bytes: &mut u64) -> Result<()> {
    let st = stat_at(fd.as_raw_fd(), OsStr::new(""))
        .map_err(|e| os_err(rel.display().to_string(), e))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            if !rel.as_os_str().is_empty() {
                sink.dir(rel, st.st_mode & 0o7777)?;
            }
            let d = openat(
                fd.as_raw_fd(),
                OsStr::new("."),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .map_err(|e| os_err(rel.display().to_string(), e))?;
            for n in names(&d).map_err(|e| os_err(rel.display().to_string(), e))? {
                walk_fd(d.as_raw_fd(), &n, &rel.join(&n), sink, bytes)?;
            }
            Ok(())
        }
        libc::S_IFLNK => {
            let t = readlink_at(fd.as_raw_fd(), OsStr::new(""))
                .map_err(|e| os_err(rel.display().to_string(), e))?;
            sink.symlink(rel, &t)
        }
        libc::S_IFREG => {
            // Reopened for reading through the descriptor, not the path.
            let f = fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map_err(|e| os_err(rel.display().to_string(), e))?;
            let md = f
                .metadata()
                .map_err(|e| os_err(rel.display().to_string(), e))?;
            *bytes += md.len();
            sink.file(rel, md.mode() & 0o7777, md.len(), &mut (&f).take(md.len()))
        }
        _ => Err(bad(format!(
            "{}: cannot copy a device, FIFO or socket",
            rel.display()
        ))),
    }
}

/// `cp SRC CONTAINER:DEST`: into container `c`. Returns the bytes of file content copied.
pub fn copy_in(root: &Path, c: &Container, from: Outside, dest: &str) -> Result<u64> {
    let rootfd = container_root(root, c)?;
    let lookup =
        |p: &str, flags: i32| husk_sys::open_in_root(rootfd.fd.as_raw_fd(), Path::new(p), flags, 0);
    let dest_is_dir = match lookup(dest, libc::O_PATH) {
        Ok(fd) => Some(
            stat_at(fd.as_raw_fd(), OsStr::new(""))
                .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR),
        ),
        Err(_) => None,
    };
    let mut bytes = 0;
    match from {
        Outside::Host(src) => {
            let s = src.display().to_string();
            let md = fs::symlink_metadata(&src).map_err(|e| os_err(s.clone(), e))?;
            let (base, name) = landing(&s, dest, dest_is_dir, md.is_dir())?;
            let base_fd = lookup(&base, libc::O_PATH | libc::O_DIRECTORY).map_err(|e| {
                os_err(
                    format!("no such directory in container {}: {base}", c.name),
                    e,
                )
            })?;
            let mut sink = ContainerSink {
                base: base_fd,
                owner: mapped_root(c),
            };
            match name {
                Some(n) => walk_host(&src, Path::new(&n), &mut sink, &mut bytes)?,
                None => {
                    for e in fs::read_dir(&src)
                        .map_err(|e| os_err(s.clone(), e))?
                        .flatten()
                    {
                        walk_host(&e.path(), Path::new(&e.file_name()), &mut sink, &mut bytes)?;
                    }
                }
            }
        }
        Outside::TarIn(r) => {
            if dest_is_dir != Some(true) {
                return Err(bad(format!(
                    "{dest} must be a directory in container {} to take a tar stream",
                    c.name
                )));
            }
            let base_fd = lookup(dest, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| os_err(format!("{dest} in container {}", c.name), e))?;
            let mut sink = ContainerSink {
                base: base_fd,
                owner: mapped_root(c),
            };
            walk_tar(r, &mut sink, &mut bytes)?;
        }
        Outside::TarOut(_) => return Err(bad("a tar stream cannot be a source here".into())),
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landing_follows_dockers_rules() {
        let l = |s, d, dd, sd| landing(s, d, dd, sd).map_err(|e| e.to_string());
        // Into an existing directory: under the source's name, or its contents with /.
        assert_eq!(
            l("/etc", "/tmp", Some(true), true).unwrap(),
            ("/tmp".into(), Some("etc".into()))
        );
        assert_eq!(
            l("/etc/.", "/tmp", Some(true), true).unwrap(),
            ("/tmp".into(), None)
        );
        // A new name: the source becomes it.
        assert_eq!(
            l("/etc", "/tmp/x", None, true).unwrap(),
            ("/tmp".into(), Some("x".into()))
        );
        assert_eq!(
            l("/a/f", "/tmp/g", None, false).unwrap(),
            ("/tmp".into(), Some("g".into()))
        );
        // A file over a file; a directory over a file, or into a missing directory: refused.
        assert_eq!(
            l("/a/f", "/tmp/g", Some(false), false).unwrap(),
            ("/tmp".into(), Some("g".into()))
        );
        assert!(l("/etc", "/tmp/g", Some(false), true)
            .unwrap_err()
            .contains("directory to a file"));
        assert!(l("/a/f", "/nope/", None, false)
            .unwrap_err()
            .contains("no such directory"));
    }

    #[test]
    fn tar_paths_stay_below_the_destination() {
        assert!(clean(Path::new("../x")).is_err());
        assert!(clean(Path::new("/etc/passwd")).is_err());
        assert_eq!(clean(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }
}
