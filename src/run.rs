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
        Err(e) => {
            let text = format!("{e:#}");
            let code = if text.contains("executable file not found")
                || text.contains("No such file or directory (os error 2)") && text.contains("exec:")
            {
                127
            } else if text.contains("exec:") && text.contains("Permission denied") {
                126
            } else {
                125
            };
            Outcome::Failed(code, e)
        }
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

fn random_id() -> Result<String> {
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

/// uid and gid for `--user` (or the image's USER): numbers, or names from the image.
fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
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
            Err(_) => fs::read_to_string(rootfs.join("etc/group"))
                .unwrap_or_default()
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

fn spec(a: &RunArgs, config: &ImageConfig, rootfs: &Path, id: &str) -> Result<Value> {
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
    for e in &a.env {
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
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    env.push(format!("HOSTNAME={hostname}"));
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

    let mut s = husk_runtime::features::default_spec(false);
    let caps = json!(DEFAULT_CAPS);
    s["process"] = json!({
        "terminal": a.tty, "user": {"uid": uid, "gid": gid}, "args": args, "env": env, "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": false
    });
    s["root"] = json!({"path": rootfs, "readonly": a.read_only});
    s["hostname"] = hostname.into();
    if a.network == NetworkMode::Host {
        if let Some(ns) = s["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    }
    let mounts = s["mounts"]
        .as_array_mut()
        .ok_or_else(|| anyhow!("default spec has no mounts"))?;
    for v in &a.volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => bail!("invalid volume {v:?}: use HOST:CONTAINER[:ro]"),
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            bail!("invalid volume {v:?}: named volumes are not supported yet, both paths must be absolute");
        }
        let mut opts = vec!["rbind", "rprivate"];
        if ro {
            opts.push("ro");
        }
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": opts}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = &a.memory {
        resources["memory"] = json!({"limit": parse_bytes(m)?});
    }
    if let Some(p) = a.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    if let Some(c) = a.cpus {
        if c <= 0.0 {
            bail!("--cpus must be positive");
        }
        resources["cpu"] = json!({"quota": (c * 100_000.0) as i64, "period": 100_000});
    }
    s["linux"]["resources"] = resources;
    Ok(s)
}

fn run_inner(root: &Path, a: &RunArgs) -> Result<i32> {
    if !a.rm {
        bail!("husk run needs --rm for now: stopped containers cannot be listed or removed until container records exist");
    }
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
    let name = a.name.clone().unwrap_or_else(|| id.clone());
    let dir = root.join("containers").join(&id);
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &rootfs] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let cleanup = Cleanup {
        dir: dir.clone(),
        rootfs: rootfs.clone(),
        mounted: std::cell::Cell::new(false),
    };
    husk_image::snapshot::mount(root, &diff_ids, Some((&upper, &work)), &rootfs)?;
    cleanup.mounted.set(true);
    let spec = spec(a, &config, &rootfs, &id)?;
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)
        .context("cannot write the container's config")?;
    if !a.interactive && !a.tty {
        // docker gives a container without -i an empty stdin.
        let null = fs::File::open("/dev/null")?;
        // SAFETY: dup2 onto our own stdin.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) };
    }
    let log = husk_runtime::logging::Logger::new(None, husk_runtime::logging::Format::Text, false);
    let rt = husk_runtime::Runtime::new(runtime_root(root), log);
    let code = rt.run(
        husk_runtime::CreateOpts {
            id: name,
            bundle: dir.clone(),
            ..Default::default()
        },
        false,
        false,
    )?;
    drop(cleanup);
    Ok(code)
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

/// Unmount the container's root and remove its directory, whatever happened.
struct Cleanup {
    dir: PathBuf,
    rootfs: PathBuf,
    mounted: std::cell::Cell<bool>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.mounted.get() {
            let _ = husk_image::snapshot::unmount(&self.rootfs);
        }
        let _ = fs::remove_dir_all(&self.dir);
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
