//! What a caller asks of the engine, as types, and the parsers for docker's spellings of them
//! (`-v SRC:DST:ro`, `--ulimit nofile=1024:2048`, `64m`, `--filter status=exited`). A command
//! line parses its flags with these; an embedding program may build the types directly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{invalid, Error, Result};

/// When `run` pulls its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    Missing,
    Never,
}

/// The container's network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// The default: the `bridge` network, unless husk's config file says `"bridge": "none"`
    /// (docker's daemon.json key that turns the default bridge off).
    #[default]
    Default,
    /// Its own network namespace with only `lo`, up.
    None,
    /// The host's network namespace.
    Host,
    /// A network by name: `bridge` (the default bridge, `husk0`) or one made by
    /// `network create`.
    Named(String),
    /// Another container's network namespace (`container:NAME`).
    Container(String),
    /// Its own network namespace, networked by pasta: the rootless default.
    Pasta,
}

impl Network {
    /// docker's spelling: `none`, `host`, `bridge`, a network's name, `container:NAME`.
    pub fn parse(s: &str) -> Result<Network> {
        Ok(match s {
            "" | "default" => Network::Default,
            "none" => Network::None,
            "host" => Network::Host,
            "pasta" => Network::Pasta,
            _ => match s.strip_prefix("container:") {
                Some("") => {
                    invalid!("invalid --network {s:?}: container: needs a container's name or id")
                }
                Some(c) => Network::Container(c.to_string()),
                None => Network::Named(s.to_string()),
            },
        })
    }

    pub fn as_string(&self) -> String {
        match self {
            Network::Default => "default".into(),
            Network::None => "none".into(),
            Network::Host => "host".into(),
            Network::Named(n) => n.clone(),
            Network::Container(c) => format!("container:{c}"),
            Network::Pasta => "pasta".into(),
        }
    }
}

/// `--ipc`, `--pid`, `--uts`: the container's own namespace, the host's, or another
/// container's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    #[default]
    Private,
    Host,
    /// `container:NAME`: a running container's.
    Container(String),
}

impl NamespaceMode {
    /// `flag`'s value: `host`, `container:NAME`, or `private` (`shareable` too for `--ipc`).
    pub fn parse(flag: &str, s: &str) -> Result<NamespaceMode> {
        Ok(match s {
            "" | "private" => NamespaceMode::Private,
            "shareable" if flag == "ipc" => NamespaceMode::Private,
            "host" => NamespaceMode::Host,
            _ => match s.strip_prefix("container:") {
                Some(c) if !c.is_empty() && flag != "uts" => NamespaceMode::Container(c.into()),
                _ => invalid!(
                    "invalid --{flag} {s:?}: use host{}",
                    if flag == "uts" {
                        ""
                    } else {
                        " or container:NAME"
                    }
                ),
            },
        })
    }
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMapping {
    pub host: PathBuf,
    pub container: String,
    /// Some of `rwm`.
    pub permissions: String,
}

impl DeviceMapping {
    pub fn parse(s: &str) -> Result<DeviceMapping> {
        let parts: Vec<&str> = s.split(':').collect();
        let perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
        let (host, container, permissions) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if perms(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] if perms(p) => (*h, *c, *p),
            _ => invalid!("invalid --device {s:?}: use HOST[:CONTAINER][:PERMISSIONS] (PERMISSIONS: some of rwm)"),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            invalid!("invalid --device {s:?}: the paths must be absolute");
        }
        Ok(DeviceMapping {
            host: host.into(),
            container: container.into(),
            permissions: permissions.into(),
        })
    }
}

/// `--device-read-bps /dev/sda:1mb` and kin: (device, rate); `bytes` takes sizes (`1mb`),
/// otherwise a count of operations.
pub fn parse_device_rate(s: &str, bytes: bool) -> Result<(PathBuf, u64)> {
    let Some((dev, rate)) = s.rsplit_once(':') else {
        invalid!("invalid device rate {s:?}: use DEVICE:RATE");
    };
    let rate = if bytes {
        parse_bytes(rate).ok().filter(|r| *r >= 0).map(|r| r as u64)
    } else {
        rate.parse::<u64>().ok()
    };
    match rate {
        Some(r) if dev.starts_with('/') => Ok((dev.into(), r)),
        _ => invalid!("invalid device rate {s:?}: use /dev/DEVICE:RATE"),
    }
}

/// `--userns`: whose files the container's writes to bind mounts make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Userns {
    /// The container's ids are the host's.
    #[default]
    Host,
    /// podman's name: files the container's root writes to a bind-mounted host directory
    /// (`-v $PWD:/w`) belong to the user who ran husk (the `sudo` caller's `SUDO_UID` and
    /// `SUDO_GID` when husk runs as root through sudo), and that user's files are root's
    /// inside. The binds are idmapped mounts (Linux 5.12+); the container's own ids stay the
    /// host's.
    KeepId,
    /// podman's `auto[:size=N]`: a user namespace of the container's own, with a block of
    /// `size` ids no other container of the store has (see `userns::claim`).
    Auto { size: u32 },
}

impl Userns {
    pub fn parse(s: &str) -> Result<Userns> {
        match s {
            "" | "host" => Ok(Userns::Host),
            "keep-id" => Ok(Userns::KeepId),
            "auto" => Ok(Userns::Auto { size: 65536 }),
            _ => match s.strip_prefix("auto:size=").map(str::parse::<u32>) {
                Some(Ok(size)) if size > 0 => Ok(Userns::Auto { size }),
                _ => invalid!("invalid --userns {s:?}: use host, keep-id, auto or auto:size=N"),
            },
        }
    }
}

