//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient scope
//! unit that systemd creates, so systemd knows the cgroup is taken and never reorganises it
//! under the container (kubeadm's default for containerd, and docker's and podman's on systemd
//! hosts).
//!
//! `linux.cgroupsPath` is `slice:prefix:name` as runc reads it: the scope `prefix-name.scope`
//! in `slice`. The scope is started through the D-Bus API (`StartTransientUnit`) with the init
//! as its process, `Delegate=yes`, and the limits systemd itself knows, so a `daemon-reload`
//! re-applies ours rather than systemd's defaults. The full set of limits is then written to
//! the cgroup files, as the cgroupfs driver does, because systemd has no property for many of
//! them. On v1 the hierarchies systemd does not manage get the same path by hand.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::Value;

use super::Version;
use crate::error::{Error, Result};

/// A container's scope: its unit name and where its cgroup is, relative to a hierarchy's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub slice: String,
    pub unit: String,
    pub path: PathBuf,
}

/// What a container without `cgroupsPath` gets: `system.slice:husk:<id>` (runc's own default,
/// with our prefix).
const DEFAULT_SLICE: &str = "system.slice";
const DEFAULT_PREFIX: &str = "husk";

/// Read `cgroupsPath` in systemd's `slice:prefix:name` form.
pub fn scope_for(cgroups_path: Option<&Path>, id: &str) -> Result<Scope> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (slice, prefix, name) = if raw.is_empty() {
        (DEFAULT_SLICE, DEFAULT_PREFIX, id)
    } else {
        let parts: Vec<&str> = raw.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(Error::InvalidConfig(format!(
                "cgroupsPath {raw:?} is not slice:prefix:name, the form the systemd cgroup driver needs"
            )));
        };
        (
            if slice.is_empty() {
                DEFAULT_SLICE
            } else {
                slice
            },
            prefix,
            if name.is_empty() { id } else { name },
        )
    };
    if name.ends_with(".slice") {
        return Err(Error::Unsupported(format!(
            "cgroupsPath {raw:?} names a slice as the container's unit; husk-runtime puts a container in a scope"
        )));
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') || unit.starts_with('.') {
        return Err(Error::InvalidConfig(format!(
            "cgroupsPath {raw:?} gives the unit name {unit:?}, which systemd refuses"
        )));
    }
    let path = expand_slice(slice)?.join(&unit);
    Ok(Scope {
        slice: slice.to_string(),
        unit,
        path,
    })
}

