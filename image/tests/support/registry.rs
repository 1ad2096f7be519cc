//! A real registry on 127.0.0.1 for tests (Debian's docker-registry), and a tiny push client
//! to fill it with images the tests build themselves. Shared by image/ and the husk tests.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use husk_image::{Digest, Reference};
use serde_json::json;

/// Whether the tests run as root (containers, mounts and a registry on a port need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub struct TestRegistry {
    /// An Authorization header for pushes, when the registry wants credentials.
    pub basic: Option<String>,
    child: Child,
    pub port: u16,
    pub storage: tempfile::TempDir,
    _config: tempfile::TempDir,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn registry_binary() -> Option<&'static str> {
    ["/usr/bin/docker-registry", "/usr/bin/registry"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

pub fn start_registry() -> Option<TestRegistry> {
    start_registry_with("")
}

/// A registry whose config gets `extra` appended (an `auth:` section, say).
pub fn start_registry_with(extra: &str) -> Option<TestRegistry> {
    start_registry_at(None, "", extra)
}

/// A second registry serving `other`'s storage (images pushed there), its `http:` section
/// extended by `http_extra` (`tls:`, say) and its config by `extra`.
pub fn start_registry_sharing(
    other: &TestRegistry,
    http_extra: &str,
    extra: &str,
) -> Option<TestRegistry> {
    start_registry_at(Some(other.storage.path()), http_extra, extra)
}

fn start_registry_at(
    shared_storage: Option<&Path>,
    http_extra: &str,
    extra: &str,
) -> Option<TestRegistry> {
    let Some(bin) = registry_binary() else {
        eprintln!("SKIP: Debian's docker-registry is not installed (.ci/run installs it)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let storage = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().join("config.yml");
    fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{extra}",
            shared_storage.unwrap_or(storage.path()).display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = TestRegistry {
        basic: None,
        child,
        port,
        storage,
        _config: config,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(reg)
}

impl TestRegistry {
    /// Adds basic auth for registries started with `htpasswd_auth`.
    fn req<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.basic {
            Some(b) => r.header("Authorization", b),
            None => r,
        }
    }

    pub fn base(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/v2/{repo}", self.port)
    }

    pub fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let resp = self
            .req(ureq::post(&format!("{}/blobs/uploads/", self.base(repo))))
            .send_empty()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let loc = resp
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("http://127.0.0.1:{}{loc}", self.port)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = self
            .req(ureq::put(&format!("{loc}{sep}digest={d}")))
            .send(data)
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "blob upload");
        d
    }

    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Digest {
        let resp = self
            .req(ureq::put(&format!(
                "{}/manifests/{reference}",
                self.base(repo)
            )))
            .header("Content-Type", media_type)
            .send(body)
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "manifest push");
        Digest::of(body)
    }

    pub fn blob_file(&self, d: &Digest) -> PathBuf {
        self.storage.path().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{}/data",
            &d.hex()[..2],
            d.hex()
        ))
    }
}

pub fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_000_000_000);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub struct Image {
    pub manifest: Vec<u8>,
    pub layers: Vec<Digest>,
}

/// Push a two-layer image (gzip + zstd, the second with whiteouts) and return its manifest.
/// [`push_image`] for this machine's architecture, as an OCI image tagged `repo:v1`; its
/// manifest digest beside it.
pub fn push_app(reg: &TestRegistry, repo: &str) -> (Image, Digest) {
    let img = push_image(
        reg,
        repo,
        false,
        &husk_image::manifest::Platform::host().architecture,
    );
    let md = reg.push_manifest(
        repo,
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest,
    );
    (img, md)
}