/// One line of a user namespace's id map: `--uidmap`/`--gidmap CONTAINER:HOST:SIZE`, as
/// podman's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdMap {
    pub fn parse(flag: &str, s: &str) -> Result<IdMap> {
        let f: Vec<Option<u32>> = s.split(':').map(|n| n.parse().ok()).collect();
        match f[..] {
            [Some(container), Some(host), Some(size)]
                if size > 0
                    && u64::from(container) + u64::from(size) <= u64::from(u32::MAX)
                    && u64::from(host) + u64::from(size) <= u64::from(u32::MAX) =>
            {
                Ok(IdMap {
                    container,
                    host,
                    size,
                })
            }
            _ => invalid!("invalid {flag} {s:?}: use CONTAINER:HOST:SIZE (ids, SIZE at least 1)"),
        }
    }
}

/// `--uidmap`/`--gidmap`: the container runs in a user namespace of its own with these maps,
/// its image's layers idmapped to match.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMaps {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
}

impl IdMaps {
    /// From the flags' values; the uid map serves for gids too when no --gidmap is given, as
    /// podman's. None without any.
    pub fn parse(uidmap: &[String], gidmap: &[String]) -> Result<Option<IdMaps>> {
        if uidmap.is_empty() && gidmap.is_empty() {
            return Ok(None);
        }
        if uidmap.is_empty() {
            invalid!("--gidmap needs a --uidmap");
        }
        let uid = uidmap
            .iter()
            .map(|s| IdMap::parse("--uidmap", s))
            .collect::<Result<Vec<_>>>()?;
        let gid = if gidmap.is_empty() {
            uid.clone()
        } else {
            gidmap
                .iter()
                .map(|s| IdMap::parse("--gidmap", s))
                .collect::<Result<Vec<_>>>()?
        };
        for (flag, maps) in [("--uidmap", &uid), ("--gidmap", &gid)] {
            for (i, a) in maps.iter().enumerate() {
                for b in &maps[i + 1..] {
                    let overlap = |x: u32, xs: u32, y: u32, ys: u32| {
                        u64::from(x) < u64::from(y) + u64::from(ys)
                            && u64::from(y) < u64::from(x) + u64::from(xs)
                    };
                    if overlap(a.container, a.size, b.container, b.size)
                        || overlap(a.host, a.size, b.host, b.size)
                    {
                        invalid!(
                            "invalid {flag}: {}:{}:{} and {}:{}:{} overlap",
                            a.container,
                            a.host,
                            a.size,
                            b.container,
                            b.host,
                            b.size
                        );
                    }
                }
            }
        }
        Ok(Some(IdMaps { uid, gid }))
    }

    /// The host id that `id` in the container is, if the map has it.
    pub fn host_of(maps: &[IdMap], id: u32) -> Option<u32> {
        maps.iter()
            .find(|m| {
                (u64::from(m.container)..u64::from(m.container) + u64::from(m.size))
                    .contains(&u64::from(id))
            })
            .map(|m| m.host + (id - m.container))
    }

    /// The container's ids of host ids `uid`/`gid` (from a mapped container's upper
    /// directory); an id the maps lack is the overflow id 65534, as the kernel shows it.
    pub fn to_container(&self, uid: u32, gid: u32) -> (u32, u32) {
        let back = |maps: &[IdMap], id: u32| {
            maps.iter()
                .find(|m| {
                    (u64::from(m.host)..u64::from(m.host) + u64::from(m.size))
                        .contains(&u64::from(id))
                })
                .map_or(65534, |m| m.container + (id - m.host))
        };
        (back(&self.uid, uid), back(&self.gid, gid))
    }

    /// uid_map(5) lines.
    pub fn lines(maps: &[IdMap]) -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
            .collect()
    }

    /// The OCI spec's `uidMappings`/`gidMappings` shape.
    pub fn spec(maps: &[IdMap]) -> serde_json::Value {
        maps.iter()
            .map(|m| serde_json::json!({"containerID": m.container, "hostID": m.host, "size": m.size}))
            .collect()
    }
}

/// A container's healthcheck, in docker's image-config shape (`Healthcheck` of an image's
/// config, `Config.Healthcheck` of `inspect`): durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["CMD", arg…]`, `["CMD-SHELL", "command"]` or `["NONE"]`.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u32,
}

/// docker's defaults where a healthcheck leaves a field 0.
const HEALTH_INTERVAL_NS: u64 = 30_000_000_000;
const HEALTH_TIMEOUT_NS: u64 = 30_000_000_000;
const HEALTH_RETRIES: u32 = 3;

impl Healthcheck {
    /// The command line a check runs: CMD's arguments, or CMD-SHELL's through `/bin/sh -c`.
    pub fn command(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, [cmd])) if kind == "CMD-SHELL" => {
                Some(vec!["/bin/sh".into(), "-c".into(), cmd.clone()])
            }
            _ => None,
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(or_default(self.interval, HEALTH_INTERVAL_NS))
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(or_default(self.timeout, HEALTH_TIMEOUT_NS))
    }

    pub fn start_period(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.start_period)
    }

    pub fn retries(&self) -> u32 {
        if self.retries == 0 {
            HEALTH_RETRIES
        } else {
            self.retries
        }
    }
}

