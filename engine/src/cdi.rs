//! CDI, the Container Device Interface: devices named `vendor.com/class=name` (`--device
//! nvidia.com/gpu=0`, and `--gpus`, which names `nvidia.com/gpu` devices) are what the specs
//! in `/etc/cdi` and `/var/run/cdi` (JSON or YAML, as `nvidia-ctk cdi generate` writes them)
//! say to add to the container: device nodes, environment, mounts, hooks, groups.
//! `$HUSK_CDI_SPEC_DIRS` (colon-separated) replaces the two directories.
//!
//! A name no spec has, or a spec that does not parse, is a one-line error naming it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{invalid, Error, Result};
use crate::json::array;

const SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];
/// The kind `--gpus` asks for.
pub const GPU_KIND: &str = "nvidia.com/gpu";

#[derive(Debug, Clone, Deserialize)]
struct Spec {
    kind: String,
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(default, rename = "containerEdits")]
    container_edits: Edits,
    #[serde(skip)]
    file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
struct Device {
    name: String,
    #[serde(default, rename = "containerEdits")]
    container_edits: Edits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
    #[serde(default)]
    hooks: Vec<Hook>,
    #[serde(default, rename = "additionalGIDs")]
    additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceNode {
    path: String,
    host_path: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    major: Option<u64>,
    minor: Option<u64>,
    file_mode: Option<u32>,
    permissions: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hook {
    hook_name: String,
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    timeout: Option<i64>,
}

/// Every spec of the host, by kind.
pub struct Registry {
    specs: Vec<Spec>,
    dirs: Vec<PathBuf>,
}

impl Registry {
    pub fn load() -> Result<Registry> {
        let dirs: Vec<PathBuf> = match std::env::var("HUSK_CDI_SPEC_DIRS") {
            Ok(v) => v
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
            Err(_) => SPEC_DIRS.iter().map(PathBuf::from).collect(),
        };
        let mut specs = Vec::new();
        for dir in &dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !["json", "yaml", "yml"].contains(&ext) {
                    continue;
                }
                specs.push(read_spec(&f, ext)?);
            }
        }
        Ok(Registry { specs, dirs })
    }

    fn where_looked(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The device names of `kind`, sorted, without the `all` a generator adds.
    pub fn names(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .specs
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| s.devices.iter().map(|d| d.name.clone()))
            .filter(|n| n != "all")
            .collect();
        names.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        names.dedup();
        names
    }

    /// What the fully-qualified devices `names` (`vendor.com/class=name`) add, in order: the
    /// edits of each spec used once, then each device's.
    pub fn edits(&self, names: &[String]) -> Result<Vec<Edits>> {
        let mut out = Vec::new();
        let mut specs_used: Vec<&Path> = Vec::new();
        for full in names {
            let Some((kind, name)) = full.split_once('=') else {
                invalid!("invalid CDI device {full:?}: use vendor.com/class=name");
            };
            let found = self.specs.iter().find_map(|s| {
                (s.kind == kind)
                    .then(|| s.devices.iter().find(|d| d.name == name).map(|d| (s, d)))
                    .flatten()
            });
            let Some((spec, device)) = found else {
                if self.specs.iter().any(|s| s.kind == kind) {
                    invalid!(
                        "unknown CDI device {full:?}: the specs of {kind} have {}",
                        self.names(kind).join(", ")
                    );
                }
                invalid!(
                    "unknown CDI device {full:?}: no CDI spec in {} is of kind {kind}",
                    self.where_looked()
                );
            };
            if !specs_used.contains(&spec.file.as_path()) {
                specs_used.push(&spec.file);
                out.push(spec.container_edits.clone());
            }
            out.push(device.container_edits.clone());
        }
        Ok(out)
    }

    /// `--gpus all|N|device=ID[,ID…]` as the `nvidia.com/gpu` devices it names.
    pub fn gpus(&self, request: &str) -> Result<Vec<String>> {
        let available = self.names(GPU_KIND);
        if available.is_empty() {
            invalid!(
                "--gpus {request}: no CDI spec in {} has {GPU_KIND} devices (`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` makes one)",
                self.where_looked()
            );
        }
        let request = request.trim_matches('"');
        // A spec names each GPU by index, and often by UUID and MIG slice (`0:1`) too:
        // counting and `all` go by the index names.
        let indexes: Vec<String> = available
            .iter()
            .filter(|n| n.parse::<u64>().is_ok())
            .cloned()
            .collect();
        let has_all = self
            .specs
            .iter()
            .any(|s| s.kind == GPU_KIND && s.devices.iter().any(|d| d.name == "all"));
        let names: Vec<String> = if request == "all" {
            if has_all {
                vec!["all".into()]
            } else if indexes.is_empty() {
                available
            } else {
                indexes
            }
        } else if let Ok(n) = request.parse::<usize>() {
            if n == 0 || n > indexes.len() {
                invalid!(
                    "--gpus {request}: there are {} GPUs ({})",
                    indexes.len(),
                    indexes.join(", ")
                );
            }
            indexes.into_iter().take(n).collect()
        } else if let Some(list) = request.strip_prefix("device=") {
            list.split(',').map(|d| d.trim().to_string()).collect()
        } else {
            invalid!("invalid --gpus {request:?}: use all, a count, or device=ID[,ID…]");
        };
        Ok(names
            .into_iter()
            .map(|n| format!("{GPU_KIND}={n}"))
            .collect())
    }
}

