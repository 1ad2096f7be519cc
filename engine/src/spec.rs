//! The spec builder: an image's config plus `RunOptions` become an OCI runtime spec, with
//! docker's defaults (capabilities, seccomp profile, masked paths, environment).

use std::fs;
use std::path::Path;

use husk_image::manifest::ImageConfig;
use serde_json::{json, Value};

use crate::error::{failed, invalid, Context, Error, Result};
use crate::options::{RunOptions, Seccomp};

/// docker's default capability set.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// docker's `-e`: NAME=VALUE replaces NAME, a bare NAME copies husk's own value (or nothing).
pub fn merge_env(env: &mut Vec<String>, extra: &[String]) {
    for e in extra {
        let kv = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(&key));
        env.push(kv);
    }
}

/// The container's network namespace, as the spec names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNs {
    /// A new one the runtime makes (`lo` only).
    Own,
    /// The host's.
    Host,
    /// One made (or shared) before the container, kept at this path.
    Path(std::path::PathBuf),
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn spec(
    a: &RunOptions,
    config: &ImageConfig,
    rootfs: &Path,
    id: &str,
    mounts: &[Value],
    net: &NetNs,
) -> Result<Value> {
    let c = &config.config;
    let mut args = match &a.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => strings(&c["Entrypoint"]),
    };
    if !a.command.is_empty() {
        args.extend(a.command.iter().cloned());
    } else if a.entrypoint.is_none() || args.is_empty() {
        args.extend(strings(&c["Cmd"]));
    }
    if args.is_empty() {
        invalid!("no command specified: the image has no CMD or ENTRYPOINT");
    }
    let mut env = strings(&c["Env"]);
    let mut from_files = Vec::new();
    for f in &a.env_files {
        let text = fs::read_to_string(f)
            .with_context(|| format!("cannot read the env file {}", f.display()))?;
        from_files.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    from_files.extend(a.env.iter().cloned());
    if let Some(bad) = from_files
        .iter()
        .find(|e| e.is_empty() || e.starts_with('='))
    {
        invalid!("invalid environment variable: {bad}");
    }
    merge_env(&mut env, &from_files);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    // docker names a container on the host's network after the host.
    let hostname = a.hostname.clone().unwrap_or_else(|| match net {
        NetNs::Host => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| id[..12].to_string()),
        _ => id[..12].to_string(),
    });
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(0, format!("HOSTNAME={hostname}"));
    }
    let cwd = a
        .workdir
        .clone()
        .or_else(|| {
            c["WorkingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        invalid!("the working directory {cwd:?} is not absolute");
    }
    let user = a
        .user
        .clone()
        .or_else(|| {
            c["User"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "0".into());
    let (uid, gid) = crate::user::resolve(rootfs, &user)?;
    let mut groups = crate::user::supplementary_groups(rootfs, uid, gid);
    // The image's groups that do not exist in the container's user namespace (its own
    // --gidmap's, or a rootless one whose single-id map has root's alone) cannot be held
    // there; --group-add asks for one by name, and is refused.
    let usable = |g: u32| match &a.id_maps {
        Some(m) => crate::options::IdMaps::host_of(&m.gid, g).is_some(),
        None => crate::rootless::gid_usable(g),
    };
    groups.retain(|g| usable(*g));
    for g in &a.group_add {
        let g = crate::user::group_id(rootfs, g)?;
        if !usable(g) {
            return Err(Error::Invalid(match &a.id_maps {
                Some(_) => format!("--group-add {g}: the container's --gidmap has no group {g}"),
                None => format!(
                    "--group-add {g}: this rootless user namespace has no group {g} (/etc/subgid gives your user no range for it)"
                ),
            }));
        }
        if !groups.contains(&g) {
            groups.push(g);
        }
    }

    let mut s = husk_runtime::features::default_spec(false);
    let cap_list = capabilities(a)?;
    let caps = json!(cap_list);
    // docker's default profile, unless privileged or told otherwise.
    let seccomp = match &a.seccomp {
        Seccomp::Default if a.privileged => None,
        Seccomp::Default => Some(crate::security::default_seccomp(&cap_list)),
        Seccomp::Unconfined => None,
        Seccomp::Profile(path) => {
            let text = fs::read(path)
                .with_context(|| format!("cannot read the seccomp profile {}", path.display()))?;
            let profile: Value = serde_json::from_slice(&text)
                .with_context(|| format!("the seccomp profile {} is not JSON", path.display()))?;
            Some(profile)
        }
    };
    let no_new_privs = a.no_new_privileges;
    if a.init {
        let tini = ["/usr/bin/tini-static", "/usr/libexec/docker/docker-init"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                failed!("--init needs a static tini on the host (Debian: apt install tini)")
            })?;
        let mut with_init = vec!["/dev/init".to_string(), "--".to_string()];
        with_init.extend(args);
        args = with_init;
        s["mounts"]
            .as_array_mut()
            .ok_or_else(|| failed!("default spec has no mounts"))?
            .push(json!({"destination": "/dev/init", "type": "bind", "source": tini, "options": ["bind", "ro", "nosuid", "nodev"]}));
    }
    let rlimits: Vec<Value> = a
        .ulimits
        .iter()
        .map(|r| json!({"type": r.kind, "soft": r.soft, "hard": r.hard}))
        .collect();
    s["process"] = json!({
        "terminal": a.tty, "user": {"uid": uid, "gid": gid, "additionalGids": groups}, "args": args, "env": env, "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs
    });
    if !rlimits.is_empty() {
        s["process"]["rlimits"] = json!(rlimits);
    }
    if let Some(p) = seccomp {
        s["linux"]["seccomp"] = p;
    }
    s["root"] = json!({"path": rootfs, "readonly": a.read_only});
    // docker masks one path more than runc's defaults (RAPL energy counters, CVE-2020-8694).
    if let Some(m) = s["linux"]["maskedPaths"].as_array_mut() {
        m.push(json!("/sys/devices/virtual/powercap"));
    }
    s["hostname"] = hostname.into();
    if let Some(ns) = s["linux"]["namespaces"].as_array_mut() {
        match net {
            NetNs::Own => {}
            NetNs::Host => ns.retain(|n| n["type"] != "network"),
            NetNs::Path(p) => {
                for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                    n["path"] = json!(p);
                }
            }
        }
    }
    s["mounts"]
        .as_array_mut()
        .ok_or_else(|| failed!("default spec has no mounts"))?
        .extend(mounts.iter().cloned());
    if let Some(size) = a.shm_size {
        if size <= 0 {
            invalid!("invalid --shm-size: it must be more than 0");
        }
        for m in s["mounts"].as_array_mut().into_iter().flatten() {
            if m["destination"] == "/dev/shm" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| !x.as_str().is_some_and(|x| x.starts_with("size=")));
                    o.push(json!(format!("size={}k", (size + 1023) / 1024)));
                }
            }
        }
    }
    if !a.sysctls.is_empty() {
        s["linux"]["sysctl"] = json!(a.sysctls);
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    for d in &a.devices {
        let (node, rule) = device(d)?;
        s["linux"]["devices"]
            .as_array_mut()
            .map(|v| v.push(node.clone()))
            .unwrap_or_else(|| s["linux"]["devices"] = json!([node]));
        if let Some(r) = resources["devices"].as_array_mut() {
            r.push(rule);
        }
    }
    if let Some(c) = &a.cpuset_cpus {
        resources["cpu"]["cpus"] = json!(c);
    }
    if let Some(m) = &a.cpuset_mems {
        resources["cpu"]["mems"] = json!(m);
    }
    if let Some(r) = a.memory_reservation {
        resources["memory"]["reservation"] = json!(r);
    }
    if a.oom_kill_disable {
        resources["memory"]["disableOOMKiller"] = json!(true);
    }
    if let Some(w) = a.blkio_weight {
        if !(10..=1000).contains(&w) {
            invalid!("invalid --blkio-weight {w}: the range is 10 to 1000");
        }
        resources["blockIO"]["weight"] = json!(w);
    }
    for (key, list) in [
        ("throttleReadBpsDevice", &a.device_read_bps),
        ("throttleWriteBpsDevice", &a.device_write_bps),
        ("throttleReadIOPSDevice", &a.device_read_iops),
        ("throttleWriteIOPSDevice", &a.device_write_iops),
    ] {
        for (dev, rate) in list {
            let (major, minor) = block_device(dev)?;
            let entry = json!({"major": major, "minor": minor, "rate": rate});
            match resources["blockIO"][key].as_array_mut() {
                Some(v) => v.push(entry),
                None => resources["blockIO"][key] = json!([entry]),
            }
        }
    }
    if let Some(m) = a.memory {
        check_memory(m)?;
        resources["memory"] = json!({ "limit": m });
    }
    if let Some(swap) = a.memory_swap {
        let Some(limit) = a.memory else {
            invalid!("--memory-swap needs --memory");
        };
        if swap != -1 && swap < limit {
            invalid!("--memory-swap must be at least --memory");
        }
        resources["memory"]["swap"] = json!(swap);
    }
    if let Some(sh) = a.cpu_shares {
        resources["cpu"] = json!({"shares": sh});
    }
    if let Some(p) = a.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    if let Some(c) = a.cpus {
        check_cpus(c)?;
        resources["cpu"]["quota"] = json!((c * 100_000.0) as i64);
        resources["cpu"]["period"] = json!(100_000);
    }
    if a.privileged {
        // Every device, no masked or read-only paths, a writable /sys.
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
        s["linux"]["devices"] = json!(host_devices());
        if let Some(l) = s["linux"].as_object_mut() {
            l.remove("maskedPaths");
            l.remove("readonlyPaths");
        }
        if let Some(ms) = s["mounts"].as_array_mut() {
            for m in ms.iter_mut() {
                if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
                    if let Some(o) = m["options"].as_array_mut() {
                        o.retain(|x| x != "ro");
                    }
                }
            }
        }
    }
    s["linux"]["resources"] = resources;
    Ok(s)
}