fn or_default(v: u64, default: u64) -> u64 {
    if v == 0 {
        default
    } else {
        v
    }
}

/// `run`'s healthcheck flags; unset ones keep the image's.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd`: a shell command (docker's CMD-SHELL).
    pub cmd: Option<String>,
    pub interval: Option<std::time::Duration>,
    pub timeout: Option<std::time::Duration>,
    pub start_period: Option<std::time::Duration>,
    pub retries: Option<u32>,
    /// `--no-healthcheck`: none, whatever the image says.
    pub disabled: bool,
}

impl HealthOptions {
    /// The healthcheck a container gets: the image's (`image`, its config's `Healthcheck`)
    /// with these flags over it; None for none (`NONE`, or no test at all).
    pub fn resolve(&self, image: Option<Healthcheck>) -> Result<Option<Healthcheck>> {
        let set = self.cmd.is_some()
            || self.interval.is_some()
            || self.timeout.is_some()
            || self.start_period.is_some()
            || self.retries.is_some();
        if self.disabled {
            if set {
                invalid!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(None);
        }
        let mut hc = image.unwrap_or_default();
        if let Some(cmd) = &self.cmd {
            hc.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        let ns = |flag: &str, d: std::time::Duration| -> Result<u64> {
            if d < std::time::Duration::from_millis(1) && !d.is_zero() {
                invalid!("{flag} cannot be less than 1ms");
            }
            Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        if let Some(d) = self.interval {
            hc.interval = ns("--health-interval", d)?;
        }
        if let Some(d) = self.timeout {
            hc.timeout = ns("--health-timeout", d)?;
        }
        if let Some(d) = self.start_period {
            hc.start_period = ns("--health-start-period", d)?;
        }
        if let Some(r) = self.retries {
            hc.retries = r;
        }
        if hc.test.first().is_some_and(|t| t == "NONE") {
            return Ok(None);
        }
        if hc.test.is_empty() {
            if set {
                invalid!(
                    "--health-* options need a healthcheck: give --health-cmd (the image has none)"
                );
            }
            return Ok(None);
        }
        if hc.command().is_none() {
            invalid!(
                "invalid healthcheck test {:?}: use [\"CMD\", args…], [\"CMD-SHELL\", command] or [\"NONE\"]",
                hc.test
            );
        }
        Ok(Some(hc))
    }
}

/// A Go duration, as docker's flags take them: `300ms`, `1.5s`, `2m30s`, `1h`, or `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let bad = || -> Result<std::time::Duration> {
        invalid!("invalid duration {s:?}: use a number and a unit (ns, us, ms, s, m, h), as 30s or 1m30s")
    };
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return bad();
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let Ok(n) = rest[..num_len].parse::<f64>() else {
            return bad();
        };
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return bad(),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    std::time::Duration::try_from_secs_f64(total).or_else(|_| bad())
}

/// docker's `--restart`: what the monitor does when the container exits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    pub name: String,
    /// `on-failure:N`: at most N restarts (0: no limit).
    #[serde(default)]
    pub max_retries: u32,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            name: "no".into(),
            max_retries: 0,
        }
    }
}

impl RestartPolicy {
    /// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let (name, max) = s.split_once(':').unwrap_or((s, ""));
        let max_retries = match (name, max) {
            (_, "") => 0,
            ("on-failure", n) => match n.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    invalid!("invalid restart policy {s:?}: the count must be a whole number")
                }
            },
            _ => invalid!("invalid restart policy {s:?}: only on-failure takes a count"),
        };
        if !["no", "on-failure", "always", "unless-stopped"].contains(&name) {
            invalid!(
                "invalid restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            );
        }
        Ok(RestartPolicy {
            name: name.into(),
            max_retries,
        })
    }
}

/// Where a container's output is kept (docker's `--log-driver` and `--log-opt`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    /// `json-file` (docker's format, the default) or `none` (nothing kept; `logs` refuses).
    pub driver: String,
    /// json-file: rotate once the file reaches this many bytes (never when unset).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// json-file: how many files to keep, the one being written included (1: the file is
    /// cut back to empty instead of rotated).
    #[serde(default = "one")]
    pub max_file: u32,
    /// json-file `labels=` and `env=`: the container labels and environment variables each
    /// line carries as `attrs` (shown by `logs --details`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Rotated files are gzip'd (`LOG.1.gz`): json-file's `compress=true`, `local`'s default.
    #[serde(default)]
    pub compress: bool,
}

fn one() -> u32 {
    1
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            driver: "json-file".into(),
            max_size: None,
            max_file: 1,
            labels: Vec::new(),
            env: Vec::new(),
            compress: false,
        }
    }
}