pub fn push_image(reg: &TestRegistry, repo: &str, docker: bool, arch: &str) -> Image {
    let l1 = tar_of(&[
        ("hello", b"world"),
        ("etc/os", b"husk"),
        ("opq/old", b"lower"),
    ]);
    let l2 = tar_of(&[
        (".wh.hello", b""),
        ("opq/.wh..wh..opq", b""),
        ("opq/new", b"upper"),
        ("added", b"yes"),
    ]);
    let (c1, c2) = if docker {
        (gzip(&l1), gzip(&l2))
    } else {
        (gzip(&l1), zstd::encode_all(&l2[..], 3).unwrap())
    };
    let b1 = reg.push_blob(repo, &c1);
    let b2 = reg.push_blob(repo, &c2);
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&l1).to_string(), Digest::of(&l2).to_string()]}
    }))
    .unwrap();
    let cd = reg.push_blob(repo, &config);
    let (mt, cmt, l1t, l2t) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        )
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cmt, "digest": cd.to_string(), "size": config.len()},
        "layers": [
            {"mediaType": l1t, "digest": b1.to_string(), "size": c1.len()},
            {"mediaType": l2t, "digest": b2.to_string(), "size": c2.len()}
        ]
    }))
    .unwrap();
    Image {
        manifest,
        layers: vec![b1, b2],
    }
}

pub fn reference(reg: &TestRegistry, repo_tag: &str) -> Reference {
    Reference::parse(&format!("127.0.0.1:{}/{repo_tag}", reg.port)).unwrap()
}

/// A proxy in front of the test registry that breaks blob downloads: the first `cuts` blob
/// responses stop after `after` body bytes, either closing the connection or (with `stall`)
/// hanging until the client gives up or is killed. It records the Range headers it forwards.
pub struct FlakyProxy {
    pub port: u16,
    pub ranges: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub cut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub fn flaky_proxy(upstream: u16, cuts: usize, after: usize, stall: bool) -> FlakyProxy {
    use std::io::{BufReader, Read};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let remaining = Arc::new(AtomicUsize::new(cuts));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let cut = Arc::new(AtomicUsize::new(0));
    let (r2, c2) = (ranges.clone(), cut.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (remaining, ranges, cut) = (remaining.clone(), r2.clone(), c2.clone());
            std::thread::spawn(move || {
                let mut client_r = BufReader::new(client.try_clone().unwrap());
                let Some(head) = read_head(&mut client_r) else {
                    return;
                };
                for line in &head {
                    if line.to_ascii_lowercase().starts_with("range:") {
                        ranges.lock().unwrap().push(line.trim().to_string());
                    }
                }
                let is_blob = head.first().is_some_and(|l| l.contains("/blobs/sha256:"));
                let Some((resp_head, mut up_r)) = forward(upstream, &head) else {
                    return;
                };
                let mut resp_head = resp_head.concat();
                resp_head.push_str("Connection: close\r\n\r\n");
                // Only bodies longer than `after` are worth cutting.
                let length: usize = resp_head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let cut_this = is_blob
                    && length > after
                    && remaining
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                let mut client_w = client;
                if client_w.write_all(resp_head.as_bytes()).is_err() {
                    return;
                }
                if cut_this {
                    let mut buf = vec![0u8; after];
                    if up_r.read_exact(&mut buf).is_ok() {
                        let _ = client_w.write_all(&buf);
                        let _ = client_w.flush();
                    }
                    cut.fetch_add(1, Ordering::SeqCst);
                    if stall {
                        std::thread::sleep(Duration::from_secs(60));
                    }
                    let _ = client_w.shutdown(std::net::Shutdown::Both);
                    return;
                }
                let _ = std::io::copy(&mut up_r, &mut client_w);
            });
        }
    });
    FlakyProxy { port, ranges, cut }
}

/// An image with one large, incompressible layer, for transfers worth breaking.
pub fn push_big_image(reg: &TestRegistry, repo: &str) -> (Vec<u8>, Digest) {
    let mut data = Vec::with_capacity(2 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < (2 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let layer = tar_of(&[("big", &data)]);
    let blob = gzip(&layer);
    let b = reg.push_blob(repo, &blob);
    let arch = husk_image::manifest::Platform::host().architecture;
    let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]}}))
    .unwrap();
    let cd = reg.push_blob(repo, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": b.to_string(), "size": blob.len()}]
    })).unwrap();
    reg.push_manifest(
        repo,
        "big",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    (data, b)
}

