//! The container's root filesystem: propagation, every `mounts` entry in order, the cgroup
//! filesystem, pivot_root (or chroot), masked and read-only paths.
//!
//! Runs inside the container's new mount namespace, in the init, before `exec`.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use crate::error::{Context, Error, Result};
use crate::fsutil::{self, ensure_in_root, fd_path, open_in_root};

/// Mount options split the way mount(2) and mount_setattr(2) want them.
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags that must be cleared on a bind remount ("rw", "suid", ...).
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub rec_set: u64,
    pub rec_clear: u64,
    pub data: Vec<String>,
    pub bind: bool,
}

pub fn parse_options(opts: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: Vec::new(),
        rec_set: 0,
        rec_clear: 0,
        data: Vec::new(),
        bind: false,
    };
    for opt in opts {
        let (set, clr): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (
                MsFlags::from_bits_retain(libc::MS_LAZYTIME),
                MsFlags::empty(),
            ),
            "nolazytime" => (
                MsFlags::empty(),
                MsFlags::from_bits_retain(libc::MS_LAZYTIME),
            ),
            "iversion" => (MsFlags::MS_I_VERSION, MsFlags::empty()),
            "noiversion" => (MsFlags::empty(), MsFlags::MS_I_VERSION),
            "nosymfollow" => (
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                MsFlags::empty(),
            ),
            "symfollow" => (
                MsFlags::empty(),
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            ),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                o.propagation
                    .push(propagation_flag(p).unwrap_or(MsFlags::MS_PRIVATE));
                continue;
            }
            r if r.starts_with('r') && recursive_attr(&r[1..]).is_some() => {
                let (attr, set) = recursive_attr(&r[1..]).unwrap_or((0, true));
                if set {
                    o.rec_set |= attr;
                } else {
                    o.rec_clear |= attr;
                }
                continue;
            }
            // Options that concern other runtimes' features or the filesystem itself go to the
            // filesystem as data.
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        // On the raw bits: bitflags' `!` keeps only the flags nix names, and would drop
        // MS_NOSYMFOLLOW and MS_LAZYTIME.
        o.flags = MsFlags::from_bits_retain((o.flags.bits() | set.bits()) & !clr.bits());
        o.clear |= clr;
    }
    o
}

/// The data string of a new mount: its options, and on an SELinux host the config's
/// `linux.mountLabel` as the context of the file systems the container gets fresh (runc labels
/// the same ones; without SELinux, as runc, the label has nothing to apply to).
fn mount_data(options: &[String], typ: &str, mount_label: Option<&str>) -> String {
    let mut data = options.to_vec();
    if let Some(label) = mount_label.filter(|l| !l.is_empty()) {
        if matches!(typ, "tmpfs" | "devpts" | "mqueue")
            && !data.iter().any(|o| o.starts_with("context="))
        {
            data.push(format!("context=\"{label}\""));
        }
    }
    data.join(",")
}

/// Options a bind mount may carry that are other tools' business, not the kernel's: SELinux
/// relabel hints and crun's copy-up options. Anything else a bind cannot take is an error, so a
/// typo such as `nosiud` never silently drops a protection.
const BIND_OPTIONS_FOR_OTHERS: &[&str] = &["z", "Z", "tmpcopyup", "notmpcopyup", "copy-symlink"];

/// An idmapped bind (OCI 1.1): `ridmap` maps the mounts below it too.
const IDMAP_OPTIONS: &[&str] = &["idmap", "ridmap"];

