//! Pulls from a real registry (Debian's docker-registry, the CNCF distribution server) started
//! on 127.0.0.1 with images this test builds and pushes itself.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use husk_image::manifest::Platform;
use husk_image::pull::pull;
use husk_image::registry::Options;
use husk_image::{Digest, Reference};
use serde_json::json;

struct TestRegistry {
    child: Child,
    port: u16,
    storage: tempfile::TempDir,
    _config: tempfile::TempDir,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_binary() -> Option<&'static str> {
    ["/usr/bin/docker-registry", "/usr/bin/registry"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn start_registry() -> Option<TestRegistry> {
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
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.path().display()
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
    fn base(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/v2/{repo}", self.port)
    }

    fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let resp = ureq::post(&format!("{}/blobs/uploads/", self.base(repo)))
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
        let resp = ureq::put(&format!("{loc}{sep}digest={d}"))
            .send(data)
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "blob upload");
        d
    }

    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Digest {
        let resp = ureq::put(&format!("{}/manifests/{reference}", self.base(repo)))
            .header("Content-Type", media_type)
            .send(body)
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "manifest push");
        Digest::of(body)
    }

    fn blob_file(&self, d: &Digest) -> PathBuf {
        self.storage.path().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{}/data",
            &d.hex()[..2],
            d.hex()
        ))
    }
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
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

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Image {
    manifest: Vec<u8>,
    layers: Vec<Digest>,
}

/// Push a two-layer image (gzip + zstd, the second with whiteouts) and return its manifest.
fn push_image(reg: &TestRegistry, repo: &str, docker: bool, arch: &str) -> Image {
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

fn reference(reg: &TestRegistry, repo_tag: &str) -> Reference {
    Reference::parse(&format!("127.0.0.1:{}/{repo_tag}", reg.port)).unwrap()
}

#[test]
fn pulls_oci_and_docker_images_verified_and_unpacked() {
    let Some(reg) = start_registry() else { return };
    for (docker, repo) in [(false, "test/oci"), (true, "test/docker")] {
        let img = push_image(&reg, repo, docker, "amd64");
        let mt = if docker {
            "application/vnd.docker.distribution.manifest.v2+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        };
        let md = reg.push_manifest(repo, "v1", mt, &img.manifest);
        let root = tempfile::tempdir().unwrap();
        let pulled = pull(
            root.path(),
            &reference(&reg, &format!("{repo}:v1")),
            &Platform::host(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(pulled.manifest, md);
        assert_eq!(pulled.layers.len(), 2);
        assert_eq!(fs::read(pulled.layers[0].join("hello")).unwrap(), b"world");
        assert_eq!(fs::read(pulled.layers[1].join("added")).unwrap(), b"yes");
        assert!(
            std::os::unix::fs::FileTypeExt::is_char_device(
                &fs::metadata(pulled.layers[1].join("hello"))
                    .unwrap()
                    .file_type()
            ),
            "whiteout"
        );
        for b in &img.layers {
            assert!(
                root.path().join("blobs/sha256").join(b.hex()).is_file(),
                "compressed blob kept"
            );
        }
        // By digest, and a second pull reuses what is there.
        let by_digest = pull(
            root.path(),
            &reference(&reg, &format!("{repo}@{md}")),
            &Platform::host(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(by_digest.diff_ids, pulled.diff_ids);
    }
}

#[test]
fn a_multi_platform_index_resolves_to_this_host() {
    let Some(reg) = start_registry() else { return };
    let repo = "test/multi";
    let host = Platform::host();
    let other = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mine = push_image(&reg, repo, false, &host.architecture);
    let theirs = push_image(&reg, repo, false, other);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let d_mine = reg.push_manifest(
        repo,
        &Digest::of(&mine.manifest).to_string(),
        mt,
        &mine.manifest,
    );
    let d_theirs = reg.push_manifest(
        repo,
        &Digest::of(&theirs.manifest).to_string(),
        mt,
        &theirs.manifest,
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": d_theirs.to_string(), "size": theirs.manifest.len(), "platform": {"os": "linux", "architecture": other}},
            {"mediaType": mt, "digest": d_mine.to_string(), "size": mine.manifest.len(), "platform": {"os": "linux", "architecture": host.architecture}}
        ]
    }))
    .unwrap();
    reg.push_manifest(
        repo,
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let root = tempfile::tempdir().unwrap();
    let pulled = pull(
        root.path(),
        &reference(&reg, &format!("{repo}:multi")),
        &host,
        &Options::default(),
    )
    .unwrap();
    assert_eq!(pulled.manifest, d_mine);
    let e = pull(
        root.path(),
        &reference(&reg, &format!("{repo}:multi")),
        &Platform::parse("linux/s390x").unwrap(),
        &Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("s390x"), "{e}");
}

#[test]
fn a_registry_that_serves_tampered_blobs_is_caught() {
    let Some(reg) = start_registry() else { return };
    let repo = "test/tampered";
    let img = push_image(&reg, repo, false, &Platform::host().architecture);
    reg.push_manifest(
        repo,
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest,
    );
    // Flip the content of the first layer in the registry's own storage.
    let f = reg.blob_file(&img.layers[0]);
    let mut data = fs::read(&f).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&f, &data).unwrap();
    let root = tempfile::tempdir().unwrap();
    let e = pull(
        root.path(),
        &reference(&reg, &format!("{repo}:v1")),
        &Platform::host(),
        &Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not match its digest"), "{e}");
    assert!(
        !root
            .path()
            .join("blobs/sha256")
            .join(img.layers[0].hex())
            .exists(),
        "nothing unverified is stored"
    );
    assert!(
        !root.path().join("layers").exists()
            || fs::read_dir(root.path().join("layers")).unwrap().count() == 0
    );
    // A tag that does not exist is a clear error too.
    let e = pull(
        root.path(),
        &reference(&reg, &format!("{repo}:nope")),
        &Platform::host(),
        &Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
}
