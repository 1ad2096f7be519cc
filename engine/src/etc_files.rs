//! The container's /etc/hosts, /etc/hostname and /etc/resolv.conf: written into its
//! directory and bind-mounted over the image's, as docker does (docker shows them as
//! `HostsPath`, `HostnamePath` and `ResolvConfPath`). The hosts file is written again when the
//! container starts, once its address is known.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Context, Result};

pub const FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

pub fn path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

/// The spec's bind mounts of the three files, leaving out any target the user mounts
/// something else on.
pub fn mounts(dir: &Path, taken: &[String]) -> Vec<Value> {
    FILES
        .iter()
        .map(|f| (f, format!("/etc/{f}")))
        .filter(|(_, target)| !taken.contains(target))
        .map(|(f, target)| {
            json!({"destination": target, "type": "bind", "source": path(dir, f),
                   "options": ["rbind", "rprivate"]})
        })
        .collect()
}

/// What /etc/resolv.conf is made from.
#[derive(Debug, Clone, Default)]
pub struct Resolv {
    /// `--dns`; else the host's (or `network_dns`).
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    /// The container shares the host's network: its resolvers stay as they are.
    pub host_network: bool,
    /// A user network's DNS server (aardvark-dns on the gateway), used before the host's.
    pub network_dns: Option<Ipv4Addr>,
}

struct HostResolv {
    servers: Vec<String>,
    search: Vec<String>,
    options: Vec<String>,
}

fn parse_resolv(text: &str) -> HostResolv {
    let mut r = HostResolv {
        servers: Vec::new(),
        search: Vec::new(),
        options: Vec::new(),
    };
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => r.servers.extend(f.next().map(str::to_string)),
            Some("search") | Some("domain") => r.search = f.map(str::to_string).collect(),
            Some("options") => r.options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    r
}

fn is_loopback(server: &str) -> bool {
    server.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host's resolvers as a container on its own network sees them: a loopback resolver
/// (systemd-resolved's 127.0.0.53, a local dnsmasq) is unreachable from there, so
/// systemd-resolved's upstream list is used when there is one, and docker's fallback of
/// Google's public resolvers when nothing is left.
fn host_resolv(host_network: bool) -> HostResolv {
    let mut r = parse_resolv(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    if host_network {
        return r;
    }
    if r.servers.iter().all(|s| is_loopback(s)) {
        if let Ok(t) = fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            let upstream = parse_resolv(&t);
            if !upstream.servers.is_empty() {
                r.servers = upstream.servers;
            }
        }
    }
    r.servers.retain(|s| !is_loopback(s));
    if r.servers.is_empty() {
        r.servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    r
}

/// The text of the container's /etc/resolv.conf.
pub fn resolv_text(o: &Resolv) -> String {
    let host = host_resolv(o.host_network);
    let mut servers = if !o.servers.is_empty() {
        o.servers.clone()
    } else if let Some(gw) = o.network_dns {
        vec![gw.to_string()]
    } else {
        host.servers
    };
    servers.dedup();
    let mut search = if o.search.is_empty() {
        host.search
    } else {
        o.search.clone()
    };
    if o.network_dns.is_some() && o.search.is_empty() {
        search.insert(0, crate::dns::DOMAIN.into());
    }
    let options = if o.options.is_empty() {
        host.options
    } else {
        o.options.clone()
    };
    let mut text = String::new();
    if !search.is_empty() && search != ["."] {
        text += &format!("search {}\n", search.join(" "));
    }
    for s in servers {
        text += &format!("nameserver {s}\n");
    }
    if !options.is_empty() {
        text += &format!("options {}\n", options.join(" "));
    }
    text
}

/// The text of the container's /etc/hosts: docker's localhost lines (the host's own file
/// with the host's network), the `--add-host` lines, then the container's address and name.
pub fn hosts_text(
    host_network: bool,
    extra: &[(String, String)],
    own: Option<(Ipv4Addr, &[String])>,
) -> String {
    let mut text = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for (name, ip) in extra {
        text += &format!("{ip}\t{name}\n");
    }
    if let Some((ip, names)) = own {
        text += &format!("{ip}\t{}\n", names.join(" "));
    }
    text
}

fn write(dir: &Path, file: &str, text: &str) -> Result<()> {
    let p = path(dir, file);
    // In place: a running container's bind mount keeps the inode it was given.
    fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
}

pub fn write_hosts(dir: &Path, text: &str) -> Result<()> {
    write(dir, "hosts", text)
}

pub fn write_hostname(dir: &Path, hostname: &str) -> Result<()> {
    write(dir, "hostname", &format!("{hostname}\n"))
}

pub fn write_resolv(dir: &Path, o: &Resolv) -> Result<()> {
    write(dir, "resolv.conf", &resolv_text(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_extra_hosts_and_the_container() {
        let names = vec!["abc".to_string(), "web".to_string()];
        let t = hosts_text(
            false,
            &[("db".into(), "10.0.0.9".into())],
            Some((Ipv4Addr::new(10, 77, 0, 2), &names)),
        );
        assert!(t.starts_with("127.0.0.1\tlocalhost\n"), "{t}");
        assert!(t.contains("10.0.0.9\tdb\n"));
        assert!(t.ends_with("10.77.0.2\tabc web\n"));
    }

    #[test]
    fn resolv_takes_flags_over_the_host_and_drops_loopback_servers() {
        let o = Resolv {
            servers: vec!["1.1.1.1".into()],
            search: vec!["example.org".into()],
            options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_text(&o),
            "search example.org\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
        let t = resolv_text(&Resolv::default());
        assert!(!t.contains("nameserver 127."), "{t}");
        assert!(t.contains("nameserver "), "{t}");
        let net = resolv_text(&Resolv {
            network_dns: Some(Ipv4Addr::new(10, 78, 0, 1)),
            ..Default::default()
        });
        assert!(
            net.contains("nameserver 10.78.0.1\n") && net.starts_with("search dns.podman"),
            "{net}"
        );
        assert!(parse_resolv("nameserver ::1\nsearch a b\n").search == ["a", "b"]);
    }
}
