//! Loading and validating a bundle's config.json before anything is created, so a bad config is
//! refused with one line naming the field, and nothing is left behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data =
        fs::read(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let spec: Spec = serde_json::from_slice(&data)
        .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?;
    validate(&spec)?;
    Ok(spec)
}

/// The absolute path of the container's root filesystem (relative paths are relative to the
/// bundle), checked to exist and be a directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("root is missing".into()))?;
    let path = bundle.join(root.path());
    let path = fs::canonicalize(&path)
        .map_err(|e| Error::io(format!("rootfs {} is not usable", path.display()), e))?;
    if !path.is_dir() {
        return Err(Error::InvalidConfig(format!(
            "root.path {} is not a directory",
            path.display()
        )));
    }
    Ok(path)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidConfig(msg.into())
}

pub fn validate(spec: &Spec) -> Result<()> {
    if spec.version().is_empty() {
        return Err(invalid("ociVersion is missing"));
    }
    if !spec.version().starts_with("1.") {
        return Err(invalid(format!(
            "ociVersion {} is not supported (1.x is)",
            spec.version()
        )));
    }
    if spec.root().is_none() {
        return Err(invalid("root is missing"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process is missing"))?;
    validate_process(process)?;
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(invalid(format!(
                "mount destination {} is not absolute",
                m.destination().display()
            )));
        }
    }
    let Some(linux) = spec.linux() else {
        return Err(invalid(
            "linux is missing: husk-runtime runs Linux containers only",
        ));
    };
    let mut seen = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(format!("namespace {} is listed twice", ns.typ())));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(invalid(format!(
                    "namespace {} path {} is not absolute",
                    ns.typ(),
                    p.display()
                )));
            }
        }
    }
    let new_user_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user_ns && !has_maps {
        return Err(invalid(
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        ));
    }
    if !new_user_ns
        && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
    {
        return Err(invalid(
            "uidMappings/gidMappings are given but no new user namespace is",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !seen.contains(&LinuxNamespaceType::Uts)
    {
        return Err(invalid("hostname is set but there is no uts namespace"));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
    {
        return Err(invalid("linux.timeOffsets needs a new time namespace"));
    }
    validate_sysctl(linux)?;
    for dev in linux.devices().iter().flatten() {
        if !dev.path().starts_with("/dev/") {
            return Err(invalid(format!(
                "device {} is not under /dev",
                dev.path().display()
            )));
        }
    }
    Ok(())
}

/// A sysctl is only written when a namespace of the container isolates it: otherwise the write
/// would change the host (runc refuses the same way).
fn validate_sysctl(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let new_ns = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    for key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        if key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..") {
            return Err(invalid(format!("sysctl {key:?} is not a sysctl name")));
        }
        let ok = if key.starts_with("net.") {
            new_ns(LinuxNamespaceType::Network)
        } else if matches!(
            key.as_str(),
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        ) || key.starts_with("fs.mqueue.")
        {
            new_ns(LinuxNamespaceType::Ipc)
        } else if matches!(key.as_str(), "kernel.hostname" | "kernel.domainname") {
            new_ns(LinuxNamespaceType::Uts)
        } else {
            false
        };
        if !ok {
            return Err(invalid(format!(
                "sysctl {key:?} is not isolated by any namespace of this container"
            )));
        }
    }
    Ok(())
}

pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(invalid("process.args must name a program")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        )));
    }
    for e in process.env().iter().flatten() {
        if !e.contains('=') {
            return Err(invalid(format!("process.env entry {e:?} has no '='")));
        }
    }
    for r in process.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(invalid(format!(
                "rlimit {:?}: soft {} is above hard {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
    }
    Ok(())
}

/// What the fuzzer and the corpus test feed: config.json bytes from anyone. Parsing,
/// validation and the seccomp compiler may refuse them with an error, never panic.
pub fn check_untrusted(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    let _ = validate(&spec);
    if let Some(p) = spec.process() {
        let _ = validate_process(p);
    }
    if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        let _ = crate::seccomp::compile(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<Spec> {
        let s: Spec =
            serde_json::from_value(json).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        validate(&s)?;
        Ok(s)
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    #[test]
    fn a_minimal_config_is_valid() {
        spec(base()).expect("valid");
    }

    #[test]
    fn broken_configs_name_their_fault() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "process.args",
                Box::new(|v| v["process"]["args"] = serde_json::json!([])),
            ),
            ("cwd", Box::new(|v| v["process"]["cwd"] = "rel".into())),
            ("ociVersion", Box::new(|v| v["ociVersion"] = "".into())),
            (
                "twice",
                Box::new(|v| {
                    v["linux"]["namespaces"] =
                        serde_json::json!([{"type":"mount"},{"type":"pid"},{"type":"pid"}])
                }),
            ),
            (
                "uidMappings",
                Box::new(|v| {
                    v["linux"]["namespaces"] = serde_json::json!([{"type":"mount"},{"type":"user"}])
                }),
            ),
            ("hostname", Box::new(|v| v["hostname"] = "h".into())),
            (
                "destination",
                Box::new(|v| {
                    v["mounts"] = serde_json::json!([{"destination":"rel","type":"tmpfs"}])
                }),
            ),
            (
                "soft",
                Box::new(|v| {
                    v["process"]["rlimits"] =
                        serde_json::json!([{"type":"RLIMIT_NOFILE","soft":10,"hard":5}])
                }),
            ),
            (
                "=",
                Box::new(|v| v["process"]["env"] = serde_json::json!(["NOEQUALS"])),
            ),
            (
                "kernel.panic",
                Box::new(|v| v["linux"]["sysctl"] = serde_json::json!({"kernel.panic": "1"})),
            ),
            (
                "net.ipv4.ip_forward",
                Box::new(|v| {
                    v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"})
                }),
            ),
        ];
        for (needle, mutate) in cases {
            let mut v = base();
            mutate(&mut v);
            let err = spec(v).expect_err(needle).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn unknown_types_are_refused_by_the_parser() {
        let mut v = base();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "bogus"}]);
        assert!(spec(v).is_err());
        let mut v = base();
        v["process"]["capabilities"] = serde_json::json!({"bounding": ["CAP_NOPE"]});
        assert!(spec(v).is_err());
    }
}
