//! Snapshots: an image's layers stacked as an overlayfs mount. Nothing is copied: the lower
//! layers are the unpacked layer directories or, with the EROFS driver, each layer's EROFS
//! image mounted once (file-backed) and shared by everything that uses the layer; a
//! container adds its own upper directory.
//!
//! The driver is chosen per store: `--storage-driver`/`HUSK_STORAGE_DRIVER`, else husk's config
//! (`storage-driver`), else EROFS where this kernel mounts an EROFS file (probed once and
//! remembered per kernel release), else directories. A store may hold layers of both kinds;
//! each layer is used as it was stored.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::{Error, Result};
pub use husk_sys::Upper;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Each layer an unpacked directory.
    Overlay,
    /// Each layer one EROFS image file, mounted when used.
    Erofs,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Erofs => "erofs",
        }
    }
}

static REQUESTED: OnceLock<String> = OnceLock::new();

/// What the command line asked for (`auto`, `overlay`, `erofs`), for this process.
pub fn request(driver: &str) {
    let _ = REQUESTED.set(driver.to_string());
}

/// Where the unpacked layer with this diff_id lives (the `overlay` driver's form).
pub fn layer_dir(root: &Path, diff_id: &Digest) -> PathBuf {
    root.join("layers").join(diff_id.hex())
}

/// Where the layer's EROFS image lives (the `erofs` driver's form).
pub fn erofs_path(root: &Path, diff_id: &Digest) -> PathBuf {
    root.join("layers").join(format!("{}.erofs", diff_id.hex()))
}

/// Where a layer's EROFS image is mounted while anything uses it.
pub fn layer_mount_point(root: &Path, hex: &str) -> PathBuf {
    root.join("layer-mounts").join(hex)
}

/// The configured request: the command line, else husk's config file's `storage-driver`.
fn requested() -> Result<String> {
    if let Some(r) = REQUESTED.get() {
        return Ok(r.clone());
    }
    Ok(crate::config::get("storage-driver")?
        .as_str()
        .unwrap_or("auto")
        .to_string())
}

/// The driver for new layers in the store at `root`, and why.
pub fn choose(root: &Path) -> Result<(Driver, String)> {
    let req = requested()?;
    match req.as_str() {
        "overlay" | "dir" => Ok((
            Driver::Overlay,
            "asked for (--storage-driver or config)".into(),
        )),
        "erofs" => match probe(root) {
            Ok(how) => Ok((
                Driver::Erofs,
                format!("asked for (--storage-driver or config); {}", how.describe()),
            )),
            Err(why) => Err(Error::Config(format!("storage driver erofs: {why}"))),
        },
        "auto" | "" => match probe(root) {
            Ok(how) => Ok((Driver::Erofs, format!("this kernel {}", how.describe()))),
            Err(why) => Ok((Driver::Overlay, format!("EROFS unavailable: {why}"))),
        },
        other => Err(Error::Config(format!(
            "unknown storage driver {other:?}: use auto, overlay or erofs"
        ))),
    }
}

/// How this kernel mounts an EROFS image file, or why it cannot. Tried once with a tiny image;
/// a success is kept in the store per kernel release.
fn probe(root: &Path) -> std::result::Result<ErofsMount, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cache = root.join("tmp").join("erofs-probe");
    // One prober at a time: two at once would trip over each other's probe mount.
    let _lock = crate::store::Store::open(root)
        .and_then(|s| s.lock("erofs-probe"))
        .map_err(|e| e.to_string())?;
    if let Ok(c) = std::fs::read_to_string(&cache) {
        match c.split_once('\n') {
            Some((rel, verdict)) if rel == release => {
                if let Some(how) = ErofsMount::ALL.into_iter().find(|h| verdict == h.cached()) {
                    return Ok(how);
                }
            }
            _ => {}
        }
    }
    let verdict = (|| -> std::result::Result<ErofsMount, String> {
        let dir = root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let image = dir.join("probe.erofs");
        let empty = tar::Builder::new(Vec::new())
            .into_inner()
            .map_err(|e| e.to_string())?;
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        crate::erofs::write_layer(&empty[..], std::io::BufWriter::new(f))
            .map_err(|e| e.to_string())?;
        let at = dir.join("probe-mount");
        std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
        // Not /proc/filesystems: a modular erofs is listed only once the first mount loaded it.
        let r = mount_erofs(&image, &at);
        if r.is_ok() {
            let _ = unmount(&at);
        }
        let _ = std::fs::remove_dir(&at);
        let _ = std::fs::remove_file(&image);
        r.map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) => "the kernel has no erofs filesystem (CONFIG_EROFS_FS)".into(),
            Some(libc::ENOENT) if !Path::new("/dev/loop-control").exists() => {
                "this kernel mounts EROFS files only through loop devices (directly from Linux 6.12), and /dev/loop-control is missing".into()
            }
            _ => format!("an EROFS image does not mount here ({e})"),
        })
    })();
    // Only a success is remembered: a failure may be passing (no root this time).
    if let Ok(how) = verdict {
        let _ = std::fs::write(&cache, format!("{release}\n{}", how.cached()));
    }
    verdict
}

/// How an EROFS layer is mounted on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErofsMount {
    /// Straight from the image file (Linux 6.12+).
    File,
    /// Through an auto-clearing loop device (before 6.12).
    Loop,
}

impl ErofsMount {
    const ALL: [ErofsMount; 2] = [ErofsMount::File, ErofsMount::Loop];

