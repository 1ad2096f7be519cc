//! Syscall helpers both the runtime and the image store need, kept below them so neither
//! depends on the other: path resolution that cannot leave a root directory.
//!
//! What it must not know: anything of containers or images; each helper is one syscall
//! sequence with its fallbacks.

pub mod idmap;

/// The running kernel's (major, minor), from /proc/sys/kernel/osrelease; (0, 0) if unreadable.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0))
}
pub mod memory;

/// Whether this process runs in a user namespace below the initial one (rootless husk, a
/// rootless podman's container, LXC): its root may not mount most file systems, write
/// `trusted.*` xattrs, make device nodes or write the host's cgroups. Read once.
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        })
    })
}

/// The xattr prefix overlayfs uses for its marks here: `trusted.` for the initial user
/// namespace's root, `user.` (the `userxattr` mount option, Linux 5.11+) in a user namespace.
pub fn overlay_xattr_prefix() -> &'static str {
    if in_user_namespace() {
        "user.overlay."
    } else {
        "trusted.overlay."
    }
}

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): `path` (absolute or
/// relative) is resolved as if `root` were `/`, so neither `..` nor a symlink, absolute or
/// relative, can lead out of it. The fd is close-on-exec.
pub fn open_in_root(root: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: a valid path pointer and a correctly sized open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new fd.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn fd_or_err(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel just gave us this fd.
        Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
    }
}

/// Why an overlay mount through the new mount API failed: `Unsupported` when this kernel lacks
/// the API or `lowerdir+` (before 6.8), so the caller can use mount(2) instead.
#[derive(Debug)]
pub enum OverlayError {
    Unsupported(io::Error),
    Failed(io::Error),
}

/// An overlay's writable layer: its upper and work directories.
#[derive(Debug, Clone, Copy)]
pub struct Upper<'a> {
    pub dir: &'a Path,
    pub work: &'a Path,
    /// Skip every sync of the upper layer (overlayfs's `volatile`, Linux 5.10+; ignored before):
    /// for a container that is gone after it exits, so its unmount does not wait for a
    /// syncfs of the whole file system the upper directory is on. After a crash the kernel
    /// refuses the same work directory again (`work/incompat/volatile`).
    pub volatile: bool,
}

/// Mount an overlayfs on `target` with fsopen/fsconfig/fsmount: each lower layer (topmost
/// first) is its own `lowerdir+` option, so there is no limit on how many fit (mount(2) takes
/// all options in one page, about 60 layer paths), and no path is re-parsed for `:` or `,`.
pub fn mount_overlay(
    lower: &[&Path],
    upper: Option<Upper>,
    target: &Path,
) -> Result<(), OverlayError> {
    use OverlayError::{Failed, Unsupported};
    // SAFETY: fsopen with a valid C string.
    let fs =
        fd_or_err(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })
            .map_err(Unsupported)?;
    use std::os::fd::AsRawFd;
    if !parses_overlay_params(&fs) {
        return Err(Unsupported(io::Error::from_raw_os_error(libc::EOPNOTSUPP)));
    }
    let set = |key: &std::ffi::CStr, value: Option<&Path>| -> io::Result<()> {
        let v = value.map(|p| cstr(p.as_os_str().as_bytes())).transpose()?;
        let (cmd, vp) = match &v {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: fsconfig on our fs context with valid C strings.
        let r =
            unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key.as_ptr(), vp, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let mut first = true;
    for l in lower {
        match set(c"lowerdir+", Some(l)) {
            Ok(()) => {}
            // The first one tells whether the kernel knows `lowerdir+`.
            Err(e) if first && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(Unsupported(e))
            }
            Err(e) => return Err(Failed(e)),
        }
        first = false;
    }
    if in_user_namespace() {
        set(c"userxattr", None).map_err(Failed)?;
    }
    if let Some(u) = upper {
        set(c"upperdir", Some(u.dir)).map_err(Failed)?;
        set(c"workdir", Some(u.work)).map_err(Failed)?;
        if u.volatile {
            // Only an optimization: a kernel that does not know it mounts without.
            let _ = set(c"volatile", None);
        }
    }
    // SAFETY: fsconfig create on our fs context.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if r < 0 {
        return Err(Failed(io::Error::last_os_error()));
    }
    let attrs = if upper.is_some() {
        0
    } else {
        MOUNT_ATTR_RDONLY
    };
    // SAFETY: fsmount of a created fs context.
    let mnt = fd_or_err(unsafe {
        libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs)
    })
    .map_err(Failed)?;
    let t = cstr(target.as_os_str().as_bytes()).map_err(Failed)?;
    // SAFETY: move_mount of our detached mount onto a valid path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(Failed(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether this kernel's overlayfs parses fsconfig parameters one by one (Linux 6.5+). Before,
/// the new mount API hands overlayfs a legacy context that takes any key and refuses the whole
/// option string only at `FSCONFIG_CMD_CREATE`, so `lowerdir+` would not fail where it can be
/// told from a real error. Probed once per process, on the caller's fresh context: a key no
/// kernel knows is accepted only by the legacy path (and a refused key leaves a parsing
/// context as it was).
fn parses_overlay_params(fs: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU8, Ordering};
    static PARSES: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no
    match PARSES.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    // SAFETY: fsconfig on our fs context with valid C strings.
    let legacy = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            c"x-husk-probe".as_ptr(),
            c"1".as_ptr(),
            0,
        )
    } == 0;
    PARSES.store(if legacy { 2 } else { 1 }, Ordering::Relaxed);
    !legacy
}

/// Open (creating it) the lock file at `path`, readable and writable, and flock it: exclusive,
/// or shared. The lock goes when the returned file is closed.
pub fn lock_file(path: &Path, exclusive: bool) -> io::Result<std::fs::File> {
    let f = open_lock_file(path)?;
    if exclusive {
        f.lock()?;
    } else {
        f.lock_shared()?;
    }
    Ok(f)
}

/// `lock_file`'s exclusive lock without waiting: `None` when another open file holds a lock.
pub fn try_lock_file(path: &Path) -> io::Result<Option<std::fs::File>> {
    let f = open_lock_file(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// std's `File::lock` family is flock(2) on Linux: the lock belongs to this open file.
fn open_lock_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Is `path` the root of a mount? statx says so directly (Linux 5.8+), without reading
/// /proc/self/mountinfo; older kernels get the mountinfo answer.
pub fn is_mount_point(path: &Path) -> bool {
    const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
    let Ok(c) = cstr(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statx into a zeroed struct we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            0,
            &mut st,
        )
    };
    if rc != 0 {
        return false;
    }
    if st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0 {
        return st.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0;
    }
    // mountinfo writes space, tab, newline and backslash as octal escapes.
    let escaped = path
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(escaped.as_str()))
        })
        .unwrap_or(false)
}

/// Bring the loopback interface of this thread's network namespace up, as runc does for a
/// new one: docker's `--network none` still has a working `lo`.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket only for the interface ioctls; closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The value of extended attribute `name` of `path` itself (a symlink's own), if it has one.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated and buf is as long as we say.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Some(buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return None;
        }
        buf.resize(buf.len() * 8, 0);
    }
}

/// The names of `path`'s own extended attributes (none where it has none or they cannot
/// be listed).
pub fn xattr_names(path: &Path) -> Vec<String> {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    // SAFETY: a NUL-terminated path and a null buffer of length 0 (asks for the size).
    let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: buf is as long as we say.
    let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r <= 0 {
        return Vec::new();
    }
    buf.truncate(r as usize);
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}