/// `--device`: the node the container gets and the cgroup rule that lets it use it.
fn device(d: &crate::options::DeviceMapping) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = fs::metadata(&d.host)
        .map_err(|e| crate::error::Error::Invalid(format!("--device {}: {e}", d.host.display())))?;
    let kind = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        invalid!("--device {}: not a device", d.host.display());
    };
    let (major, minor) = (libc::major(md.rdev()), libc::minor(md.rdev()));
    Ok((
        json!({"path": d.container, "type": kind, "major": major, "minor": minor,
               "fileMode": md.mode() & 0o777, "uid": 0, "gid": 0}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": d.permissions}),
    ))
}

/// The major and minor number of block device `dev` (`--device-read-bps` and kin).
fn block_device(dev: &Path) -> Result<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = fs::metadata(dev)
        .map_err(|e| crate::error::Error::Invalid(format!("{}: {e}", dev.display())))?;
    if !md.file_type().is_block_device() {
        invalid!("{} is not a block device", dev.display());
    }
    Ok((libc::major(md.rdev()), libc::minor(md.rdev())))
}

/// docker's floor for `--memory`: below it the runtime's own setup does not fit.
pub fn check_memory(m: i64) -> Result<()> {
    if m < 6 << 20 {
        invalid!("minimum memory limit allowed is 6MB");
    }
    Ok(())
}