impl LogConfig {
    /// `--log-driver` and the `--log-opt KEY=VALUE`s, as docker spells them.
    pub fn parse(driver: Option<&str>, opts: &[String]) -> Result<LogConfig> {
        let mut c = LogConfig::default();
        match driver {
            None | Some("json-file") => {}
            Some("none") => c.driver = "none".into(),
            // docker's `local`: rotated and compressed by default (20 MB × 5). Its file format
            // is the driver's own in docker too; here it is json-file's.
            Some("local") => {
                c.driver = "local".into();
                c.max_size = Some(20 << 20);
                c.max_file = 5;
                c.compress = true;
            }
            Some(d) => {
                invalid!("log driver {d:?} is not supported: husk has json-file, local and none")
            }
        }
        for o in opts {
            let Some((k, v)) = o.split_once('=') else {
                invalid!("invalid --log-opt {o:?}: use KEY=VALUE");
            };
            if c.driver == "none" {
                invalid!("the none log driver takes no --log-opt ({k})");
            }
            match k {
                "max-size" if v == "-1" => c.max_size = None,
                "max-size" => c.max_size = Some(parse_bytes(v)? as u64),
                "max-file" => match v.parse::<u32>() {
                    Ok(n) if n >= 1 => c.max_file = n,
                    _ => invalid!("invalid --log-opt max-file={v}: a whole number, at least 1"),
                },
                "labels" if c.driver == "json-file" => c.labels = list(v),
                "env" if c.driver == "json-file" => c.env = list(v),
                "compress" => match v {
                    "true" | "1" => c.compress = true,
                    "false" | "0" => c.compress = false,
                    _ => invalid!("invalid --log-opt compress={v}: true or false"),
                },
                // docker's options that change nothing here.
                "env-regex" | "labels-regex" | "tag" | "mode" => {}
                _ => invalid!("unknown log opt {k:?} for the {} log driver", c.driver),
            }
        }
        if c.max_file > 1 && c.max_size.is_none() {
            invalid!("--log-opt max-file needs max-size");
        }
        Ok(c)
    }
}

/// A transport protocol of a published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `-p`: a container port published on the host.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PortMapping {
    /// The host address it listens on; all of them when unset.
    pub host_ip: Option<std::net::Ipv4Addr>,
    /// A free port the engine picks when unset (`-p CTR`, `-P`).
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// `-p [[IP:]HOST:]CTR[/tcp|/udp]`, ranges (`8000-8001:80-81`) included.
pub fn parse_publish(p: &str) -> Result<Vec<PortMapping>> {
    let (spec, protocol) = match p.rsplit_once('/') {
        Some((s, "tcp")) => (s, Protocol::Tcp),
        Some((s, "udp")) => (s, Protocol::Udp),
        Some((_, other)) => invalid!("invalid port {p:?}: unknown protocol {other:?} (tcp or udp)"),
        None => (p, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => invalid!("invalid port {p:?}: use [[IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"),
    };
    let host_ip = match ip.filter(|i| !i.is_empty()) {
        None => None,
        Some(i) => match i.parse::<std::net::Ipv4Addr>() {
            Ok(a) if a.is_unspecified() => None,
            Ok(a) => Some(a),
            Err(_) => invalid!("invalid port {p:?}: {i:?} is not an IPv4 address"),
        },
    };
    let range = |r: &str| -> Result<(u16, u16)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let num = |n: &str| -> Result<u16> {
            match n.parse::<u32>() {
                Ok(v) if (1..=65535).contains(&v) => Ok(v as u16),
                Ok(_) => invalid!("invalid port {p:?}: {n} is out of range (1-65535)"),
                Err(_) => invalid!("invalid port {p:?}: {n:?} is not a port number"),
            }
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            invalid!("invalid port {p:?}: the range {r} runs backwards");
        }
        Ok((a, b))
    };
    let (c0, c1) = range(ctr)?;
    let host = host.map(range).transpose()?;
    if let Some((h0, h1)) = host {
        if h1 - h0 != c1 - c0 {
            invalid!("invalid port {p:?}: the host and container ranges differ in length");
        }
    }
    Ok((c0..=c1)
        .enumerate()
        .map(|(i, c)| PortMapping {
            host_ip,
            host_port: host.map(|(h0, _)| h0 + i as u16),
            container_port: c,
            protocol,
        })
        .collect())
}

/// `--add-host NAME:IP` (`host-gateway` for the network's gateway).
pub fn parse_add_host(h: &str) -> Result<(String, String)> {
    let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) else {
        invalid!("invalid --add-host {h:?}: use NAME:IP");
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        invalid!("invalid --add-host {h:?}: {name:?} is not a host name");
    }
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        invalid!("invalid --add-host {h:?}: {ip:?} is not an IP address");
    }
    Ok((name.to_string(), ip.to_string()))
}

/// The container's seccomp filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seccomp {
    /// docker's default profile (none with `privileged`).
    #[default]
    Default,
    Unconfined,
    /// A docker-format profile read from this file.
    Profile(PathBuf),
}

/// One of docker's `--security-opt` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    NoNewPrivileges(bool),
    Seccomp(Seccomp),
    /// Accepted for docker's sake and meaningless here (AppArmor, SELinux labels).
    Ignored,
}

/// A process resource limit, OCI's `RLIMIT_*` type with its soft and hard values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// A mount into the container, from `-v`, `--mount` or `--tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A host path. `create` makes a missing source directory (as `-v` does; `--mount`
    /// refuses a missing one).
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
        create: bool,
    },
    /// A named volume, made on first use; `name: None` is an anonymous volume, made for this
    /// container and removed with it by `rm -v`.
    Volume {
        name: Option<String>,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        options: Vec<String>,
    },
}

/// `run -a`: which of the container's streams an attached run joins (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Default for Streams {
    fn default() -> Streams {
        Streams {
            stdin: true,
            stdout: true,
            stderr: true,
        }
    }
}

