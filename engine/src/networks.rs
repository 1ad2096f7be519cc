//! Networks as records: `bridge` (the default, made on first use) and those `network create`
//! makes, one JSON file each under `<root>/networks`, and the CNI plugin list each one is.
//! `none` and `host` are modes, not records, but `network ls` shows them as docker does.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{failed, invalid, Context, Error, Result};
use crate::store;

/// The default bridge's name, interface and subnet.
pub const DEFAULT: &str = "bridge";
const DEFAULT_BRIDGE: &str = "husk0";
const DEFAULT_SUBNET: &str = "10.77.0.0/16";
/// Where `network create` without `--subnet` finds a free /24.
const POOL: (u8, u8) = (10, 78);

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet> {
        let Some((ip, len)) = s.split_once('/') else {
            invalid!("invalid subnet {s:?}: use ADDRESS/PREFIX, e.g. 10.1.2.0/24");
        };
        let (Ok(ip), Ok(prefix)) = (ip.parse::<Ipv4Addr>(), len.parse::<u8>()) else {
            invalid!("invalid subnet {s:?}: use an IPv4 ADDRESS/PREFIX, e.g. 10.1.2.0/24");
        };
        if !(8..=30).contains(&prefix) {
            invalid!("invalid subnet {s:?}: the prefix must be 8 to 30 bits");
        }
        let base = Ipv4Addr::from(u32::from(ip) & Self::mask(prefix));
        if base != ip {
            invalid!("invalid subnet {s:?}: host bits are set (did you mean {base}/{prefix}?)");
        }
        Ok(Subnet { base, prefix })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.base)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.base) || other.contains(self.base)
    }

    /// The first host address: the gateway docker picks.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// One network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    /// `bridge`; `host` and `null` for the two modes `network ls` shows as networks.
    #[serde(default = "bridge_driver")]
    pub driver: String,
    pub created: String,
    /// The Linux bridge its containers' veth pairs hang on.
    pub bridge: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    /// No way out: no default route and no NAT.
    pub internal: bool,
    /// Containers find each other by name through aardvark-dns (user networks; docker's
    /// default bridge has no names either).
    pub dns: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn bridge_driver() -> String {
    "bridge".into()
}

/// `host` and `none` as `network ls` shows them: no record, a fixed id.
pub fn mode_networks() -> Vec<Network> {
    [("host", "host"), ("none", "null")]
        .into_iter()
        .map(|(name, driver)| {
            // A stable id, the same in every store: the digest of the name.
            let digest = husk_image::Digest::of(format!("husk network {name}").as_bytes());
            let id = digest.to_string().trim_start_matches("sha256:").to_string();
            Network {
                name: name.into(),
                id,
                driver: driver.into(),
                created: String::new(),
                bridge: String::new(),
                subnet: String::new(),
                gateway: Ipv4Addr::UNSPECIFIED,
                internal: false,
                dns: false,
                labels: BTreeMap::new(),
            }
        })
        .collect()
}

/// What `network create` takes.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

fn dir(root: &Path) -> PathBuf {
    root.join("networks")
}

fn file(root: &Path, name: &str) -> PathBuf {
    dir(root).join(format!("{name}.json"))
}

/// Is `name` a name `network create` takes?
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The networks' lock: creations and removals one at a time, so two never take one subnet
/// or one bridge name.
fn lock(root: &Path) -> Result<fs::File> {
    let d = dir(root);
    fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    husk_sys::lock_file(&d.join(".lock"), true).context("cannot lock the networks")
}

/// Every network on record, the default bridge included once it was used.
pub fn list(root: &Path) -> Result<Vec<Network>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir(root)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).context("cannot read the networks"),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let n: Network = serde_json::from_slice(&fs::read(&p)?)
                .with_context(|| format!("network record {} is corrupt", p.display()))?;
            out.push(n);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The network `query` names (name, id or id prefix). The default bridge is made on first use.