fn id_map_lines(maps: &[oci_spec::runtime::LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The idmapped binds of `spec`, made here, in the runtime's own mount namespace, before the
/// init exists: one detached mount per `mounts` entry that has `uidMappings`/`gidMappings`
/// (or `idmap`/`ridmap`, which take the container's own maps), None for the others. The
/// init attaches them where they go. A mount whose file owners are mapped through
/// `uidMappings` line `C H N` shows a file that is C on disk as owned by H, and writes by H
/// land as C, as runc's.
pub fn prepare_idmapped(spec: &Spec, bundle: &Path) -> Result<Vec<Option<OwnedFd>>> {
    let linux = spec.linux().as_ref();
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        let asked = opts
            .data
            .iter()
            .any(|o| IDMAP_OPTIONS.contains(&o.as_str()));
        let pick = |own: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
                    container: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
            own.clone()
                .filter(|v| !v.is_empty())
                .or_else(|| container.filter(|_| asked).cloned())
                .unwrap_or_default()
        };
        let uids = pick(
            m.uid_mappings(),
            linux.and_then(|l| l.uid_mappings().as_ref()),
        );
        let gids = pick(
            m.gid_mappings(),
            linux.and_then(|l| l.gid_mappings().as_ref()),
        );
        if uids.is_empty() && gids.is_empty() {
            if asked {
                return Err(Error::InvalidConfig(format!(
                    "mount {}: idmap without uidMappings/gidMappings, on the mount or the container",
                    m.destination().display()
                )));
            }
            out.push(None);
            continue;
        }
        let dest = m.destination().display();
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig(format!("bind mount on {dest} has no source")))?;
        let source = if source.is_absolute() {
            source.clone()
        } else {
            bundle.join(source)
        };
        // An unmapped side stays as it is: the identity.
        let identity = "0 0 4294967295\n".to_string();
        let (u, g) = (id_map_lines(&uids), id_map_lines(&gids));
        let userns = fsutil::userns_with_maps(
            if u.is_empty() { &identity } else { &u },
            if g.is_empty() { &identity } else { &g },
        )
        .map_err(|e| Error::io(format!("mount {dest}: cannot make its id mapping"), e))?;
        let recursive =
            opts.flags.contains(MsFlags::MS_REC) || opts.data.iter().any(|o| o == "ridmap");
        let tree = fsutil::idmapped_tree(&source, recursive, &userns).map_err(|e| match e {
            Errno::ENOSYS => Error::Unsupported(format!(
                "mount {dest}: idmapped mounts need Linux 5.12 or later"
            )),
            Errno::EINVAL => Error::Unsupported(format!(
                "mount {dest}: the file system of {} cannot be idmapped on this kernel (ext4, xfs and btrfs can from Linux 5.12/5.15, tmpfs from 6.3)",
                source.display()
            )),
            e => Error::sys(format!("mount {dest}: cannot idmap {}", source.display()), e),
        })?;
        out.push(Some(tree));
    }
    Ok(out)
}

/// The options of mount `m` this runtime cannot honour, as an error naming them.
pub fn check_supported(m: &Mount) -> Result<()> {
    let dest = m.destination().display();
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let mapped = m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        || opts.data.iter().any(|o| o == "idmap" || o == "ridmap");
    if mapped && !(opts.bind || m.typ().as_deref() == Some("bind")) {
        return Err(Error::Unsupported(format!(
            "mount {dest}: idmapped mounts are supported for bind mounts only"
        )));
    }
    let bind = opts.bind || m.typ().as_deref() == Some("bind");
    if bind {
        if let Some(o) = opts.data.iter().find(|o| {
            !BIND_OPTIONS_FOR_OTHERS.contains(&o.as_str()) && !IDMAP_OPTIONS.contains(&o.as_str())
        }) {
            return Err(Error::InvalidConfig(format!(
                "mount {dest}: option {o:?} is not a mount option a bind mount takes"
            )));
        }
    }
    Ok(())
}

/// The mount_setattr attribute behind `rro`, `rnosuid`, ...: (attr, set?).
fn recursive_attr(name: &str) -> Option<(u64, bool)> {
    Some(match name {
        "ro" => (fsutil::MOUNT_ATTR_RDONLY, true),
        "rw" => (fsutil::MOUNT_ATTR_RDONLY, false),
        "nosuid" => (fsutil::MOUNT_ATTR_NOSUID, true),
        "suid" => (fsutil::MOUNT_ATTR_NOSUID, false),
        "nodev" => (fsutil::MOUNT_ATTR_NODEV, true),
        "dev" => (fsutil::MOUNT_ATTR_NODEV, false),
        "noexec" => (fsutil::MOUNT_ATTR_NOEXEC, true),
        "exec" => (fsutil::MOUNT_ATTR_NOEXEC, false),
        "noatime" => (fsutil::MOUNT_ATTR_NOATIME, true),
        "atime" => (fsutil::MOUNT_ATTR_NOATIME, false),
        "nodiratime" => (fsutil::MOUNT_ATTR_NODIRATIME, true),
        "diratime" => (fsutil::MOUNT_ATTR_NODIRATIME, false),
        "strictatime" => (fsutil::MOUNT_ATTR_STRICTATIME, true),
        // relatime is the atime field's zero: clearing the field sets it.
        "relatime" | "nostrictatime" => (fsutil::MOUNT_ATTR__ATIME, false),
        "norelatime" => (fsutil::MOUNT_ATTR_STRICTATIME, true),
        "nosymfollow" => (fsutil::MOUNT_ATTR_NOSYMFOLLOW, true),
        "symfollow" => (fsutil::MOUNT_ATTR_NOSYMFOLLOW, false),
        _ => return None,
    })
}

pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

const NONE: Option<&str> = None;

/// Everything done before the root is switched: propagation, the rootfs bind, every mount.
pub struct Rootfs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_user_ns: bool,
    /// The container's cgroup namespace is a new one (mount cgroupfs instead of binding).
    pub new_cgroup_ns: bool,
    /// No mount namespace of its own: the config's mounts are made in the caller's, where
    /// nothing outside the rootfs may change (see `prepare`).
    pub shares_mount_ns: bool,
    /// Called before the cgroup filesystem is mounted: the init must be in its cgroup (and its
    /// cgroup namespace) by then.
    pub before_cgroup_mount: &'a dyn Fn() -> Result<()>,
    /// `prepare_idmapped`'s detached mounts, by the index of their `mounts` entry.
    pub idmapped: &'a [Option<OwnedFd>],
    /// Bind sources the init reaches through a descriptor (`/proc/self/fd/N`), by the index of
    /// their `mounts` entry: in a new user namespace its root may not search their directories.
    pub sources: &'a [Option<PathBuf>],
}

impl Rootfs<'_> {
    pub fn prepare(&self) -> Result<()> {
        let linux = self.spec.linux().as_ref();
        let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
            Some(p) => propagation_flag(p).ok_or_else(|| {
                Error::InvalidConfig(format!("rootfsPropagation {p:?} is not a propagation mode"))
            })?,
        };
        // Without a mount namespace of its own the host's propagation stays as it is (runc
        // makes the host's whole tree slave here); the container's mounts go on a private bind
        // of the rootfs, which `unmount_shared_rootfs` detaches at delete.
        if !self.shares_mount_ns {
            mount(NONE, "/", NONE, prop, NONE).ctx("cannot set propagation of /")?;
            make_parent_mount_private(self.rootfs)?;
        }
        mount(
            Some(self.rootfs),
            self.rootfs,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        )
        .ctx_path("cannot bind the rootfs", self.rootfs)?;
        if self.shares_mount_ns {
            mount(NONE, self.rootfs, NONE, MsFlags::MS_PRIVATE, NONE)
                .ctx_path("cannot make the rootfs bind private:", self.rootfs)?;
        }

        let root = fs::File::open(self.rootfs).ctx_path("cannot open rootfs", self.rootfs)?;
        for (i, m) in self.spec.mounts().iter().flatten().enumerate() {
            let tree = self.idmapped.get(i).and_then(Option::as_ref);
            let reached = self.sources.get(i).and_then(Option::as_deref);
            self.mount_one(root.as_raw_fd(), m, tree, reached)?;
        }
        Ok(())
    }

    fn mount_one(
        &self,
        root: i32,
        m: &Mount,
        idmapped: Option<&OwnedFd>,
        reached: Option<&Path>,
    ) -> Result<()> {
        let dest = m.destination();
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().as_deref().unwrap_or("");
        let what = || {
            format!(
                "cannot mount {} on {}",
                typ_or_bind(typ, &opts),
                dest.display()
            )
        };
        if typ == "cgroup" || typ == "cgroup2" {
            (self.before_cgroup_mount)()?;
            return self.mount_cgroup(root, dest, &opts);
        }
        let bind = opts.bind || typ == "bind";
        if bind {
            let source = m.source().as_ref().ok_or_else(|| {
                Error::InvalidConfig(format!("bind mount on {} has no source", dest.display()))
            })?;
            let source = match reached {
                Some(p) => p.to_path_buf(),
                None if source.is_absolute() => source.clone(),
                None => self.bundle.join(source),
            };
            let meta =
                fs::metadata(&source).ctx_path("bind mount source is not usable:", &source)?;
            let target = ensure_in_root(root, dest, meta.is_dir())?;
            let rec = opts.flags & MsFlags::MS_REC;
            match idmapped {
                Some(tree) => {
                    fsutil::attach_tree(tree, &target).map_err(|e| Error::sys(what(), e))?
                }
                None => mount(
                    Some(&source),
                    &fd_path(&target),
                    NONE,
                    MsFlags::MS_BIND | rec,
                    NONE,
                )
                .ctx(what())?,
            }
            let extra = MsFlags::from_bits_retain(
                opts.flags.bits()
                    & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT).bits(),
            );
            if !extra.is_empty() {
                let target = open_in_root(root, dest, libc::O_PATH, 0).ctx(what())?;
                remount_bind(&fd_path(&target), extra, Some(&source))?;
            }
            self.finish(root, dest, &opts)
        } else {
            if typ == "proc" || typ == "sysfs" {
                refuse_symlink_target(root, dest, typ)?;
            }
            let target = ensure_in_root(root, dest, true)?;
            let mount_label = self
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.mount_label().as_deref())
                .filter(|_| Path::new("/sys/fs/selinux/enforce").exists());
            let data = mount_data(&opts.data, typ, mount_label);
            let data = (!data.is_empty()).then_some(data);
            let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
            match mount(
                Some(&source),
                &fd_path(&target),
                Some(typ),
                opts.flags,
                data.as_deref(),
            ) {
                Ok(()) => {}
                // In a user namespace that does not own the network namespace, sysfs cannot be
                // mounted; a read-only bind of the host's is what runc and crun give instead.
                Err(Errno::EPERM) if typ == "sysfs" && self.in_user_ns => {
                    mount(
                        Some("/sys"),
                        &fd_path(&target),
                        NONE,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        NONE,
                    )
                    .ctx(what())?;
                    let bound = open_in_root(root, dest, libc::O_PATH, 0).ctx(what())?;
                    remount_bind(
                        &fd_path(&bound),
                        opts.flags | MsFlags::MS_RDONLY,
                        Some(Path::new("/sys")),
                    )?;
                }
                // A devpts `gid=` the user namespace does not map (5, tty, with a single-id
                // map): EINVAL. runc's rootless specs leave it out; the pty's group is then
                // the opener's.
                Err(Errno::EINVAL)
                    if typ == "devpts"
                        && self.in_user_ns
                        && data.as_deref().is_some_and(|d| d.contains("gid=")) =>
                {
                    let kept: Vec<&str> = data
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .filter(|o| !o.starts_with("gid="))
                        .collect();
                    let kept = kept.join(",");
                    mount(
                        Some(&source),
                        &fd_path(&target),
                        Some(typ),
                        opts.flags,
                        (!kept.is_empty()).then_some(kept.as_str()),
                    )
                    .map_err(|e| Error::sys(what(), e))?;
                }
                Err(e) => return Err(Error::sys(what(), e)),
            }
            self.finish(root, dest, &opts)
        }
    }

    /// Propagation and recursive attributes of a mount just made.
    fn finish(&self, root: i32, dest: &Path, opts: &MountOptions) -> Result<()> {
        if opts.propagation.is_empty() && opts.rec_set == 0 && opts.rec_clear == 0 {
            return Ok(());
        }
        let target = open_in_root(root, dest, libc::O_PATH, 0)
            .ctx(format_args!("cannot reopen mount {}", dest.display()))?;
        for p in &opts.propagation {
            mount(NONE, &fd_path(&target), NONE, *p, NONE)
                .ctx(format_args!("cannot set propagation of {}", dest.display()))?;
        }
        if opts.rec_set != 0 || opts.rec_clear != 0 {
            let target = open_in_root(root, dest, libc::O_PATH | libc::O_DIRECTORY, 0)
                .or_else(|_| open_in_root(root, dest, libc::O_PATH, 0))
                .ctx(format_args!("cannot reopen mount {}", dest.display()))?;
            match fsutil::mount_setattr_recursive(&target, opts.rec_set, opts.rec_clear) {
                Ok(()) => {}
                Err(Errno::ENOSYS) => {
                    return Err(Error::Unsupported(format!(
                        "recursive mount options (rro, rnosuid, ...) on {} need mount_setattr, Linux 5.12 or later",
                        dest.display()
                    )))
                }
                Err(e) => Err(e).ctx(format_args!(
                    "cannot set recursive mount attributes on {}",
                    dest.display()
                ))?,
            }
        }
        Ok(())
    }

    /// The cgroup filesystem as the container should see it: its own cgroup as the root.
    fn mount_cgroup(&self, root: i32, dest: &Path, opts: &MountOptions) -> Result<()> {
        let target = ensure_in_root(root, dest, true)?;
        let flags = MsFlags::from_bits_retain(
            opts.flags.bits() & !(MsFlags::MS_BIND | MsFlags::MS_REC).bits(),
        );
        if crate::cgroups::detect() == crate::cgroups::Version::V2 {
            if self.new_cgroup_ns {
                mount(
                    Some("cgroup2"),
                    &fd_path(&target),
                    Some("cgroup2"),
                    flags,
                    NONE,
                )
                .ctx_path("cannot mount cgroup2 on", dest)?;
            } else {
                let own = own_cgroup_v2()?;
                mount(
                    Some(&own),
                    &fd_path(&target),
                    NONE,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    NONE,
                )
                .ctx_path("cannot bind cgroup on", dest)?;
                remount_bind(
                    &fd_path(
                        &open_in_root(root, dest, libc::O_PATH, 0)
                            .ctx("cannot reopen cgroup mount")?,
                    ),
                    flags,
                    None,
                )?;
            }
            return Ok(());
        }
        // v1: a tmpfs holding one directory per hierarchy.
        mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .ctx_path("cannot mount tmpfs for cgroups on", dest)?;
        let own = own_cgroups_v1()?;
        for (controllers, mount_point) in crate::cgroups::v1::hierarchies()? {
            let name = mount_point
                .file_name()
                .map(|n| n.to_owned())
                .unwrap_or_default();
            let sub = dest.join(&name);
            let target = ensure_in_root(root, &sub, true)?;
            if self.new_cgroup_ns {
                mount(
                    Some("cgroup"),
                    &fd_path(&target),
                    Some("cgroup"),
                    flags,
                    Some(controllers.as_str()),
                )
                .ctx_path("cannot mount cgroup on", &sub)?;
            } else {
                let rel = own.get(&controllers).map(String::as_str).unwrap_or("/");
                let src = mount_point.join(rel.trim_start_matches('/'));
                mount(Some(&src), &fd_path(&target), NONE, MsFlags::MS_BIND, NONE)
                    .ctx_path("cannot bind cgroup on", &sub)?;
                let target =
                    open_in_root(root, &sub, libc::O_PATH, 0).ctx("cannot reopen cgroup mount")?;
                remount_bind(
                    &fd_path(&target),
                    flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    None,
                )?;
            }
            // cpu,cpuacct mounted together: symlinks by each name, as on the host.
            if controllers.contains(',') && !controllers.contains('=') {
                for c in controllers.split(',') {
                    if Path::new(c) != Path::new(&name) {
                        let link = dest.join(c);
                        let parent = open_in_root(root, dest, libc::O_PATH | libc::O_DIRECTORY, 0)
                            .ctx("cannot reopen cgroup tmpfs")?;
                        let _ = nix::unistd::symlinkat(Path::new(&name), &parent, Path::new(c));
                        let _ = link;
                    }
                }
            }
        }
        if flags.contains(MsFlags::MS_RDONLY) {
            let target =
                open_in_root(root, dest, libc::O_PATH, 0).ctx("cannot reopen cgroup tmpfs")?;
            mount(
                NONE,
                &fd_path(&target),
                NONE,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                Some("mode=755"),
            )
            .ctx_path("cannot make cgroup tmpfs read-only on", dest)?;
        }
        Ok(())
    }
}

