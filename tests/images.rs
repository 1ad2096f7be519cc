//! tag, rmi (shared layers kept until the last user goes), image mount/unmount/inspect/prune,
//! login/logout against a registry that wants credentials.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::path::Path;

use common::*;
use support::*;

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn tag_rmi_mount_and_prune() {
    if !is_root() {
        eprintln!("SKIP tag_rmi_mount_and_prune: unpacking and mounting need root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let arch = husk_image::manifest::Platform::host().architecture;
    // Two repositories with the same layers (same content): stored and unpacked once.
    for repo in ["one/app", "two/app"] {
        let img = push_image(&reg, repo, false, &arch);
        reg.push_manifest(
            repo,
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &img.manifest,
        );
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let one = format!("127.0.0.1:{}/one/app:v1", reg.port);
    let two = format!("127.0.0.1:{}/two/app:v1", reg.port);
    assert_eq!(husk(r, &["pull", "-q", &one]).0, 0);
    assert_eq!(husk(r, &["pull", "-q", &two]).0, 0);
    assert_eq!(count(&r.join("layers")), 2, "shared layers unpacked once");

    let (code, _, err) = husk(r, &["tag", &one, "localhost/mine:latest"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = husk(r, &["images"]);
    assert!(
        out.contains("localhost/mine") && out.contains("latest"),
        "{out}"
    );
    let (_, out, _) = husk(r, &["image", "inspect", "localhost/mine"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["RepoTags"][0], "localhost/mine:latest");
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // A mounted image cannot be removed.
    let (code, mp, err) = husk(r, &["image", "mount", "localhost/mine"]);
    assert_eq!(code, 0, "{err}");
    let mp = mp.trim().to_string();
    assert_eq!(std::fs::read(Path::new(&mp).join("added")).unwrap(), b"yes");
    assert!(
        !Path::new(&mp).join("hello").exists(),
        "the whiteout hides the lower file"
    );
    assert!(
        std::fs::write(Path::new(&mp).join("x"), "y").is_err(),
        "read-only"
    );
    let (code, _, err) = husk(r, &["rmi", "localhost/mine"]);
    assert_eq!(code, 1);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(husk(r, &["image", "unmount", "localhost/mine"]).0, 0);

    // Removing names frees nothing while another image shares the content...
    assert_eq!(husk(r, &["rmi", "localhost/mine", &one]).0, 0);
    assert_eq!(count(&r.join("layers")), 2);
    // ...and everything once the last one goes.
    let (code, out, err) = husk(r, &["rmi", &two]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Untagged"), "{out}");
    assert_eq!(count(&r.join("layers")), 0);
    assert_eq!(count(&r.join("blobs/sha256")), 0);
    let (code, _, err) = husk(r, &["rmi", &two]);
    assert_eq!(code, 1);
    assert!(err.contains("no such image"), "{err}");
    let (code, out, _) = husk(r, &["image", "prune"]);
    assert_eq!(code, 0);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(r.to_str().unwrap()));
}

#[test]
fn login_then_pull_from_a_registry_that_wants_credentials() {
    if !is_root() {
        eprintln!(
            "SKIP login_then_pull_from_a_registry_that_wants_credentials: unpacking needs root"
        );
        return;
    }
    let Some((reg, _auth)) = start_registry_with_basic_auth("huskuser", "s3cret") else {
        return;
    };
    let arch = husk_image::manifest::Platform::host().architecture;
    let img = push_image(&reg, "private/app", false, &arch);
    reg.push_manifest(
        "private/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest,
    );
    let root = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let server = format!("127.0.0.1:{}", reg.port);
    let name = format!("{server}/private/app:v1");

    let (code, _, err) = husk_env(root.path(), &["pull", &name], Some(cfg.path()));
    assert_eq!(code, 1);
    assert!(err.contains("husk login"), "{err}");
    let (code, _, err) = husk_env(
        root.path(),
        &["login", "-u", "huskuser", "-p", "wrong", &server],
        Some(cfg.path()),
    );
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(
        !cfg.path().join("config.json").exists(),
        "refused credentials are not stored"
    );
    let (code, out, err) = husk_env(
        root.path(),
        &["login", "-u", "huskuser", "-p", "s3cret", &server],
        Some(cfg.path()),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Login Succeeded");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["auths"][&server]["auth"], "aHVza3VzZXI6czNjcmV0",
        "docker's format"
    );
    let (code, _, err) = husk_env(root.path(), &["pull", "-q", &name], Some(cfg.path()));
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = husk_env(root.path(), &["logout", &server], Some(cfg.path()));
    assert_eq!(code, 0);
    assert!(out.contains("Removing login credentials"), "{out}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap()).unwrap();
    assert!(config["auths"].get(&server).is_none());
}
