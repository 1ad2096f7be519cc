//! A container's network while it runs: its namespace, its interface on each network (CNI
//! ADD when it starts, DEL when it stops), its published ports, its names in the network's
//! DNS server and its /etc files. What was made is written to `network.json` in the
//! container's directory before and after each step, so whoever finds the container stopped
//! (its monitor, `rm`, a prune after the monitor was SIGKILLed) can undo exactly that.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cni;
use crate::dns;
use crate::error::{failed, Context, Error, Result};
use crate::etc_files::{self, Resolv};
use crate::netns;
use crate::networks::{self, Network};
use crate::options::PortMapping;
use crate::ports;
use crate::store::{self, Container, Status};

/// The container on one network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub network_id: String,
    pub ifname: String,
    pub ip: Option<Ipv4Addr>,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    pub aliases: Vec<String>,
    /// Its names are in the network's DNS server.
    pub dns: bool,
    /// The plugin list it was added with, the runtime config it was given (portmap's DEL
    /// needs the mappings again) and the result, for DEL.
    pub conflist: Value,
    #[serde(default)]
    pub runtime_config: Value,
    pub result: Value,
}

/// What the container's network is made of now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Live {
    pub netns: Option<PathBuf>,
    pub attachments: Vec<Attachment>,
    /// Published ports with their host ports.
    pub ports: Vec<PortMapping>,
    /// The pasta process that networks a rootless container.
    #[serde(default)]
    pub pasta: Option<i32>,
}

fn live_path(root: &Path, id: &str) -> PathBuf {
    store::dir(root, id).join("network.json")
}

/// The container's network as its last start made it; none when it is not running.
pub fn live(root: &Path, id: &str) -> Option<Live> {
    serde_json::from_slice(&fs::read(live_path(root, id)).ok()?).ok()
}

fn save(root: &Path, id: &str, l: &Live) -> Result<()> {
    let p = live_path(root, id);
    let tmp = p.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec(l)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))
}

/// How the container is networked, from its record.
pub enum Mode<'a> {
    None,
    Host,
    Container(&'a str),
    /// Its own namespace, networked by pasta (rootless).
    Pasta,
    /// Its own namespace on these networks (the first is its `eth0`).
    Networks(Vec<&'a str>),
}

pub fn mode(c: &Container) -> Mode<'_> {
    match c.network.as_str() {
        "none" => Mode::None,
        "host" => Mode::Host,
        "pasta" => Mode::Pasta,
        n => match n.strip_prefix("container:") {
            Some(other) => Mode::Container(other),
            None => Mode::Networks(
                std::iter::once(n)
                    .chain(c.extra_networks.iter().map(String::as_str))
                    .collect(),
            ),
        },
    }
}

fn resolv(c: &Container, network_dns: Option<Ipv4Addr>) -> Resolv {
    Resolv {
        servers: c.dns.clone(),
        search: c.dns_search.clone(),
        options: c.dns_options.clone(),
        host_network: c.network == "host",
        network_dns,
    }
}

fn add_hosts(c: &Container, gateway: Option<Ipv4Addr>) -> Vec<(String, String)> {
    c.add_hosts
        .iter()
        .map(|(n, ip)| match (ip.as_str(), gateway) {
            ("host-gateway", Some(gw)) => (n.clone(), gw.to_string()),
            _ => (n.clone(), ip.clone()),
        })
        .collect()
}

/// Write the container's /etc files as they are before it has an address (at create).
pub fn write_etc_files(root: &Path, c: &Container) -> Result<()> {
    let dir = store::dir(root, &c.id);
    etc_files::write_hostname(&dir, &c.hostname)?;
    etc_files::write_hosts(
        &dir,
        &etc_files::hosts_text(c.network == "host", &add_hosts(c, None), None),
    )?;
    etc_files::write_resolv(&dir, &resolv(c, None))
}

/// Give container `c` its network before it is created: the ports' sockets come back, to be
/// held while it runs. On failure nothing of it stays.
pub fn attach(root: &Path, c: &Container) -> Result<ports::Held> {
    // What a monitor killed before it could clean up left behind.
    if live(root, &c.id).is_some() {
        detach(root, &c.id);
    }
    let r = attach_inner(root, c);
    if r.is_err() {
        detach(root, &c.id);
    }
    r
}