/// The cgroup directory of a slice: `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`, every
/// dash a level, as systemd lays slices out; `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::InvalidConfig(format!("slice {slice:?} {why}"));
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(bad("does not end in .slice"));
    };
    if slice.contains('/') {
        return Err(bad("contains a /"));
    }
    if stem == "-" {
        return Ok(PathBuf::from("/"));
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(bad("has an empty part between dashes"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// Whether systemd runs this machine (its own test: `sd_booted`).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Ask systemd to start `scope` with `pid` in it. An error here means no unit was started
/// (one of that name may exist already: it is someone else's); `wait_started` follows.
pub fn start(
    scope: &Scope,
    pid: i32,
    resources: Option<&LinuxResources>,
    version: Version,
    id: &str,
) -> Result<()> {
    let manager = Manager::connect()?;
    let mut props: Vec<(&str, Value)> = vec![
        ("Description", Value::from(format!("husk container {id}"))),
        ("Slice", Value::from(scope.slice.as_str())),
        // The container's own cgroup is ours to write; systemd keeps out of it.
        ("Delegate", Value::from(true)),
        ("PIDs", Value::from(vec![pid as u32])),
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("TasksAccounting", Value::from(true)),
        (
            match version {
                Version::V2 => "IOAccounting",
                Version::V1 => "BlockIOAccounting",
            },
            Value::from(true),
        ),
    ];
    if let Some(r) = resources {
        props.extend(resource_properties(r, version));
    }
    let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
    manager
        .call::<zbus::zvariant::OwnedObjectPath>(
            "StartTransientUnit",
            &(scope.unit.as_str(), "replace", props, aux),
        )
        .map_err(|e| Error::Systemd(format!("cannot start unit {}: {e}", scope.unit)))?;
    Ok(())
}

/// Tell systemd the new limits of `unit` (`update`), so it keeps them over a daemon-reload.
pub fn set_properties(unit: &str, resources: &LinuxResources, version: Version) -> Result<()> {
    let props = resource_properties(resources, version);
    if props.is_empty() {
        return Ok(());
    }
    Manager::connect()?
        .call::<()>("SetUnitProperties", &(unit, true, props))
        .map_err(|e| Error::Systemd(format!("cannot set the limits of unit {unit}: {e}")))
}

/// Stop `unit`. A unit that is gone already (systemd drops a scope once it is empty) is fine.
pub fn stop(unit: &str) -> Result<()> {
    match Manager::connect()?
        .call::<zbus::zvariant::OwnedObjectPath>("StopUnit", &(unit, "replace"))
    {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
        {
            Ok(())
        }
        Err(e) => Err(Error::Systemd(format!("cannot stop unit {unit}: {e}"))),
    }
}

/// The limits systemd has properties for, in its units. Everything else (and these too) is
/// written to the cgroup files afterwards.
fn resource_properties(
    r: &LinuxResources,
    version: Version,
) -> Vec<(&'static str, Value<'static>)> {
    let mut props = Vec::new();
    // systemd's "infinity".
    let limit = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|l| *l != 0) {
            let name = match version {
                Version::V2 => "MemoryMax",
                Version::V1 => "MemoryLimit",
            };
            props.push((name, Value::from(limit(l))));
        }
        if version == Version::V2 {
            if let Some(l) = m.reservation().filter(|l| *l > 0) {
                props.push(("MemoryLow", Value::from(l as u64)));
            }
            // v2 counts swap apart from memory; the spec's swap is memory plus swap.
            match (m.swap(), m.limit()) {
                (Some(-1), _) => props.push(("MemorySwapMax", Value::from(u64::MAX))),
                (Some(s), Some(l)) if s > 0 && l > 0 && s >= l => {
                    props.push(("MemorySwapMax", Value::from((s - l) as u64)))
                }
                _ => {}
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(shares) = c.shares().filter(|s| *s > 0) {
            match version {
                Version::V2 => props.push((
                    "CPUWeight",
                    Value::from(super::v2::shares_to_weight(shares)),
                )),
                Version::V1 => props.push(("CPUShares", Value::from(shares))),
            }
        }
        if let Some(quota) = c.quota().filter(|q| *q > 0) {
            let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
            // systemd keeps a quota per second, in microseconds, in 10 ms steps: round up so the
            // container never gets less than it asked for.
            let per_sec = (quota as u64 * 1_000_000).div_ceil(period).div_ceil(10_000) * 10_000;
            props.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
        }
    }
    if let Some(p) = r.pids() {
        let max = p.limit();
        props.push((
            "TasksMax",
            Value::from(if max <= 0 { u64::MAX } else { max as u64 }),
        ));
    }
    props
}

/// Poll `/proc/PID/cgroup` until the process is in the unit: systemd moves it in the job that
/// `StartTransientUnit` queued, after the call returned.
pub fn wait_started(pid: i32, unit: &str) -> Result<()> {
    let file = format!("/proc/{pid}/cgroup");
    let suffix = format!("/{unit}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut nap = Duration::from_millis(1);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // "0::/system.slice/husk-x.scope" on v2, "1:name=systemd:/system.slice/…" on v1.
        if text
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .any(|p| p.ends_with(&suffix))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Systemd(format!(
                "unit {unit} was started but process {pid} is not in it after 30 s"
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

/// systemd's manager object on the system bus. (systemd's private socket would serve without a
/// bus daemon, but zbus cannot read its messages, which carry no sender; runc needs the bus too.)
struct Manager {
    proxy: Proxy<'static>,
}

impl Manager {
    fn connect() -> Result<Manager> {
        if !booted() {
            return Err(Error::Unsupported(
                "--systemd-cgroup needs systemd as the init of this machine (/run/systemd/system is missing)".into(),
            ));
        }
        let timeout = Duration::from_secs(30);
        let conn = zbus::blocking::connection::Builder::system()
            .and_then(|b| b.method_timeout(timeout).build())
            .map_err(|e| {
                Error::Systemd(format!(
                    "cannot reach systemd over the system bus (is dbus running?): {e}"
                ))
            })?;
        Manager::on(conn)
    }

    fn on(conn: Connection) -> Result<Manager> {
        let proxy = Proxy::new_owned(
            conn,
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
        )
        .map_err(|e| Error::Systemd(format!("cannot reach systemd's manager: {e}")))?;
        Ok(Manager { proxy })
    }

    fn call<R>(
        &self,
        method: &str,
        body: &(impl serde::Serialize + zbus::zvariant::DynamicType),
    ) -> zbus::Result<R>
    where
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        self.proxy.call(method, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_a_level_per_dash() {
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            PathBuf::from("/system.slice")
        );
        assert_eq!(
            expand_slice("kubepods-burstable-pod1.slice").unwrap(),
            PathBuf::from("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::from("/"));
        for bad in [
            "system",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            ".slice",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroups_path_is_slice_prefix_name() {
        let s = scope_for(
            Some(Path::new("kubepods-pod1.slice:cri-containerd:abc")),
            "x",
        )
        .unwrap();
        assert_eq!(s.unit, "cri-containerd-abc.scope");
        assert_eq!(s.slice, "kubepods-pod1.slice");
        assert_eq!(
            s.path,
            PathBuf::from("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")
        );
        let d = scope_for(None, "c1").unwrap();
        assert_eq!(
            (d.unit.as_str(), d.path.to_str()),
            ("husk-c1.scope", Some("/system.slice/husk-c1.scope"))
        );
        let e = scope_for(Some(Path::new(":p:")), "c2").unwrap();
        assert_eq!(e.unit, "p-c2.scope");
        assert_eq!(
            scope_for(Some(Path::new("user.slice::n")), "c")
                .unwrap()
                .unit,
            "n.scope"
        );
        assert!(scope_for(Some(Path::new("/a/b")), "c").is_err());
        assert!(scope_for(Some(Path::new("a:b")), "c").is_err());
        assert!(scope_for(Some(Path::new("a.slice:b:c.slice")), "c").is_err());
        assert!(scope_for(Some(Path::new("bad:p:n")), "c").is_err());
    }

    #[test]
    fn limits_become_properties_in_systemd_units() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 104857600, "swap": 209715200},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
            "pids": {"limit": 64}
        }))
        .unwrap();
        let v2 = resource_properties(&r, Version::V2);
        let get = |props: &[(&str, Value)], k: &str| {
            props
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get(&v2, "MemoryMax").as_deref(), Some("uint64 104857600"));
        assert_eq!(
            get(&v2, "MemorySwapMax").as_deref(),
            Some("uint64 104857600")
        );
        assert_eq!(get(&v2, "CPUWeight").as_deref(), Some("uint64 39"));
        assert_eq!(
            get(&v2, "CPUQuotaPerSecUSec").as_deref(),
            Some("uint64 500000")
        );
        assert_eq!(get(&v2, "TasksMax").as_deref(), Some("uint64 64"));
        let v1 = resource_properties(&r, Version::V1);
        assert_eq!(get(&v1, "MemoryLimit").as_deref(), Some("uint64 104857600"));
        assert_eq!(get(&v1, "CPUShares").as_deref(), Some("uint64 1024"));
        assert!(get(&v1, "MemorySwapMax").is_none());
    }
}