/// A runnable image: Debian's static busybox with its applets, /etc/passwd and /etc/group.
pub fn push_busybox_image(reg: &TestRegistry, repo: &str, tag: &str) {
    push_busybox_image_with(reg, repo, tag, &[])
}

/// The busybox image with more layers on top.
pub fn push_busybox_image_with(reg: &TestRegistry, repo: &str, tag: &str, more: &[Vec<u8>]) {
    push_oci_image(
        reg,
        repo,
        tag,
        &busybox_and(more),
        |_| false,
        Some(
            json!({"Env": ["PATH=/bin", "FROM_IMAGE=yes"], "Cmd": ["sh", "-c", "echo default-cmd"], "WorkingDir": "/work"}),
        ),
    );
}

/// The busybox image with `config` as its config's `config` (a HEALTHCHECK, say).
pub fn push_busybox_image_config(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    config: serde_json::Value,
) {
    push_oci_image(reg, repo, tag, &[busybox_layer()], |_| false, Some(config));
}

/// The busybox image with `more` layers on top and `history` as its config's history.
pub fn push_busybox_image_history(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    more: &[Vec<u8>],
    history: serde_json::Value,
) {
    push_oci_image_with(
        reg,
        repo,
        tag,
        &busybox_and(more),
        |_| false,
        None,
        Some(history),
    );
}

/// The busybox layer, then `more`.
fn busybox_and(more: &[Vec<u8>]) -> Vec<Vec<u8>> {
    std::iter::once(busybox_layer())
        .chain(more.iter().cloned())
        .collect()
}

/// An OCI image of `layers` (uncompressed tars, lowest first; gzip, or zstd where `zstd(i)`)
/// for this machine's architecture, with `config` as its config's `config`, tagged `tag`.
fn push_oci_image(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
    zstd: impl Fn(usize) -> bool,
    config: Option<serde_json::Value>,
) -> Digest {
    push_oci_image_with(reg, repo, tag, layers, zstd, config, None)
}

/// `push_oci_image`, with `history` as the image config's history.
fn push_oci_image_with(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
    zstd: impl Fn(usize) -> bool,
    config: Option<serde_json::Value>,
    history: Option<serde_json::Value>,
) -> Digest {
    let mut descs = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (blob, mt) = if zstd(i) {
            (
                zstd::encode_all(&l[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        } else {
            (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
        };
        let d = reg.push_blob(repo, &blob);
        descs.push(json!({"mediaType": mt, "digest": d.to_string(), "size": blob.len()}));
    }
    let arch = husk_image::manifest::Platform::host().architecture;
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let mut image = json!({"architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    if let Some(c) = config {
        image["config"] = c;
    }
    if let Some(h) = history {
        image["history"] = h;
    }
    let config = serde_json::to_vec(&image).unwrap();
    let cd = reg.push_blob(repo, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    })).unwrap();
    reg.push_manifest(
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )
}

/// Debian's static busybox with its applets, /etc/passwd and /etc/group, as a layer tar.
pub fn busybox_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(name).unwrap();
        h.set_mode(mode);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    };
    for (d, m) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("work", 0o755),
    ] {
        dir(&mut b, d, m);
    }
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    file(
        &mut b,
        "bin/busybox",
        &fs::read("/bin/busybox").expect("Debian's busybox-static"),
        0o755,
    );
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        0o644,
    );
    file(
        &mut b,
        "etc/group",
        b"root:x:0:\napp:x:1000:\nstaff:x:50:app\nwheel:x:10:root\n",
        0o644,
    );
    file(&mut b, "bin/notexec", b"#!/bin/sh\necho no\n", 0o644);
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_path(format!("bin/{applet}")).unwrap();
        h.set_link_name("busybox").unwrap();
        h.set_mode(0o777);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A registry that wants `user`/`password` (htpasswd, bcrypt by Debian's apache2-utils).
pub fn start_registry_with_basic_auth(
    user: &str,
    password: &str,
) -> Option<(TestRegistry, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("SKIP: htpasswd (apache2-utils) is not installed (.ci/run installs it)");
        return None;
    };
    fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
    let extra = format!(
        "auth:\n  htpasswd:\n    realm: husk-test\n    path: {}\n",
        dir.path().join("htpasswd").display()
    );
    let mut reg = start_registry_with(&extra)?;
    reg.basic = Some(husk_image::registry::basic_auth(user, password));
    Some((reg, dir))
}

