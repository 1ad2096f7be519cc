//! Names on user networks, served by aardvark-dns (podman's DNS server, Debian's
//! `aardvark-dns`): one config file per network (its first line the addresses to listen on,
//! the network's gateway; then one line per container: id, IPv4 addresses, IPv6 addresses,
//! names), reread on SIGHUP. One server per store, started with the first named container and
//! stopped with the last; it forwards every other name to the host's resolvers.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{failed, Context, Result};
use crate::store;

const SERVER: &str = "/usr/lib/podman/aardvark-dns";

/// The search domain the server answers in besides bare names.
pub const DOMAIN: &str = "dns.podman";

fn dir(root: &Path) -> PathBuf {
    store::net_dir(root).join("aardvark")
}

fn server_pid(d: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(d.join("aardvark.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // A pid file that outlived its server names some other process now.
    (cmdline.starts_with(SERVER.as_bytes()) && husk_runtime::util::process_state(pid) != Some('Z'))
        .then_some(pid)
}

/// Make the running server reread its files, start it, or stop it when no network has a
/// container left.
fn reload(d: &Path) -> Result<()> {
    let any = fs::read_dir(d).into_iter().flatten().flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        !n.starts_with('.') && n != "aardvark.pid" && e.path().is_file()
    });
    match (server_pid(d), any) {
        (Some(pid), true) => {
            // SAFETY: SIGHUP to the server this store started (checked by its cmdline).
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
        (Some(pid), false) => {
            // SAFETY: as above; nothing is left for it to serve.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = fs::remove_file(d.join("aardvark.pid"));
        }
        (None, true) => {
            if !Path::new(SERVER).exists() {
                return Err(failed!(
                    "names on user networks need aardvark-dns, not found at {SERVER} (Debian: apt install aardvark-dns)"
                ));
            }
            // It daemonizes itself once it listens, so the status says it is ready. Its
            // stderr goes to a file: the server lives on and writes there (to a pipe we stop
            // reading, it would die of SIGPIPE).
            let log_path = d.with_file_name("aardvark.log");
            let log = fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            let status = std::process::Command::new(SERVER)
                .arg("--config")
                .arg(d)
                .args(["-p", "53", "run"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .status()
                .map_err(|e| failed!("cannot run {SERVER}: {e}"))?;
            if !status.success() {
                let err = fs::read_to_string(&log_path).unwrap_or_default();
                let why = err
                    .lines()
                    .rev()
                    .find(|l| !l.contains("syslog"))
                    .unwrap_or("no reason given");
                return Err(failed!("aardvark-dns did not start: {why}"));
            }
        }
        (None, false) => {}
    }
    Ok(())
}

fn with_file(root: &Path, network: &str, edit: impl FnOnce(&mut Vec<String>)) -> Result<()> {
    let d = dir(root);
    fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    // The server reads every file in its directory as a network: the lock, the log and
    // temporary files live beside it.
    let _l = husk_sys::lock_file(&d.with_file_name("aardvark.lock"), true)
        .context("cannot lock the DNS config")?;
    let path = d.join(network);
    let mut lines: Vec<String> = fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    edit(&mut lines);
    if lines.len() <= 1 {
        let _ = fs::remove_file(&path);
    } else {
        let tmp = d.with_file_name(format!("aardvark-{network}.tmp"));
        fs::write(&tmp, lines.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    reload(&d)
}

/// Wait (a second at most) until something listens on `gateway`:53: the server answers
/// for a new network only once it reread its files, after it was signalled or started.
fn wait_listening(gateway: Ipv4Addr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    // /proc/net/udp's local address of a socket on gateway:53 (the address in host order,
    // as hex): read, not probed with a bind that could race the server's own.
    let want = format!("{:08X}:0035", u32::from(gateway).swap_bytes());
    while std::time::Instant::now() < deadline {
        let udp = fs::read_to_string("/proc/self/net/udp").unwrap_or_default();
        if udp
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Serve `names` → `ip` for container `id` on `network`, whose server listens on `gateway`.
pub fn add(
    root: &Path,
    network: &str,
    gateway: Ipv4Addr,
    id: &str,
    ip: Ipv4Addr,
    names: &[String],
) -> Result<()> {
    with_file(root, network, |lines| {
        if lines.is_empty() {
            lines.push(gateway.to_string());
        }
        lines.retain(|l| !l.starts_with(&format!("{id} ")));
        // No IPv6 addresses: the third field is empty.
        lines.push(format!("{id} {ip}  {}", names.join(",")));
    })?;
    wait_listening(gateway);
    Ok(())
}

/// Stop serving container `id`'s names on `network`.
pub fn remove(root: &Path, network: &str, id: &str) -> Result<()> {
    with_file(root, network, |lines| {
        lines.retain(|l| !l.starts_with(&format!("{id} ")));
    })
}
