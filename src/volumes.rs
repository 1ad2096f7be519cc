//! Volumes: named ones under `<root>/volumes/<name>/_data`, anonymous ones made for an image's
//! `Volumes` (or a bare `-v /path`), filled on first use with what the image has at the
//! mount point, as docker does. Also the parsing of `-v`, `--mount` and `--tmpfs`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use husk_cli::husk::RunArgs;

use crate::containers::{self, MountRecord};

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

pub fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub fn load(root: &Path, name: &str) -> Result<Volume> {
    if !valid_name(name) {
        bail!("no such volume: {name}");
    }
    let p = volumes_dir(root).join(name).join("volume.json");
    let data = fs::read(&p).map_err(|_| anyhow!("no such volume: {name}"))?;
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
        bail!("invalid volume name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+");
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
        created_at: crate::timefmt::now(),
        labels,
        scope: "local".into(),
        anonymous,
    };
    husk_runtime::util::write_atomic(
        &dir.join("volume.json"),
        &serde_json::to_vec_pretty(&v)?,
        0o644,
    )
    .map_err(|e| anyhow!("cannot write volume {name}: {e}"))?;
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
    Ok(containers::list(root)?
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
        bail!("volume {name} is in use by container {}", used.join(", "));
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
            bail!("invalid mount target {target:?}: must be an absolute path");
        }
        if self.records.iter().any(|r| r.destination == target) {
            bail!("duplicate mount point: {target}");
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
            bail!("invalid volume target {target:?}: must be an absolute path");
        }
        let name = crate::run::random_id()?;
        create(root, &name, BTreeMap::new(), true)?;
        self.anonymous.push(name.clone());
        let v = load(root, &name)?;
        copy_up(rootfs, target, &v.mountpoint)?;
        self.bind("volume", &name, &v.mountpoint, target, false)
    }

    fn tmpfs(&mut self, target: &str, options: &[String]) -> Result<()> {
        if !target.starts_with('/') {
            bail!("invalid tmpfs target {target:?}: must be an absolute path");
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
pub fn resolve(
    root: &Path,
    a: &RunArgs,
    image_volumes: &[String],
    rootfs: &Path,
) -> Result<Resolved> {
    let mut r = Resolved::default();
    if let Err(e) = r.add_all(root, a, image_volumes, rootfs) {
        // Anonymous volumes made before the failure belong to no container: remove them.
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
        a: &RunArgs,
        image_volumes: &[String],
        rootfs: &Path,
    ) -> Result<()> {
        let (volume, mount, tmpfs) = (&a.volume, &a.mount, &a.tmpfs);
        let r = self;
        for v in volume {
            let parts: Vec<&str> = v.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [d] => (None, *d, ""),
                [s, d] => (Some(*s), *d, ""),
                [s, d, m] => (Some(*s), *d, *m),
                _ => bail!(
                "invalid volume {v:?}: use SOURCE:TARGET[:ro], or TARGET for an anonymous volume"
            ),
            };
            let ro = match mode {
                "" | "rw" => false,
                "ro" => true,
                m => bail!("invalid volume {v:?}: unknown mode {m:?} (ro or rw)"),
            };
            match src {
                None => r.anonymous(root, rootfs, dst)?,
                Some(s) if s.starts_with('/') => {
                    // docker -v makes a missing host directory; --mount does not.
                    if !Path::new(s).exists() {
                        fs::create_dir_all(s).with_context(|| format!("cannot create {s}"))?;
                    }
                    r.bind("bind", "", Path::new(s), dst, ro)?
                }
                Some(s) => {
                    if !valid_name(s) {
                        bail!(
                        "invalid volume {v:?}: {s:?} is neither an absolute path nor a volume name"
                    );
                    }
                    r.volume(root, rootfs, s, dst, ro)?
                }
            }
        }
        for m in mount {
            let mut kind = "volume";
            let (mut src, mut dst, mut ro) = (None, None, false);
            let mut tmpfs_opts = Vec::new();
            for kv in m.split(',') {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k {
                    "type" => {
                        kind = match v {
                            "bind" => "bind",
                            "volume" => "volume",
                            "tmpfs" => "tmpfs",
                            _ => bail!("invalid --mount {m:?}: type must be bind, volume or tmpfs"),
                        }
                    }
                    "source" | "src" => src = Some(v.to_string()),
                    "target" | "destination" | "dst" => dst = Some(v.to_string()),
                    "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
                    "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
                    "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
                    _ => bail!("invalid --mount {m:?}: unknown option {k:?}"),
                }
            }
            let dst = dst.ok_or_else(|| anyhow!("invalid --mount {m:?}: target is required"))?;
            match (kind, src) {
                ("bind", Some(s)) => {
                    if !Path::new(&s).exists() {
                        bail!("invalid --mount {m:?}: bind source path does not exist: {s}");
                    }
                    r.bind("bind", "", Path::new(&s), &dst, ro)?
                }
                ("bind", None) => bail!("invalid --mount {m:?}: a bind mount needs a source"),
                ("volume", Some(s)) => r.volume(root, rootfs, &s, &dst, ro)?,
                ("volume", None) => r.anonymous(root, rootfs, &dst)?,
                (_, _) => {
                    if ro {
                        tmpfs_opts.push("ro".into());
                    }
                    r.tmpfs(&dst, &tmpfs_opts)?
                }
            }
        }
        for t in tmpfs {
            let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
            let opts: Vec<String> = opts
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect();
            r.tmpfs(dst, &opts)?;
        }
        for v in image_volumes {
            if !r.records.iter().any(|m| m.destination == *v) {
                r.anonymous(root, rootfs, v)?;
            }
        }
        Ok(())
    }
}
