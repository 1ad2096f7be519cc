//! Loading and validating a bundle's config.json before anything is created, so a bad config is
//! refused with one line naming the field, and nothing is left behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// Load and validate `bundle/config.json`. The second value holds warnings: what the spec says
/// to accept with a warning (unknown capability names, relative mount destinations).
pub fn load(bundle: &Path) -> Result<(Spec, Vec<String>)> {
    let path = bundle.join("config.json");
    let data =
        fs::read(&path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mut raw: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?;
    let mut warnings = normalize(&mut raw);
    // `linux` is optional: absent, nothing is set, not even namespaces (the typed default
    // would bring a full set of them). An empty object says so.
    if let Some(obj) = raw.as_object_mut() {
        if !obj.contains_key("linux") {
            obj.insert("linux".into(), serde_json::json!({}));
            warnings.push("config.json has no linux object: the container shares every namespace with husk-runtime".into());
        }
    }
    let spec: Spec = serde_json::from_value(raw)
        .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?;
    validate(&spec)?;
    Ok((spec, warnings))
}

/// What the spec says a runtime accepts with a warning, made acceptable before the typed parse:
/// capability names this runtime does not know are dropped ("MUST be logged as a warning ...
/// SHOULD NOT fail"), and a relative mount destination is taken from "/" (deprecated, allowed).
fn normalize(raw: &mut serde_json::Value) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(caps) = raw
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for (set, names) in caps.iter_mut() {
            let Some(list) = names.as_array_mut() else {
                continue;
            };
            list.retain(|n| {
                let known = serde_json::from_value::<oci_spec::runtime::Capability>(n.clone())
                    .is_ok();
                if !known {
                    warnings.push(format!(
                        "capability {n} in process.capabilities.{set} is unknown to this runtime: ignored"
                    ));
                }
                known
            });
        }
    }
    if let Some(mounts) = raw.get_mut("mounts").and_then(|m| m.as_array_mut()) {
        for m in mounts {
            if let Some(dest) = m.get_mut("destination") {
                if let Some(d) = dest
                    .as_str()
                    .filter(|d| !d.is_empty() && !d.starts_with('/'))
                {
                    warnings.push(format!(
                        "mount destination {d:?} is relative: taken from / (deprecated in the spec)"
                    ));
                    *dest = format!("/{d}").into();
                }
            }
        }
    }
    warnings
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

/// `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, SemVer 2.0's shape.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !v.ends_with(['-', '+'])
}

pub fn validate(spec: &Spec) -> Result<()> {
    if spec.version().is_empty() {
        return Err(invalid("ociVersion is missing"));
    }
    if !is_semver(spec.version()) {
        return Err(invalid(format!(
            "ociVersion {:?} is not a SemVer version",
            spec.version()
        )));
    }
    if !spec.version().starts_with("1.") {
        return Err(invalid(format!(
            "ociVersion {} is not supported (1.x is)",
            spec.version()
        )));
    }
    if spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.keys().any(|k| k.is_empty()))
    {
        return Err(invalid("an annotation key is empty"));
    }
    validate_hooks(spec)?;
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
        crate::mounts::check_supported(m)?;
    }
    // `load` gives a config without `linux` an empty one (see there).
    let Some(linux) = spec.linux() else {
        return Ok(());
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
        // containerd and CRI-O send a joined user namespace's mappings along: fine when they
        // are that namespace's (runc accepts the same), an error when they differ.
        let joined = linux
            .namespaces()
            .iter()
            .flatten()
            .find(|n| n.typ() == LinuxNamespaceType::User)
            .and_then(|n| n.path().clone());
        match joined {
            Some(path) => check_joined_maps(&path, linux)?,
            None => {
                return Err(invalid(
                    "uidMappings/gidMappings are given but no user namespace is",
                ))
            }
        }
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
    // A device may be anywhere in the container's file system (the spec says so); it is
    // created inside the root like every other path.
    for dev in linux.devices().iter().flatten() {
        if !dev.path().is_absolute() {
            return Err(invalid(format!(
                "device path {} is not absolute",
                dev.path().display()
            )));
        }
    }
    for (what, paths) in [
        ("maskedPaths", linux.masked_paths()),
        ("readonlyPaths", linux.readonly_paths()),
    ] {
        if let Some(p) = paths.iter().flatten().find(|p| !p.starts_with('/')) {
            return Err(invalid(format!("linux.{what} entry {p:?} is not absolute")));
        }
    }
    Ok(())
}

/// Every hook's path is absolute and its timeout, when given, above zero.
fn validate_hooks(spec: &Spec) -> Result<()> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let all = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (kind, hooks) in all {
        for hook in hooks.iter().flatten() {
            if !hook.path().is_absolute() {
                return Err(invalid(format!(
                    "{kind} hook path {} is not absolute",
                    hook.path().display()
                )));
            }
            if let Some(t) = hook.timeout().filter(|t| *t <= 0) {
                return Err(invalid(format!(
                    "{kind} hook {} has timeout {t}: it must be above zero",
                    hook.path().display()
                )));
            }
        }
    }
    Ok(())
}