pub fn find(root: &Path, query: &str) -> Result<Network> {
    if query == DEFAULT {
        return default_bridge(root);
    }
    if let Ok(t) = fs::read(file(root, query)) {
        return serde_json::from_slice(&t)
            .with_context(|| format!("network record {query} is corrupt"));
    }
    let by_id: Vec<Network> = list(root)?
        .into_iter()
        .filter(|n| query.len() >= 3 && n.id.starts_with(query))
        .collect();
    match by_id.len() {
        1 => Ok(by_id.into_iter().next().expect("one")),
        0 => Err(Error::NoSuchNetwork(query.to_string())),
        _ => Err(Error::Invalid(format!(
            "network id prefix {query} is ambiguous"
        ))),
    }
}

fn default_bridge(root: &Path) -> Result<Network> {
    if let Ok(t) = fs::read(file(root, DEFAULT)) {
        if let Ok(n) = serde_json::from_slice(&t) {
            return Ok(n);
        }
    }
    let _l = lock(root)?;
    if let Ok(t) = fs::read(file(root, DEFAULT)) {
        if let Ok(n) = serde_json::from_slice(&t) {
            return Ok(n);
        }
    }
    let subnet = Subnet::parse(DEFAULT_SUBNET)?;
    let n = Network {
        name: DEFAULT.into(),
        id: store::random_id()?,
        driver: bridge_driver(),
        created: crate::time::now(),
        bridge: DEFAULT_BRIDGE.into(),
        subnet: subnet.to_string(),
        gateway: subnet.first_host(),
        internal: false,
        dns: false,
        labels: BTreeMap::new(),
    };
    save(root, &n)?;
    Ok(n)
}

fn save(root: &Path, n: &Network) -> Result<()> {
    let path = file(root, &n.name);
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(n)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// The host's own IPv4 routes (not through husk's bridges), from /proc/net/route: a subnet
/// picked for a new network keeps clear of them.
fn host_routes(ours: &[String]) -> Vec<Subnet> {
    let text = fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || ours.iter().any(|b| b == f[0]) {
                return None;
            }
            let dst = u32::from_str_radix(f[1], 16).ok()?;
            let mask = u32::from_str_radix(f[7], 16).ok()?;
            let prefix = u32::from_be(mask).count_ones() as u8;
            (prefix > 0).then(|| Subnet {
                base: Ipv4Addr::from(u32::from_be(dst)),
                prefix,
            })
        })
        .collect()
}

/// `network create`.
pub fn create(root: &Path, o: &CreateOptions) -> Result<Network> {
    if !valid_name(&o.name) {
        invalid!(
            "invalid network name {:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64",
            o.name
        );
    }
    if ["none", "host", "default"].contains(&o.name.as_str()) || o.name.starts_with("container:") {
        invalid!("network name {} is reserved", o.name);
    }
    let subnet = o.subnet.as_deref().map(Subnet::parse).transpose()?;
    let gateway = match &o.gateway {
        None => None,
        Some(g) => match g.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => invalid!("invalid gateway {g:?}: not an IPv4 address"),
        },
    };
    if gateway.is_some() && subnet.is_none() {
        invalid!("--gateway needs --subnet");
    }
    if o.name == DEFAULT {
        return Err(Error::Conflict(format!(
            "network with name {} already exists",
            o.name
        )));
    }
    default_bridge(root)?;
    let _l = lock(root)?;
    let existing = list(root)?;
    if existing.iter().any(|n| n.name == o.name) {
        return Err(Error::Conflict(format!(
            "network with name {} already exists",
            o.name
        )));
    }
    let taken: Vec<(String, Subnet)> = existing
        .iter()
        .filter_map(|n| Subnet::parse(&n.subnet).ok().map(|s| (n.name.clone(), s)))
        .collect();
    let subnet = match subnet {
        Some(s) => {
            if let Some((other, os)) = taken.iter().find(|(_, t)| t.overlaps(&s)) {
                return Err(Error::Conflict(format!(
                    "subnet {s} overlaps network {other}'s {os}"
                )));
            }
            s
        }
        None => {
            let bridges: Vec<String> = existing.iter().map(|n| n.bridge.clone()).collect();
            let routes = host_routes(&bridges);
            (0..=255u8)
                .map(|i| Subnet {
                    base: Ipv4Addr::new(POOL.0, POOL.1, i, 0),
                    prefix: 24,
                })
                .find(|s| {
                    !taken.iter().any(|(_, t)| t.overlaps(s))
                        && !routes.iter().any(|r| r.overlaps(s))
                })
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "no free /24 left in {}.{}.0.0/16: give --subnet",
                        POOL.0, POOL.1
                    ))
                })?
        }
    };
    let gateway = gateway.unwrap_or_else(|| subnet.first_host());
    if !subnet.contains(gateway) || gateway == subnet.base {
        invalid!("gateway {gateway} is not a host address of subnet {subnet}");
    }
    // husk1, husk2, …: the first number no network's bridge has.
    let bridge = (1..)
        .map(|i| format!("husk{i}"))
        .find(|b| !existing.iter().any(|n| &n.bridge == b))
        .expect("an unbounded range");
    let n = Network {
        name: o.name.clone(),
        id: store::random_id()?,
        driver: bridge_driver(),
        created: crate::time::now(),
        bridge,
        subnet: subnet.to_string(),
        gateway,
        internal: o.internal,
        dns: true,
        labels: o.labels.clone(),
    };
    save(root, &n)?;
    Ok(n)
}