/// proc and sysfs go on an ordinary directory, never through a symlink the image put there
/// (even one that stays inside the root): runc refuses the same, and a container whose /proc
/// is elsewhere is not what its config describes.
fn refuse_symlink_target(root: i32, dest: &Path, typ: &str) -> Result<()> {
    let Ok(fd) = open_in_root(root, dest, libc::O_PATH | libc::O_NOFOLLOW, 0) else {
        return Ok(()); // missing: made as a directory
    };
    let st = nix::sys::stat::fstat(&fd).ctx(format_args!("cannot stat {}", dest.display()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Error::InvalidConfig(format!(
            "{typ} cannot be mounted on {}: it must be mounted on an ordinary directory, and the rootfs has something else there",
            dest.display()
        )));
    }
    Ok(())
}

fn typ_or_bind(typ: &str, opts: &MountOptions) -> String {
    if opts.bind || typ.is_empty() {
        "bind".into()
    } else {
        typ.to_string()
    }
}

/// Remount a bind mount with `flags`, keeping the flags the kernel locks in a user namespace
/// (the remount fails with EPERM if they are dropped).
fn remount_bind(target: &Path, flags: MsFlags, source: Option<&Path>) -> Result<()> {
    let locked = locked_flags(target);
    mount(
        NONE,
        target,
        NONE,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags | locked,
        NONE,
    )
    .map_err(|e| {
        Error::sys(
            format!(
                "cannot remount {} with {:?}",
                source.unwrap_or(target).display(),
                flags
            ),
            e,
        )
    })
}

fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(s) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = s.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// pivot_root needs the rootfs's parent mount not to be shared.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    if let Some(mp) = mount_point_of(rootfs) {
        return mount(NONE, &mp, NONE, MsFlags::MS_PRIVATE, NONE)
            .ctx_path("cannot make private", &mp);
    }
    // No mount ids (before Linux 5.8): the longest mount point above it in mountinfo, whose
    // every line costs the kernel more the more mounts the host has (an overlay's options
    // are long), so only as the fallback.
    let info =
        fs::read_to_string("/proc/self/mountinfo").ctx("cannot read /proc/self/mountinfo")?;
    let mut best: Option<&str> = None;
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        if rootfs.starts_with(unescape_octal(mp).as_str())
            && best.is_none_or(|b| mp.len() > b.len())
        {
            best = Some(mp);
        }
    }
    if let Some(mp) = best {
        mount(
            NONE,
            unescape_octal(mp).as_str(),
            NONE,
            MsFlags::MS_PRIVATE,
            NONE,
        )
        .ctx(format_args!("cannot make {mp} private"))?;
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && b[i + 1..].len() >= 3 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup path in each v1 hierarchy, keyed like `v1::hierarchies`.
fn own_cgroups_v1() -> Result<std::collections::BTreeMap<String, String>> {
    let text = fs::read_to_string("/proc/self/cgroup").ctx("cannot read /proc/self/cgroup")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _ = parts.next()?;
            let ctl = parts.next()?;
            let path = parts.next()?;
            (!ctl.is_empty()).then(|| (ctl.to_string(), path.to_string()))
        })
        .collect())
}