/// A token server (docker's token authentication) for a registry started with
/// `token_auth_config`: anonymous clients get pull access to `public/*` repositories, clients
/// with `user`/`password` to every repository, wrong credentials an HTTP 401. Tokens are JWTs
/// (RS256, the signing certificate in `x5c`) signed by openssl.
pub struct TokenServer {
    pub port: u16,
    pub requests: TokenRequests,
    pub dir: tempfile::TempDir,
}

/// (query string, Authorization header) of every token request.
pub type TokenRequests = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

pub const TOKEN_SERVICE: &str = "husk-test-registry";
const TOKEN_ISSUER: &str = "husk-test-issuer";

pub fn start_token_server(user: &str, password: &str) -> Option<TokenServer> {
    use base64::Engine;
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("sh")
        .arg("-ec")
        .arg(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout sign.key -out sign.pem -days 2 \
              -subj /CN=husk-token-signer 2>/dev/null
              openssl x509 -in sign.pem -outform DER -out sign.der",
        )
        .current_dir(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: openssl could not make a token signing key");
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let x5c = b64.encode(fs::read(dir.path().join("sign.der")).unwrap());
    let key = dir.path().join("sign.key");
    let good = husk_image::registry::basic_auth(user, password);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let mut r = BufReader::new(client.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut authorization = None;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = Some(v.trim().to_string());
                    }
                }
            }
            let query = first
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split_once('?'))
                .map(|(_, q)| q.to_string())
                .unwrap_or_default();
            seen.lock()
                .unwrap()
                .push((query.clone(), authorization.clone()));
            let respond = |client: &mut std::net::TcpStream, status: &str, body: &str| {
                let _ = write!(
                    client,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            };
            let authenticated = match &authorization {
                None => false,
                Some(a) if *a == good => true,
                Some(_) => {
                    respond(
                        &mut client,
                        "401 Unauthorized",
                        r#"{"details":"bad credentials"}"#,
                    );
                    continue;
                }
            };
            let mut access = Vec::new();
            for part in query.split('&') {
                let Some(scope) = part.strip_prefix("scope=") else {
                    continue;
                };
                let scope = scope.replace("%3A", ":").replace("%2F", "/");
                let mut f = scope.split(':');
                let (Some("repository"), Some(name), Some(asked)) = (f.next(), f.next(), f.next())
                else {
                    continue;
                };
                // Credentials get what they ask for (pull, push); anonymous clients only
                // pull, and only public/*.
                if authenticated {
                    let actions: Vec<&str> = asked.split(',').collect();
                    access.push(json!({"type": "repository", "name": name, "actions": actions}));
                } else if name.starts_with("public/") {
                    access.push(json!({"type": "repository", "name": name, "actions": ["pull"]}));
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = json!({
                "iss": TOKEN_ISSUER, "sub": if authenticated { "user" } else { "" },
                "aud": TOKEN_SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                "jti": format!("{now}-{}", seen.lock().unwrap().len()), "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                url.encode(header.to_string()),
                url.encode(claims.to_string())
            );
            let mut sign = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            sign.stdin
                .take()
                .unwrap()
                .write_all(signing_input.as_bytes())
                .unwrap();
            let sig = sign.wait_with_output().unwrap().stdout;
            let token = format!("{signing_input}.{}", url.encode(sig));
            respond(
                &mut client,
                "200 OK",
                &json!({ "token": token }).to_string(),
            );
        }
    });
    Some(TokenServer {
        port,
        requests,
        dir,
    })
}