impl Streams {
    /// docker's `-a STDIN|STDOUT|STDERR` list (any case); None for none given (all).
    pub fn parse(names: &[String]) -> Result<Option<Streams>> {
        if names.is_empty() {
            return Ok(None);
        }
        let mut s = Streams {
            stdin: false,
            stdout: false,
            stderr: false,
        };
        for n in names {
            match n.to_ascii_lowercase().as_str() {
                "stdin" => s.stdin = true,
                "stdout" => s.stdout = true,
                "stderr" => s.stderr = true,
                _ => invalid!("invalid argument {n:?} for \"-a, --attach\": valid streams are STDIN, STDOUT and STDERR"),
            }
        }
        Ok(Some(s))
    }
}

/// Everything `create` and `run` take besides the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The image reference as the user wrote it (pulled when missing, by `pull`).
    pub image: String,
    /// An image no name points at (a step of `build`): used as it is, never pulled.
    pub built: Option<husk_image::images::ImageRecord>,
    pub pull: PullPolicy,
    /// `os/arch[/variant]` to pull; the host's when unset.
    pub platform: Option<String>,
    /// Replaces the image's CMD; with `entrypoint`, its arguments.
    pub command: Vec<String>,
    /// Replaces the image's ENTRYPOINT; `Some("")` clears it.
    pub entrypoint: Option<String>,
    pub name: Option<String>,
    /// Remove the container (and its anonymous volumes) when it exits.
    pub auto_remove: bool,
    /// NAME=VALUE; a bare NAME takes the calling process's value, as docker's client does.
    pub env: Vec<String>,
    /// Files of NAME=VALUE lines, applied before `env`.
    pub env_files: Vec<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub workdir: Option<String>,
    /// `user[:group]`, by number or by the image's /etc/passwd and /etc/group names.
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: Network,
    /// `-p`: ports published on the host (bridge and user networks).
    pub publish: Vec<PortMapping>,
    /// `-P`: every port the image EXPOSEs, on a free host port.
    pub publish_all: bool,
    /// `--network-alias`: more names for it on a user network.
    pub network_aliases: Vec<String>,
    /// `--add-host`: (name, IP or `host-gateway`) lines for /etc/hosts.
    pub add_hosts: Vec<(String, String)>,
    /// `--dns`, `--dns-search`, `--dns-option`: /etc/resolv.conf instead of the host's.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub read_only: bool,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes; -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Rlimit>,
    /// Capability names, with or without `CAP_`; `ALL` for the host's bounding set.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    /// Run a static tini as PID 1.
    pub init: bool,
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL; 10 when unset.
    pub stop_timeout: Option<i64>,
    /// Seconds a start may run before the container is killed.
    pub timeout: Option<u64>,
    pub mounts: Vec<Mount>,
    pub tty: bool,
    /// Keep stdin open.
    pub interactive: bool,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// The log driver and its options; husk's config file's `log-driver` and `log-opts`
    /// (docker's daemon.json keys) when unset.
    pub log: Option<LogConfig>,
    /// `--die-with-parent` (bubblewrap's): when the husk that runs it attached dies, however
    /// it dies, the container is killed and removed. Unset: husk's config file's
    /// `die-with-parent`, for attached runs.
    pub die_with_parent: Option<bool>,
    /// `--shm-size`: bytes of /dev/shm (docker's 64 MiB when unset).
    pub shm_size: Option<i64>,
    /// `--sysctl`: kernel parameters of the container's own namespaces.
    pub sysctls: BTreeMap<String, String>,
    /// `--device`: host devices made in the container.
    pub devices: Vec<DeviceMapping>,
    /// `--device vendor.com/class=name`: CDI devices, as the host's CDI specs describe them.
    pub cdi_devices: Vec<String>,
    /// `--gpus all|N|device=ID,…`: `nvidia.com/gpu` CDI devices.
    pub gpus: Option<String>,
    /// `--cpuset-cpus`, `--cpuset-mems`: `0-3,5` lists.
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// `--group-add`: more groups for the process (numbers, or names from the image).
    pub group_add: Vec<String>,
    /// `--ipc`, `--pid`, `--uts`.
    pub ipc: NamespaceMode,
    pub pid: NamespaceMode,
    pub uts: NamespaceMode,
    /// `--oom-kill-disable` (cgroup v1 only: v2 has no such switch).
    pub oom_kill_disable: bool,
    /// `--memory-reservation`: the soft limit, bytes.
    pub memory_reservation: Option<i64>,
    /// `--blkio-weight` (10-1000).
    pub blkio_weight: Option<u16>,
    /// `--device-read-bps` and kin: (block device path, bytes or operations a second).
    pub device_read_bps: Vec<(PathBuf, u64)>,
    pub device_write_bps: Vec<(PathBuf, u64)>,
    pub device_read_iops: Vec<(PathBuf, u64)>,
    pub device_write_iops: Vec<(PathBuf, u64)>,
    /// `--volumes-from CONTAINER[:ro|rw]`: its mounts, on the same paths.
    pub volumes_from: Vec<String>,
    /// `--cidfile`: the container's id is written there once it exists (refused if the file
    /// is already there, as docker's).
    pub cidfile: Option<PathBuf>,
    /// `--userns`: `host` (the default) or `keep-id`.
    pub userns: Userns,
    /// `--uidmap`/`--gidmap`: a user namespace of the container's own.
    pub id_maps: Option<IdMaps>,
    /// `--rootfs` (podman's): this directory is the container's root, in place of an image;
    /// the container writes to an upper directory of its own, never to it.
    pub rootfs: Option<PathBuf>,
    /// `--report`: the monitor samples the peaks the kernel keeps none of (memory before
    /// Linux 5.19, pids), so that the run's usage has them.
    pub report: bool,
    /// `--health-cmd` and kin, `--no-healthcheck`.
    pub health: HealthOptions,
    /// `--detach-keys` of an attached run with a terminal (`run -it`): the bytes that leave
    /// it running; none turns detaching off.
    pub detach_keys: Vec<u8>,
    /// `-a`: the streams an attached run joins (all when None).
    pub attach: Option<Streams>,
}