/// CNI calls one at a time per store: the plugins check for and then make chains they share
/// (portmap's CNI-HOSTPORT-*), and two at once fail with "File exists" (seen on Linux 5.10).
/// A network's NAT rule is made and removed under it too.
pub fn cni_lock(root: &Path) -> Result<fs::File> {
    let d = store::net_dir(root);
    fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    husk_sys::lock_file(&d.join("cni.lock"), true).context("cannot lock the CNI plugins")
}

/// Whether network `name`'s record is there.
pub fn exists(root: &Path, name: &str) -> bool {
    file(root, name).exists()
}

/// Remove a network's record and its bridge. The caller has made sure no container uses it.
pub fn remove(root: &Path, n: &Network) -> Result<()> {
    let _serial = cni_lock(root)?;
    let _l = lock(root)?;
    match fs::remove_file(file(root, &n.name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove network {}", n.name)),
    }
    // The CNI bridge plugin makes the bridge and never removes it; the IPAM directory of a
    // network nobody is on holds nothing.
    delete_link(&n.bridge);
    remove_masquerade(n);
    let _ = fs::remove_dir_all(ipam_dir(root).join(&n.name));
    Ok(())
}

/// A network's outbound NAT: one MASQUERADE rule for its subnet leaving by any other
/// interface than its bridge, as docker and netavark make it. The bridge plugin's `ipMasq`
/// would make a chain and a jump per container instead: eight iptables runs to add and
/// eight to delete, most of what a bridge start cost. None of the CNI plugins has a
/// per-network mode. Checked at each attach (one iptables run when it is there, so a
/// flushed table heals), removed with the network.
pub fn ensure_masquerade(n: &Network) -> Result<()> {
    if n.internal {
        return Ok(());
    }
    let rule = masquerade_rule(n);
    if iptables_nat("-C", &rule) {
        return Ok(());
    }
    if iptables_nat("-A", &rule) {
        return Ok(());
    }
    Err(failed!(
        "cannot add the outbound NAT rule of network {} (iptables -t nat -A POSTROUTING {})",
        n.name,
        rule.join(" ")
    ))
}

fn remove_masquerade(n: &Network) {
    let rule = masquerade_rule(n);
    // Once is the rule; more is a copy someone added by hand. Bounded all the same.
    for _ in 0..16 {
        if !iptables_nat("-D", &rule) {
            break;
        }
    }
}

fn masquerade_rule(n: &Network) -> Vec<String> {
    [
        "-s",
        &n.subnet,
        "!",
        "-o",
        &n.bridge,
        "-m",
        "comment",
        "--comment",
        &format!("husk network {}", n.name),
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `iptables -w -t nat OP POSTROUTING RULE…`: whether it succeeded.
fn iptables_nat(op: &str, rule: &[String]) -> bool {
    std::process::Command::new("iptables")
        .args(["-w", "-t", "nat", op, "POSTROUTING"])
        .args(rule)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Delete a network interface by name (the bridge of a removed network), quietly.
fn delete_link(name: &str) {
    // Not judged by /sys/class/net: that is the network namespace sysfs was mounted in,
    // which need not be ours.
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", name, "type", "bridge"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// host-local IPAM's store: live state, per store root.
pub fn ipam_dir(root: &Path) -> PathBuf {
    store::net_dir(root).join("ipam")
}

/// Does the host's FORWARD chain filter (a DROP policy, or rules of its own), so that a
/// container's traffic needs the firewall plugin's ACCEPT rules? The plugin costs two
/// process starts and nine iptables calls a container (about a third of a bridge start
/// here), for nothing on a host that forwards everything; its own jump does not count.
pub fn forward_filtered() -> bool {
    let out = std::process::Command::new("iptables")
        .args(["-w", "-S", "FORWARD"])
        .stderr(std::process::Stdio::null())
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        // Cannot tell: the plugin is the safe side.
        return true;
    };
    !String::from_utf8_lossy(&out.stdout).lines().all(|l| {
        l == "-P FORWARD ACCEPT" || (l.starts_with("-A FORWARD ") && l.ends_with("-j CNI-FORWARD"))
    })
}

/// The CNI plugin list this network is, for one container: `ports` adds portmap, `firewall`
/// the firewall plugin (see `forward_filtered`).
pub fn conflist(root: &Path, n: &Network, ports: bool, firewall: bool) -> Value {
    let routes = if n.internal {
        json!([])
    } else {
        json!([{"dst": "0.0.0.0/0"}])
    };
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": n.bridge,
        "isGateway": true,
        // Outbound NAT is the network's one rule (`ensure_masquerade`), not a chain per
        // container.
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": n.subnet, "gateway": n.gateway.to_string()}]],
            "routes": routes,
            "dataDir": ipam_dir(root),
        },
    })];
    if !n.internal && firewall {
        // Forwarding allowed for the container's address where the host's FORWARD chain
        // filters (a host that runs docker too).
        plugins.push(json!({"type": "firewall", "backend": "iptables"}));
    }
    if ports {
        plugins.push(json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }));
    }
    json!({"cniVersion": crate::cni::VERSION, "name": n.name, "plugins": plugins})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let a = Subnet::parse("10.1.0.0/16").unwrap();
        let b = Subnet::parse("10.1.2.0/24").unwrap();
        let c = Subnet::parse("10.2.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert_eq!(a.first_host(), Ipv4Addr::new(10, 1, 0, 1));
        for bad in [
            "10.1.0.1/16",
            "10.1.0.0",
            "10.1.0.0/33",
            "x/24",
            "10.0.0.0/4",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_get_their_own_subnet_and_bridge() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let opts = |name: &str, subnet: Option<&str>| CreateOptions {
            name: name.into(),
            subnet: subnet.map(str::to_string),
            ..Default::default()
        };
        let a = create(r, &opts("a", None)).unwrap();
        let b = create(r, &opts("b", None)).unwrap();
        assert_ne!(a.subnet, b.subnet);
        assert_ne!(a.bridge, b.bridge);
        assert_eq!(find(r, "bridge").unwrap().bridge, "husk0");
        assert!(matches!(
            create(r, &opts("a", None)),
            Err(Error::Conflict(_))
        ));
        let overlap = create(r, &opts("c", Some(&a.subnet))).unwrap_err();
        assert!(
            overlap.to_string().contains("overlaps network a"),
            "{overlap}"
        );
        assert!(create(r, &opts("host", None)).is_err());
        assert!(create(r, &opts("bad name", None)).is_err());
        assert!(matches!(find(r, "nope"), Err(Error::NoSuchNetwork(_))));
        assert_eq!(find(r, &a.id[..12]).unwrap().name, "a");
        let list = conflist(r, &a, true, true);
        let kinds: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["bridge", "firewall", "portmap"]);
        assert_eq!(
            conflist(r, &a, false, false)["plugins"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