impl TokenServer {
    /// The `auth:` section of a registry that trusts this token server.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.dir.path().join("sign.pem").display()
        )
    }
}

/// A proxy to the registry on `upstream` that lets `intercept` look at (and change) each
/// request's head lines, the request line first; when it returns a response, that is sent
/// instead of forwarding.
pub fn intercepting_proxy(
    upstream: u16,
    intercept: impl Fn(&mut Vec<String>) -> Option<String> + Send + Sync + 'static,
) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let intercept = std::sync::Arc::new(intercept);
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let intercept = intercept.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(client.try_clone().unwrap());
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if !line.to_ascii_lowercase().starts_with("connection:") {
                        head.push(line);
                    }
                }
                if let Some(response) = intercept(&mut head) {
                    let _ = client.write_all(response.as_bytes());
                    return;
                }
                let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let req = format!("{}Connection: close\r\n\r\n", head.concat());
                if up.write_all(req.as_bytes()).is_ok() {
                    let _ = std::io::copy(&mut up, &mut client);
                }
            });
        }
    });
    port
}

/// One entry of a layer built by `layer`.
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A layer tar with these entries, in this order (mode 0644/0755, mtime 10^9).
pub fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_000_000_000);
        let (name, data): (&str, &[u8]) = match e {
            Entry::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d)
            }
            Entry::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, &[])
            }
            Entry::Symlink(n, t) | Entry::Hardlink(n, t) => {
                h.set_entry_type(if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_link_name(t).unwrap();
                (n, &[])
            }
        };
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Push an image of these layer tars (gzip, every third one zstd) under `repo:tag`.
pub fn push_layers(reg: &TestRegistry, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Digest {
    push_oci_image(reg, repo, tag, layers, |i| i % 3 == 2, None)
}

/// The `layered-edge` image: every whiteout case, links, a file turned into a directory.
/// Returns the layers and what the stacked tree must be (`tree` format).
pub fn layered_edge() -> (Vec<Vec<u8>>, Vec<String>) {
    use Entry::*;
    let l1 = layer(&[
        Dir("a"),
        File("a/x", b"x1"),
        File("a/y", b"y1"),
        File("b", b"b1"),
        Dir("c"),
        File("c/z", b"z1"),
        Dir("c/deep"),
        File("c/deep/f", b"deep"),
        File("keep", b"keep1"),
        Symlink("link", "keep"),
        Hardlink("hard", "keep"),
        File("e", b"e1"),
        Dir("gone"),
        File("gone/inner", b"i"),
    ]);
    let l2 = layer(&[
        File("a/.wh.x", b""),
        Dir("c"),
        File("c/.wh..wh..opq", b""),
        File("c/new", b"new2"),
        File(".wh.b", b""),
        // Re-added, then whited out in the same layer: the whiteout hides only the lower e1,
        // "files that are present in the same layer as a whiteout file can only be hidden by
        // whiteout files in subsequent layers" (image spec), so e2 stays.
        File("e", b"e2"),
        File(".wh.e", b""),
        File(".wh.gone", b""),
        File("a/y", b"y2"),
    ]);
    let l3 = layer(&[
        Dir("b"),
        File("b/inner", b"b3"),
        Dir("gone"),
        File("gone/back", b"back3"),
        Symlink("link", "a/y"),
    ]);
    let expected = [
        "a/ dir",
        "a/y file y2",
        "b/ dir",
        "b/inner file b3",
        "c/ dir",
        "c/new file new2",
        "e file e2",
        "gone/ dir",
        "gone/back file back3",
        "hard file keep1",
        "keep file keep1",
        "link -> a/y",
    ];
    (
        vec![l1, l2, l3],
        expected.iter().map(|s| s.to_string()).collect(),
    )
}

/// A directory tree as sorted lines: "path/ dir", "path file CONTENT", "path -> TARGET".
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                out.push(format!("{rel}/ dir"));
                walk(root, &p, out);
            } else {
                let data = fs::read(&p).unwrap();
                out.push(format!("{rel} file {}", String::from_utf8_lossy(&data)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The header lines of an HTTP message up to the blank line, without `Connection:` (the
/// proxies close each connection after one exchange); None when the peer closed first.
fn read_head(r: &mut impl std::io::BufRead) -> Option<Vec<String>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
    }
}

/// Send a request's head to the registry on `upstream`; its answer's head and the rest.
fn forward(
    upstream: u16,
    head: &[String],
) -> Option<(Vec<String>, std::io::BufReader<std::net::TcpStream>)> {
    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    let mut req = head.concat();
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes()).ok()?;
    let mut up_r = std::io::BufReader::new(up);
    let resp_head = read_head(&mut up_r)?;
    Some((resp_head, up_r))
}

/// How `fault_proxy` misbehaves, for requests whose first line contains `on`.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Answer this status, with an empty body, to the first `times` of them.
    Status {
        on: &'static str,
        status: u16,
        times: usize,
    },
    /// Redirect them to themselves, for ever.
    RedirectLoop { on: &'static str },
    /// Give their responses this Content-Type.
    ContentType {
        on: &'static str,
        value: &'static str,
    },
    /// Add a byte to their response bodies (content that no longer matches its digest).
    Tamper { on: &'static str },
    /// Answer 416 to every request with a Range header.
    RefuseRanges,
    /// Read every request and never answer.
    Silent,
}

pub struct FaultProxy {
    pub port: u16,
    /// Requests the fault was applied to.
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// A proxy in front of the test registry that misbehaves as `fault` says, and forwards
/// everything else.
pub fn fault_proxy(upstream: u16, fault: Fault) -> FaultProxy {
    use std::io::{BufReader, Read};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let hits = h2.clone();
            std::thread::spawn(move || {
                let mut client_r = BufReader::new(client.try_clone().unwrap());
                let Some(head) = read_head(&mut client_r) else {
                    return;
                };
                let ranged = head
                    .iter()
                    .any(|l| l.to_ascii_lowercase().starts_with("range:"));
                let first = head.first().cloned().unwrap_or_default();
                let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                let mut client_w = client;
                let answer = |w: &mut std::net::TcpStream, status: u16, extra: &str| {
                    let _ = write!(
                        w,
                        "HTTP/1.1 {status} Fault\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                };
                match fault {
                    Fault::Silent => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_secs(120));
                        return;
                    }
                    Fault::RefuseRanges if ranged => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        return answer(&mut client_w, 416, "");
                    }
                    Fault::RedirectLoop { on } if first.contains(on) => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        return answer(&mut client_w, 307, &format!("Location: {path}\r\n"));
                    }
                    Fault::Status { on, status, times }
                        if first.contains(on)
                            && hits
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    (n < times).then_some(n + 1)
                                })
                                .is_ok() =>
                    {
                        return answer(&mut client_w, status, "");
                    }
                    _ => {}
                }
                let Some((mut resp_head, mut up_r)) = forward(upstream, &head) else {
                    return;
                };
                let mut body = Vec::new();
                let _ = up_r.read_to_end(&mut body);
                match fault {
                    Fault::ContentType { on, value } if first.contains(on) => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        resp_head.retain(|l| !l.to_ascii_lowercase().starts_with("content-type:"));
                        resp_head.push(format!("Content-Type: {value}\r\n"));
                    }
                    Fault::Tamper { on } if first.contains(on) && !body.is_empty() => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        body.push(b' ');
                        resp_head
                            .retain(|l| !l.to_ascii_lowercase().starts_with("content-length:"));
                        resp_head.push(format!("Content-Length: {}\r\n", body.len()));
                    }
                    _ => {}
                }
                let mut out = resp_head.concat();
                out.push_str("Connection: close\r\n\r\n");
                let _ = client_w.write_all(out.as_bytes());
                let _ = client_w.write_all(&body);
            });
        }
    });
    FaultProxy { port, hits }
}