/// `update`: new limits for a container (running or not); unset ones stay.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub memory: Option<i64>,
    /// -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
}

/// What `exec` runs in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    /// Added to the container's environment (NAME=VALUE, or a bare NAME as in `RunOptions`).
    pub env: Vec<String>,
    pub tty: bool,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    /// Return once the process started, without waiting for it.
    pub detach: bool,
}

/// `ps`'s choice of containers.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Stopped containers too (implied by a filter or `latest`).
    pub all: bool,
    /// All must match.
    pub filters: Vec<Filter>,
    /// Only the newest.
    pub latest: bool,
}

/// One `--filter KEY=VALUE` of `ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Status(String),
    Name(NamePattern),
    IdPrefix(String),
    Label(String, Option<String>),
    Ancestor(String),
    Exited(String),
    /// `starting`, `healthy`, `unhealthy`, or `none` (no healthcheck).
    Health(String),
}

/// A `name=` filter: a regular expression matched anywhere in the name, with or without
/// its leading `/` (docker's, so `name=^web$` picks exactly `web`).
#[derive(Debug, Clone)]
pub struct NamePattern(regex::Regex);

impl NamePattern {
    pub fn new(pattern: &str) -> Result<NamePattern> {
        regex::Regex::new(pattern).map(NamePattern).map_err(|e| {
            // regex's own text spans lines (the pattern, a caret); its last says why.
            let text = e.to_string();
            let why = text
                .lines()
                .last()
                .unwrap_or("")
                .trim_start_matches("error: ");
            Error::Invalid(format!("invalid filter name={pattern:?}: {why}"))
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        let bare = name.trim_start_matches('/');
        self.0.is_match(bare) || self.0.is_match(&format!("/{bare}"))
    }
}

impl PartialEq for NamePattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for NamePattern {}

impl Filter {
    pub fn parse(filter: &str) -> Result<Filter> {
        let Some((k, v)) = filter.split_once('=') else {
            invalid!("invalid filter {filter:?}: use KEY=VALUE");
        };
        let v = v.to_string();
        Ok(match k {
            "status" => Filter::Status(v),
            "name" => Filter::Name(NamePattern::new(&v)?),
            "id" => Filter::IdPrefix(v),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => Filter::Label(lk.into(), Some(lv.into())),
                None => Filter::Label(v, None),
            },
            "ancestor" => Filter::Ancestor(v),
            "exited" => Filter::Exited(v),
            "health" if ["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) => {
                Filter::Health(v)
            }
            "health" => {
                invalid!("invalid filter health={v:?}: use starting, healthy, unhealthy or none")
            }
            _ => invalid!(
                "invalid filter {k:?}: husk knows status, name, id, label, ancestor, exited, health"
            ),
        })
    }
}

/// Which lines `logs` gives.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only lines written at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    /// Only the last N lines already written.
    pub tail: Option<usize>,
    /// Keep giving lines as they are written, until the container stops.
    pub follow: bool,
}

/// `-l/--label KEY=VALUE` (a bare KEY is an empty value), as `run` and `volume create` take them.
pub fn parse_labels(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// "64m" → bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    // docker's units: 1k, 1kb, 1m, 1mb, 1g, 1gb, 10b.
    let unit = s
        .strip_suffix("kb")
        .or_else(|| s.strip_suffix("mb"))
        .or_else(|| s.strip_suffix("gb"))
        .map(|n| (n, &s[n.len()..n.len() + 1]));
    let s = match unit {
        Some((n, u)) => format!("{n}{u}"),
        None => s,
    };
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1i64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('b') => (&s[..s.len() - 1], 1),
        _ => (&s[..], 1),
    };
    let Ok(n) = num.parse::<f64>() else {
        invalid!("invalid size {s:?}: use bytes or a k, m or g suffix");
    };
    if n <= 0.0 {
        invalid!("invalid size {s:?}: must be positive");
    }
    Ok((n * mult as f64) as i64)
}

/// `--ulimit nofile=1024:2048`.
pub fn parse_ulimit(u: &str) -> Result<Rlimit> {
    let Some((name, vals)) = u.split_once('=') else {
        invalid!("invalid --ulimit {u:?}: use NAME=SOFT[:HARD]");
    };
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
        invalid!("invalid --ulimit {u:?}: unknown limit {name:?}");
    }
    let num = |s: &str| -> Result<u64> {
        if s == "-1" || s == "unlimited" {
            return Ok(u64::MAX);
        }
        match s.parse() {
            Ok(n) => Ok(n),
            Err(_) => invalid!("invalid --ulimit {u:?}: {s:?} is not a number"),
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        invalid!("invalid --ulimit {u:?}: the soft limit is above the hard limit");
    }
    Ok(Rlimit {
        kind: format!("RLIMIT_{}", name.to_ascii_uppercase()),
        soft,
        hard,
    })
}