fn own_cgroup_v2() -> Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ctx("cannot read /proc/self/cgroup")?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| Error::Unsupported("no cgroup v2 entry in /proc/self/cgroup".into()))?;
    Ok(Path::new(crate::cgroups::CGROUP_ROOT).join(rel.trim_start_matches('/')))
}

/// Make `rootfs` the root: pivot_root, the old root detached; or chroot when `no_pivot`, or
/// in the caller's mount namespace (`shares_mount_ns`), where pivot_root or a move onto / would
/// change the host's root.
pub fn switch_root(rootfs: &Path, no_pivot: bool, shares_mount_ns: bool) -> Result<()> {
    if shares_mount_ns {
        chdir(rootfs).ctx_path("cannot chdir to", rootfs)?;
        chroot(".").ctx("cannot chroot into the rootfs")?;
    } else if no_pivot {
        chdir(rootfs).ctx_path("cannot chdir to", rootfs)?;
        mount(Some(rootfs), "/", NONE, MsFlags::MS_MOVE, NONE)
            .ctx("cannot move the rootfs onto /")?;
        chroot(".").ctx("cannot chroot into the rootfs")?;
    } else {
        let new_root: OwnedFd = fs::File::open(rootfs)
            .ctx_path("cannot open", rootfs)?
            .into();
        fchdir(&new_root).ctx("cannot enter the rootfs")?;
        // pivot_root(".", ".") stacks the old root on top of the new one: detach it right away,
        // after making sure the unmount cannot propagate to the host.
        pivot_root(".", ".").ctx("pivot_root failed")?;
        mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
            .ctx("cannot make the old root a slave")?;
        umount2(".", MntFlags::MNT_DETACH).ctx("cannot detach the old root")?;
    }
    chdir("/").ctx("cannot chdir to /")?;
    Ok(())
}