    /// The verdict as the probe's cache file keeps it.
    fn cached(self) -> &'static str {
        match self {
            ErofsMount::File => "ok file",
            ErofsMount::Loop => "ok loop",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ErofsMount::File => "mounts EROFS image files directly",
            ErofsMount::Loop => {
                "mounts EROFS image files through loop devices (directly from Linux 6.12)"
            }
        }
    }
}

/// Mount an EROFS image file read-only: straight from the file (Linux 6.12+), else through a
/// loop device that goes away with the mount.
fn mount_erofs(image: &Path, at: &Path) -> std::io::Result<ErofsMount> {
    match mount_erofs_source(image, at) {
        Ok(()) => Ok(ErofsMount::File),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTBLK) | Some(libc::EINVAL)) => {
            mount_erofs_via_loop(image, at).map(|()| ErofsMount::Loop)
        }
        Err(e) => Err(e),
    }
}

/// The loop-device way (kernels before file-backed EROFS mounts).
pub fn mount_erofs_via_loop(image: &Path, at: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    const LO_FLAGS_READ_ONLY: u32 = 1;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let backing = std::fs::File::open(image)?;
    let mut last = std::io::Error::from_raw_os_error(libc::EBUSY);
    // Another process may take the free device between asking and configuring: try again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let dev = format!("/dev/loop{n}");
        let loopdev = std::fs::OpenOptions::new().read(true).open(&dev)?;
        // struct loop_config: fd, block_size, struct loop_info64 (lo_flags at byte 52), reserved.
        let mut config = [0u8; 304];
        config[0..4].copy_from_slice(&(backing.as_raw_fd() as u32).to_ne_bytes());
        config[8 + 52..8 + 56]
            .copy_from_slice(&(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR).to_ne_bytes());
        // SAFETY: LOOP_CONFIGURE with a loop_config-sized buffer.
        if unsafe { libc::ioctl(loopdev.as_raw_fd(), LOOP_CONFIGURE, config.as_ptr()) } != 0 {
            last = std::io::Error::last_os_error();
            if last.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(last);
        }
        // With AUTOCLEAR the device is released when the mount goes (or now, if it fails).
        return mount_erofs_source(Path::new(&dev), at);
    }
    Err(last)
}

fn mount_erofs_source(image: &Path, at: &Path) -> std::io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (src, dst) = (c(image)?, c(at)?);
    // SAFETY: mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            c"erofs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn is_mount_point(p: &Path) -> bool {
    husk_sys::is_mount_point(p)
}

/// The users of a layer's shared EROFS mount (containers, image mounts), counted in
/// `layer-mounts/<hex>.users` under an flock: the first user mounts, and the mount goes a
/// grace period after the last one left (see [`release_layers`]). When the count falls to zero
/// the file's mtime is set to the end of that grace, so a reaper needs no config of its own.
/// The count is the file's whole text (padded), as older husks read and write it. A crash
/// leaves a count too high, which only keeps the mount up until `rmi` detaches it.
struct Users {
    file: std::fs::File,
}

impl Users {
    /// The layer's users file, locked; `create`d with its directory if missing (the first
    /// user). A reaper never creates: a store deleted under it stays deleted.
    fn lock(root: &Path, hex: &str, create: bool) -> Result<Users> {
        let path = root.join("layer-mounts").join(format!("{hex}.users"));
        let file = match husk_sys::lock_file(&path, true) {
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                let dir = root.join("layer-mounts");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
                husk_sys::lock_file(&path, true)
            }
            r => r,
        }
        .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(Users { file })
    }

    fn count(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 64];
        let n = self.file.read_at(&mut buf, 0).unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_count(&self, n: u64) {
        use std::os::unix::fs::FileExt;
        // Fixed width, written over the old text: a truncate would free and reallocate the
        // file's block, which costs ext4 ~0.1 ms on every container start and stop.
        let _ = self.file.write_all_at(format!("{n:<20}\n").as_bytes(), 0);
    }

    /// When the idle mount may go (wall clock): the file's mtime, set by the last user.
    fn idle_until(&self) -> SystemTime {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn set_idle_until(&self, t: SystemTime) {
        let _ = self.file.set_modified(t);
    }
}

/// How long a layer's EROFS mount stays up after its last user goes: `HUSK_LAYER_MOUNT_GRACE`
/// or the config's `layer-mount-grace` (seconds), 10 s by default. Within it, the next
/// container finds the layer mounted and its page cache warm; a fresh mount starts with an
/// empty one, which costs a busybox start about 0.9 ms here. Zero unmounts at once.
pub fn mount_grace() -> Result<Duration> {
    let parse = |s: &str, from: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0 && *v <= MAX_MOUNT_GRACE.as_secs_f64())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                Error::Config(format!(
                    "{from}: {s:?} is not a number of seconds between 0 and {}",
                    MAX_MOUNT_GRACE.as_secs()
                ))
            })
    };
    if let Ok(v) = std::env::var("HUSK_LAYER_MOUNT_GRACE") {
        return parse(&v, "HUSK_LAYER_MOUNT_GRACE");
    }
    const FROM: &str = "layer-mount-grace in husk's config";
    match crate::config::get("layer-mount-grace")? {
        serde_json::Value::Null => Ok(DEFAULT_MOUNT_GRACE),
        serde_json::Value::String(v) => parse(&v, FROM),
        v => parse(&v.to_string(), FROM),
    }
}

pub const DEFAULT_MOUNT_GRACE: Duration = Duration::from_secs(10);
/// A day: a reaper never waits longer, even if the clock is set back under it.
pub const MAX_MOUNT_GRACE: Duration = Duration::from_secs(86_400);

