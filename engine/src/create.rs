//! Making a container: its image (pulled if the policy says so), its record, name, root mount,
//! volumes and OCI spec. What fails half way is undone: no name, mount, volume or directory
//! of a container that was never made stays behind.

use std::fs;
use std::path::Path;

use husk_image::images::ImageRecord;
use husk_image::manifest::{ImageConfig, Platform};
use husk_image::registry::Options;
use husk_image::{Digest, Reference};

use crate::error::{invalid, Context, Error, Result};
use crate::layers;
use crate::networking;
use crate::networks;
use crate::options::{IdMaps, LogConfig, Network, PortMapping, Protocol, PullPolicy, RunOptions};
use crate::spec::{self, NetNs};
use crate::store::{self, Container};
use crate::volumes;

/// What a pull tells its caller as it goes.
pub enum PullEvent<'a> {
    /// `run` found no local image of this name and pulls it.
    NotFound(&'a Reference),
    Progress(husk_image::pull::Progress<'a>),
}

/// The callback that hears of a pull's progress (from the download threads too).
pub type PullProgress<'a> = &'a (dyn Fn(PullEvent) + Sync);

/// The stored image a reference names (by digest, or by name and tag) for `platform`.
pub fn find_image(root: &Path, r: &Reference, platform: &Platform) -> Result<Option<ImageRecord>> {
    let platform = platform.to_string();
    Ok(husk_image::images::list(root)?.into_iter().find(|i| {
        i.name == r.name()
            && (r.digest.as_ref().map(|d| d.to_string()) == Some(i.manifest.clone())
                || (r.digest.is_none() && i.tag == r.tag))
            && i.platform() == platform
    }))
}

/// Pull `r` into the store and record its name; true when the store had no such image.
pub fn pull(
    root: &Path,
    r: &Reference,
    platform: &Platform,
    opts: &Options,
    progress: PullProgress,
) -> Result<(husk_image::pull::Pulled, bool)> {
    let _adding = husk_image::store::Store::open(root)?.adding()?;
    let pulled = husk_image::pull::pull_with_progress(root, r, platform, opts, &|p| {
        progress(PullEvent::Progress(p))
    })
    .with_context(|| format!("pull {r}"))?;
    let new = husk_image::images::record(root, r, &pulled)?;
    Ok((pulled, new))
}

/// Who ran husk: the caller of `sudo` when husk runs as root through it, else the real ids.
fn caller_ids() -> (u32, u32) {
    // Rootless, the user is the namespace's root: its files are root's inside already.
    if crate::rootless::is_rootless() {
        return (0, 0);
    }
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    if nix::unistd::geteuid().is_root() {
        if let (Some(u), Some(g)) = (env("SUDO_UID"), env("SUDO_GID")) {
            return (u, g);
        }
    }
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// An id mapping (OCI mount `uidMappings`) that swaps `id` and 0 and leaves every other id
/// as it is: what the container's root writes lands as `id` on disk, and `id`'s files are
/// root's inside.
fn swap_with_root(id: u32) -> serde_json::Value {
    let mut maps = vec![
        serde_json::json!({"containerID": id, "hostID": 0, "size": 1}),
        serde_json::json!({"containerID": 0, "hostID": id, "size": 1}),
    ];
    if id > 1 {
        maps.push(serde_json::json!({"containerID": 1, "hostID": 1, "size": id - 1}));
    }
    // Up to 2^32-2: (uid_t)-1 is no id.
    maps.push(
        serde_json::json!({"containerID": id + 1, "hostID": id + 1, "size": u32::MAX - 1 - id}),
    );
    serde_json::Value::Array(maps)
}

/// What `--uidmap` needs, refused in one line before anything is made: root (idmapping the
/// layers takes privilege over their file system), a kernel that stacks overlayfs on
/// idmapped layers, an image (not `--rootfs`), and no `--userns keep-id` beside it.
fn check_id_maps(a: &RunOptions) -> Result<()> {
    let auto = matches!(a.userns, crate::options::Userns::Auto { .. });
    if a.id_maps.is_none() && !auto {
        return Ok(());
    }
    if a.id_maps.is_some() && auto {
        invalid!("--uidmap and --userns auto cannot go together");
    }
    let flag = if auto { "--userns auto" } else { "--uidmap" };
    let rootless = crate::rootless::is_rootless();
    if a.rootfs.is_some() {
        invalid!("{flag} and --rootfs cannot go together: the directory would have to be idmapped in place");
    }
    if a.userns == crate::options::Userns::KeepId {
        invalid!("--uidmap and --userns keep-id cannot go together");
    }
    if let Some(m) = &a.id_maps {
        if IdMaps::host_of(&m.uid, 0).is_none() || IdMaps::host_of(&m.gid, 0).is_none() {
            invalid!("--uidmap/--gidmap must map the container's id 0 (its root)");
        }
        if rootless {
            within_own_namespace(m)?;
        }
    }
    // Rootless, fuse-overlayfs shifts the layers' owners (Linux 4.18+, below any kernel husk
    // runs on); as root, overlayfs stacks idmapped layers.
    if rootless {
        return Ok(());
    }
    let (major, minor) = husk_sys::kernel_version();
    if (major, minor) < (5, 19) {
        invalid!("{flag} needs Linux 5.19 or later (overlayfs over idmapped layers); this is {major}.{minor}");
    }
    Ok(())
}

/// Rootless, a map's host ids are ids of the user namespace husk runs in (0 is the user, then
/// the user's subordinate ids, as podman's): each must be one it maps.
fn within_own_namespace(m: &IdMaps) -> Result<()> {
    for (flag, maps, file) in [
        ("--uidmap", &m.uid, "/proc/self/uid_map"),
        ("--gidmap", &m.gid, "/proc/self/gid_map"),
    ] {
        let text = fs::read_to_string(file).unwrap_or_default();
        let blocks: Vec<(u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                (f.len() == 3).then(|| (f[0], f[0] + f[2]))
            })
            .collect();
        // Every id of [start, end) in one of the blocks: walk it block by block.
        let covered = |start: u64, end: u64| {
            let mut at = start;
            while at < end {
                match blocks.iter().find(|(s, e)| *s <= at && at < *e) {
                    Some((_, e)) => at = *e,
                    None => return false,
                }
            }
            true
        };
        for i in maps {
            let (s, e) = (u64::from(i.host), u64::from(i.host) + u64::from(i.size));
            if !covered(s, e) {
                let top = blocks.iter().map(|b| b.1).max().unwrap_or(1);
                invalid!(
                    "{flag} {}:{}:{}: rootless, host ids are ids of husk's user namespace, 0 (you) to {} (your ranges in /etc/subuid and /etc/subgid)",
                    i.container,
                    i.host,
                    i.size,
                    top - 1
                );
            }
        }
    }
    Ok(())
}

/// A volume that is still empty and root's (new, with nothing of the image to copy in) is
/// given to the container's root, as podman does, so it can write there; one with files, or
/// another owner, is left as it is.
fn give_new_volumes_to_root(records: &[crate::store::MountRecord], m: &IdMaps) {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = (IdMaps::host_of(&m.uid, 0), IdMaps::host_of(&m.gid, 0));
    for r in records.iter().filter(|r| r.kind == "volume") {
        let data = Path::new(&r.source);
        let fresh = fs::metadata(data).is_ok_and(|md| md.uid() == 0 && md.gid() == 0)
            && fs::read_dir(data).is_ok_and(|mut d| d.next().is_none());
        if fresh {
            let _ = std::os::unix::fs::chown(data, uid, gid);
        }
    }
}

/// The runtime enters the root directory as the container's root, whose ids are `uid`/`gid`
/// on the host: every directory above it must let them search it. Said in one line, naming
/// the directory, rather than the runtime's bare EACCES.
fn reachable_by(rootfs: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in rootfs.ancestors().skip(1) {
        let Ok(m) = fs::metadata(dir) else { continue };
        let mode = m.mode();
        let may = if m.uid() == uid {
            mode & 0o100 != 0
        } else if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !may {
            invalid!(
                "the container's root (uid {uid} on the host, in its own user namespace) cannot reach its root directory through {} (mode {:o}): let others search it (chmod o+x)",
                dir.display(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

/// `--userns=keep-id`: the host directories bound in are idmapped to the caller.
fn keep_id(mounts: &mut [serde_json::Value], records: &[crate::store::MountRecord]) {
    let (uid, gid) = caller_ids();
    if uid == 0 && gid == 0 {
        // Root's own files: nothing to map.
        return;
    }
    for (m, r) in mounts.iter_mut().zip(records) {
        if r.kind == "bind" {
            // An unmapped side stays the identity (the runtime's default).
            if uid != 0 {
                m["uidMappings"] = swap_with_root(uid);
            }
            if gid != 0 {
                m["gidMappings"] = swap_with_root(gid);
            }
        }
    }
}

/// `--rootfs DIR`: a directory in place of an image, with an empty image config (no CMD, no
/// ENV but docker's PATH). The directory must be absolute once resolved, and is never written.
fn rootfs_source(dir: &Path, a: &RunOptions) -> Result<(ImageRecord, ImageConfig)> {
    if !dir.is_absolute() {
        return Err(Error::Invalid(format!(
            "--rootfs {}: the path must be absolute",
            dir.display()
        )));
    }
    let md = fs::metadata(dir)
        .map_err(|e| Error::Invalid(format!("--rootfs {}: {e}", dir.display())))?;
    if !md.is_dir() {
        return Err(Error::Invalid(format!(
            "--rootfs {}: not a directory",
            dir.display()
        )));
    }
    if a.command.is_empty() && a.entrypoint.as_deref().unwrap_or("").is_empty() {
        return Err(Error::Invalid(format!(
            "--rootfs {}: no command given (a directory has no image CMD)",
            dir.display()
        )));
    }
    let image = ImageRecord {
        name: dir.display().to_string(),
        tag: None,
        manifest: String::new(),
        config: String::new(),
        diff_ids: Vec::new(),
        size: 0,
        created: None,
        platform: None,
    };
    let config: ImageConfig = serde_json::from_value(serde_json::json!({
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {},
    }))?;
    Ok((image, config))
}

fn image(root: &Path, a: &RunOptions, progress: PullProgress) -> Result<ImageRecord> {
    if let Some(built) = &a.built {
        return Ok(built.clone());
    }
    // An image id (or a unique prefix of one, 4 hex digits or more), as docker takes it: an
    // untagged image has no other name.
    let hex = a.image.trim_start_matches("sha256:");
    if hex.len() >= 4
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        let hits = husk_image::images::find(root, &a.image)?;
        if let Some(first) = hits.first() {
            if hits.iter().all(|h| h.config == first.config) {
                return Ok(first.clone());
            }
        }
    }
    let r = Reference::parse(&a.image)?;
    let platform = a
        .platform
        .as_deref()
        .map(Platform::parse)
        .transpose()?
        .unwrap_or_else(Platform::host);
    let have = find_image(root, &r, &platform)?;
    let need_pull = match (a.pull, &have) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => {
            return Err(Error::NoSuchImage(format!(
                "{r} for {platform} (and --pull=never)"
            )))
        }
        _ => false,
    };
    if need_pull {
        if have.is_none() {
            progress(PullEvent::NotFound(&r));
        }
        pull(root, &r, &platform, &Options::default(), progress)?;
    }
    if let Some(found) = find_image(root, &r, &platform)? {
        return Ok(found);
    }
    // A registry that served another platform than asked for (an image without an index).
    let other = husk_image::images::find(root, &a.image)?.into_iter().next();
    Err(match other {
        Some(o) => Error::Failed(format!(
            "image {r} was found but does not match the platform asked for: wanted {platform}, actual {}",
            o.platform()
        )),
        None => Error::NoSuchImage(format!("{r} for {platform}")),
    })
}

/// The container's network as its record keeps it: `none`, `host`, `container:ID` or a
/// network's name; the default is `bridge` unless husk's config says `"bridge": "none"`.
fn resolve_network(root: &Path, a: &RunOptions) -> Result<String> {
    // A user namespace's root makes no bridge: rootless containers get pasta instead.
    let rootless = crate::rootless::is_rootless();
    let mode = match &a.network {
        Network::Default => match husk_image::config::get("bridge")?.as_str() {
            Some("none") => "none".to_string(),
            _ if rootless => "pasta".to_string(),
            _ => networks::DEFAULT.to_string(),
        },
        Network::None => "none".into(),
        Network::Host => "host".into(),
        Network::Pasta => "pasta".into(),
        Network::Named(n) if rootless => {
            return Err(Error::Invalid(format!(
                "rootless husk has no network {n:?}: bridges need root; use --network pasta (the default), none or host"
            )))
        }
        Network::Named(n) => networks::find(root, n)?.name,
        Network::Container(c) => format!("container:{}", store::find(root, c)?.id),
    };
    let own_network = !matches!(mode.as_str(), "none" | "host") && !mode.starts_with("container:");
    let kind = if mode.starts_with("container:") {
        "another container's network"
    } else {
        mode.as_str()
    };
    if !own_network && (!a.publish.is_empty() || a.publish_all) {
        return Err(Error::Invalid(format!(
            "cannot publish ports on {kind}: use a bridge or user network"
        )));
    }
    if !a.network_aliases.is_empty()
        && (!own_network || mode == networks::DEFAULT || mode == "pasta")
    {
        return Err(Error::Invalid(
            "--network-alias works only on user networks (network create)".into(),
        ));
    }
    if mode.starts_with("container:")
        && (!a.add_hosts.is_empty() || !a.dns.is_empty() || !a.dns_search.is_empty())
    {
        return Err(Error::Invalid(
            "--add-host and --dns cannot be used with --network container: (its files are the other container's)".into(),
        ));
    }
    Ok(mode)
}

/// The container's log driver and options: the flags, else husk's config file's `log-driver`
/// and `log-opts` (docker's daemon.json keys), else json-file without a limit.
fn log_config(a: &RunOptions) -> Result<LogConfig> {
    if let Some(l) = &a.log {
        return Ok(l.clone());
    }
    let driver = husk_image::config::get("log-driver")?;
    let opts: Vec<String> = husk_image::config::get("log-opts")?
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    LogConfig::parse(driver.as_str(), &opts)
        .map_err(|e| Error::Invalid(format!("husk's config file, log-driver/log-opts: {e}")))
}

/// `-p` and, with `-P`, every port the image EXPOSEs (`80/tcp`) that `-p` does not name.
fn published(a: &RunOptions, config: &ImageConfig) -> Result<Vec<PortMapping>> {
    let mut ports = a.publish.clone();
    if a.publish_all {
        if let Some(exposed) = config.config["ExposedPorts"].as_object() {
            for key in exposed.keys() {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                let protocol = match proto {
                    "udp" => Protocol::Udp,
                    "tcp" => Protocol::Tcp,
                    _ => continue,
                };
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                if !ports
                    .iter()
                    .any(|p| p.container_port == port && p.protocol == protocol)
                {
                    ports.push(PortMapping {
                        host_ip: None,
                        host_port: None,
                        container_port: port,
                        protocol,
                    });
                }
            }
        }
    }
    Ok(ports)
}

/// Make container from `a`: returns its id. The record names this process as the one holding
/// the container, until a monitor takes over or `release` is called.
pub fn create(root: &Path, a: &RunOptions, progress: PullProgress) -> Result<String> {
    create_with(root, a, progress, &mut |_| {})
}

/// `create`, telling `on_id` the container's id as soon as it has one, before anything of
/// it exists (the `--die-with-parent` watcher cleans up after a husk killed from there on).
pub fn create_with(
    root: &Path,
    a: &RunOptions,
    progress: PullProgress,
    on_id: &mut dyn FnMut(&str),
) -> Result<String> {
    if let Some(n) = &a.name {
        husk_runtime::util::validate_id(n).map_err(|_| {
            Error::Invalid(format!(
                "invalid container name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            ))
        })?;
    }
    check_id_maps(a)?;
    // Held until the record names the image: a prune or rmi meanwhile waits for it, then
    // sees the container and leaves the image's blobs and layers be.
    let network = resolve_network(root, a)?;
    let log = log_config(a)?;
    if a.auto_remove && a.restart.name != "no" {
        return Err(Error::Invalid(
            "conflicting options: --restart and --rm (a container removed when it exits cannot be restarted)".into(),
        ));
    }
    let _adding;
    let (image, config) = match &a.rootfs {
        Some(dir) => rootfs_source(dir, a)?,
        None => {
            _adding = husk_image::store::Store::open(root)?.adding()?;
            let image = image(root, a, progress)?;
            let store = husk_image::store::Store::open(root)?;
            let config_digest = Digest::parse(&image.config)?;
            let config: ImageConfig = serde_json::from_reader(store.open_blob(&config_digest)?)
                .context("the image config is corrupt")?;
            (image, config)
        }
    };
    let image_health = config
        .config
        .get("Healthcheck")
        .and_then(|h| serde_json::from_value::<crate::options::Healthcheck>(h.clone()).ok());
    let healthcheck = a.health.resolve(image_health)?;
    let cdi = crate::cdi::requested(&a.cdi_devices, a.gpus.as_deref())?;
    let diff_ids: Vec<Digest> = image
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<husk_image::Result<_>>()?;

    if let Some(f) = a.cidfile.as_ref().filter(|f| f.exists()) {
        return Err(Error::Invalid(format!(
            "container ID file found, make sure the other container isn't running or delete {}",
            f.display()
        )));
    }
    let id = store::random_id()?;
    on_id(&id);
    let mut name = match &a.name {
        Some(n) => n.clone(),
        None => store::generated_name(root, &id),
    };
    let stop_signal = a
        .stop_signal
        .clone()
        .or_else(|| {
            config.config["StopSignal"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "SIGTERM".into());
    husk_runtime::util::parse_signal(&stop_signal)
        .ok_or_else(|| Error::Invalid(format!("invalid stop signal {stop_signal:?}")))?;
    let labels = a.labels.clone();
    // The directory first: a name whose container has no directory counts as stale.
    let dir = store::dir(root, &id);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut claimed = store::claim_name(root, &name, &id);
    // A generated name another husk took meanwhile: the next free one.
    for _ in 0..16 {
        if a.name.is_some() || !matches!(claimed, Err(Error::Conflict(_))) {
            break;
        }
        name = store::generated_name(root, &id);
        claimed = store::claim_name(root, &name, &id);
    }
    if let Err(e) = claimed {
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    // `--userns auto`: the block of ids is claimed for this id, then used as --uidmap's.
    let with_auto_maps;
    let a = match a.userns {
        crate::options::Userns::Auto { size } => match crate::userns::claim(root, &id, size) {
            Ok(m) => {
                with_auto_maps = RunOptions {
                    id_maps: Some(m),
                    ..a.clone()
                };
                &with_auto_maps
            }
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                store::release_name(root, &name, &id);
                return Err(e);
            }
        },
        _ => {
            if let Some(m) = &a.id_maps {
                if let Err(e) = crate::userns::record(root, &id, m) {
                    let _ = fs::remove_dir(&dir);
                    store::release_name(root, &name, &id);
                    return Err(e);
                }
            }
            a
        }
    };
    let made = (|| -> Result<()> {
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        match &a.id_maps {
            // The runtime reaches the rootfs through a descriptor of this directory, opened
            // before it becomes the container's root (the store above is the user's alone):
            // the container's root must only search it.
            Some(_) if crate::rootless::is_rootless() => {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))
                    .with_context(|| format!("cannot chmod {}", dir.display()))?;
            }
            Some(m) => {
                let (uid, gid) = (IdMaps::host_of(&m.uid, 0), IdMaps::host_of(&m.gid, 0));
                reachable_by(&rootfs, uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX))?;
            }
            None => {}
        }
        layers::mount_root(
            root,
            &dir,
            &diff_ids,
            a.rootfs.as_deref(),
            a.auto_remove,
            a.id_maps.as_ref(),
        )?;
        let image_volumes: Vec<String> = config.config["Volumes"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mounts = with_volumes_from(root, a)?;
        let volumes = volumes::resolve(root, &mounts, &image_volumes, &rootfs)?;
        if let Some(m) = &a.id_maps {
            give_new_volumes_to_root(&volumes.records, m);
        }
        let anonymous = volumes.anonymous.clone();
        let rest = record_container(
            root,
            a,
            &config,
            &rootfs,
            &id,
            &name,
            &image,
            labels,
            stop_signal,
            volumes,
            network,
            log,
            healthcheck,
            &cdi,
        );
        if rest.is_err() {
            for v in &anonymous {
                let _ = volumes::remove(root, v, true);
            }
        }
        rest
    })();

    if let Err(e) = made {
        if let Ok(c) = Container::load(root, &id) {
            for v in &c.anonymous_volumes {
                let _ = volumes::remove(root, v, true);
            }
            layers::unmount_rootfs(root, &id);
        } else if husk_sys::is_mount_point(&dir.join("rootfs")) {
            // No record yet to say which layers: we know them.
            let _ = husk_image::snapshot::unmount(&dir.join("rootfs"));
            layers::release_layers(root, &diff_ids);
        }
        let _ = fs::remove_dir_all(&dir);
        store::release_name(root, &name, &id);
        crate::userns::release(root, &id);
        return Err(e);
    }
    if let Some(f) = &a.cidfile {
        fs::write(f, &id)
            .with_context(|| format!("cannot write the container ID file {}", f.display()))?;
    }
    Ok(id)
}

/// `--volumes-from`: the mounts of other containers, on the same paths, after the
/// container's own (which win where both name a path).
fn with_volumes_from(root: &Path, a: &RunOptions) -> Result<Vec<crate::options::Mount>> {
    use crate::options::Mount;
    let mut mounts = a.mounts.clone();
    let target = |m: &Mount| match m {
        Mount::Bind { target, .. } | Mount::Volume { target, .. } | Mount::Tmpfs { target, .. } => {
            target.clone()
        }
    };
    for spec in &a.volumes_from {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
            _ => (spec.as_str(), None),
        };
        let other = store::find(root, name)?;
        for r in &other.mounts {
            if mounts.iter().any(|m| target(m) == r.destination) {
                continue;
            }
            let readonly = match mode {
                Some(m) => m == "ro",
                None => !r.rw,
            };
            mounts.push(if r.kind == "volume" {
                Mount::Volume {
                    name: Some(r.name.clone()),
                    target: r.destination.clone(),
                    readonly,
                }
            } else {
                Mount::Bind {
                    source: r.source.clone().into(),
                    target: r.destination.clone(),
                    readonly,
                    create: false,
                }
            });
        }
    }
    Ok(mounts)
}

/// `--ipc`, `--pid`, `--uts`: the host's namespace (left out of the spec) or a running
/// container's (joined by path).
fn share_namespaces(root: &Path, a: &RunOptions, spec: &mut serde_json::Value) -> Result<()> {
    use crate::options::NamespaceMode;
    for (kind, mode) in [("ipc", &a.ipc), ("pid", &a.pid), ("uts", &a.uts)] {
        let Some(list) = spec["linux"]["namespaces"].as_array_mut() else {
            continue;
        };
        match mode {
            NamespaceMode::Private => {}
            NamespaceMode::Host => {
                list.retain(|n| n["type"] != kind);
                if kind == "uts" {
                    // The host's name stays the host's.
                    if let Some(o) = spec.as_object_mut() {
                        o.remove("hostname");
                    }
                }
            }
            NamespaceMode::Container(name) => {
                let other = store::find(root, name)?;
                let st = other.observed();
                if st.status != crate::store::Status::Running || st.pid <= 0 {
                    return Err(Error::Conflict(format!(
                        "cannot join the {kind} namespace of container {name}: it is not running"
                    )));
                }
                for n in list.iter_mut().filter(|n| n["type"] == kind) {
                    n["path"] = serde_json::json!(format!("/proc/{}/ns/{kind}", st.pid));
                }
            }
        }
    }
    Ok(())
}

/// The OCI spec and the record of a container whose root and volumes are ready.
#[allow(clippy::too_many_arguments)]
fn record_container(
    root: &Path,
    a: &RunOptions,
    config: &ImageConfig,
    rootfs: &Path,
    id: &str,
    name: &str,
    image: &ImageRecord,
    labels: std::collections::BTreeMap<String, String>,
    stop_signal: String,
    volumes: volumes::Resolved,
    network: String,
    log_config: LogConfig,
    healthcheck: Option<crate::options::Healthcheck>,
    cdi: &[crate::cdi::Edits],
) -> Result<()> {
    let dir = store::dir(root, id);
    let net = match network.as_str() {
        "none" => NetNs::Own,
        "host" => NetNs::Host,
        _ => NetNs::Path(store::netns_path(root, id)),
    };
    let taken: Vec<String> = volumes
        .spec
        .iter()
        .filter_map(|m| m["destination"].as_str().map(str::to_string))
        .collect();
    let mut mounts = volumes.spec.clone();
    if a.userns == crate::options::Userns::KeepId {
        keep_id(&mut mounts, &volumes.records);
    }
    mounts.extend(crate::etc_files::mounts(&dir, &taken));
    let mut spec = spec::spec(a, config, rootfs, id, &mounts, &net)?;
    if let Some(m) = &a.id_maps {
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({"type": "user"}));
        }
        spec["linux"]["uidMappings"] = IdMaps::spec(&m.uid);
        spec["linux"]["gidMappings"] = IdMaps::spec(&m.gid);
    }
    if crate::rootless::is_rootless() {
        crate::rootless::place_cgroup(&mut spec, id)?;
    }
    crate::cdi::apply(cdi, &mut spec)?;
    share_namespaces(root, a, &mut spec)?;
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)
        .context("cannot write the container's config")?;
    let process = &spec["process"];
    let args = spec::strings(&process["args"]);
    let c = Container {
        id: id.to_string(),
        name: name.to_string(),
        image: match &a.rootfs {
            Some(d) => d.display().to_string(),
            None => a.image.clone(),
        },
        image_id: image.config.clone(),
        rootfs_dir: a.rootfs.clone(),
        id_maps: a.id_maps.clone(),
        created: crate::time::now(),
        path: args.first().cloned().unwrap_or_default(),
        args: args.iter().skip(1).cloned().collect(),
        env: spec::strings(&process["env"]),
        working_dir: process["cwd"].as_str().unwrap_or("/").into(),
        user: a.user.clone().unwrap_or_default(),
        hostname: spec["hostname"].as_str().unwrap_or("").into(),
        labels,
        auto_remove: a.auto_remove,
        tty: a.tty,
        interactive: a.interactive,
        stop_signal,
        stop_timeout: a.stop_timeout.unwrap_or(10),
        timeout: a.timeout,
        die_with_parent: a.die_with_parent.unwrap_or(false),
        sample_usage: a.report,
        network,
        extra_networks: Vec::new(),
        ports: published(a, config)?,
        network_aliases: a.network_aliases.clone(),
        add_hosts: a.add_hosts.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_options.clone(),
        mounts: volumes.records,
        log_config,
        healthcheck,
        restart_policy: a.restart.clone(),
        anonymous_volumes: volumes.anonymous,
        diff_ids: image.diff_ids.clone(),
        // Until a monitor takes over, this husk holds the container (prune leaves it be).
        state: store::State {
            monitor_pid: std::process::id() as i32,
            monitor_start: husk_runtime::util::process_start_time(std::process::id() as i32)
                .unwrap_or(0),
            ..Default::default()
        },
    };
    networking::write_etc_files(root, &c)?;
    c.save(root)?;
    crate::events::emit(root, "container", "create", id, &c.event_attributes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_all_adds_what_the_image_exposes_and_p_does_not_name() {
        let config: ImageConfig = serde_json::from_value(serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "x/tcp": {}}},
        }))
        .unwrap();
        let mut a = RunOptions {
            publish: crate::options::parse_publish("8080:80").unwrap(),
            ..Default::default()
        };
        assert_eq!(published(&a, &config).unwrap().len(), 1);
        a.publish_all = true;
        let ports = published(&a, &config).unwrap();
        assert_eq!(ports.len(), 2, "{ports:?}");
        assert_eq!(ports[0].host_port, Some(8080), "-p wins for 80/tcp");
        assert_eq!(
            (
                ports[1].container_port,
                ports[1].protocol,
                ports[1].host_port
            ),
            (53, Protocol::Udp, None)
        );
    }
}
