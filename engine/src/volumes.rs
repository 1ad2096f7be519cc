//! Volumes: named ones under `<root>/volumes/<name>/_data`, anonymous ones made for an image's
//! `Volumes` (or a bare `-v /path`), filled on first use with what the image has at the
//! mount point, as docker does; and the container's mounts resolved from `options::Mount`s.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{bail, failed, invalid, Context, Error, Result};
use crate::options::{valid_volume_name as valid_name, Mount};
use crate::store::{self, MountRecord};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(rename = "Anonymous", default)]
    pub anonymous: bool,
}

fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

pub fn load(root: &Path, name: &str) -> Result<Volume> {
    if !valid_name(name) {
        return Err(Error::NoSuchVolume(name.into()));
    }
    let p = volumes_dir(root).join(name).join("volume.json");
    let data = fs::read(&p).map_err(|_| Error::NoSuchVolume(name.into()))?;
    serde_json::from_slice(&data).with_context(|| format!("{} is corrupt", p.display()))
}

/// Create a volume; Ok(false) when one of that name exists already.
pub fn create(
    root: &Path,
    name: &str,
    labels: BTreeMap<String, String>,
    anonymous: bool,
) -> Result<bool> {
    if !valid_name(name) {
        invalid!("invalid volume name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+");
    }
    let dir = volumes_dir(root).join(name);
    fs::create_dir_all(volumes_dir(root))?;
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let data = dir.join("_data");
    fs::create_dir(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let v = Volume {
        name: name.into(),
        driver: "local".into(),
        mountpoint: data,
        created_at: crate::time::now(),
        labels,
        scope: "local".into(),
        anonymous,
    };
    husk_runtime::util::write_atomic(
        &dir.join("volume.json"),
        &serde_json::to_vec_pretty(&v)?,
        0o644,
    )
    .map_err(|e| failed!("cannot write volume {name}: {e}"))?;
    Ok(true)
}

pub fn list(root: &Path) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(volumes_dir(root)) {
        for e in rd.flatten() {
            if let Ok(v) = load(root, &e.file_name().to_string_lossy()) {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Containers whose mounts use volume `name`.
pub fn users(root: &Path, name: &str) -> Result<Vec<String>> {
    Ok(store::list(root)?
        .into_iter()
        .filter(|c| {
            c.mounts
                .iter()
                .any(|m| m.kind == "volume" && m.name == name)
        })
        .map(|c| c.name)
        .collect())
}

/// Remove a volume no container uses; `force` only makes a missing one no error (docker's
/// `volume rm -f`): a volume in use is never removed.
pub fn remove(root: &Path, name: &str, force: bool) -> Result<()> {
    if let Err(e) = load(root, name) {
        return if force { Ok(()) } else { Err(e) };
    }
    let used = users(root, name)?;
    if !used.is_empty() {
        return Err(Error::Conflict(format!(
            "volume {name} is in use by container {}",
            used.join(", ")
        )));
    }
    let dir = volumes_dir(root).join(name);
    fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Fill an empty volume with what the image has at `target`, resolved inside the image's
/// root so a symlink in the image cannot point the copy at the host.
fn copy_up(rootfs: &Path, target: &str, data: &Path) -> Result<()> {
    if fs::read_dir(data)
        .map(|mut d| d.next().is_some())
        .unwrap_or(true)
    {
        return Ok(());
    }
    let root =
        fs::File::open(rootfs).with_context(|| format!("cannot open {}", rootfs.display()))?;
    let src = match husk_sys::open_in_root(
        std::os::fd::AsRawFd::as_raw_fd(&root),
        Path::new(target),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    ) {
        Ok(fd) => fd,
        Err(_) => return Ok(()), // nothing there in the image
    };
    // cp reaches the resolved directory through our fd table (the fd is close-on-exec).
    let from = format!(
        "/proc/{}/fd/{}/.",
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&src)
    );
    let out = std::process::Command::new("cp")
        .args(["-a", "--no-dereference", &from])
        .arg(data)
        .output()
        .context("cannot run cp to fill a volume")?;
    if !out.status.success() {
        bail!(
            "cannot copy the image's {target} into its volume: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The mounts a `run` asks for, as OCI spec mounts plus what `inspect` shows.
#[derive(Default)]
pub struct Resolved {
    pub spec: Vec<Value>,
    pub records: Vec<MountRecord>,
    pub anonymous: Vec<String>,
}

impl Resolved {
    fn bind(
        &mut self,
        kind: &str,
        name: &str,
        source: &Path,
        target: &str,
        ro: bool,
    ) -> Result<()> {
        if !target.starts_with('/') {
            invalid!("invalid mount target {target:?}: must be an absolute path");
        }
        if self.records.iter().any(|r| r.destination == target) {
            invalid!("duplicate mount point: {target}");
        }
        let mut opts = vec!["rbind", "rprivate"];
        if ro {
            opts.push("ro");
        }
        self.spec.push(
            json!({"destination": target, "type": "bind", "source": source, "options": opts}),
        );
        self.records.push(MountRecord {
            kind: kind.into(),
            name: name.into(),
            source: source.display().to_string(),
            destination: target.into(),
            rw: !ro,
        });
        Ok(())
    }

    fn volume(
        &mut self,
        root: &Path,
        rootfs: &Path,
        name: &str,
        target: &str,
        ro: bool,
    ) -> Result<()> {
        create(root, name, BTreeMap::new(), false)?;
        let v = load(root, name)?;
        copy_up(rootfs, target, &v.mountpoint)?;
        self.bind("volume", name, &v.mountpoint, target, ro)
    }

    fn anonymous(&mut self, root: &Path, rootfs: &Path, target: &str) -> Result<()> {
        if !target.starts_with('/') {
            invalid!("invalid volume target {target:?}: must be an absolute path");
        }
        let name = store::random_id()?;
        create(root, &name, BTreeMap::new(), true)?;
        self.anonymous.push(name.clone());
        let v = load(root, &name)?;
        copy_up(rootfs, target, &v.mountpoint)?;
        self.bind("volume", &name, &v.mountpoint, target, false)
    }

    fn tmpfs(&mut self, target: &str, options: &[String]) -> Result<()> {
        if !target.starts_with('/') {
            invalid!("invalid tmpfs target {target:?}: must be an absolute path");
        }
        let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        opts.extend(options.iter().cloned());
        self.spec.push(
            json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts}),
        );
        self.records.push(MountRecord {
            kind: "tmpfs".into(),
            name: String::new(),
            source: String::new(),
            destination: target.into(),
            rw: !options.iter().any(|o| o == "ro"),
        });
        Ok(())
    }
}

/// `-v`, `--mount`, `--tmpfs` and the image's `Volumes`, against the container's mounted root.
/// The container's mounts: `mounts` in order, then an anonymous volume for each of the image's
/// `Volumes` nothing else covers. On failure the anonymous volumes made so far go.
pub fn resolve(
    root: &Path,
    mounts: &[Mount],
    image_volumes: &[String],
    rootfs: &Path,
) -> Result<Resolved> {
    let mut r = Resolved::default();
    if let Err(e) = r.add_all(root, mounts, image_volumes, rootfs) {
        for v in &r.anonymous {
            let _ = remove(root, v, true);
        }
        return Err(e);
    }
    Ok(r)
}

impl Resolved {
    fn add_all(
        &mut self,
        root: &Path,
        mounts: &[Mount],
        image_volumes: &[String],
        rootfs: &Path,
    ) -> Result<()> {
        for m in mounts {
            match m {
                Mount::Bind {
                    source,
                    target,
                    readonly,
                    create,
                } => {
                    if !source.exists() {
                        if !create {
                            invalid!(
                                "invalid mount {target:?}: bind source path does not exist: {}",
                                source.display()
                            );
                        }
                        fs::create_dir_all(source)
                            .with_context(|| format!("cannot create {}", source.display()))?;
                    }
                    self.bind("bind", "", source, target, *readonly)?
                }
                Mount::Volume {
                    name: Some(name),
                    target,
                    readonly,
                } => self.volume(root, rootfs, name, target, *readonly)?,
                Mount::Volume {
                    name: None, target, ..
                } => self.anonymous(root, rootfs, target)?,
                Mount::Tmpfs { target, options } => self.tmpfs(target, options)?,
            }
        }
        for v in image_volumes {
            if !self.records.iter().any(|m| m.destination == *v) {
                self.anonymous(root, rootfs, v)?;
            }
        }
        Ok(())
    }
}