/// The lower directory of one layer: its unpacked directory, or its EROFS image mounted
/// (once, shared by every user; this call counts as one).
fn lower_path(root: &Path, d: &Digest) -> Result<PathBuf> {
    let dir = layer_dir(root, d);
    if dir.is_dir() {
        return Ok(dir);
    }
    let image = erofs_path(root, d);
    if !image.is_file() {
        return Err(Error::io(
            format!("layer {d} is not in the store"),
            std::io::Error::from_raw_os_error(libc::ENOENT),
        ));
    }
    let at = layer_mount_point(root, d.hex());
    let users = Users::lock(root, d.hex(), true)?;
    let mut count = users.count();
    if !is_mount_point(&at) {
        std::fs::create_dir_all(&at)
            .map_err(|e| Error::io(format!("cannot create {}", at.display()), e))?;
        mount_erofs(&image, &at).map_err(|e| Error::io(format!("cannot mount layer {d}"), e))?;
        count = 0;
    }
    users.set_count(count + 1);
    Ok(at)
}

/// The layers (lowest first) with each repeated one kept only at its topmost place.
fn unique_topmost(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Digest> = diff_ids
        .iter()
        .rev()
        .filter(|d| seen.insert(d.to_string()))
        .cloned()
        .collect();
    out.reverse();
    out
}

/// One user of these layers is done. A layer's EROFS mount whose last user this was stays up
/// for the grace period ([`mount_grace`]), or goes at once when that is zero. Returned: the
/// layers left idle that no reaper watches yet; the caller starts one, a process that runs
/// [`reap_idle_mounts`], so that the mounts go when the grace ends.
#[must_use = "idle layers need a reaper, or their mounts stay up"]
pub fn release_layers(root: &Path, diff_ids: &[Digest]) -> Vec<Digest> {
    release(root, diff_ids, mount_grace().unwrap_or(DEFAULT_MOUNT_GRACE))
}

fn release(root: &Path, diff_ids: &[Digest], grace: Duration) -> Vec<Digest> {
    let mut unwatched = Vec::new();
    for d in &unique_topmost(diff_ids) {
        if !erofs_path(root, d).is_file() || layer_dir(root, d).is_dir() {
            continue;
        }
        let Ok(users) = Users::lock(root, d.hex(), false) else {
            continue;
        };
        let count = users.count().saturating_sub(1);
        users.set_count(count);
        if count > 0 || !is_mount_point(&layer_mount_point(root, d.hex())) {
            continue;
        }
        if grace.is_zero() {
            unmount_layer(root, d.hex());
            continue;
        }
        users.set_idle_until(SystemTime::now() + grace);
        if !reaper_watches(root, d.hex()) {
            unwatched.push(d.clone());
        }
    }
    unwatched
}

/// `layer-mounts/<hex>.reaper` is flocked by the process waiting to unmount the layer.
fn reaper_lock_path(root: &Path, hex: &str) -> PathBuf {
    root.join("layer-mounts").join(format!("{hex}.reaper"))
}

fn reaper_watches(root: &Path, hex: &str) -> bool {
    matches!(
        husk_sys::try_lock_file(&reaper_lock_path(root, hex)),
        Ok(None)
    )
}

fn unmount_layer(root: &Path, hex: &str) {
    let at = layer_mount_point(root, hex);
    if let Ok(c) = CString::new(at.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 of the layer's own mount point (overlays keep their own clones of
        // it, so this never pulls a layer from under a container). The empty directory stays
        // for the next mount.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The reaper: wait until each of these layers' grace has ended, then unmount it, unless a
/// user came back (whose own release hands the layer to a reaper again). It also adopts any
/// idle layer mount of the store that nobody watches (its reaper was killed). A layer another
/// reaper watches is left to it. `wait` sleeps up to the given time and says false when the
/// reaper is told to stop: then every idle layer it watches is unmounted at once. Returns when
/// no layer is left to watch.
pub fn reap_idle_mounts(root: &Path, layers: &[Digest], wait: &mut dyn FnMut(Duration) -> bool) {
    let watch = |hex: &str| match husk_sys::try_lock_file(&reaper_lock_path(root, hex)) {
        Ok(Some(lock)) => Some((hex.to_string(), lock)),
        _ => None,
    };
    let mut watched: Vec<(String, std::fs::File)> =
        layers.iter().filter_map(|d| watch(d.hex())).collect();
    if let Ok(dir) = std::fs::read_dir(root.join("layer-mounts")) {
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".users")) else {
                continue;
            };
            if watched.iter().all(|(h, _)| h != hex)
                && is_mount_point(&layer_mount_point(root, hex))
            {
                watched.extend(watch(hex));
            }
        }
    }
    let mut stop = false;
    while !watched.is_empty() {
        let now = SystemTime::now();
        let mut next = MAX_MOUNT_GRACE;
        let mut still = Vec::new();
        for (hex, lock) in watched {
            let Ok(users) = Users::lock(root, &hex, false) else {
                continue;
            };
            // No grace is longer than the maximum: a deadline further off means the clock was
            // set back since, and the grace is over.
            let left = match users.idle_until().duration_since(now) {
                Ok(d) if d < MAX_MOUNT_GRACE => d,
                _ => Duration::ZERO,
            };
            if users.count() > 0 || !is_mount_point(&layer_mount_point(root, &hex)) {
                // In use again (its last user hands it on) or already gone.
            } else if stop || left.is_zero() {
                unmount_layer(root, &hex);
            } else {
                next = next.min(left);
                still.push((hex, lock));
                continue;
            }
            // Stop watching while the users lock is held, so a release that follows sees
            // no reaper and starts one.
            drop(lock);
            drop(users);
        }
        watched = still;
        if !watched.is_empty() && !stop {
            stop = !wait(next);
        }
    }
}

