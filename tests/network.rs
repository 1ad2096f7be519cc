//! Networking end to end, each test in a network namespace of its own (the default bridge,
//! its NAT rules and the DNS server live and die there; traffic goes only to addresses in
//! namespaces the test made): `none` with its loopback, the default bridge with outbound NAT
//! and published ports, user networks with names and aliases, `--internal`, `container:`,
//! connect and disconnect, the /etc files, stats, bad input, and nothing left behind.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// A network namespace made for one test, and husk run inside it on a store of its own.
struct Net {
    ns: String,
    store: Store,
    img: String,
    _reg: support::TestRegistry,
}

static COUNT: AtomicUsize = AtomicUsize::new(0);

fn ns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

fn ip(args: &[&str]) -> (bool, String) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn netns_tools() -> Option<&'static str> {
    if !Path::new("/usr/lib/cni/bridge").exists() && !Path::new("/opt/cni/bin/bridge").exists() {
        return Some("the CNI plugins are not installed (Debian: containernetworking-plugins)");
    }
    if Command::new("iptables").arg("-V").output().is_err() {
        return Some("iptables is not installed");
    }
    if Command::new("nsenter").arg("--version").output().is_err() {
        return Some("nsenter (util-linux) is not installed");
    }
    None
}

/// A busybox store and a fresh network namespace (lo up), or None with the reason printed.
fn net(test: &str) -> Option<Net> {
    if let Some(why) = netns_tools() {
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    let (reg, store, img) = busybox_store(test, &[])?;
    let ns = format!(
        "husk-t{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    );
    let (ok, err) = ip(&["netns", "add", &ns]);
    assert!(ok, "ip netns add: {err}");
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    Some(Net {
        ns,
        store,
        img,
        _reg: reg,
    })
}

impl Net {
    fn root(&self) -> &Path {
        self.store.path()
    }

    /// `husk` in the namespace, with the default network left at the default bridge.
    fn husk(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", ns_path(&self.ns)))
            .arg(env!("CARGO_BIN_EXE_husk"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("HUSK_CONFIG", self.root().join("no-config.json"))
            .env("HUSK_LAYER_MOUNT_GRACE", "0")
            .output()
            .expect("husk runs");
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.husk(args);
        assert_eq!(code, 0, "husk {args:?}: {err}");
        out
    }

    /// `ip ARGS` in the namespace.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend(args);
        ip(&all).1
    }

    fn iptables(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", ns_path(&self.ns)))
            .arg("iptables")
            .args(args)
            .output()
            .expect("iptables runs");
        text(&out.stdout)
    }

    /// Run `f` on a thread that joined the namespace.
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&ns_path(&self.ns), f)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Containers first, inside (their rules and interfaces are the namespace's), then the
        // namespace itself; the store goes after, with its own clean-up.
        let (_, ids, _) = self.husk(&["ps", "-aq", "--no-trunc"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            self.husk(&args);
        }
        ip(&["netns", "del", &self.ns]);
    }
}

fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("the test's netns");
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("the thread in the netns")
}

/// GET / from `addr` inside the namespace `n` made, retried for a few seconds while the
/// server starts.
fn http_get(n: &Net, addr: String) -> String {
    http_get_at(&ns_path(&n.ns), addr)
}

/// GET / from `addr` inside the network namespace at `path`.
fn http_get_at(path: &str, addr: String) -> String {
    in_netns(path, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut body = String::new();
                    s.read_to_string(&mut body)?;
                    Ok(body)
                });
            match got {
                Ok(b) if !b.is_empty() => return b,
                _ if Instant::now() > deadline => panic!("no answer from {addr}: {got:?}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
}

/// A detached busybox httpd serving `body` on port 80.
fn web_server(n: &Net, extra: &[&str], body: &str) -> String {
    let mut args = vec!["run", "-d"];
    args.extend(extra);
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    args.extend([n.img.as_str(), "sh", "-c", &script]);
    n.ok(&args).trim().to_string()
}

fn inspect(n: &Net, c: &str) -> serde_json::Value {
    let out = n.ok(&["inspect", c]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// SIGKILL the monitor of container `c` (its init's parent); the init's pid.
fn kill_monitor(n: &Net, c: &str) -> i32 {
    let pid = inspect(n, c)["State"]["Pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: SIGKILL to the monitor of a container this test started.
    unsafe { libc::kill(ppid, libc::SIGKILL) };
    until_true(|| {
        std::fs::read_to_string(format!("/proc/{ppid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    pid as i32
}

fn until_true(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a test's containers may leave in its namespace and store: nothing.
fn assert_nothing_left(n: &Net) {
    // The bridge plugin names the host's end of each pair veth…; the test's own are vi…/vo….
    let links = n.ip(&["-o", "link", "show", "type", "veth"]);
    let left: Vec<&str> = links.lines().filter(|l| l.contains(": veth")).collect();
    assert!(left.is_empty(), "veth pairs left: {left:?}");
    let nat = n.iptables(&["-t", "nat", "-S"]);
    assert!(
        !nat.contains("-j CNI-") || nat.lines().all(|l| !l.contains("id: \"")),
        "NAT rules left: {nat}"
    );
    assert!(!nat.contains("CNI-DN-"), "port rules left: {nat}");
    let filter = n.iptables(&["-S"]);
    assert!(
        !filter.lines().any(|l| l.contains("-d 10.")),
        "forward rules left: {filter}"
    );
    let net = n.root().join("net");
    for sub in ["netns", "ports"] {
        let left: Vec<_> = std::fs::read_dir(net.join(sub))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        let left: Vec<_> = left
            .into_iter()
            .filter(|f| !f.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{sub} left: {left:?}");
    }
    // host-local keeps one file per address it gave out.
    for e in std::fs::read_dir(net.join("ipam"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let ips: Vec<_> = std::fs::read_dir(e.path())
            .unwrap()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|f| f.parse::<Ipv4Addr>().is_ok())
            .collect();
        assert!(ips.is_empty(), "addresses still reserved: {ips:?}");
    }
    assert!(
        !net.join("aardvark").join("aardvark.pid").exists(),
        "the DNS server outlived the last container"
    );
}

#[test]
fn none_has_a_working_loopback_and_docker_files() {
    let Some(n) = net("none_has_a_working_loopback_and_docker_files") else {
        return;
    };
    let out = n.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "box",
        &n.img,
        "sh",
        "-c",
        "httpd -p 127.0.0.1:8000 -h /etc; sleep 0.2; wget -qO- http://127.0.0.1:8000/hostname; \
         ip -o link | wc -l; cat /etc/hosts",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("box"), "{out}");
    assert_eq!(lines.next(), Some("1"), "only lo: {out}");
    assert!(out.contains("127.0.0.1\tlocalhost\n"), "{out}");
    // The default left alone everywhere else.
    assert!(!n.ip(&["link"]).contains("husk0"));
}

#[test]
fn the_default_bridge_publishes_ports_and_cleans_up() {
    let Some(n) = net("the_default_bridge_publishes_ports_and_cleans_up") else {
        return;
    };
    let free = n.inside(|| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let publish = format!("{free}:80");
    let id = web_server(
        &n,
        &["--name", "web", "-p", &publish, "-p", "127.0.0.1::81"],
        "hello-web",
    );
    // Reached on the host's loopback and on its bridge address, through DNAT.
    let body = http_get(&n, format!("127.0.0.1:{free}"));
    assert!(body.contains("hello-web"), "{body}");
    let body = http_get(&n, format!("10.77.0.1:{free}"));
    assert!(body.contains("hello-web"), "{body}");

    let v = inspect(&n, "web");
    let ns = &v["NetworkSettings"];
    let ip: Ipv4Addr = ns["IPAddress"].as_str().unwrap().parse().unwrap();
    assert_eq!(ns["Gateway"], "10.77.0.1", "{ns}");
    assert_eq!(ns["Networks"]["bridge"]["IPAddress"], ip.to_string());
    assert_eq!(
        ns["Ports"]["80/tcp"][0]["HostPort"],
        free.to_string(),
        "{ns}"
    );
    let picked: u16 = ns["Ports"]["81/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ns["Ports"]["81/tcp"][0]["HostIp"], "127.0.0.1");
    assert!(v["HostsPath"].as_str().unwrap().ends_with("/hosts"));
    let hosts = std::fs::read_to_string(v["HostsPath"].as_str().unwrap()).unwrap();
    assert!(hosts.contains(&format!("{ip}\t{}", &id[..12])), "{hosts}");

    let port = n.ok(&["port", "web"]);
    assert_eq!(
        port,
        format!("80/tcp -> 0.0.0.0:{free}\n81/tcp -> 127.0.0.1:{picked}\n")
    );
    assert_eq!(n.ok(&["port", "web", "80"]), format!("0.0.0.0:{free}\n"));
    let ps = n.ok(&["ps"]);
    assert!(ps.lines().next().unwrap().contains("PORTS"), "{ps}");
    assert!(ps.contains(&format!("0.0.0.0:{free}->80/tcp")), "{ps}");

    // A port that is taken: one line, exit 125, nothing made.
    let (code, _, err) = n.husk(&[
        "run", "-d", "--name", "second", "-p", &publish, &n.img, "sleep", "9",
    ]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{free}/tcp is already")), "{err}");
    // Taken by a program of the host, not a container.
    let holder = n.inside(|| TcpListener::bind("0.0.0.0:0").unwrap());
    let held = holder.local_addr().unwrap().port().to_string();
    let (code, _, err) = n.husk(&["run", "--rm", "-p", &format!("{held}:80"), &n.img, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("already in use on the host"), "{err}");
    drop(holder);

    // stats counts the bytes of the container's interface.
    let stats = n.ok(&["stats", "--no-stream", "--format", "json", "web"]);
    let s: serde_json::Value = serde_json::from_str(stats.lines().next().unwrap()).unwrap();
    assert_ne!(s["NetIO"], "0B / 0B", "{s}");

    n.ok(&["rm", "-f", "web"]);
    assert_nothing_left(&n);
    // The port is free again.
    n.ok(&["run", "--rm", "-p", &publish, &n.img, "true"]);
}

#[test]
fn outbound_nat_reaches_a_server_outside_and_internal_networks_do_not() {
    let Some(n) = net("outbound_nat_reaches_a_server_outside_and_internal_networks_do_not") else {
        return;
    };
    // "Outside": a namespace of its own, joined to the test's by a veth pair, with no route
    // back to the containers' subnet: only NAT can answer.
    let outside = format!("{}-out", n.ns);
    ip(&["netns", "add", &outside]);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            ip(&["netns", "del", &self.0]);
        }
    }
    let _gone = Gone(outside.clone());
    let (a, b) = (
        format!("vo{}", COUNT.load(Ordering::SeqCst)),
        format!("vi{}", COUNT.load(Ordering::SeqCst)),
    );
    let (ok, err) = ip(&[
        "link", "add", &a, "netns", &outside, "type", "veth", "peer", "name", &b, "netns", &n.ns,
    ]);
    assert!(ok, "{err}");
    ip(&["-n", &outside, "addr", "add", "192.0.2.2/24", "dev", &a]);
    ip(&["-n", &outside, "link", "set", &a, "up"]);
    n.ip(&["addr", "add", "192.0.2.1/24", "dev", &b]);
    n.ip(&["link", "set", &b, "up"]);
    let server = in_netns(&ns_path(&outside), || {
        TcpListener::bind("192.0.2.2:7000").unwrap()
    });
    let seen = std::thread::spawn(move || {
        let (mut s, peer) = server.accept().unwrap();
        s.write_all(b"hi from outside\n").unwrap();
        peer.ip()
    });
    let out = n.ok(&["run", "--rm", &n.img, "nc", "192.0.2.2", "7000"]);
    assert_eq!(out, "hi from outside\n");
    assert_eq!(
        seen.join().unwrap().to_string(),
        "192.0.2.1",
        "the server saw the host's address: masqueraded"
    );

    // A published port reached from outside, on the host's own address.
    web_server(&n, &["--name", "pub", "-p", "8088:80"], "from-outside");
    let got = http_get_at(&ns_path(&outside), "192.0.2.1:8088".into());
    assert!(got.contains("from-outside"), "{got}");
    // And from the host itself, on that address.
    assert!(http_get(&n, "192.0.2.1:8088".into()).contains("from-outside"));
    n.ok(&["rm", "-f", "pub"]);

    // A host whose FORWARD chain drops (as docker leaves it): the firewall plugin's rules
    // let the container out, and go with it. (Its rules accept only replies towards the
    // container, so a published port is then reachable from the host itself but not from
    // other machines: the plugin's limit, in the README.)
    n.inside(|| {
        Command::new("iptables")
            .args(["-P", "FORWARD", "DROP"])
            .status()
            .unwrap();
    });
    let server = in_netns(&ns_path(&outside), || {
        TcpListener::bind("192.0.2.2:7001").unwrap()
    });
    let accepted = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.write_all(b"through a dropping FORWARD\n").unwrap();
    });
    let out = n.ok(&["run", "--rm", &n.img, "nc", "192.0.2.2", "7001"]);
    assert_eq!(out, "through a dropping FORWARD\n");
    accepted.join().unwrap();

    n.ok(&["network", "create", "--internal", "sealed"]);
    let (code, _, err) = n.husk(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        &n.img,
        "nc",
        "-w",
        "2",
        "192.0.2.2",
        "7000",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("unreachable"), "{err}");
    n.ok(&["network", "rm", "sealed"]);
    assert_nothing_left(&n);
}

#[test]
fn user_networks_resolve_names_and_aliases() {
    let Some(n) = net("user_networks_resolve_names_and_aliases") else {
        return;
    };
    if !Path::new("/usr/lib/podman/aardvark-dns").exists() {
        eprintln!("SKIP user_networks_resolve_names_and_aliases: aardvark-dns is not installed");
        return;
    }
    let id = n.ok(&["network", "create", "--subnet", "10.99.7.0/24", "appnet"]);
    assert_eq!(id.trim().len(), 64);
    web_server(
        &n,
        &[
            "--name",
            "db",
            "--network",
            "appnet",
            "--network-alias",
            "database",
        ],
        "db-data",
    );
    let out = n.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        &n.img,
        "sh",
        "-c",
        "wget -qO- http://db/ && wget -qO- http://database/ && cat /etc/resolv.conf",
    ]);
    assert!(out.starts_with("db-data\ndb-data\n"), "{out}");
    assert!(out.contains("nameserver 10.99.7.1"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&n.ok(&["network", "inspect", "appnet"])).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.99.7.0/24");
    assert_eq!(v[0]["Containers"].as_object().unwrap().len(), 1, "{v}");
    let ls = n.ok(&["network", "ls"]);
    for name in ["appnet", "bridge", "host", "none"] {
        assert!(ls.contains(name), "{ls}");
    }

    // Bad input: one line each, exit 125, nothing made.
    for (args, says) in [
        (vec!["network", "rm", "appnet"], "in use by container db"),
        (
            vec!["network", "create", "--subnet", "10.99.7.128/25", "other"],
            "overlaps network appnet",
        ),
        (
            vec!["network", "create", "--subnet", "10.99.7.5/24", "other"],
            "host bits",
        ),
        (vec!["network", "create", "appnet"], "already exists"),
        (vec!["network", "rm", "bridge"], "pre-defined"),
        (
            vec!["run", "--rm", "--network", "nowhere", &n.img, "true"],
            "network nowhere not found",
        ),
        (
            vec!["run", "--rm", "-p", "99999:80", &n.img, "true"],
            "out of range",
        ),
        (
            vec!["run", "--rm", "-p", "80:80:80:80", &n.img, "true"],
            "invalid port",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "-p",
                "80",
                &n.img,
                "true",
            ],
            "cannot publish ports",
        ),
        (
            vec!["run", "--rm", "--network-alias", "x", &n.img, "true"],
            "only on user networks",
        ),
    ] {
        let (code, _, err) = n.husk(&args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(n.ok(&["ps", "-aq"]).lines().count(), 1, "only db");

    n.ok(&["rm", "-f", "db"]);
    // Outbound NAT is one rule per network, made with its first container and kept until
    // the network goes; a container leaves none of its own.
    let rule = "husk network appnet";
    assert_eq!(
        n.iptables(&["-t", "nat", "-S", "POSTROUTING"])
            .matches(rule)
            .count(),
        1
    );
    n.ok(&["network", "rm", "appnet"]);
    assert!(!n.iptables(&["-t", "nat", "-S"]).contains(rule));
    assert!(
        !n.ip(&["link"]).contains("husk1"),
        "the bridge went with the network"
    );
    assert_nothing_left(&n);
}

#[test]
fn container_mode_connect_disconnect_and_the_etc_files() {
    let Some(n) = net("container_mode_connect_disconnect_and_the_etc_files") else {
        return;
    };
    n.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--add-host",
        "db.local:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.org",
        "--dns-option",
        "ndots:2",
        &n.img,
        "sleep",
        "60",
    ]);
    let files = n.ok(&["exec", "a", "cat", "/etc/hosts", "/etc/resolv.conf"]);
    assert!(
        files.contains("10.1.2.3\tdb.local\n") && files.contains("10.77.0.1\tgw\n"),
        "{files}"
    );
    assert!(
        files.contains("search example.org\nnameserver 192.0.2.53\noptions ndots:2\n"),
        "{files}"
    );
    let a_ip = inspect(&n, "a")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    // container:a shares a's interface.
    let out = n.ok(&[
        "run",
        "--rm",
        "--network",
        "container:a",
        &n.img,
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.contains(&format!("{a_ip}/16")), "{out}");

    n.ok(&["network", "create", "side"]);
    n.ok(&["network", "connect", "side", "a"]);
    let addrs = n.ok(&["exec", "a", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.78."),
        "{addrs}"
    );
    let (code, _, err) = n.husk(&["network", "connect", "side", "a"]);
    assert_eq!(code, 125, "{err}");
    n.ok(&["network", "disconnect", "side", "a"]);
    let addrs = n.ok(&["exec", "a", "ip", "-4", "-o", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");

    // The host's network: its hostname and its /etc/hosts.
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let out = n.ok(&["run", "--rm", "--network", "host", &n.img, "hostname"]);
    assert_eq!(out.trim(), host_name);

    n.ok(&["rm", "-f", "a"]);
    n.ok(&["network", "prune"]);
    assert!(!n.ok(&["network", "ls"]).contains("side"));
    assert_nothing_left(&n);
}

#[test]
fn concurrent_starts_get_distinct_addresses_and_killed_monitors_are_cleaned() {
    let Some(n) = net("concurrent_starts_get_distinct_addresses_and_killed_monitors_are_cleaned")
    else {
        return;
    };
    let n = std::sync::Arc::new(n);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let n = n.clone();
            std::thread::spawn(move || {
                n.ok(&[
                    "run",
                    "-d",
                    "--name",
                    &format!("c{i}"),
                    "-p",
                    "80",
                    &n.img,
                    "sleep",
                    "60",
                ])
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut ips = Vec::new();
    let mut ports = Vec::new();
    for i in 0..6 {
        let v = inspect(&n, &format!("c{i}"));
        ips.push(
            v["NetworkSettings"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        ports.push(v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"].clone());
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "{ips:?}");
    ports.sort_by_key(|p| p.to_string());
    ports.dedup();
    assert_eq!(ports.len(), 6, "{ports:?}");

    // Monitors SIGKILLed: the next husk command reaps what they left (the containers killed,
    // their namespaces, addresses, rules and port claims released), c0's whose init died
    // too as well.
    for i in 0..3 {
        let init = kill_monitor(&n, &format!("c{i}"));
        if i == 0 {
            // SAFETY: SIGKILL to the init of a container this test started.
            unsafe { libc::kill(init, libc::SIGKILL) };
        }
    }
    for i in 0..3 {
        let v = inspect(&n, &format!("c{i}"));
        assert_eq!(v["State"]["Running"], false, "{v}");
        let id = v["Id"].as_str().unwrap();
        assert!(
            !n.root().join("net/netns").join(id).exists(),
            "the next command reaped c{i}'s namespace"
        );
    }
    n.ok(&["network", "prune"]);
    let ids: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    n.ok(&args);
    assert_nothing_left(&n);
}

/// 200 bridge containers made and removed, some with published ports, some with their monitor
/// SIGKILLed: no veth, address, rule, namespace or port claim is left.
#[test]
fn two_hundred_containers_leave_nothing_behind() {
    let Some(n) = net("two_hundred_containers_leave_nothing_behind") else {
        return;
    };
    for i in 0..200 {
        if i % 20 == 0 {
            let id = n.ok(&["run", "-d", "-p", "80", &n.img, "sleep", "60"]);
            kill_monitor(&n, id.trim());
            n.ok(&["rm", "-f", id.trim()]);
        } else if i % 2 == 0 {
            n.ok(&["run", "--rm", "-p", "80", &n.img, "true"]);
        } else {
            n.ok(&["run", "--rm", &n.img, "true"]);
        }
    }
    assert_eq!(n.ok(&["ps", "-aq"]), "");
    assert_nothing_left(&n);
}

/// A docker-archive of the busybox layer whose config EXPOSEs `exposed`, for `husk load`.
fn exposing_archive(exposed: &[&str]) -> Vec<u8> {
    let layer = support::busybox_layer();
    let diff_id = format!("sha256:{}", husk_image::Digest::of(&layer).hex());
    let ports: serde_json::Map<String, serde_json::Value> = exposed
        .iter()
        .map(|p| (p.to_string(), serde_json::json!({})))
        .collect();
    let arch = husk_image::manifest::Platform::host().architecture;
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "ExposedPorts": ports, "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["exposer:1"], "Layers": ["layer.tar"]}]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
        ("config.json", serde_json::to_vec(&config).unwrap()),
        ("layer.tar", layer),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn publish_all_publishes_what_the_image_exposes() {
    let Some(n) = net("publish_all_publishes_what_the_image_exposes") else {
        return;
    };
    let archive = n.root().join("exposer.tar");
    std::fs::write(&archive, exposing_archive(&["80/tcp", "9000/tcp"])).unwrap();
    n.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "-P",
        "-p",
        "127.0.0.1::9000",
        "exposer:1",
        "sh",
        "-c",
        "mkdir /www && echo exposed > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let v = inspect(&n, "ex");
    let ports = &v["NetworkSettings"]["Ports"];
    // -p names 9000 itself (on 127.0.0.1); -P adds 80 on every address.
    assert_eq!(ports["9000/tcp"][0]["HostIp"], "127.0.0.1", "{ports}");
    assert_eq!(ports["80/tcp"][0]["HostIp"], "0.0.0.0", "{ports}");
    let p80 = ports["80/tcp"][0]["HostPort"].as_str().unwrap().to_string();
    assert!(http_get(&n, format!("127.0.0.1:{p80}")).contains("exposed"));
    n.ok(&["rm", "-f", "ex"]);
    assert_nothing_left(&n);
}