fn attach_inner(root: &Path, c: &Container) -> Result<ports::Held> {
    let dir = store::dir(root, &c.id);
    let path = store::netns_path(root, &c.id);
    match mode(c) {
        Mode::None | Mode::Host => Ok(Vec::new()),
        Mode::Container(other) => {
            let o = store::find(root, other)?;
            let st = o.observed();
            if st.status != Status::Running || st.pid <= 0 {
                return Err(Error::Conflict(format!(
                    "cannot join the network of container {}: it is not running",
                    o.name
                )));
            }
            netns::remove(&path);
            save(
                root,
                &c.id,
                &Live {
                    netns: Some(path.clone()),
                    ..Default::default()
                },
            )?;
            netns::share(st.pid, &path)?;
            // Its names and resolvers are the other container's, as docker shares them.
            let odir = store::dir(root, &o.id);
            for f in ["hosts", "resolv.conf"] {
                if let Ok(t) = fs::read(etc_files::path(&odir, f)) {
                    fs::write(etc_files::path(&dir, f), t)
                        .with_context(|| format!("cannot write the container's /etc/{f}"))?;
                }
            }
            Ok(Vec::new())
        }
        Mode::Pasta => {
            let (mut l, held) = own_namespace(root, c, &path)?;
            // The claim picks the free host ports and keeps two containers off one; pasta
            // binds them itself, so ours are let go.
            drop(held);
            let pid_file = store::net_dir(root).join(format!("pasta-{}.pid", c.id));
            l.pasta = Some(crate::pasta::start(&path, &l.ports, &pid_file)?);
            let _ = fs::remove_file(&pid_file);
            save(root, &c.id, &l)?;
            etc_files::write_hosts(
                &dir,
                &etc_files::hosts_text(false, &add_hosts(c, None), None),
            )?;
            etc_files::write_resolv(&dir, &resolv(c, None))?;
            Ok(Vec::new())
        }
        Mode::Networks(nets) => {
            let defs: Vec<Network> = nets
                .iter()
                .map(|n| networks::find(root, n))
                .collect::<Result<_>>()?;
            let (mut l, held) = own_namespace(root, c, &path)?;
            let firewall = defs.iter().any(|d| !d.internal) && networks::forward_filtered();
            for (i, def) in defs.iter().enumerate() {
                let a = add_to(root, c, &mut l, def, &format!("eth{i}"), i == 0, firewall)?;
                l.attachments.push(a);
                save(root, &c.id, &l)?;
            }
            let first = l.attachments.first();
            let own = first.and_then(|a| a.ip);
            let gateway = first.and_then(|a| a.gateway);
            let names = vec![c.hostname.clone()];
            etc_files::write_hosts(
                &dir,
                &etc_files::hosts_text(
                    false,
                    &add_hosts(c, gateway),
                    own.map(|ip| (ip, names.as_slice())),
                ),
            )?;
            let network_dns = l.attachments.iter().find(|a| a.dns).and_then(|a| a.gateway);
            etc_files::write_resolv(&dir, &resolv(c, network_dns))?;
            Ok(held)
        }
    }
}

/// A network namespace of the container's own at `path`, and its published ports claimed;
/// each step recorded before the next, for `detach`.
fn own_namespace(root: &Path, c: &Container, path: &Path) -> Result<(Live, ports::Held)> {
    netns::remove(path);
    let mut l = Live {
        netns: Some(path.to_path_buf()),
        ..Default::default()
    };
    save(root, &c.id, &l)?;
    netns::create(path)?;
    let (ports, held) = ports::claim(root, &c.id, &c.ports)?;
    l.ports = ports;
    save(root, &c.id, &l)?;
    Ok((l, held))
}

fn port_mappings(ports: &[PortMapping]) -> Value {
    ports
        .iter()
        .map(|p| {
            json!({"hostPort": p.host_port, "containerPort": p.container_port,
                   "protocol": p.protocol.as_str(),
                   "hostIP": p.host_ip.map(|i| i.to_string()).unwrap_or_default()})
        })
        .collect()
}