/// Detach a layer's EROFS mount whatever uses it (before its image is deleted: a crash must
/// not leave a mount that blocks `rmi`).
pub fn drop_layer_mount(root: &Path, hex: &str) {
    // Under the users lock, which stays (unlinking a lock file others may hold breaks it).
    let users = Users::lock(root, hex, false).ok();
    if let Some(u) = &users {
        u.set_count(0);
    }
    let at = layer_mount_point(root, hex);
    if is_mount_point(&at) {
        unmount_layer(root, hex);
    }
    let _ = std::fs::remove_dir(&at);
}

/// Mount the layers (lowest first) at `target`: read-only without `upper`, writable with an
/// (upper, work) pair. With the new mount API each layer is its own `lowerdir+` option, so any
/// number of layers the kernel stacks (500) mounts; kernels before 6.8 get one mount(2) whose
/// layer paths are relative to the layers directory, which keeps the options under their
/// one-page limit for images of about sixty layers.
pub fn mount(root: &Path, diff_ids: &[Digest], upper: Option<Upper>, target: &Path) -> Result<()> {
    if let Some(u) = upper.filter(|u| u.volatile) {
        prepare_volatile(u)?;
    }
    let (diff_ids, lower_paths) = &acquire_lowers(root, diff_ids)?;
    let layers_dir = root.join("layers");
    let result = stack(root, diff_ids, &layers_dir, lower_paths, upper, target)
        .or_else(|e| fuse_fallback(e, lower_paths, upper, target));
    if result.is_err() {
        let _ = release(root, diff_ids, Duration::ZERO);
    }
    result
}

/// The layers to stack, each once at its topmost place (overlayfs refuses a lower directory
/// twice: the empty layer, say), and their lower paths, topmost first, each layer's shared
/// mount taken for this user; on an error none is kept. A bad grace setting is refused here,
/// when a container starts, not ignored when it ends.
fn acquire_lowers(root: &Path, diff_ids: &[Digest]) -> Result<(Vec<Digest>, Vec<PathBuf>)> {
    if diff_ids.is_empty() {
        return Err(Error::Manifest(
            "an image without layers cannot be mounted".into(),
        ));
    }
    mount_grace()?;
    let diff_ids = unique_topmost(diff_ids);
    let mut lower_paths: Vec<PathBuf> = Vec::new();
    for (i, d) in diff_ids.iter().rev().enumerate() {
        match lower_path(root, d) {
            Ok(p) => lower_paths.push(p),
            Err(e) => {
                let _ = release(root, &diff_ids[diff_ids.len() - i..], Duration::ZERO);
                return Err(e);
            }
        }
    }
    Ok((diff_ids, lower_paths))
}

/// `mount` for a container in a user namespace of its own (`--uidmap`): each layer is stacked
/// through an idmapped mount made with `userns`, so a file that is root's on disk is the
/// container's root's (overlayfs over idmapped layers, Linux 5.19+). The idmapped mounts are
/// attached under `scratch` (named as the layers are, so the option string is as short as
/// `mount`'s) only while overlayfs takes them: it keeps its own clones of its layers, so they
/// are detached once it is mounted and nothing is left to unmount later. The upper directory
/// is not idmapped: what the container writes has its own host ids; its root directory is
/// given to `root_ids`, the container's root.
pub fn mount_idmapped(
    root: &Path,
    diff_ids: &[Digest],
    upper: Upper,
    target: &Path,
    userns: &std::os::fd::OwnedFd,
    root_ids: (Option<u32>, Option<u32>),
    scratch: &Path,
) -> Result<()> {
    if upper.volatile {
        prepare_volatile(upper)?;
    }
    // The upper's root directory is the container's root's, as the image's is once idmapped;
    // at each start, since an upper the kernel could not trust is made afresh above.
    std::os::unix::fs::chown(upper.dir, root_ids.0, root_ids.1)
        .map_err(|e| Error::io(format!("cannot chown {}", upper.dir.display()), e))?;
    let (diff_ids, lower_paths) = &acquire_lowers(root, diff_ids)?;
    // What a killed husk left attached here goes first.
    clear_idmapped(scratch);
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(scratch)
            .map_err(|e| Error::io(format!("cannot create {}", scratch.display()), e))?;
        let mut mapped = Vec::with_capacity(lower_paths.len());
        for (d, p) in diff_ids.iter().rev().zip(lower_paths) {
            let at = scratch.join(d.hex());
            std::fs::create_dir_all(&at)
                .map_err(|e| Error::io(format!("cannot create {}", at.display()), e))?;
            // Read-only: nothing may write a shared layer through a container's view of it.
            let also = husk_sys::idmap::MOUNT_ATTR_RDONLY
                | husk_sys::idmap::MOUNT_ATTR_NOSUID
                | husk_sys::idmap::MOUNT_ATTR_NODEV;
            let tree = husk_sys::idmap::idmapped_tree(p, false, userns, also).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EINVAL) => Error::Config(format!(
                        "cannot idmap layer {}: its file system cannot be idmapped on this kernel (ext4, xfs and btrfs can from Linux 5.12/5.15, tmpfs from 6.3)",
                        p.display()
                    )),
                    _ => Error::io(format!("cannot idmap layer {}", p.display()), e),
                }
            })?;
            husk_sys::idmap::attach_tree_at(&tree, &at)
                .map_err(|e| Error::io(format!("cannot attach {}", at.display()), e))?;
            mapped.push(at);
        }
        stack(root, diff_ids, scratch, &mapped, Some(upper), target)
    })();
    clear_idmapped(scratch);
    if result.is_err() {
        let _ = release(root, diff_ids, Duration::ZERO);
    }
    result
}

