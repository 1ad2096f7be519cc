//! Published ports on the host: which container holds which, and the check that a port is
//! free before the container starts. The portmap plugin forwards with DNAT rules and binds
//! nothing, so husk checks and reserves: it binds each host port (held by the monitor while
//! the container runs, as conmon holds podman's) and keeps a claim file per port under the
//! store's live network state, so two containers of this store never get one port.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::options::{PortMapping, Protocol};
use crate::store;

/// Host ports held while a container runs.
pub type Held = Vec<OwnedFd>;

fn dir(root: &Path) -> PathBuf {
    store::net_dir(root).join("ports")
}

fn claim_name(ip: Ipv4Addr, port: u16, proto: Protocol) -> String {
    format!("{}-{ip}-{port}", proto.as_str())
}

/// The live claims: (claim file name, owner id). A claim whose container has no directory is
/// stale (a husk killed between claim and release) and is dropped here.
fn claims(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir(root)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        match fs::read_to_string(e.path()) {
            Ok(owner) if store::dir(root, owner.trim()).exists() => {
                out.push((name, owner.trim().to_string()))
            }
            _ => {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    out
}

fn conflicts(claim: &str, ip: Ipv4Addr, port: u16, proto: Protocol) -> bool {
    let mut f = claim.splitn(3, '-');
    let (Some(p), Some(cip), Some(cport)) = (f.next(), f.next(), f.next()) else {
        return false;
    };
    let Ok(cip) = cip.parse::<Ipv4Addr>() else {
        return false;
    };
    p == proto.as_str()
        && cport == port.to_string()
        && (cip == ip || cip.is_unspecified() || ip.is_unspecified())
}

fn bind(ip: Ipv4Addr, port: u16, proto: Protocol) -> std::io::Result<(OwnedFd, u16)> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
    // Bound, never listening: nothing is ever accepted on it (DNAT sends the traffic to the
    // container before a socket is looked up); it only keeps the port from other programs.
    let kind = match proto {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket::socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(ip, port)),
    )?;
    let got: SockaddrIn = socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
    Ok((fd, got.port()))
}

/// Reserve host ports for `wanted` (free ones where no host port is given), for container
/// `id`: the mappings with every host port filled in, and the sockets that hold them. A port
/// in use is a one-line error and nothing stays claimed.
pub fn claim(root: &Path, id: &str, wanted: &[PortMapping]) -> Result<(Vec<PortMapping>, Held)> {
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let d = dir(root);
    fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let _l = husk_sys::lock_file(&d.join(".lock"), true).context("cannot lock the port claims")?;
    let existing = claims(root);
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut made = Vec::new();
    let result = (|| -> Result<()> {
        for m in wanted {
            let ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let shown = |port: u16| format!("{ip}:{port}/{}", m.protocol.as_str());
            // A free port: the kernel's pick, unless another container of ours holds it.
            let mut tries = 0;
            let (fd, port) = loop {
                let (fd, port) = bind(ip, m.host_port.unwrap_or(0), m.protocol).map_err(|e| {
                    Error::Conflict(match m.host_port {
                        Some(p) if e.kind() == std::io::ErrorKind::AddrInUse => {
                            format!("port {} is already in use on the host", shown(p))
                        }
                        Some(p) => format!("cannot publish port {}: {e}", shown(p)),
                        None => {
                            format!("cannot find a free host port for {}: {e}", m.container_port)
                        }
                    })
                })?;
                let taken = existing
                    .iter()
                    .chain(made.iter())
                    .find(|(c, _)| conflicts(c, ip, port, m.protocol));
                match (taken, m.host_port) {
                    (None, _) => break (fd, port),
                    (Some((_, owner)), Some(_)) => {
                        return Err(Error::Conflict(format!(
                            "port {} is already published by container {}",
                            shown(port),
                            &owner[..12.min(owner.len())]
                        )))
                    }
                    (Some(_), None) if tries < 64 => tries += 1,
                    (Some(_), None) => {
                        return Err(Error::Conflict(format!(
                            "cannot find a free host port for {}",
                            m.container_port
                        )))
                    }
                }
            };
            let name = claim_name(ip, port, m.protocol);
            fs::write(d.join(&name), id)
                .with_context(|| format!("cannot claim port {}", shown(port)))?;
            made.push((name, id.to_string()));
            held.push(fd);
            got.push(PortMapping {
                host_port: Some(port),
                ..m.clone()
            });
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (name, _) in &made {
            let _ = fs::remove_file(d.join(name));
        }
        return Err(e);
    }
    Ok((got, held))
}

/// Give back every port container `id` claimed.
pub fn release(root: &Path, id: &str) {
    let d = dir(root);
    let Ok(_l) = husk_sys::lock_file(&d.join(".lock"), true) else {
        return;
    };
    for e in fs::read_dir(&d).into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().starts_with('.')
            && fs::read_to_string(e.path()).is_ok_and(|o| o.trim() == id)
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host_port: Option<u16>) -> PortMapping {
        PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port,
            container_port: 80,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn a_port_is_claimed_once_and_released() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for id in ["a", "b"] {
            fs::create_dir_all(store::dir(r, id)).unwrap();
        }
        let (got, held) = claim(r, "a", &[tcp(None)]).unwrap();
        let port = got[0].host_port.unwrap();
        assert_eq!(held.len(), 1);
        drop(held);
        // Free on the host again, but still ours in the claims.
        let e = claim(r, "b", &[tcp(Some(port))]).unwrap_err();
        assert!(
            e.to_string().contains("already published by container a"),
            "{e}"
        );
        release(r, "a");
        let (again, _held) = claim(r, "b", &[tcp(Some(port))]).unwrap();
        assert_eq!(again[0].host_port, Some(port));
        // Held by a socket of someone else: the host's own check.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = other.local_addr().unwrap().port();
        let e = claim(r, "a", &[tcp(Some(busy))]).unwrap_err();
        assert!(e.to_string().contains("already in use on the host"), "{e}");
        assert_eq!(claims(r).len(), 1, "the failed claim left nothing");
    }

    #[test]
    fn all_addresses_conflict_with_one() {
        assert!(conflicts(
            "tcp-0.0.0.0-80",
            Ipv4Addr::LOCALHOST,
            80,
            Protocol::Tcp
        ));
        assert!(conflicts(
            "tcp-127.0.0.1-80",
            Ipv4Addr::UNSPECIFIED,
            80,
            Protocol::Tcp
        ));
        assert!(!conflicts(
            "tcp-127.0.0.1-80",
            Ipv4Addr::new(10, 0, 0, 1),
            80,
            Protocol::Tcp
        ));
        assert!(!conflicts(
            "udp-0.0.0.0-80",
            Ipv4Addr::LOCALHOST,
            80,
            Protocol::Tcp
        ));
        assert!(!conflicts(
            "tcp-0.0.0.0-8080",
            Ipv4Addr::LOCALHOST,
            80,
            Protocol::Tcp
        ));
    }
}
