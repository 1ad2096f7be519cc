//! `husk run`: an image's config plus docker's flags become an OCI spec; the container's root
//! is an overlayfs of the image's layers plus its own upper directory; husk-runtime runs it
//! in-process, this process being its monitor.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use husk_cli::husk::{NetworkMode, PullPolicy, RunArgs};
use husk_image::images::ImageRecord;
use husk_image::manifest::{ImageConfig, Platform};
use husk_image::registry::Options;
use husk_image::{Digest, Reference};

use crate::containers::{self, Container};
use serde_json::{json, Value};

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

/// How `husk run` ended: the container's code, or docker's 125/126/127 for husk's own failures.
pub enum Outcome {
    Exited(i32),
    Failed(i32, anyhow::Error),
}

pub fn run(root: &Path, a: &RunArgs) -> Outcome {
    match run_inner(root, a) {
        Ok(code) => Outcome::Exited(code),
        Err(e) => Outcome::Failed(exit_code_of(&e), e),
    }
}

/// docker's code for a container that could not start: 127 when the command is not found,
/// 126 when it cannot be executed, 125 when husk itself failed.
/// `-l/--label KEY=VALUE` (a bare KEY is an empty value), as `run` and `volume create` take them.
pub fn parse_labels(labels: &[String]) -> std::collections::BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn exit_code_of(e: &anyhow::Error) -> i32 {
    let text = format!("{e:#}");
    if text.contains("executable file not found")
        || text.contains("No such file or directory (os error 2)") && text.contains("exec:")
    {
        127
    } else if text.contains("exec:") && text.contains("Permission denied") {
        126
    } else {
        125
    }
}

fn find_image(root: &Path, r: &Reference) -> Result<Option<ImageRecord>> {
    Ok(husk_image::images::list(root)?.into_iter().find(|i| {
        i.name == r.name()
            && (r.digest.as_ref().map(|d| d.to_string()) == Some(i.manifest.clone())
                || (r.digest.is_none() && i.tag == r.tag))
    }))
}

fn image(root: &Path, a: &RunArgs) -> Result<ImageRecord> {
    let r = Reference::parse(&a.image)?;
    let have = find_image(root, &r)?;
    let need_pull = match (a.pull, &have) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => bail!("image {r} is not in the store and --pull=never"),
        _ => false,
    };
    if need_pull {
        let platform = a
            .platform
            .as_deref()
            .map(Platform::parse)
            .transpose()?
            .unwrap_or_else(Platform::host);
        if have.is_none() {
            eprintln!("Unable to find image '{r}' locally");
        }
        let _adding = husk_image::store::Store::open(root)?.adding()?;
        let display = crate::progress::PullDisplay::new(false, true);
        let pulled =
            husk_image::pull::pull_with_progress(root, &r, &platform, &Options::default(), &|p| {
                display.event(p)
            })
            .with_context(|| format!("pull {r}"))?;
        husk_image::images::record(root, &r, &pulled)?;
    }
    find_image(root, &r)?.ok_or_else(|| anyhow!("image {r} is not in the store"))
}

pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// "64m" → bytes.
fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1i64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('b') => (&s[..s.len() - 1], 1),
        _ => (&s[..], 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("invalid size {s:?}: use bytes or a k, m or g suffix"))?;
    if n <= 0.0 {
        bail!("invalid size {s:?}: must be positive");
    }
    Ok((n * mult as f64) as i64)
}

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

/// A small regular file of the image, resolved inside its root (an image's /etc/passwd may be
/// a symlink to a host path, or a FIFO to hang us); empty when it is not there or not regular.
fn read_in_root(rootfs: &Path, path: &str) -> String {
    use std::io::Read;
    let Ok(root) = fs::File::open(rootfs) else {
        return String::new();
    };
    let Ok(fd) = husk_sys::open_in_root(
        std::os::fd::AsRawFd::as_raw_fd(&root),
        Path::new(path),
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    ) else {
        return String::new();
    };
    let f = fs::File::from(fd);
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut s = String::new();
    let _ = f.take(1 << 20).read_to_string(&mut s);
    s
}