/// CNI ADD of container `c` to network `def` as interface `ifname`; the ports go with the
/// first network. The attachment is on record (result pending) before the plugins run.
fn add_to(
    root: &Path,
    c: &Container,
    l: &mut Live,
    def: &Network,
    ifname: &str,
    first: bool,
    firewall: bool,
) -> Result<Attachment> {
    let with_ports = first && !l.ports.is_empty();
    let mut a = Attachment {
        network: def.name.clone(),
        network_id: def.id.clone(),
        ifname: ifname.into(),
        ip: None,
        prefix: 0,
        gateway: None,
        mac: String::new(),
        aliases: c.network_aliases.clone(),
        dns: false,
        conflist: networks::conflist(root, def, with_ports, firewall),
        runtime_config: json!({"portMappings": if with_ports { port_mappings(&l.ports) } else { json!([]) }}),
        result: Value::Null,
    };
    let netns = l
        .netns
        .clone()
        .ok_or_else(|| failed!("container {} has no network namespace", c.name))?;
    // Pending: a crash from here on leaves enough on record for DEL.
    let mut pending = l.clone();
    pending.attachments.push(a.clone());
    save(root, &c.id, &pending)?;
    let target = cni::Target {
        container_id: &c.id,
        netns: &netns,
        ifname,
        runtime_config: &a.runtime_config,
    };
    let added = {
        let _serial = networks::cni_lock(root)?;
        // Under the lock `network rm` takes to remove the rule: a network removed since it
        // was looked up gets no rule back.
        if !networks::exists(root, &def.name) {
            return Err(Error::NoSuchNetwork(def.name.clone()));
        }
        networks::ensure_masquerade(def)?;
        cni::add(&a.conflist, &target)
    };
    let result = added.with_context(|| {
        format!(
            "cannot connect container {} to network {}",
            c.name, def.name
        )
    })?;
    let ip = &result["ips"][0];
    if let Some((addr, prefix)) = ip["address"].as_str().and_then(|s| s.split_once('/')) {
        a.ip = addr.parse().ok();
        a.prefix = prefix.parse().unwrap_or(0);
    }
    a.gateway = ip["gateway"].as_str().and_then(|g| g.parse().ok());
    if let Some(i) = ip["interface"].as_u64() {
        a.mac = result["interfaces"][i as usize]["mac"]
            .as_str()
            .unwrap_or_default()
            .into();
    }
    a.result = result;
    if def.dns {
        if let (Some(ip), Some(gw)) = (a.ip, a.gateway) {
            let mut names = vec![c.name.clone(), c.short_id().to_string()];
            names.extend(c.network_aliases.iter().cloned());
            a.dns = true;
            // On record before the server hears of it, so a failure here is undone too.
            let mut with = l.clone();
            with.attachments.push(a.clone());
            save(root, &c.id, &with)?;
            dns::add(root, &def.name, gw, &c.id, ip, &names)?;
        }
    }
    Ok(a)
}

fn remove_from(root: &Path, id: &str, netns: &Path, a: &Attachment) -> Result<()> {
    if a.dns {
        let _ = dns::remove(root, &a.network, id);
    }
    let target = cni::Target {
        container_id: id,
        netns,
        ifname: &a.ifname,
        runtime_config: &a.runtime_config,
    };
    let prev = (!a.result.is_null()).then_some(&a.result);
    let _serial = networks::cni_lock(root)?;
    cni::del(&a.conflist, &target, prev)
}

/// Undo what `attach` made for container `id`, whatever state it got to. Quiet: a stopping
/// container must stop, and what is already gone needs no undoing.
pub fn detach(root: &Path, id: &str) {
    let path = store::netns_path(root, id);
    let Some(l) = live(root, id) else {
        // `attach` records the namespace before it claims a port or makes anything: with no
        // record there is nothing to undo (the `none` and `host` containers' every exit).
        return;
    };
    let netns = l.netns.clone().unwrap_or_else(|| path.clone());
    for a in l.attachments.iter().rev() {
        let _ = remove_from(root, id, &netns, a);
    }
    ports::release(root, id);
    if let Some(pid) = l.pasta {
        crate::pasta::stop(pid, &netns);
    }
    netns::remove(&path);
    let _ = fs::remove_file(live_path(root, id));
}

/// A running container got a new name: its DNS names on user networks follow.
pub fn renamed(root: &Path, c: &Container) {
    let Some(l) = live(root, &c.id) else {
        return;
    };
    for a in l.attachments.iter().filter(|a| a.dns) {
        if let (Some(ip), Some(gw)) = (a.ip, a.gateway) {
            let mut names = vec![c.name.clone(), c.short_id().to_string()];
            names.extend(c.network_aliases.iter().cloned());
            let _ = dns::add(root, &a.network, gw, &c.id, ip, &names);
        }
    }
}