/// The mount point of the mount `path` (absolute, without `..`) is on: the highest of
/// its ancestors still on the same mount. None where statx gives no mount id.
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let id = mount_id(path).ok().filter(|id| *id != 0)?;
    let mut point = path;
    while let Some(parent) = point.parent() {
        if mount_id(parent).ok()? != id {
            break;
        }
        point = parent;
    }
    Some(point.to_path_buf())
}

/// The id of the mount `path` is on (statx's STATX_MNT_ID, Linux 5.8).
pub fn mount_id(path: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidConfig(format!("{} contains a NUL byte", path.display())))?;
    // SAFETY: statx fills the zeroed struct it is given; the path is NUL-terminated.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_MNT_ID, &mut stx) };
    if rc != 0 {
        return Err(Error::io(
            format!("cannot statx {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Ok(0);
    }
    Ok(stx.stx_mnt_id)
}

/// Detach what a container without a mount namespace mounted: every mount stacked on `rootfs`
/// since it was on mount `original` (the private bind and, with it, every mount under it).
pub fn unmount_shared_rootfs(rootfs: &Path, original: u64) -> Result<()> {
    for _ in 0..16 {
        match mount_id(rootfs) {
            Ok(id) if id != original => umount2(rootfs, MntFlags::MNT_DETACH)
                .ctx_path("cannot unmount the container's rootfs bind", rootfs)?,
            _ => return Ok(()),
        }
    }
    Err(Error::Unsupported(format!(
        "{} still has mounts stacked on it after 16 unmounts",
        rootfs.display()
    )))
}

/// After the root switch: masked paths, read-only paths, a read-only root, final propagation.
pub fn finalize(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    for p in linux.masked_paths().iter().flatten() {
        mask_path(Path::new(p))?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        readonly_path(Path::new(p))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY, None)?;
    }
    // Detaching the old root made the whole tree slave: give mounts back the propagation
    // their config asked for.
    for m in spec.mounts().iter().flatten() {
        for p in parse_options(m.options().as_deref().unwrap_or_default()).propagation {
            mount(NONE, m.destination(), NONE, p, NONE).ctx(format_args!(
                "cannot set propagation of {}",
                m.destination().display()
            ))?;
        }
    }
    if let Some(p) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if let Some(flag) = propagation_flag(p) {
            mount(NONE, "/", NONE, flag, NONE).ctx("cannot set rootfs propagation")?;
        }
    }
    Ok(())
}

fn mask_path(p: &Path) -> Result<()> {
    match fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("cannot inspect masked path {}", p.display()),
            e,
        )),
        Ok(m) if m.is_dir() => mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
            .ctx_path("cannot mask", p),
        Ok(_) => {
            mount(Some("/dev/null"), p, NONE, MsFlags::MS_BIND, NONE).ctx_path("cannot mask", p)
        }
    }
}

fn readonly_path(p: &Path) -> Result<()> {
    match mount(Some(p), p, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r.ctx_path("cannot bind read-only path", p)?,
    }
    remount_bind(
        p,
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_mount_label_is_the_context_of_fresh_file_systems() {
        let opts = s(&["mode=755"]);
        assert_eq!(
            mount_data(
                &opts,
                "tmpfs",
                Some("system_u:object_r:container_file_t:s0")
            ),
            "mode=755,context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(mount_data(&opts, "proc", Some("x")), "mode=755");
        assert_eq!(mount_data(&opts, "tmpfs", None), "mode=755");
    }

    #[test]
    fn options_become_flags_data_and_attributes() {
        let o = parse_options(&s(&[
            "rbind", "ro", "nosuid", "rslave", "rro", "mode=755", "size=1m",
        ]));
        assert!(o.bind);
        assert!(o.flags.contains(
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        ));
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.rec_set, fsutil::MOUNT_ATTR_RDONLY);
        assert_eq!(o.data, s(&["mode=755", "size=1m"]));
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = parse_options(&s(&["ro", "rw", "noexec", "exec"]));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(!o.flags.contains(MsFlags::MS_NOEXEC));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal("/a\\040b"), "/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }
}
