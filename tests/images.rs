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
    // Two repositories with the same layers (same content): stored and unpacked once.
    for repo in ["one/app", "two/app"] {
        push_app(&reg, repo);
    }
    let root = store();
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
fn rmi_refuses_an_image_a_container_uses_and_an_id_of_several_names() {
    let Some((_reg, root, img)) = busybox_store(
        "rmi_refuses_an_image_a_container_uses_and_an_id_of_several_names",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    let (code, id, err) = husk(r, &["create", "--name", "user", &img, "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(id.trim().len(), 64, "create prints the id: {id}");
    let (_, ps, _) = husk(r, &["ps", "-a"]);
    assert!(ps.contains("Created") && ps.contains("user"), "{ps}");
    // A container that never ran still needs its image: refused, one line, nothing lost.
    let (code, _, err) = husk(r, &["rmi", &img]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("in use by container user"), "{err}");
    let (code, _, err) = husk(r, &["start", "-a", "user"]);
    assert_eq!(code, 0, "the container still starts: {err}");
    assert_eq!(husk(r, &["rm", "user"]).0, 0);

    // One image, two names: the id alone removes both only with -f; a name removes one.
    assert_eq!(husk(r, &["tag", &img, "localhost/other:v1"]).0, 0);
    let (_, id, _) = husk(r, &["images", "-q"]);
    let id = id.lines().next().unwrap().to_string();
    let (code, _, err) = husk(r, &["rmi", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("must be forced"), "{err}");
    assert_eq!(husk(r, &["images", "-q"]).1.lines().count(), 2);
    let (code, out, err) = husk(r, &["rmi", "-f", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("Untagged").count(), 2, "{out}");
    assert_eq!(husk(r, &["images", "-q"]).1, "");
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
    push_app(&reg, "private/app");
    let root = store();
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

fn podman_in(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    let mut c = std::process::Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "overlay"])
        .args(args);
    c.output().ok()
}

#[test]
fn save_and_load_round_trip_through_both_formats_and_podman() {
    if !is_root() {
        eprintln!("SKIP save_and_load_round_trip_through_both_formats_and_podman: unpacking and running need root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    push_busybox_image(&reg, "tools/busybox", "1");
    let name = format!("127.0.0.1:{}/tools/busybox:1", reg.port);
    let a = store();
    let (code, _, err) = husk(a.path(), &["pull", "-q", &name]);
    assert_eq!(code, 0, "{err}");
    let id = husk(a.path(), &["images", "-q", "--no-trunc"]).1;
    let work = tempfile::tempdir().unwrap();

    for format in ["docker-archive", "oci-archive"] {
        let file = work.path().join(format!("{format}.tar"));
        let (code, _, err) = husk(
            a.path(),
            &[
                "save",
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
                &name,
            ],
        );
        assert_eq!(code, 0, "{err}");
        let listing = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&file)
            .output()
            .unwrap();
        let listing = text(&listing.stdout);
        assert!(
            listing.contains("oci-layout") && listing.contains("index.json"),
            "{listing}"
        );
        assert_eq!(
            listing.contains("manifest.json"),
            format == "docker-archive",
            "{listing}"
        );

        let b = store();
        let (code, out, err) = husk(b.path(), &["load", "-i", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("Loaded image: {name}\n"));
        assert_eq!(
            husk(b.path(), &["images", "-q", "--no-trunc"]).1,
            id,
            "same image ID"
        );
        let (code, out, err) = husk(
            b.path(),
            &["run", "--rm", "--pull", "never", &name, "echo", "loaded"],
        );
        assert_eq!((code, out.as_str()), (0, "loaded\n"), "{err}");

        // podman reads what husk wrote.
        if std::process::Command::new("podman")
            .arg("--version")
            .output()
            .is_ok()
        {
            let p = tempfile::tempdir().unwrap();
            let arg = format!("{format}:{}", file.display());
            let out = podman_in(p.path(), &["pull", "-q", &arg]).unwrap();
            assert!(
                out.status.success(),
                "podman pull {arg}: {}",
                text(&out.stderr)
            );
            let out = podman_in(p.path(), &["images", "-q", "--no-trunc"]).unwrap();
            assert!(
                id.contains(text(&out.stdout).trim().trim_start_matches("sha256:")),
                "{}",
                text(&out.stdout)
            );
            let _ = std::process::Command::new("umount")
                .arg("-R")
                .arg(p.path())
                .output();
        } else {
            eprintln!(
                "SKIP podman half of save_and_load: podman is not installed (.ci/run installs it)"
            );
        }
    }

    // Archives podman wrote: husk loads both formats.
    if std::process::Command::new("podman")
        .arg("--version")
        .output()
        .is_ok()
    {
        let p = tempfile::tempdir().unwrap();
        let out = podman_in(p.path(), &["pull", "-q", "--tls-verify=false", &name]).unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        for format in ["docker-archive", "oci-archive"] {
            let file = work.path().join(format!("podman-{format}.tar"));
            let out = podman_in(
                p.path(),
                &[
                    "save",
                    "--format",
                    format,
                    "-o",
                    file.to_str().unwrap(),
                    &name,
                ],
            )
            .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let c = store();
            let (code, _, err) = husk(c.path(), &["load", "-q", "-i", file.to_str().unwrap()]);
            assert_eq!(code, 0, "podman's {format}: {err}");
            let (code, out, err) = husk(
                c.path(),
                &[
                    "run",
                    "--rm",
                    "--pull",
                    "never",
                    &name,
                    "echo",
                    "from-podman",
                ],
            );
            assert_eq!(
                (code, out.as_str()),
                (0, "from-podman\n"),
                "{format}: {err}"
            );
        }
        let _ = std::process::Command::new("umount")
            .arg("-R")
            .arg(p.path())
            .output();
    }

    // A corrupt archive: a flipped byte in a layer is caught, nothing is named.
    let file = work.path().join("oci-archive.tar");
    let mut data = std::fs::read(&file).unwrap();
    // The largest entry is the layer.
    let mut ar = tar::Archive::new(&data[..]);
    let (offset, size) = ar
        .entries()
        .unwrap()
        .flatten()
        .map(|e| (e.raw_file_position(), e.header().size().unwrap()))
        .max_by_key(|(_, s)| *s)
        .unwrap();
    data[(offset + size / 2) as usize] ^= 0xff;
    std::fs::write(&file, &data).unwrap();
    let d = store();
    let (code, _, err) = husk(d.path(), &["load", "-i", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not match its digest") && err.lines().count() == 1,
        "{err}"
    );
    assert!(husk(d.path(), &["images", "-q"]).1.is_empty());
    let (code, _, err) = husk(d.path(), &["load", "-i", "/etc/hostname"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/etc/hostname") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn layered_edge_image_mounts_exactly_as_its_layers_say() {
    if !is_root() {
        eprintln!("SKIP layered_edge_image_mounts_exactly_as_its_layers_say: unpacking and mounting need root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (layers, expected) = layered_edge();
    push_layers(&reg, "edge/app", "v1", &layers);
    let name = format!("127.0.0.1:{}/edge/app:v1", reg.port);
    // The same exactness on both snapshotters.
    for driver in ["overlay", "erofs"] {
        let root = store();
        let (code, _, err) = husk(
            root.path(),
            &["--storage-driver", driver, "pull", "-q", &name],
        );
        if driver == "erofs" && code != 0 && err.contains("storage driver erofs") {
            eprintln!("SKIP the erofs half: {err}");
            continue;
        }
        assert_eq!(code, 0, "{driver}: {err}");
        let stored = root.path().join("layers").join(format!(
            "{}{}",
            husk_image::Digest::of(&layers[0]).hex(),
            if driver == "erofs" { ".erofs" } else { "" }
        ));
        assert!(stored.exists(), "{driver}: {}", stored.display());
        let (code, mp, err) = husk(root.path(), &["image", "mount", &name]);
        assert_eq!(code, 0, "{err}");
        let mp = Path::new(mp.trim());
        let got = tree(mp);
        // The hardlink is one inode in its layer (seen through the merged view).
        use std::os::unix::fs::MetadataExt;
        let (hard, keep) = (
            std::fs::metadata(mp.join("hard")).unwrap(),
            std::fs::metadata(mp.join("keep")).unwrap(),
        );
        let (code, _, err) = husk(root.path(), &["image", "unmount", &name]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(got, expected, "{driver}");
        assert_eq!(hard.ino(), keep.ino(), "{driver}");
        // Unmounted, the layer mounts are released (the last user unmounts).
        assert_eq!(layer_mounts(root.path()), 0, "{driver}");
    }
}

#[test]
fn an_image_of_a_hundred_and_twenty_layers_mounts() {
    if !is_root() {
        eprintln!(
            "SKIP an_image_of_a_hundred_and_twenty_layers_mounts: unpacking and mounting need root"
        );
        return;
    }
    let Some(reg) = start_registry() else { return };
    let layers: Vec<Vec<u8>> = (0..120)
        .map(|i| layer(&[Entry::File(&format!("f{i:03}"), format!("{i}").as_bytes())]))
        .collect();
    push_layers(&reg, "tall/app", "v1", &layers);
    let root = store();
    let name = format!("127.0.0.1:{}/tall/app:v1", reg.port);
    let (code, _, err) = husk(root.path(), &["pull", "-q", &name]);
    assert_eq!(code, 0, "{err}");
    let (code, mp, err) = husk(root.path(), &["image", "mount", &name]);
    assert_eq!(code, 0, "{err}");
    let n = count(Path::new(mp.trim()));
    let _ = husk(root.path(), &["image", "unmount", &name]);
    assert_eq!(n, 120);
}

#[test]
fn two_pulls_of_one_image_at_once_both_succeed_with_one_download() {
    if !is_root() {
        eprintln!("SKIP two_pulls_of_one_image_at_once_both_succeed_with_one_download: unpacking needs root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (data, blob) = push_big_image(&reg, "team/big");
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let g = gets.clone();
    let want = format!("/blobs/{blob} ");
    let port = intercepting_proxy(reg.port, move |head| {
        if head[0].starts_with("GET") && head[0].contains(&want) {
            g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        None
    });
    let root = store();
    let name = format!("127.0.0.1:{port}/team/big:big");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
            .arg("--root")
            .arg(root.path())
            .args(["pull", "-q", &name])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert!(b.status.success(), "{}", text(&b.stderr));
    assert_eq!(
        gets.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the layer was downloaded once"
    );
    assert_eq!(husk(root.path(), &["images", "-q"]).1.lines().count(), 1);
    let layers = root.path().join("layers");
    let names: Vec<_> = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "one stored layer, no leftovers: {names:?}");
    assert_eq!(image_file(root.path(), &name, "big"), data);
}

#[test]
fn info_says_which_snapshotter_and_rmi_drops_layer_mounts() {
    if !is_root() {
        eprintln!(
            "SKIP info_says_which_snapshotter_and_rmi_drops_layer_mounts: containers need root"
        );
        return;
    }
    let Some(reg) = start_registry() else { return };
    push_busybox_image(&reg, "lib/busybox", "latest");
    let root = store();
    let r = root.path();
    let img = format!("127.0.0.1:{}/lib/busybox", reg.port);
    let (code, info, err) = husk(r, &["info"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        info.contains("Storage Driver: ") && info.contains(" Why: "),
        "{info}"
    );
    let (_, forced, _) = husk(r, &["--storage-driver", "overlay", "system", "info"]);
    assert!(
        forced.contains("Storage Driver: overlay\n Why: asked for"),
        "{forced}"
    );
    let (code, _, err) = husk(r, &["--storage-driver", "zfs", "info"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown storage driver \"zfs\""), "{err}");
    if !info.contains("Storage Driver: erofs") {
        eprintln!(
            "SKIP the EROFS half of info_says_which_snapshotter_and_rmi_drops_layer_mounts: {info}"
        );
        return;
    }
    // Which way this kernel mounts the layers: from the file itself from Linux 6.12 on.
    let how = if kernel_at_least(6, 12) {
        "this kernel mounts EROFS image files directly"
    } else {
        "this kernel mounts EROFS image files through loop devices (directly from Linux 6.12)"
    };
    assert!(info.contains(&format!(" Why: {how}\n")), "{info}");
    // Containers share a layer's mount; the last one to go releases it.
    let a = husk(r, &["run", "-d", &img, "sleep", "30"])
        .1
        .trim()
        .to_string();
    let b = husk(r, &["run", "-d", &img, "sleep", "30"])
        .1
        .trim()
        .to_string();
    assert_eq!(layer_mounts(r), 1, "one shared mount");
    assert_eq!(husk(r, &["rm", "-f", &a]).0, 0);
    assert_eq!(layer_mounts(r), 1, "still used by the second container");
    assert_eq!(husk(r, &["rm", "-f", &b]).0, 0);
    assert_eq!(layer_mounts(r), 0, "the last user released it");
    // A crash (here: a count left too high) keeps the mount up; rmi still goes through.
    let c = husk(r, &["run", "-d", &img, "sleep", "30"])
        .1
        .trim()
        .to_string();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.join("containers").join(&c).join("container.json")).unwrap(),
    )
    .unwrap();
    let monitor = rec["state"]["monitor_pid"].as_i64().unwrap() as i32;
    // SAFETY: SIGKILL to the monitor this test started; then its container.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    assert_eq!(husk(r, &["rm", "-f", &c]).0, 0);
    let (code, _, err) = husk(r, &["rmi", &img]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(layer_mounts(r), 0);
    assert!(mounts_left(r).is_empty());
    assert_eq!(count(&r.join("layers")), 0);
}

/// `husk --root ROOT ARGS…` with this layer-mount grace (seconds).
fn husk_graced(root: &Path, grace: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("HUSK_LAYER_MOUNT_GRACE", grace)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Poll `cond` for up to `secs` seconds.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    cond()
}

#[test]
fn a_layer_mount_outlives_its_last_user_by_the_grace_then_goes() {
    let Some((reg, root, img)) = busybox_store(
        "a_layer_mount_outlives_its_last_user_by_the_grace_then_goes",
        &[],
    ) else {
        return;
    };
    let r = root.path();
    let (_, info, _) = husk(r, &["info"]);
    if !info.contains("Storage Driver: erofs") {
        eprintln!(
            "SKIP a_layer_mount_outlives_its_last_user_by_the_grace_then_goes: no EROFS here: {info}"
        );
        return;
    }
    assert!(info.contains(" Layer Mount Grace: 0s"), "{info}");
    // The last user leaves the mount up and a reaper watching it. husk's caller gets its
    // output and exit code at once: the reaper, still waiting, holds none of husk's stdio.
    let (code, out, err) = husk_graced(r, "30", &["run", "--rm", &img, "echo", "hi"]);
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    assert_eq!(layer_mounts(r), 1, "kept up for the grace");
    assert!(eventually(5, || reapers(r).len() == 1), "one reaper");
    // The next container finds it mounted; its release does not start a second reaper.
    let (code, _, err) = husk_graced(r, "30", &["run", "--rm", &img, "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(eventually(5, || reapers(r).len() == 1), "still one reaper");
    // A reaper killed outright (OOM, a cgroup kill) leaves its mount unwatched: the next
    // reaper of the store adopts it, here one started by another image's release.
    for pid in reapers(r) {
        // SAFETY: SIGKILL to the reaper this test's husk started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(eventually(5, || reapers(r).is_empty()));
    assert_eq!(layer_mounts(r), 1, "orphaned");
    push_layers(
        &reg,
        "grace/other",
        "v1",
        &[layer(&[Entry::File("other", b"layer")])],
    );
    let other = format!("127.0.0.1:{}/grace/other:v1", reg.port);
    assert_eq!(husk(r, &["pull", "-q", &other]).0, 0);
    let (code, _, err) = husk_graced(r, "30", &["image", "mount", &other]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = husk_graced(r, "30", &["image", "unmount", &other]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(layer_mounts(r), 2);
    // Once it waits (signals blocked, in sigtimedwait), SIGTERM (a service or job being
    // stopped) ends the wait: both idle mounts go now.
    // /proc/PID/syscall, not wchan: wchan is 0 on kernels that unwind with ORC (5.10).
    let waiting = || {
        reapers(r).into_iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                .is_ok_and(|s| s.starts_with(&format!("{} ", libc::SYS_rt_sigtimedwait)))
        })
    };
    assert!(eventually(5, waiting), "a new reaper, waiting");
    assert_eq!(reapers(r).len(), 1);
    for pid in reapers(r) {
        // SAFETY: SIGTERM to the reaper this test's husk started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    assert!(
        eventually(10, || layer_mounts(r) == 0 && reapers(r).is_empty()),
        "SIGTERM unmounts the idle layers: {} mounts, reapers {:?}",
        layer_mounts(r),
        reapers(r)
    );
    let grace = "2";
    let (code, _, err) = husk_graced(r, grace, &["run", "--rm", &img, "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(layer_mounts(r), 1, "kept up for the grace");
    // A container that comes within the grace keeps the mount: the reaper leaves it be.
    let (code, id, err) = husk_graced(r, grace, &["run", "-d", &img, "sleep", "60"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        eventually(15, || reapers(r).is_empty()),
        "the reaper leaves a layer in use"
    );
    assert_eq!(layer_mounts(r), 1, "the container's layer stays mounted");
    let (code, out, _) = husk_graced(r, grace, &["exec", id.trim(), "cat", "/etc/passwd"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("root:"), "{out}");
    // Its removal hands the layer to a new reaper, which unmounts it after the grace.
    let (code, _, err) = husk_graced(r, grace, &["rm", "-f", id.trim()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(layer_mounts(r), 1, "kept up for the grace");
    assert!(
        eventually(15, || layer_mounts(r) == 0 && reapers(r).is_empty()),
        "released after the grace: {} mounts, reapers {:?}",
        layer_mounts(r),
        reapers(r)
    );
    assert!(mounts_left(r).is_empty(), "{:?}", mounts_left(r));
    // A grace that is not a number of seconds is refused when a container starts.
    let (code, _, err) = husk_graced(r, "soon", &["run", "--rm", &img, "true"]);
    assert_eq!(code, 125);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("HUSK_LAYER_MOUNT_GRACE: \"soon\" is not a number of seconds"),
        "{err}"
    );
    let config = r.join("config.json");
    let info_with = |text: &str| {
        std::fs::write(&config, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
            .arg("--root")
            .arg(r)
            .arg("info")
            .env("HUSK_CONFIG", &config)
            .env_remove("HUSK_LAYER_MOUNT_GRACE")
            .output()
            .unwrap()
    };
    let out = info_with(r#"{"layer-mount-grace": "2.5"}"#);
    assert!(
        text(&out.stdout).contains(" Layer Mount Grace: 2.5s"),
        "{}",
        text(&out.stdout)
    );
    let out = info_with("{not json");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("husk's config") && err.contains("config.json") && err.lines().count() == 1,
        "{err}"
    );
    let out = info_with(r#"{"layer-mount-grace": -1}"#);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("layer-mount-grace in husk's config: \"-1\""),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(layer_mounts(r), 0);
}

#[test]
fn an_image_with_a_repeated_layer_mounts_on_both_snapshotters() {
    if !is_root() {
        eprintln!(
            "SKIP an_image_with_a_repeated_layer_mounts_on_both_snapshotters: mounting needs root"
        );
        return;
    }
    let Some(reg) = start_registry() else { return };
    // The same (empty) layer twice, around a real one: overlayfs refuses a lower twice.
    let empty = layer(&[]);
    let real = layer(&[Entry::File("hello", b"world")]);
    push_layers(&reg, "rep/app", "v1", &[empty.clone(), real, empty]);
    let name = format!("127.0.0.1:{}/rep/app:v1", reg.port);
    for driver in ["overlay", "erofs"] {
        let root = store();
        let (code, _, err) = husk(
            root.path(),
            &["--storage-driver", driver, "pull", "-q", &name],
        );
        assert_eq!(code, 0, "{driver}: {err}");
        assert_eq!(
            image_file(root.path(), &name, "hello"),
            b"world",
            "{driver}"
        );
        assert_eq!(layer_mounts(root.path()), 0, "{driver}");
    }
}

/// One name, two platforms (an index of the busybox layer under a config for this host and one
/// for another architecture), pushed to `repo:tag`: (host config digest, other config
/// digest, the other platform).
fn push_two_platforms(reg: &TestRegistry, repo: &str, tag: &str) -> (String, String, String) {
    let layer = busybox_layer();
    let blob = gzip(&layer);
    let ld = reg.push_blob(repo, &blob);
    let host = husk_image::manifest::Platform::host().architecture;
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let mut descs = Vec::new();
    let mut configs = Vec::new();
    for arch in [host.as_str(), other] {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux", "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [husk_image::Digest::of(&layer).to_string()]}
        }))
        .unwrap();
        let cd = reg.push_blob(repo, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": blob.len()}],
        }))
        .unwrap();
        let md = reg.push_manifest(
            repo,
            &husk_image::Digest::of(&manifest).to_string(),
            mt,
            &manifest,
        );
        descs.push(
            serde_json::json!({"mediaType": mt, "digest": md.to_string(), "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch}}),
        );
        configs.push(cd.to_string());
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs,
    }))
    .unwrap();
    reg.push_manifest(repo, tag, "application/vnd.oci.image.index.v1+json", &index);
    (
        configs[0].clone(),
        configs[1].clone(),
        format!("linux/{other}"),
    )
}

#[test]
fn an_image_per_platform_under_one_name() {
    if !is_root() {
        eprintln!("SKIP an_image_per_platform_under_one_name: containers need root");
        return;
    }
    let Some(reg) = start_registry() else { return };
    let (host_id, other_id, other) = push_two_platforms(&reg, "lib/multi", "1");
    let root = store();
    let r = root.path();
    let img = format!("127.0.0.1:{}/lib/multi:1", reg.port);
    // The other platform first: it does not become what the plain name means.
    let (code, _, err) = husk(r, &["pull", "-q", "--platform", &other, &img]);
    assert_eq!(code, 0, "{err}");
    // A plain run wants this host's platform: not in the store, so it is pulled beside.
    let (code, _, err) = husk(r, &["run", "--name", "mine", &img, "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Unable to find image"), "{err}");
    let (_, out, _) = husk(r, &["inspect", "-f", "{{.Image}}", "mine"]);
    assert_eq!(out.trim(), host_id);
    // Both stay: --platform runs the other one without pulling again.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "theirs",
            "--pull",
            "never",
            "--platform",
            &other,
            &img,
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = husk(r, &["inspect", "-f", "{{.Image}}", "theirs"]);
    assert_eq!(out.trim(), other_id);
    let (_, out, _) = husk(r, &["images", "-q", "--no-trunc"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    // A pull of this host's platform again replaces only its own.
    let (code, _, err) = husk(r, &["pull", "-q", &img]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(husk(r, &["images", "-q"]).1.lines().count(), 2);
    // A platform the registry does not have: one line, nothing lost.
    let (code, _, err) = husk(
        r,
        &["run", "--rm", "--platform", "linux/s390x", &img, "true"],
    );
    assert_eq!(code, 125, "{err}");
    // docker's "Unable to find image" line, then one line of error.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("husk:")).collect();
    assert!(errors.len() == 1 && errors[0].contains("s390x"), "{err}");
    assert_eq!(husk(r, &["images", "-q"]).1.lines().count(), 2);
    assert_eq!(husk(r, &["rm", "mine", "theirs"]).0, 0);
    // rmi of the name takes both platforms.
    let (code, _, err) = husk(r, &["rmi", &img]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(husk(r, &["images", "-q"]).1, "");
}