/// The groups of the image's /etc/group that list the user (by its /etc/passwd name) as a
/// member, besides its primary group, as docker gives them.
fn supplementary_groups(rootfs: &Path, uid: u32, gid: u32) -> Vec<u32> {
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let Some(name) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    }) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = read_in_root(rootfs, "/etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            let g: u32 = f.get(2)?.parse().ok()?;
            (g != gid && members.split(',').any(|m| m.trim() == name)).then_some(g)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// uid and gid for `--user` (or the image's USER): numbers, or names from the image.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let (uid, default_gid) = match user.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 3 && f[2] == user)
                        .then(|| f[3].parse().ok())
                        .flatten()
                })
                .unwrap_or(0),
        ),
        Err(_) => passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[0] == user)
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
            .ok_or_else(|| {
                anyhow!(
                    "unable to find user {user}: no matching entries in the image's /etc/passwd"
                )
            })?,
    };
    let gid = match group {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read_in_root(rootfs, "/etc/group")
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 2 && f[0] == g)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
                .ok_or_else(|| {
                    anyhow!(
                        "unable to find group {g}: no matching entries in the image's /etc/group"
                    )
                })?,
        },
    };
    Ok((uid, gid))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn spec(
    a: &RunArgs,
    config: &ImageConfig,
    rootfs: &Path,
    id: &str,
    volumes: &crate::volumes::Resolved,
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
        bail!("no command specified: the image has no CMD or ENTRYPOINT");
    }
    let mut env = strings(&c["Env"]);
    let mut from_files = Vec::new();
    for f in &a.env_file {
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
    merge_env(&mut env, &from_files);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_string());
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
        bail!("the working directory {cwd:?} is not absolute");
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
    let (uid, gid) = resolve_user(rootfs, &user)?;
    let groups = supplementary_groups(rootfs, uid, gid);

    let mut s = husk_runtime::features::default_spec(false);
    let cap_list = capabilities(a)?;
    let caps = json!(cap_list);
    let mut no_new_privs = false;
    // docker's default profile, unless --privileged or --security-opt says otherwise.
    let mut seccomp = (!a.privileged).then(|| crate::security::default_seccomp(&cap_list));
    for o in &a.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o, ""));
        match (k, v) {
            ("no-new-privileges", "" | "true") => no_new_privs = true,
            ("no-new-privileges", "false") => no_new_privs = false,
            ("seccomp", "unconfined") => seccomp = None,
            ("seccomp", path) if !path.is_empty() => {
                let text = fs::read(path)
                    .with_context(|| format!("cannot read the seccomp profile {path}"))?;
                let profile: Value = serde_json::from_slice(&text)
                    .with_context(|| format!("the seccomp profile {path} is not JSON"))?;
                seccomp = Some(profile);
            }
            ("apparmor", "unconfined") | ("label", "disable") => {}
            _ => bail!("unsupported --security-opt {o:?}: husk knows no-new-privileges, seccomp=unconfined|PROFILE.json, apparmor=unconfined, label=disable"),
        }
    }
    if a.init {
        let tini = ["/usr/bin/tini-static", "/usr/libexec/docker/docker-init"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                anyhow!("--init needs a static tini on the host (Debian: apt install tini)")
            })?;
        let mut with_init = vec!["/dev/init".to_string(), "--".to_string()];
        with_init.extend(args);
        args = with_init;
        s["mounts"]
            .as_array_mut()
            .ok_or_else(|| anyhow!("default spec has no mounts"))?
            .push(json!({"destination": "/dev/init", "type": "bind", "source": tini, "options": ["bind", "ro", "nosuid", "nodev"]}));
    }
    let rlimits = a
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<Value>>>()?;
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
    if a.network == NetworkMode::Host {
        if let Some(ns) = s["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    }
    s["mounts"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("default spec has no mounts"))?
        .extend(volumes.spec.iter().cloned());
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = &a.memory {
        resources["memory"] = json!({"limit": parse_bytes(m)?});
    }
    if let Some(ms) = &a.memory_swap {
        let limit = resources["memory"]["limit"]
            .as_i64()
            .ok_or_else(|| anyhow!("--memory-swap needs --memory"))?;
        let swap = if ms == "-1" { -1 } else { parse_bytes(ms)? };
        if swap != -1 && swap < limit {
            bail!("--memory-swap must be at least --memory");
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
        if c <= 0.0 {
            bail!("--cpus must be positive");
        }
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

fn run_inner(root: &Path, a: &RunArgs) -> Result<i32> {
    if let Some(n) = &a.name {
        husk_runtime::util::validate_id(n)
            .map_err(|_| anyhow!("invalid container name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"))?;
    }
    let image = image(root, a)?;
    let store = husk_image::store::Store::open(root)?;
    let config_digest = Digest::parse(&image.config)?;
    let config: ImageConfig = serde_json::from_reader(store.open_blob(&config_digest)?)
        .context("the image config is corrupt")?;
    let diff_ids: Vec<Digest> = image
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<husk_image::Result<_>>()?;

    let id = random_id()?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => generated_name(root, &id),
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
        .ok_or_else(|| anyhow!("invalid stop signal {stop_signal:?}"))?;
    let labels = parse_labels(&a.label);
    // The directory first: a name whose container has no directory counts as stale.
    let dir = containers::dir(root, &id);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Err(e) = containers::claim_name(root, &name, &id) {
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    let made = (|| -> Result<()> {
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        // A --rm container's upper directory goes when it exits: it skips overlayfs's syncs
        // (podman does the same), so its end does not wait for a syncfs of the host's file
        // system, dirty with whatever else the machine writes.
        let upper = husk_image::snapshot::Upper {
            dir: &upper,
            work: &work,
            volatile: a.rm,
        };
        husk_image::snapshot::mount(root, &diff_ids, Some(upper), &rootfs)?;
        let image_volumes: Vec<String> = config.config["Volumes"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let volumes = crate::volumes::resolve(root, a, &image_volumes, &rootfs)?;
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
        );
        if rest.is_err() {
            for v in &anonymous {
                let _ = crate::volumes::remove(root, v, true);
            }
        }
        rest
    })();

    if let Err(e) = made {
        if let Ok(c) = Container::load(root, &id) {
            for v in &c.anonymous_volumes {
                let _ = crate::volumes::remove(root, v, true);
            }
            crate::monitor::unmount_rootfs(root, &id);
        } else if crate::is_mounted(&dir.join("rootfs")) {
            // No record yet to say which layers: we know them.
            let _ = husk_image::snapshot::unmount(&dir.join("rootfs"));
            crate::reaper::release_layers(root, &diff_ids);
        }
        let _ = fs::remove_dir_all(&dir);
        containers::release_name(root, &name, &id);
        return Err(e);
    }
    if a.detach {
        crate::monitor::spawn_detached(root, &id)?;
        println!("{id}");
        return Ok(0);
    }
    // An attached `run --rm` hands the container our stdio (nothing to log: the container
    // goes away); otherwise husk is the monitor and keeps the log for `husk logs`.
    let stdio = if a.rm {
        crate::monitor::Stdio::Direct
    } else {
        crate::monitor::Stdio::Logged { attach: true }
    };
    crate::monitor::supervise(root, &id, stdio, &mut |_| {})
}

/// The OCI spec and the record of a container whose root and volumes are ready.
#[allow(clippy::too_many_arguments)]
fn record_container(
    root: &Path,
    a: &RunArgs,
    config: &ImageConfig,
    rootfs: &Path,
    id: &str,
    name: &str,
    image: &ImageRecord,
    labels: std::collections::BTreeMap<String, String>,
    stop_signal: String,
    volumes: crate::volumes::Resolved,
) -> Result<()> {
    let dir = containers::dir(root, id);
    let spec = spec(a, config, rootfs, id, &volumes)?;
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)
        .context("cannot write the container's config")?;
    let process = &spec["process"];
    let args = strings(&process["args"]);
    let c = Container {
        id: id.to_string(),
        name: name.to_string(),
        image: a.image.clone(),
        image_id: image.config.clone(),
        created: crate::timefmt::now(),
        path: args.first().cloned().unwrap_or_default(),
        args: args.iter().skip(1).cloned().collect(),
        env: strings(&process["env"]),
        working_dir: process["cwd"].as_str().unwrap_or("/").into(),
        user: a.user.clone().unwrap_or_default(),
        hostname: spec["hostname"].as_str().unwrap_or("").into(),
        labels,
        auto_remove: a.rm,
        tty: a.tty,
        interactive: a.interactive,
        stop_signal,
        stop_timeout: a.stop_timeout.unwrap_or(10),
        timeout: a.timeout,
        network: match a.network {
            NetworkMode::None => "none".into(),
            NetworkMode::Host => "host".into(),
        },
        mounts: volumes.records,
        anonymous_volumes: volumes.anonymous,
        diff_ids: image.diff_ids.clone(),
        // Until a monitor takes over, this husk holds the container (prune leaves it be).
        state: crate::containers::State {
            monitor_pid: std::process::id() as i32,
            monitor_start: husk_runtime::util::process_start_time(std::process::id() as i32)
                .unwrap_or(0),
            ..Default::default()
        },
    };
    c.save(root)
}

/// docker-style "adjective_surname" names, unique in this store.
fn generated_name(root: &Path, id: &str) -> String {
    const LEFT: [&str; 16] = [
        "brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen", "lucid", "modest",
        "nifty", "quirky", "serene", "tender", "vibrant", "zealous",
    ];
    const RIGHT: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "franklin", "galileo", "hopper", "kepler",
        "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
    ];
    let b = id.as_bytes();
    for i in 0..b.len() - 1 {
        let name = format!(
            "{}_{}",
            LEFT[(b[i] % 16) as usize],
            RIGHT[(b[i + 1] % 16) as usize]
        );
        if !root.join("names").join(&name).exists() {
            return name;
        }
    }
    format!("husk_{}", &id[..12])
}

/// docker's default capabilities, with --cap-add/--cap-drop (ALL allowed) and --privileged.
fn capabilities(a: &RunArgs) -> Result<Vec<String>> {
    // "All" is what this host can give: its bounding set (a VM may lack some).
    let mut all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| anyhow!("cannot read the capability bounding set: {e}"))?
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
            bail!("unknown capability {c:?}")
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

/// `--ulimit nofile=1024:2048` → an OCI rlimit.
fn parse_ulimit(u: &str) -> Result<Value> {
    let (name, vals) = u
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid --ulimit {u:?}: use NAME=SOFT[:HARD]"))?;
    let known = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    if !known.contains(&name) {
        bail!("invalid --ulimit {u:?}: unknown limit {name:?}");
    }
    let num = |s: &str| -> Result<u64> {
        if s == "-1" || s == "unlimited" {
            return Ok(u64::MAX);
        }
        s.parse()
            .map_err(|_| anyhow!("invalid --ulimit {u:?}: {s:?} is not a number"))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        bail!("invalid --ulimit {u:?}: the soft limit is above the hard limit");
    }
    Ok(json!({"type": format!("RLIMIT_{}", name.to_ascii_uppercase()), "soft": soft, "hard": hard}))
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

/// husk-runtime's state for husk's containers: /run/husk/runtime, or inside a --root given
/// explicitly (tests, benchmarks), so throwaway roots stay self-contained.
pub fn runtime_root(root: &Path) -> PathBuf {
    if root == Path::new(husk_cli::husk::DEFAULT_ROOT) {
        PathBuf::from("/run/husk/runtime")
    } else {
        root.join("run")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }
}
