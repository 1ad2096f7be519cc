//! The network of a rootless container: pasta (Debian's `passt`), as podman uses it. A user
//! namespace's root cannot make a bridge or a veth into the host's namespace; pasta, an
//! unprivileged process, joins the container's network namespace, gives it an interface with
//! the host's address and routes, and carries its traffic through the host's sockets. Published
//! ports are sockets pasta binds on the host.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::options::{PortMapping, Protocol};

/// The program; where it is missing, the one-line error says what to install.
const PROGRAM: &str = "pasta";

/// pasta's `-t`/`-u` spelling of one mapping: `[ADDR/]HOST:CTR`.
fn forward(p: &PortMapping) -> String {
    let host = p.host_port.unwrap_or(p.container_port);
    match p.host_ip {
        Some(ip) => format!("{ip}/{host}:{}", p.container_port),
        None => format!("{host}:{}", p.container_port),
    }
}

/// pasta's arguments for the namespace at `netns` with `ports` published (their host ports
/// already chosen). Nothing is forwarded that was not published, either way.
pub fn args(netns: &Path, ports: &[PortMapping], pid_file: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["--config-net".into(), "--quiet".into()];
    for (flag, proto) in [("-t", Protocol::Tcp), ("-u", Protocol::Udp)] {
        let mine: Vec<&PortMapping> = ports.iter().filter(|p| p.protocol == proto).collect();
        if mine.is_empty() {
            a.extend([flag.to_string(), "none".to_string()]);
        }
        for p in mine {
            a.extend([flag.to_string(), forward(p)]);
        }
    }
    // From the container to the host's own ports: not unless asked, as on a bridge.
    a.extend(["-T", "none", "-U", "none"].map(String::from));
    a.extend([
        "--pid".to_string(),
        pid_file.display().to_string(),
        "--netns".to_string(),
        netns.display().to_string(),
    ]);
    a
}

/// Starts pasta on the namespace at `netns`; it is in the background, set up, when this returns.
/// Returns its pid. It ends by itself when the namespace's file is unmounted.
pub fn start(netns: &Path, ports: &[PortMapping], pid_file: &Path) -> Result<i32> {
    let _ = std::fs::remove_file(pid_file);
    let out = Command::new(PROGRAM)
        .args(args(netns, ports, pid_file))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            Error::Failed(if e.kind() == std::io::ErrorKind::NotFound {
                "rootless networking needs pasta, which is not installed (Debian: apt install passt); or use --network none or host".to_string()
            } else {
                format!("cannot run pasta: {e}")
            })
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().last().unwrap_or("").trim();
        return Err(Error::Failed(format!(
            "pasta could not network the container ({}): {why}",
            out.status
        )));
    }
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::Failed(format!("pasta wrote no pid to {}", pid_file.display())))
}

/// Ends the pasta of a container, if `pid` is still one.
pub fn stop(pid: i32, netns: &Path) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // The pid may have gone and come back as another container's pasta: ours names our
    // namespace on its command line.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == netns.as_os_str().as_encoded_bytes());
    if ours
        && matches!(
            comm.trim_end(),
            "pasta" | "passt" | "pasta.avx2" | "passt.avx2"
        )
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_are_forwarded_and_nothing_else() {
        let ports = [
            PortMapping {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: Some(5353),
                container_port: 53,
                protocol: Protocol::Udp,
            },
        ];
        let a = args(Path::new("/n"), &ports, Path::new("/p")).join(" ");
        assert_eq!(
            a,
            "--config-net --quiet -t 8080:80 -u 127.0.0.1/5353:53 -T none -U none --pid /p --netns /n"
        );
        let none = args(Path::new("/n"), &[], Path::new("/p")).join(" ");
        assert!(none.contains("-t none -u none -T none -U none"), "{none}");
    }
}