/// `network connect` of a running container: a new interface now (and on every start).
pub fn connect(root: &Path, c: &Container, def: &Network) -> Result<()> {
    let Some(mut l) = live(root, &c.id).filter(|l| !l.attachments.is_empty()) else {
        return Ok(());
    };
    let used: Vec<&str> = l.attachments.iter().map(|a| a.ifname.as_str()).collect();
    let ifname = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !used.contains(&n.as_str()))
        .expect("an unbounded range");
    let firewall = !def.internal && networks::forward_filtered();
    let a = add_to(root, c, &mut l, def, &ifname, false, firewall)?;
    l.attachments.push(a);
    save(root, &c.id, &l)
}

/// `network disconnect` of a running container: its interface on `network` goes now.
pub fn disconnect(root: &Path, c: &Container, network: &str) -> Result<()> {
    let Some(mut l) = live(root, &c.id) else {
        return Ok(());
    };
    let Some(i) = l.attachments.iter().position(|a| a.network == network) else {
        return Ok(());
    };
    let a = l.attachments.remove(i);
    let netns = l
        .netns
        .clone()
        .unwrap_or_else(|| store::netns_path(root, &c.id));
    let r = remove_from(root, &c.id, &netns, &a);
    save(root, &c.id, &l)?;
    r
}

/// docker's `NetworkSettings` of a container.
pub fn settings(root: &Path, c: &Container) -> Value {
    let l = live(root, &c.id).unwrap_or_default();
    let mut ports = serde_json::Map::new();
    for p in &c.ports {
        ports.insert(
            format!("{}/{}", p.container_port, p.protocol.as_str()),
            Value::Null,
        );
    }
    for p in &l.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if !entry.is_array() {
            *entry = json!([]);
        }
        if let Some(v) = entry.as_array_mut() {
            v.push(json!({
                "HostIp": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                "HostPort": p.host_port.map(|h| h.to_string()).unwrap_or_default(),
            }));
        }
    }
    let mut nets = serde_json::Map::new();
    if let Mode::Networks(names) = mode(c) {
        for n in names {
            let a = l.attachments.iter().find(|a| a.network == n);
            nets.insert(
                n.to_string(),
                json!({
                    "Aliases": c.network_aliases,
                    "NetworkID": a.map(|a| a.network_id.clone()).unwrap_or_default(),
                    "IPAddress": a.and_then(|a| a.ip).map(|i| i.to_string()).unwrap_or_default(),
                    "IPPrefixLen": a.map(|a| a.prefix).unwrap_or(0),
                    "Gateway": a.and_then(|a| a.gateway).map(|i| i.to_string()).unwrap_or_default(),
                    "MacAddress": a.map(|a| a.mac.clone()).unwrap_or_default(),
                }),
            );
        }
    } else if matches!(mode(c), Mode::None | Mode::Host | Mode::Pasta) {
        nets.insert(
            c.network.clone(),
            json!({"IPAddress": "", "Gateway": "", "MacAddress": ""}),
        );
    }
    let first = l.attachments.first();
    json!({
        "SandboxKey": l.netns.map(|p| p.display().to_string()).unwrap_or_default(),
        "Ports": ports,
        "IPAddress": first.and_then(|a| a.ip).map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map(|a| a.prefix).unwrap_or(0),
        "Gateway": first.and_then(|a| a.gateway).map(|i| i.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|a| a.mac.clone()).unwrap_or_default(),
        "Networks": nets,
    })
}

/// docker's PORTS column: `0.0.0.0:8080->80/tcp, 9000/tcp`.
pub fn ports_column(root: &Path, c: &Container) -> String {
    let l = live(root, &c.id).unwrap_or_default();
    let mut out: Vec<String> = l
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                p.host_port.unwrap_or(0),
                p.container_port,
                p.protocol.as_str()
            )
        })
        .collect();
    out.dedup();
    out.join(", ")
}

/// Bytes received and sent on the container's interfaces (loopback aside), from the
/// network namespace of its process `pid`.
pub fn net_io(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

/// The containers that use network `name`, running or not.
pub fn users(root: &Path, name: &str) -> Result<Vec<Container>> {
    Ok(store::list(root)?
        .into_iter()
        .filter(|c| c.network == name || c.extra_networks.iter().any(|n| n == name))
        .collect())
}