/// Detaches the idmapped layers attached under `scratch` and removes it. Each is unmounted
/// before anything is removed, and a directory is only ever removed empty: a layer still
/// attached stays, read-only, rather than have its files deleted through it.
pub fn clear_idmapped(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name() == ".l" {
            // mount(2)'s short links: symlinks only, never followed by remove_dir_all.
            let _ = std::fs::remove_dir_all(&p);
            continue;
        }
        if husk_sys::is_mount_point(&p) {
            let _ = unmount(&p);
        }
        let _ = std::fs::remove_dir(&p);
    }
    let _ = std::fs::remove_dir(scratch);
}

/// Before a volatile upper is mounted again (a restarted --rm container): overlayfs leaves
/// `work/incompat/volatile/dirty` behind and refuses that work directory, even after a clean
/// unmount, because after a crash the upper may be torn. If that mark is from this boot the
/// unmount was clean, and the kernel's scratch directory goes (the kernel would clean it
/// anyway); if it is older than this boot, the upper cannot be trusted and the container
/// starts over from its image.
/// Mount directory `lower` (a root filesystem the user keeps, `run --rootfs`) under the
/// container's upper directory on `target`: the container writes to its upper directory, never
/// to `lower`.
pub fn mount_directory(lower: &Path, upper: Upper, target: &Path) -> Result<()> {
    if upper.volatile {
        prepare_volatile(upper)?;
    }
    match husk_sys::mount_overlay(&[lower], Some(upper), target) {
        Ok(()) => return Ok(()),
        Err(husk_sys::OverlayError::Failed(e)) => {
            return Err(Error::io(
                format!("cannot mount {} on {}", lower.display(), target.display()),
                e,
            ))
        }
        // A kernel before 6.8: one mount(2) option string, below.
        Err(husk_sys::OverlayError::Unsupported(_)) => {}
    }
    let l = lower.to_string_lossy();
    if l.contains([':', ',', '\\']) {
        return Err(Error::Manifest(format!(
            "{l}: a path with ':', ',' or '\\' cannot be an overlayfs lower directory before Linux 6.8"
        )));
    }
    // In a user namespace overlayfs keeps its marks in `user.` xattrs (Linux 5.11+).
    let userxattr = if husk_sys::in_user_namespace() {
        ",userxattr"
    } else {
        ""
    };
    let opts = format!(
        "lowerdir={l},upperdir={},workdir={}{userxattr}",
        upper.dir.display(),
        upper.work.display()
    );
    let c = |s: &str| {
        CString::new(s).map_err(|_| Error::Manifest(format!("path {s:?} has a NUL byte")))
    };
    let target_c = c(&target.to_string_lossy())?;
    let attempt = |o: &str| -> std::io::Result<()> {
        let o = c(o).map_err(|e| std::io::Error::other(e.to_string()))?;
        // SAFETY: mount(2) with NUL-terminated strings we own.
        let r = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target_c.as_ptr(),
                c"overlay".as_ptr(),
                0,
                o.as_ptr().cast(),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // With `volatile` first; a kernel before 5.10 refuses the option (EINVAL): then without.
    let result = if upper.volatile {
        attempt(&format!("{opts},volatile")).or_else(|_| attempt(&opts))
    } else {
        attempt(&opts)
    };
    result
        .map_err(|e| {
            Error::io(
                format!("cannot mount {} on {}", lower.display(), target.display()),
                e,
            )
        })
        .or_else(|e| fuse_fallback(e, &[lower.to_path_buf()], Some(upper), target))
}

/// Whether `program` is an executable file in one of $PATH's directories.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Where the kernel's overlayfs will not mount in a user namespace (before Linux 5.11, or a
/// store on a file system without `user.` xattrs), fuse-overlayfs stacks the same directories
/// in user space, as rootless podman falls back to. It reads overlayfs's own marks (0/0
/// character-device whiteouts, `user.overlay.opaque`), so one store serves both. It always
/// wants an upper directory; a read-only stack keeps the kernel's error.
fn fuse_fallback(
    kernel: Error,
    lower_topmost_first: &[PathBuf],
    upper: Option<Upper>,
    target: &Path,
) -> Result<()> {
    let Some(u) = upper.filter(|_| husk_sys::in_user_namespace()) else {
        return Err(kernel);
    };
    match fuse_overlayfs(lower_topmost_first, u, target, "") {
        Ok(()) => Ok(()),
        Err(FuseFailure::BadPath) => Err(kernel),
        Err(FuseFailure::NotInstalled) => Err(Error::Config(format!(
            "{kernel}; fuse-overlayfs, which stacks layers where the kernel's overlayfs will not, is not installed (Debian's fuse-overlayfs package)"
        ))),
        Err(FuseFailure::Said(why)) => Err(Error::Config(format!(
            "cannot mount the image's layers on {} with fuse-overlayfs ({why}) after the kernel's overlayfs refused: {kernel}",
            target.display()
        ))),
        Err(FuseFailure::Spawn(e)) => Err(Error::Config(format!(
            "{kernel}; fuse-overlayfs did not start: {e}"
        ))),
    }
}

/// `mount` for a rootless container in a user namespace of its own (`--uidmap`, `--userns
/// auto`): fuse-overlayfs shows each file of the layers and the upper directory with its owner
/// shifted by the container's maps (`uid_lines`/`gid_lines`: container id, host id, size, as
/// in uid_map), so the image's root is the container's root once the container's user
/// namespace maps it back, and what the container writes lands with the container's ids on
/// disk. The kernel's overlayfs cannot do this unprivileged: idmapping the layers takes
/// privilege over their file system. As podman's `uidmapping=` mounts.
pub fn mount_shifted(
    root: &Path,
    diff_ids: &[Digest],
    upper: Upper,
    target: &Path,
    uid_lines: &[(u32, u32, u32)],
    gid_lines: &[(u32, u32, u32)],
) -> Result<()> {
    let mapping = |lines: &[(u32, u32, u32)]| {
        lines
            .iter()
            .map(|(c, h, n)| format!("{c}:{h}:{n}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let extra = format!(
        ",uidmapping={},gidmapping={}",
        mapping(uid_lines),
        mapping(gid_lines)
    );
    let (diff_ids, lower_paths) = &acquire_lowers(root, diff_ids)?;
    let result = fuse_overlayfs(lower_paths, upper, target, &extra).map_err(|f| {
        let why = match f {
            FuseFailure::BadPath => "a layer path has ':' or ','".to_string(),
            FuseFailure::NotInstalled => {
                "fuse-overlayfs is not installed (Debian's fuse-overlayfs package)".to_string()
            }
            FuseFailure::Said(why) => why,
            FuseFailure::Spawn(e) => format!("fuse-overlayfs did not start: {e}"),
        };
        Error::Config(format!(
            "cannot mount the image's layers with shifted owners on {} (a rootless container in a user namespace of its own needs fuse-overlayfs): {why}",
            target.display()
        ))
    });
    if result.is_err() {
        let _ = release(root, diff_ids, Duration::ZERO);
    }
    result
}

/// Why fuse-overlayfs did not mount.
enum FuseFailure {
    /// A path its option syntax cannot carry.
    BadPath,
    NotInstalled,
    /// It ran and failed: its last line.
    Said(String),
    Spawn(std::io::Error),
}

/// Runs fuse-overlayfs over `lower_topmost_first` and `u` on `target`, `extra` appended to its
/// options (starting with a comma). It leaves a daemon behind that serves the mount.
fn fuse_overlayfs(
    lower_topmost_first: &[PathBuf],
    u: Upper,
    target: &Path,
    extra: &str,
) -> std::result::Result<(), FuseFailure> {
    let paths: Vec<&Path> = lower_topmost_first
        .iter()
        .map(PathBuf::as_path)
        .chain([u.dir, u.work])
        .collect();
    if paths
        .iter()
        .any(|p| p.to_string_lossy().contains([':', ',']))
    {
        return Err(FuseFailure::BadPath);
    }
    let lower: Vec<String> = lower_topmost_first
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        lower.join(":"),
        u.dir.display(),
        u.work.display()
    );
    // Its stderr in memory: the daemon it leaves behind must hold no pipe of ours open.
    // SAFETY: memfd_create with a valid name; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"fuse-overlayfs".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(FuseFailure::Spawn(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd that nothing else owns.
    let mut errors = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let stderr = errors.try_clone().map_err(FuseFailure::Spawn)?;
    let mut cmd = std::process::Command::new("fuse-overlayfs");
    cmd.arg("-o")
        .arg(&opts)
        .arg(target)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    // The daemon outlives this process: no lock or socket of ours may stay open in it. They
    // are marked close-on-exec, not closed: std's spawn reports a failed exec through one.
    // SAFETY: close_range and fcntl are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            const CLOSE_RANGE_CLOEXEC: u32 = 4;
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                // Before Linux 5.11: one by one.
                for fd in 3..4096 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    if !on_path("fuse-overlayfs") {
        return Err(FuseFailure::NotInstalled);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => {
            use std::io::{Read, Seek};
            let mut said = String::new();
            let _ = errors.seek(std::io::SeekFrom::Start(0));
            let _ = errors.read_to_string(&mut said);
            Err(FuseFailure::Said(
                said.lines()
                    .rfind(|l| !l.trim().is_empty() && !l.contains("unknown argument ignored"))
                    .map_or_else(|| s.to_string(), |l| l.trim().to_string()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FuseFailure::NotInstalled),
        Err(e) => Err(FuseFailure::Spawn(e)),
    }
}

fn prepare_volatile(u: Upper) -> Result<()> {
    let scratch = u.work.join("work");
    if !scratch.exists() {
        return Ok(());
    }
    let clear = |dir: &Path| {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot clear {}", dir.display()), e))
    };
    let marked = std::fs::metadata(scratch.join("incompat/volatile/dirty"))
        .and_then(|m| m.modified())
        .ok();
    if marked.is_some_and(|t| t < boot_time()) {
        clear(u.dir)?;
        std::fs::create_dir(u.dir)
            .map_err(|e| Error::io(format!("cannot create {}", u.dir.display()), e))?;
    }
    clear(&scratch)
}

/// When this boot began (`btime` in /proc/stat); the epoch if unknown, which trusts the mark.
fn boot_time() -> SystemTime {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .map_or(SystemTime::UNIX_EPOCH, |secs| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        })
}

/// The overlay (or, for one layer without an upper directory, a read-only bind) of the
/// lower paths at `target`.
fn stack(
    root: &Path,
    diff_ids: &[Digest],
    layers_dir: &Path,
    lower_paths: &[PathBuf],
    upper: Option<Upper>,
    target: &Path,
) -> Result<()> {
    let _ = root;
    if upper.is_none() && lower_paths.len() == 1 {
        // overlayfs wants two lower layers without an upper one: a read-only bind does it.
        return bind_read_only(&lower_paths[0], target);
    }
    let lower_refs: Vec<&Path> = lower_paths.iter().map(PathBuf::as_path).collect();
    match husk_sys::mount_overlay(&lower_refs, upper, target) {
        Ok(()) => return Ok(()),
        Err(husk_sys::OverlayError::Failed(e)) => return Err(mount_failed(target, e)),
        // A kernel before 6.8: one mount(2) option string, below.
        Err(husk_sys::OverlayError::Unsupported(_)) => {}
    }
    // Relative to the layers directory; EROFS layers through their mount points.
    let lower: Vec<String> = diff_ids
        .iter()
        .rev()
        .zip(lower_paths)
        .map(|(d, p)| {
            if p.starts_with(layers_dir) {
                d.hex().to_string()
            } else {
                p.display().to_string()
            }
        })
        .collect();
    let upper_opts = upper.map_or(String::new(), |u| {
        format!(",upperdir={},workdir={}", u.dir.display(), u.work.display())
    });
    // With room for the `,volatile` added below.
    let room = OPTIONS_MAX
        - if upper.is_some_and(|u| u.volatile) {
            9
        } else {
            0
        };
    // In a user namespace overlayfs keeps its marks in `user.` xattrs (Linux 5.11+).
    let userxattr = if husk_sys::in_user_namespace() {
        ",userxattr"
    } else {
        ""
    };
    let mut opts = format!("lowerdir={}{upper_opts}{userxattr}", lower.join(":"));
    if opts.len() >= room {
        // As docker's overlay2 does: short links to the layers, so more of them fit.
        let short = short_links(layers_dir, diff_ids, &lower)?;
        opts = format!("lowerdir={}{upper_opts}{userxattr}", short.join(":"));
    }
    if opts.len() >= room {
        return Err(Error::Manifest(format!(
            "{} layers do not fit in one overlayfs mount before Linux 6.8 (its lowerdir+ takes any number)",
            diff_ids.len()
        )));
    }
    // Relative lowerdir paths are resolved against the cwd of the mounting process: do the
    // mount from a child whose cwd is the layers directory, leaving ours alone.
    let c = |s: &str| {
        CString::new(s).map_err(|_| Error::Manifest(format!("path {s:?} has a NUL byte")))
    };
    let target_c = c(&target.to_string_lossy())?;
    // With `volatile` first; a kernel before 5.10 refuses the option (EINVAL): then without.
    let volatile = upper.is_some_and(|u| u.volatile);
    let opts_c = c(&if volatile {
        format!("{opts},volatile")
    } else {
        opts.clone()
    })?;
    let plain_c = c(&opts)?;
    let dir_c = c(&layers_dir.to_string_lossy())?;
    let flags = if upper.is_some() { 0 } else { libc::MS_RDONLY };
    // SAFETY: fork of a process that only calls async-signal-safe functions in the child.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io(
            "cannot fork to mount",
            std::io::Error::last_os_error(),
        )),
        0 => {
            // SAFETY: chdir and mount with valid C strings, then _exit.
            unsafe {
                let mount = |o: &CString| {
                    libc::mount(
                        c"overlay".as_ptr(),
                        target_c.as_ptr(),
                        c"overlay".as_ptr(),
                        flags,
                        o.as_ptr().cast(),
                    ) == 0
                };
                let ok = libc::chdir(dir_c.as_ptr()) == 0
                    && (mount(&opts_c)
                        || (volatile
                            && *libc::__errno_location() == libc::EINVAL
                            && mount(&plain_c)));
                let code = if ok { 0 } else { *libc::__errno_location() };
                libc::_exit(code)
            }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waiting for the child we forked.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let code = libc::WEXITSTATUS(status);
            if libc::WIFEXITED(status) && code == 0 {
                Ok(())
            } else {
                Err(mount_failed(
                    target,
                    std::io::Error::from_raw_os_error(code),
                ))
            }
        }
    }
}

/// The overlay mount's one-line error; in a user namespace on a kernel before 5.11, which
/// mounts no overlayfs there, it says so.
fn mount_failed(target: &Path, e: std::io::Error) -> Error {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if husk_sys::in_user_namespace() && (major, minor) < (5, 11) {
        return Error::Config(format!(
            "cannot mount the image's layers on {}: rootless husk needs overlayfs in a user namespace, which Linux {}.{} lacks (5.11+)",
            target.display(),
            major,
            minor
        ));
    }
    Error::io(
        format!("cannot mount the image's layers on {}", target.display()),
        e,
    )
}

/// mount(2) takes its options in one page.
const OPTIONS_MAX: usize = 4096;

/// For mount(2) with more layers than their names fit in a page: a link per layer in
/// `layers/.l/`, named by the first 12 hex digits of its diff_id, pointing where `lower` (the
/// paths relative to `layers_dir`, topmost first) does. A link that exists already is used only
/// if it points to the same place; a prefix shared with another layer gets the whole digest.
fn short_links(layers_dir: &Path, diff_ids: &[Digest], lower: &[String]) -> Result<Vec<String>> {
    let dir = layers_dir.join(".l");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let mut names = Vec::with_capacity(lower.len());
    for (d, target) in diff_ids.iter().rev().zip(lower) {
        // Relative targets are relative to layers_dir, one level up from the link.
        let target = if Path::new(target).is_absolute() {
            PathBuf::from(target)
        } else {
            Path::new("..").join(target)
        };
        let short = &d.hex()[..12];
        let link = |name: &str| -> Result<bool> {
            let at = dir.join(name);
            match std::os::unix::fs::symlink(&target, &at) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(std::fs::read_link(&at).is_ok_and(|t| t == target))
                }
                Err(e) => Err(Error::io(format!("cannot link {}", at.display()), e)),
            }
        };
        if link(short)? {
            names.push(format!(".l/{short}"));
            continue;
        }
        // The whole digest names only this layer: a link there that points elsewhere is a
        // stale one of ours (the store moved), replaced atomically.
        if !link(d.hex())? {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.subsec_nanos());
            let tmp = dir.join(format!("{}.{}.{nanos}", d.hex(), std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp)
                .and_then(|()| std::fs::rename(&tmp, dir.join(d.hex())))
                .map_err(|e| Error::io(format!("cannot link layers/.l/{}", d.hex()), e))?;
        }
        names.push(format!(".l/{}", d.hex()));
    }
    Ok(names)
}