/// docker's range for `--cpus`: a hundredth of a CPU up to the CPUs there are.
pub fn check_cpus(c: f64) -> Result<()> {
    let online = online_cpus();
    if !(0.01..=online as f64).contains(&c) {
        invalid!(
            "range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available"
        );
    }
    Ok(())
}

/// The CPUs this process may run on (docker's NumCPU).
fn online_cpus() -> usize {
    // SAFETY: sched_getaffinity into a zeroed cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as usize).max(1);
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// docker's default capabilities, with --cap-add/--cap-drop (ALL allowed) and --privileged.
fn capabilities(a: &RunOptions) -> Result<Vec<String>> {
    // "All" is what this host can give: its bounding set (a VM may lack some).
    let mut all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| failed!("cannot read the capability bounding set: {e}"))?
        .iter()
        .map(|c| c.to_string())
        .collect();
    all.sort();
    let known: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let norm = |c: &str| -> Result<String> {
        let up = c.to_ascii_uppercase();
        let full = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if full == "CAP_ALL" || known.contains(&full) {
            Ok(full)
        } else {
            invalid!("unknown capability {c:?}")
        }
    };
    if a.privileged {
        return Ok(all);
    }
    let mut set: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    for c in &a.cap_add {
        match norm(c)?.as_str() {
            "CAP_ALL" => set = all.clone(),
            c => {
                if !set.iter().any(|x| x == c) {
                    set.push(c.to_string());
                }
            }
        }
    }
    for c in &a.cap_drop {
        match norm(c)?.as_str() {
            "CAP_ALL" => set.clear(),
            c => set.retain(|x| x != c),
        }
    }
    // An explicit add wins over dropping ALL, as in docker.
    if a.cap_drop
        .iter()
        .any(|c| norm(c).is_ok_and(|n| n == "CAP_ALL"))
    {
        for c in &a.cap_add {
            let n = norm(c)?;
            if n != "CAP_ALL" && !set.contains(&n) {
                set.push(n);
            }
        }
    }
    Ok(set)
}

/// The host's device nodes under /dev, for --privileged; as runc, not the consoles and
/// terminals, which the container gets its own of.
fn host_devices() -> Vec<Value> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<Value>) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if depth == 0
                && ["console", "pts", "shm", "mqueue", "fd", "ptmx", "tty"].contains(&name.as_ref())
            {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = m.file_type();
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                if ft.is_dir() && depth < 4 {
                    walk(&path, depth + 1, out);
                }
                continue;
            };
            let rdev = m.rdev();
            out.push(json!({
                "path": path, "type": kind,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid()
            }));
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), 0, &mut out);
    out
}