/// `--security-opt`.
pub fn parse_security_opt(o: &str) -> Result<SecurityOpt> {
    let (k, v) = o.split_once(['=', ':']).unwrap_or((o, ""));
    Ok(match (k, v) {
        ("no-new-privileges", "" | "true") => SecurityOpt::NoNewPrivileges(true),
        ("no-new-privileges", "false") => SecurityOpt::NoNewPrivileges(false),
        ("seccomp", "unconfined") => SecurityOpt::Seccomp(Seccomp::Unconfined),
        ("seccomp", path) if !path.is_empty() => SecurityOpt::Seccomp(Seccomp::Profile(path.into())),
        ("apparmor", "unconfined") | ("label", "disable") => SecurityOpt::Ignored,
        _ => invalid!("unsupported --security-opt {o:?}: husk knows no-new-privileges, seccomp=unconfined|PROFILE.json, apparmor=unconfined, label=disable"),
    })
}

/// Is `name` a volume name (and not a path)?
pub fn valid_volume_name(name: &str) -> bool {
    name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Mount {
    /// `-v SOURCE:TARGET[:ro|rw]`, or `-v TARGET` for an anonymous volume. A SOURCE that is an
    /// absolute path is a bind mount, any other a volume name.
    pub fn parse_volume(v: &str) -> Result<Mount> {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [d] => (None, *d, ""),
            [s, d] => (Some(*s), *d, ""),
            [s, d, m] => (Some(*s), *d, *m),
            _ => invalid!(
                "invalid volume {v:?}: use SOURCE:TARGET[:ro], or TARGET for an anonymous volume"
            ),
        };
        let readonly = match mode {
            "" | "rw" => false,
            "ro" => true,
            m => invalid!("invalid volume {v:?}: unknown mode {m:?} (ro or rw)"),
        };
        let target = dst.to_string();
        Ok(match src {
            None => Mount::Volume {
                name: None,
                target,
                readonly: false,
            },
            Some(s) if s.starts_with('/') => Mount::Bind {
                source: s.into(),
                target,
                readonly,
                create: true,
            },
            Some(s) => {
                if !valid_volume_name(s) {
                    invalid!(
                        "invalid volume {v:?}: {s:?} is neither an absolute path nor a volume name"
                    );
                }
                Mount::Volume {
                    name: Some(s.into()),
                    target,
                    readonly,
                }
            }
        })
    }

    /// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`.
    pub fn parse_mount(m: &str) -> Result<Mount> {
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
                        _ => invalid!("invalid --mount {m:?}: type must be bind, volume or tmpfs"),
                    }
                }
                "source" | "src" => src = Some(v.to_string()),
                "target" | "destination" | "dst" => dst = Some(v.to_string()),
                "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
                "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
                "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
                _ => invalid!("invalid --mount {m:?}: unknown option {k:?}"),
            }
        }
        let Some(target) = dst else {
            invalid!("invalid --mount {m:?}: target is required");
        };
        Ok(match (kind, src) {
            ("bind", Some(s)) => Mount::Bind {
                source: s.into(),
                target,
                readonly: ro,
                create: false,
            },
            ("bind", None) => invalid!("invalid --mount {m:?}: a bind mount needs a source"),
            ("volume", name) => Mount::Volume {
                name,
                target,
                readonly: ro,
            },
            (_, _) => {
                if ro {
                    tmpfs_opts.push("ro".into());
                }
                Mount::Tmpfs {
                    target,
                    options: tmpfs_opts,
                }
            }
        })
    }

    /// `--tmpfs TARGET[:OPTIONS]`.
    pub fn parse_tmpfs(t: &str) -> Mount {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        Mount::Tmpfs {
            target: dst.into(),
            options: opts
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_docker_flags_take_them() {
        use std::time::Duration;
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "1x", "s", "-1s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn healthchecks_resolve_flags_over_the_image() {
        use std::time::Duration;
        let image = Healthcheck {
            test: vec!["CMD".into(), "check".into()],
            interval: 5_000_000_000,
            retries: 2,
            ..Default::default()
        };
        let none = HealthOptions::default();
        assert_eq!(
            none.resolve(Some(image.clone())).unwrap(),
            Some(image.clone())
        );
        assert_eq!(none.resolve(None).unwrap(), None);
        let cmd = HealthOptions {
            cmd: Some("curl -f localhost".into()),
            timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let hc = cmd.resolve(Some(image.clone())).unwrap().unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "curl -f localhost"]);
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries),
            (5_000_000_000, 2_000_000_000, 2)
        );
        assert_eq!(
            hc.command().unwrap(),
            ["/bin/sh", "-c", "curl -f localhost"]
        );
        assert_eq!(hc.interval(), Duration::from_secs(5));
        assert_eq!(hc.retries(), 2);
        let off = HealthOptions {
            disabled: true,
            ..Default::default()
        };
        assert_eq!(off.resolve(Some(image.clone())).unwrap(), None);
        let nothing = Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(none.resolve(Some(nothing)).unwrap(), None);
        let odd = Healthcheck {
            test: vec!["CMD-SHELL".into()],
            ..Default::default()
        };
        assert!(none.resolve(Some(odd)).is_err());
        let defaults = Healthcheck {
            test: vec!["CMD".into(), "x".into()],
            ..Default::default()
        };
        assert_eq!(defaults.interval(), Duration::from_secs(30));
        assert_eq!(defaults.timeout(), Duration::from_secs(30));
        assert_eq!(defaults.retries(), 3);
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }

    #[test]
    fn mounts_parse_like_docker() {
        assert_eq!(
            Mount::parse_volume("/src:/dst:ro").unwrap(),
            Mount::Bind {
                source: "/src".into(),
                target: "/dst".into(),
                readonly: true,
                create: true
            }
        );
        assert_eq!(
            Mount::parse_volume("/data").unwrap(),
            Mount::Volume {
                name: None,
                target: "/data".into(),
                readonly: false
            }
        );
        assert!(
            Mount::parse_volume("x:/d").is_err(),
            "one letter is no name"
        );
        assert!(Mount::parse_volume("/a:/b:rx").is_err());
        assert_eq!(
            Mount::parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,ro").unwrap(),
            Mount::Tmpfs {
                target: "/t".into(),
                options: vec!["size=1m".into(), "ro".into()]
            }
        );
        assert!(Mount::parse_mount("type=bind,target=/x").is_err());
        assert_eq!(
            Mount::parse_tmpfs("/run:size=1m,mode=700"),
            Mount::Tmpfs {
                target: "/run".into(),
                options: vec!["size=1m".into(), "mode=700".into()]
            }
        );
        assert_eq!(
            Filter::parse("label=a=b").unwrap(),
            Filter::Label("a".into(), Some("b".into()))
        );
        assert!(Filter::parse("colour=red").is_err());
        // name= is docker's: a regular expression, anchored or not, with or without the `/`.
        let Filter::Name(exact) = Filter::parse("name=^web$").unwrap() else {
            panic!("not a name filter")
        };
        assert!(exact.matches("web") && exact.matches("/web"));
        assert!(!exact.matches("web2") && !exact.matches("myweb"));
        let Filter::Name(part) = Filter::parse("name=eb").unwrap() else {
            panic!("not a name filter")
        };
        assert!(part.matches("web") && part.matches("ebony"));
        let Filter::Name(slash) = Filter::parse("name=^/web").unwrap() else {
            panic!("not a name filter")
        };
        assert!(slash.matches("web") && !slash.matches("aweb"));
        let bad = Filter::parse("name=(").unwrap_err().to_string();
        assert_eq!(bad.lines().count(), 1, "{bad}");
        assert!(bad.contains("name=\"(\""), "{bad}");
        assert_eq!(parse_ulimit("nofile=1:2").unwrap().kind, "RLIMIT_NOFILE");
        let tcp = |h: Option<u16>, c| PortMapping {
            host_ip: None,
            host_port: h,
            container_port: c,
            protocol: Protocol::Tcp,
        };
        assert_eq!(parse_publish("8080:80").unwrap(), vec![tcp(Some(8080), 80)]);
        assert_eq!(parse_publish("80").unwrap(), vec![tcp(None, 80)]);
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            vec![tcp(Some(8000), 80), tcp(Some(8001), 81)]
        );
        let udp = parse_publish("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(udp[0].protocol, Protocol::Udp);
        assert_eq!(udp[0].host_ip, Some(std::net::Ipv4Addr::LOCALHOST));
        assert_eq!(parse_publish("127.0.0.1::80").unwrap()[0].host_port, None);
        for bad in [
            "70000:80",
            "x:80",
            "80/sctp",
            "1:2:3:4",
            "0:80",
            "8000-8002:80-81",
            "300.1.1.1:1:1",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Network::parse("container:web").unwrap(),
            Network::Container("web".into())
        );
        assert_eq!(
            Network::parse("mynet").unwrap(),
            Network::Named("mynet".into())
        );
        assert!(parse_add_host("db:10.0.0.1").is_ok());
        assert!(parse_add_host("gw:host-gateway").is_ok());
        assert!(parse_add_host("db:nowhere").is_err());
        let l = LogConfig::parse(None, &["max-size=1k".into(), "max-file=3".into()]).unwrap();
        assert_eq!((l.max_size, l.max_file), (Some(1024), 3));
        assert_eq!(LogConfig::parse(Some("none"), &[]).unwrap().driver, "none");
        assert_eq!(RestartPolicy::parse("on-failure:3").unwrap().max_retries, 3);
        assert_eq!(
            RestartPolicy::parse("unless-stopped").unwrap().name,
            "unless-stopped"
        );
        for bad in ["sometimes", "always:3", "on-failure:x"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
        for (d, o) in [
            (Some("syslog"), ""),
            (None, "max-file=0"),
            (None, "max-file=2"),
            (None, "colour=red"),
            (Some("none"), "max-size=1k"),
        ] {
            let opts: Vec<String> = [o]
                .iter()
                .filter(|x| !x.is_empty())
                .map(|x| x.to_string())
                .collect();
            assert!(LogConfig::parse(d, &opts).is_err(), "{d:?} {o}");
        }
        assert!(parse_ulimit("nofile=2:1").is_err());
    }
}

/// `commit`'s settings.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Dockerfile instructions for the image's config (`-c`).
    pub changes: Vec<String>,
    /// The history entry's comment (`-m`).
    pub message: String,
    /// The image's author (`-a`).
    pub author: String,
    /// Pause a running container while its changes are read (docker's default).
    pub pause: bool,
}