fn bind_read_only(source: &Path, target: &Path) -> Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Manifest(format!("path {} has a NUL byte", p.display())))
    };
    let (src, dst) = (c(source)?, c(target)?);
    let fail = |what: &str| {
        Error::io(
            format!("cannot {what} the image's layer on {}", target.display()),
            std::io::Error::last_os_error(),
        )
    };
    // SAFETY: mount(2) with valid C strings.
    if unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(fail("bind"));
    }
    // A remount replaces the per-mount flags: keep nosuid and nodev with read-only.
    let flags =
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: as above.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            dst.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    } != 0
    {
        let e = fail("remount read-only");
        let _ = unmount(target);
        return Err(e);
    }
    Ok(())
}

pub fn unmount(target: &Path) -> Result<()> {
    let t = CString::new(target.to_string_lossy().as_bytes())
        .map_err(|_| Error::Manifest("bad path".into()))?;
    // SAFETY: umount2 with a valid path.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(Error::io(
            format!("cannot unmount {}", target.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Where a read-only mount of an image lives (`husk image mount`).
pub fn image_mount_point(root: &Path, config: &str) -> PathBuf {
    root.join("mounts")
        .join(config.trim_start_matches("sha256:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container directory whose volatile overlay was unmounted, with its dirty mark from
    /// `when`.
    fn unmounted_volatile(when: SystemTime) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("upper")).unwrap();
        std::fs::write(d.path().join("upper/kept"), "x").unwrap();
        let marks = d.path().join("work/work/incompat/volatile");
        std::fs::create_dir_all(&marks).unwrap();
        let dirty = std::fs::File::create(marks.join("dirty")).unwrap();
        dirty.set_modified(when).unwrap();
        d
    }

    fn prepare(d: &Path) {
        prepare_volatile(Upper {
            dir: &d.join("upper"),
            work: &d.join("work"),
            volatile: true,
        })
        .unwrap();
    }

    #[test]
    fn short_links_name_each_layer_once_and_never_a_layer_for_another() {
        let layers = tempfile::tempdir().unwrap();
        let d = |hex: &str| Digest::parse(&format!("sha256:{hex}")).unwrap();
        let a = d(&format!("{}{}", "a".repeat(12), "1".repeat(52)));
        // The same 12-digit prefix as `a`, another layer.
        let b = d(&format!("{}{}", "a".repeat(12), "2".repeat(52)));
        let lower = |ds: &[&Digest]| -> Vec<String> {
            ds.iter().rev().map(|d| d.hex().to_string()).collect()
        };
        let names = short_links(layers.path(), std::slice::from_ref(&a), &lower(&[&a])).unwrap();
        assert_eq!(names, [format!(".l/{}", "a".repeat(12))]);
        // Lowest first in, topmost first out; `b` cannot take `a`'s short name.
        let names = short_links(layers.path(), &[a.clone(), b.clone()], &lower(&[&a, &b])).unwrap();
        assert_eq!(
            names,
            [format!(".l/{}", b.hex()), format!(".l/{}", "a".repeat(12))]
        );
        let target = |n: &str| std::fs::read_link(layers.path().join(n)).unwrap();
        assert_eq!(target(&names[0]), Path::new("..").join(b.hex()));
        assert_eq!(target(&names[1]), Path::new("..").join(a.hex()));
        // A stale whole-digest link (the layer now lives elsewhere) is replaced.
        let moved = vec!["/elsewhere/b".to_string()];
        let names = short_links(layers.path(), std::slice::from_ref(&b), &moved).unwrap();
        assert_eq!(target(&names[0]), Path::new("/elsewhere/b"));
    }

    #[test]
    fn a_volatile_upper_from_this_boot_is_kept_and_one_from_an_earlier_boot_is_not() {
        let now = unmounted_volatile(SystemTime::now());
        prepare(now.path());
        assert!(now.path().join("upper/kept").exists(), "same boot: kept");
        assert!(!now.path().join("work/work").exists(), "scratch cleared");
        let before = unmounted_volatile(boot_time() - Duration::from_secs(60));
        prepare(before.path());
        assert!(before.path().join("upper").is_dir());
        assert!(
            !before.path().join("upper/kept").exists(),
            "earlier boot: dropped"
        );
        assert!(!before.path().join("work/work").exists());
        // A first mount has nothing to clear.
        let fresh = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fresh.path().join("upper")).unwrap();
        std::fs::create_dir_all(fresh.path().join("work")).unwrap();
        prepare(fresh.path());
    }
}