/// The mappings given with a joined user namespace must be the ones it has. Readable where the
/// path is a process's (`/proc/PID/ns/user`); any other path cannot be checked without joining.
fn check_joined_maps(path: &Path, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let pid_dir = path
        .to_str()
        .and_then(|p| p.strip_prefix("/proc/"))
        .and_then(|rest| rest.strip_suffix("/ns/user"))
        .filter(|pid| pid.parse::<u32>().is_ok())
        .ok_or_else(|| {
            invalid(format!(
                "uidMappings/gidMappings are given with the user namespace at {}: they can only be checked against /proc/PID/ns/user",
                path.display()
            ))
        })?;
    let read = |file: &str| -> Result<Vec<(u32, u32, u32)>> {
        let p = Path::new("/proc").join(pid_dir).join(file);
        let text = fs::read_to_string(&p)
            .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?;
        let mut maps: Vec<(u32, u32, u32)> = text
            .lines()
            .filter_map(|l| {
                let n: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect();
                (n.len() == 3).then(|| (n[0], n[1], n[2]))
            })
            .collect();
        maps.sort_unstable();
        Ok(maps)
    };
    let given = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        let mut v: Vec<(u32, u32, u32)> = maps
            .iter()
            .flatten()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect();
        v.sort_unstable();
        v
    };
    for (what, file, maps) in [
        ("uidMappings", "uid_map", linux.uid_mappings()),
        ("gidMappings", "gid_map", linux.gid_mappings()),
    ] {
        let want = given(maps);
        if !want.is_empty() && want != read(file)? {
            return Err(invalid(format!(
                "linux.{what} differ from those of the user namespace at {} being joined",
                path.display()
            )));
        }
    }
    Ok(())
}

/// A sysctl is only written when a namespace of the container isolates it: otherwise the write
/// would change the host (runc refuses the same way).
fn validate_sysctl(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let new_ns = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    for raw_key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        let key = &sysctl_dotted(raw_key);
        if key.split('.').any(|p| p.is_empty() || p == "..") || key.contains("/.") {
            return Err(invalid(format!("sysctl {raw_key:?} is not a sysctl name")));
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

/// A sysctl name in its dotted form. sysctl(8) also takes `/` as the separator, and then a
/// dot belongs to a name part (an interface `eth0.100`): the two forms swap `.` and `/`
/// (`net/ipv4/conf/eth0.100/rp_filter` is `net.ipv4.conf.eth0/100.rp_filter`), as runc reads them.
fn sysctl_dotted(key: &str) -> String {
    if key.contains('/') && key.split('/').next().is_some_and(|p| !p.contains('.')) {
        swap_dots_and_slashes(key)
    } else {
        key.to_string()
    }
}

fn swap_dots_and_slashes(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

/// The file under /proc/sys for a sysctl name in either form.
pub fn sysctl_file(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(swap_dots_and_slashes(&sysctl_dotted(key)))
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
    let mut types = HashSet::new();
    for r in process.rlimits().iter().flatten() {
        if !types.insert(format!("{:?}", r.typ())) {
            return Err(invalid(format!("rlimit {:?} is listed twice", r.typ())));
        }
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
                "listed twice",
                Box::new(|v| {
                    v["process"]["rlimits"] = serde_json::json!([
                        {"type":"RLIMIT_NOFILE","soft":1,"hard":1},
                        {"type":"RLIMIT_NOFILE","soft":2,"hard":2}
                    ])
                }),
            ),
            (
                "not absolute",
                Box::new(|v| v["hooks"] = serde_json::json!({"poststop": [{"path": "true"}]})),
            ),
            (
                "above zero",
                Box::new(|v| {
                    v["hooks"] =
                        serde_json::json!({"poststop": [{"path": "/bin/true", "timeout": 0}]})
                }),
            ),
            (
                "annotation key",
                Box::new(|v| v["annotations"] = serde_json::json!({"": "x"})),
            ),
            (
                "maskedPaths",
                Box::new(|v| v["linux"]["maskedPaths"] = serde_json::json!(["proc/kcore"])),
            ),
            ("SemVer", Box::new(|v| v["ociVersion"] = "1.foo".into())),
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
    }

    #[test]
    fn what_the_spec_accepts_with_a_warning_is_normalized() {
        let mut v = base();
        v["process"]["capabilities"] = serde_json::json!({"bounding": ["CAP_NOPE", "CAP_CHOWN"], "effective": ["CAP_NEWTHING"]});
        v["mounts"] =
            serde_json::json!([{"destination": "mnt", "type": "tmpfs", "source": "tmpfs"}]);
        let warnings = normalize(&mut v);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let s = spec(v).expect("valid once normalized");
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        assert!(caps.effective().as_ref().unwrap().is_empty());
        assert_eq!(
            s.mounts().as_ref().unwrap()[0].destination(),
            Path::new("/mnt")
        );
    }

    #[test]
    fn sysctl_names_in_both_forms() {
        assert_eq!(
            sysctl_file("net.ipv4.ip_forward"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_file("net/ipv4/conf/eth0.100/rp_filter"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            sysctl_file("net.ipv4.conf.eth0/100.rp_filter"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
    }

    #[test]
    fn semver_versions() {
        for ok in ["1.0.0", "1.2.1", "1.0.0-rc.1", "1.1.0+dev"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.foo", "1", "1.0", "1.0.0-", "1..0"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
