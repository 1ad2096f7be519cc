//! Pulls from a real registry (Debian's docker-registry, the CNCF distribution server) started
//! on 127.0.0.1 with images this test builds and pushes itself.

#[path = "support/registry.rs"]
mod support;

use std::fs;

use husk_image::manifest::Platform;
use husk_image::pull::pull;
use husk_image::registry::Options;
use husk_image::Digest;
use serde_json::json;
use support::*;

#[test]
fn pulls_oci_and_docker_images_verified_and_unpacked() {
    // These look at the unpacked layer directories.
    husk_image::snapshot::request("overlay");
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
    // These look at the unpacked layer directories.
    husk_image::snapshot::request("overlay");
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
    // These look at the unpacked layer directories.
    husk_image::snapshot::request("overlay");
    let Some(reg) = start_registry() else { return };
    let repo = "test/tampered";
    let (img, _) = push_app(&reg, repo);
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
    // Other layers may have been verified and kept (they download in parallel); the tampered
    // one never becomes a layer directory.
    let layers = root.path().join("layers");
    for e in fs::read_dir(&layers).into_iter().flatten().flatten() {
        assert!(
            !e.path().join("etc/os").exists(),
            "the tampered layer was unpacked"
        );
    }
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

#[test]
fn a_connection_that_drops_mid_blob_is_resumed_with_range() {
    // These look at the unpacked layer directories.
    husk_image::snapshot::request("overlay");
    let Some(reg) = start_registry() else { return };
    let (data, blob) = push_big_image(&reg, "test/big");
    // The first two blob responses break off after 300 kB.
    let proxy = flaky_proxy(reg.port, 2, 300_000, false);
    let root = tempfile::tempdir().unwrap();
    let r =
        husk_image::Reference::parse(&format!("127.0.0.1:{}/test/big:big", proxy.port)).unwrap();
    let pulled = pull(root.path(), &r, &Platform::host(), &Options::default()).unwrap();
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy did break a transfer"
    );
    let ranges = proxy.ranges.lock().unwrap().clone();
    assert!(
        ranges
            .iter()
            .any(|r| r.to_ascii_lowercase().starts_with("range: bytes=") && !r.ends_with("=0-")),
        "resumed with Range: {ranges:?}"
    );
    assert_eq!(fs::read(pulled.layers[0].join("big")).unwrap(), data);
    assert!(root.path().join("blobs/sha256").join(blob.hex()).is_file());
    let left: Vec<_> = fs::read_dir(root.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "no partial file left: {left:?}");
}