fn read_spec(file: &Path, ext: &str) -> Result<Spec> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Invalid(format!("cannot read the CDI spec {}: {e}", file.display())))?;
    let parsed: std::result::Result<Spec, String> = if ext == "json" {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str(&text).map_err(|e| e.to_string())
    };
    let mut spec = parsed.map_err(|e| {
        Error::Invalid(format!("the CDI spec {} is malformed: {e}", file.display()))
    })?;
    if !spec.kind.contains('/') {
        invalid!(
            "the CDI spec {} is malformed: kind {:?} is not vendor.com/class",
            file.display(),
            spec.kind
        );
    }
    spec.file = file.to_path_buf();
    Ok(spec)
}

/// Apply `edits` to the OCI spec `s` (its process, devices, cgroup rules, mounts, hooks).
pub fn apply(edits: &[Edits], s: &mut Value) -> Result<()> {
    for e in edits {
        for kv in &e.env {
            let name = kv.split('=').next().unwrap_or(kv);
            let env = array(&mut s["process"]["env"]);
            env.retain(|x| {
                x.as_str().and_then(|x| x.split_once('=')).map(|(n, _)| n) != Some(name)
            });
            env.push(json!(kv));
        }
        for n in &e.device_nodes {
            let (node, rule) = device_node(n)?;
            array(&mut s["linux"]["devices"]).push(node);
            array(&mut s["linux"]["resources"]["devices"]).push(rule);
        }
        for m in &e.mounts {
            let mut options = m.options.clone();
            if options.is_empty() {
                options = vec!["rbind".into(), "rprivate".into()];
            }
            array(&mut s["mounts"]).push(json!({
                "destination": m.container_path, "source": m.host_path,
                "type": m.kind.clone().unwrap_or_else(|| "bind".into()), "options": options,
            }));
        }
        for h in &e.hooks {
            const NAMES: [&str; 6] = [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop",
            ];
            if !NAMES.contains(&h.hook_name.as_str()) {
                invalid!(
                    "a CDI hook of unknown kind {:?} (at {})",
                    h.hook_name,
                    h.path
                );
            }
            let mut hook = json!({"path": h.path, "args": h.args, "env": h.env});
            if let Some(t) = h.timeout {
                hook["timeout"] = json!(t);
            }
            array(&mut s["hooks"][h.hook_name.as_str()]).push(hook);
        }
        for g in &e.additional_gids {
            array(&mut s["process"]["user"]["additionalGids"]).push(json!(g));
        }
    }
    Ok(())
}

/// A CDI device node as the OCI spec's device and its cgroup rule; what the spec leaves out
/// is read from the host's node.
fn device_node(n: &DeviceNode) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let host = n.host_path.clone().unwrap_or_else(|| n.path.clone());
    let md = std::fs::metadata(&host).ok();
    let from_host = || -> Result<(String, u64, u64, u32)> {
        let Some(md) = &md else {
            invalid!("the CDI device node {host} is not on this host");
        };
        let kind = if md.file_type().is_char_device() {
            "c"
        } else if md.file_type().is_block_device() {
            "b"
        } else {
            invalid!("the CDI device node {host} is not a device");
        };
        Ok((
            kind.into(),
            u64::from(libc::major(md.rdev())),
            u64::from(libc::minor(md.rdev())),
            md.mode() & 0o777,
        ))
    };
    let (kind, major, minor, mode) = match (&n.kind, n.major, n.minor) {
        (Some(k), Some(ma), Some(mi)) => (k.clone(), ma, mi, n.file_mode.unwrap_or(0o666)),
        _ => from_host()?,
    };
    let node = json!({
        "path": n.path, "type": kind, "major": major, "minor": minor,
        "fileMode": n.file_mode.unwrap_or(mode), "uid": n.uid.unwrap_or(0), "gid": n.gid.unwrap_or(0),
    });
    let rule = json!({
        "allow": true, "type": kind, "major": major, "minor": minor,
        "access": n.permissions.clone().unwrap_or_else(|| "rwm".into()),
    });
    Ok((node, rule))
}

/// `--device` arguments that name CDI devices (`vendor.com/class=name`), not host paths.
pub fn is_cdi_name(s: &str) -> bool {
    match s.split_once('=') {
        Some((kind, name)) => {
            !s.starts_with('/') && kind.contains('/') && !name.is_empty() && !name.contains('/')
        }
        None => false,
    }
}

/// The devices a run asked for, as edits: its `--device` CDI names and `--gpus`.
pub fn requested(devices: &[String], gpus: Option<&str>) -> Result<Vec<Edits>> {
    if devices.is_empty() && gpus.is_none() {
        return Ok(Vec::new());
    }
    let registry = Registry::load()?;
    let mut names = devices.to_vec();
    if let Some(g) = gpus {
        names.extend(registry.gpus(g)?);
    }
    registry.edits(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_from_paths() {
        assert!(is_cdi_name("nvidia.com/gpu=0"));
        assert!(is_cdi_name("example.com/dev=all"));
        assert!(!is_cdi_name("/dev/fuse"));
        assert!(!is_cdi_name("/dev/a=b"));
        assert!(!is_cdi_name("gpu=0"));
        assert!(!is_cdi_name("nvidia.com/gpu="));
    }
}
