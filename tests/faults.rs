//! The image store under faults: husk killed at every named point of a pull and at random
//! moments, a registry that misbehaves, a full disk, and many commands at once on one store.
//! After each, the store must work as if nothing happened: the next pull succeeds, the image
//! mounts as exactly the right tree, `husk system check` finds nothing, and no temp file stays.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use support::{fault_proxy, Fault};

/// The image's tree as `image mount` shows it: each path's type, mode, owner, size, content.
fn rootfs_of(root: &Path, img: &str) -> BTreeMap<String, String> {
    let (code, mp, err) = husk(root, &["image", "mount", img]);
    assert_eq!(code, 0, "{err}");
    let mp = std::path::PathBuf::from(mp.trim());
    let mut out = BTreeMap::new();
    let mut dirs = vec![mp.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                dirs.push(e.path());
            }
            let content = if m.is_file() {
                format!("{:x}", crc(&std::fs::read(e.path()).unwrap()))
            } else {
                std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            };
            let key = e.path().strip_prefix(&mp).unwrap().display().to_string();
            let size = if m.is_dir() { 0 } else { m.len() };
            let desc = format!("{:o} {}:{} {size} {content}", m.mode(), m.uid(), m.gid());
            out.insert(key, desc);
        }
    }
    let (code, _, err) = husk(root, &["image", "unmount", img]);
    assert_eq!(code, 0, "{err}");
    out
}

/// A cheap content checksum (FNV-1a), enough to tell two trees apart.
fn crc(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// What a killed command could leave: temp and partial files, half-made layers, index temps.
fn leftovers(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let list = dir_entries;
    for n in list(&root.join("tmp")) {
        if !n.ends_with(".lock") && !n.starts_with("erofs-probe") && !n.starts_with("probe") {
            out.push(format!("tmp/{n}"));
        }
    }
    for n in list(&root.join("layers")) {
        if n.starts_with(".tmp-") {
            out.push(format!("layers/{n}"));
        }
    }
    for n in list(root) {
        if n.starts_with(".images.json.") {
            out.push(n);
        }
    }
    out
}

/// `husk system check` finds nothing wrong.
fn check_clean(root: &Path, after: &str) {
    let (code, out, err) = husk(root, &["system", "check"]);
    assert_eq!(code, 0, "after {after}: {out}{err}");
}

/// The store works after `what`: the image pulls (again), mounts as `want`, checks clean, and
/// nothing is left over.
fn recovers(root: &Path, img: &str, want: &BTreeMap<String, String>, what: &str) {
    let (code, _, err) = husk(root, &["pull", "-q", img]);
    assert_eq!(code, 0, "the pull after {what} failed: {err}");
    assert!(
        rootfs_of(root, img) == *want,
        "after {what} the image mounts differently"
    );
    check_clean(root, what);
    let left = leftovers(root);
    assert!(
        left.is_empty(),
        "after {what} and a pull, left behind: {left:?}"
    );
}

#[test]
fn a_pull_killed_at_every_named_point_loses_nothing() {
    let Some((reg, reference, img)) =
        busybox_store("a_pull_killed_at_every_named_point_loses_nothing", &[])
    else {
        return;
    };
    let want = rootfs_of(reference.path(), &img);
    // The config is the first blob downloaded and the layer the second: `@2` is the layer's.
    let mut points: Vec<String> = husk_image::failpoint::POINTS
        .iter()
        .map(|p| p.to_string())
        .collect();
    for p in [
        "blob.downloading",
        "blob.downloaded",
        "blob.verified",
        "blob.committed",
    ] {
        points.push(format!("{p}@2"));
    }
    for driver in ["overlay", "erofs"] {
        for point in &points {
            let store = store();
            let root = store.path();
            let out = husk_cmd(root)
                .env("HUSK_STORAGE_DRIVER", driver)
                .env("HUSK_FAILPOINT", point)
                .args(["pull", "-q", &img])
                .output()
                .unwrap();
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGKILL),
                "{driver}: the pull never reached {point}: {}",
                text(&out.stderr)
            );
            let what = format!("a kill at {point} ({driver})");
            let (code, _, err) = husk_env_driver(root, driver, &["pull", "-q", &img]);
            assert_eq!(code, 0, "the pull after {what} failed: {err}");
            assert!(
                rootfs_of(root, &img) == want,
                "after {what} the image mounts differently"
            );
            check_clean(root, &what);
            let left = leftovers(root);
            assert!(
                left.is_empty(),
                "after {what} and a pull, left behind: {left:?}"
            );
        }
    }
    drop(reg);
}

fn husk_env_driver(root: &Path, driver: &str, args: &[&str]) -> (i32, String, String) {
    let out = husk_cmd(root)
        .env("HUSK_STORAGE_DRIVER", driver)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// xorshift64: the test's randomness, reproducible from the seed it prints.
#[test]
fn a_pull_killed_at_random_moments_always_recovers() {
    if !is_root() {
        eprintln!("SKIP a_pull_killed_at_random_moments_always_recovers: image mount needs root");
        return;
    }
    // A small image of two layers (gzip and zstd, whiteouts), so 200 trials fit in a minute.
    let Some(reg) = support::start_registry() else {
        return;
    };
    support::push_app(&reg, "team/app");
    let img = format!("127.0.0.1:{}/team/app:v1", reg.port);
    let reference = store();
    assert_eq!(husk(reference.path(), &["pull", "-q", &img]).0, 0);
    let want = rootfs_of(reference.path(), &img);
    let store = store();
    let root = store.path();
    // How long a whole pull takes here: kills land anywhere in it, and a bit after.
    let t0 = Instant::now();
    assert_eq!(husk(root, &["pull", "-q", &img]).0, 0);
    let whole = t0.elapsed().as_micros() as u64;
    let seed = std::env::var("HUSK_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 * 0x9e37_79b9 + 1);
    eprintln!("random kills: seed {seed} (HUSK_FAULT_SEED), a whole pull {whole} µs");
    let mut rng = Rng(seed);
    let trials = 300;
    let (mut killed, mut finished) = (0, 0);
    // The first pull's time is only a first guess (a warm pull is faster, a loaded machine
    // slower): the window follows what the kills meet, wider after a kill that landed
    // mid-pull, narrower after a pull that finished first, so about two kills in three land
    // mid-pull whatever this machine's speed.
    let mut window = whole * 6 / 5;
    for i in 0..trials {
        // Back to an empty store, so each kill meets a pull from scratch.
        assert_eq!(husk(root, &["rmi", &img]).0, 0);
        assert_eq!(husk(root, &["image", "prune"]).0, 0);
        let mut child = husk_cmd(root)
            .args(["pull", "-q", &img])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(libc::SIGKILL) {
            killed += 1;
            window = window * 21 / 20;
        } else {
            finished += 1;
            window = (window * 9 / 10).max(1_000);
        }
        // The full comparison every tenth trial; the pull, check and leftovers every time.
        let (code, _, err) = husk(root, &["pull", "-q", &img]);
        assert_eq!(
            code, 0,
            "trial {i} (seed {seed}): the pull after a kill failed: {err}"
        );
        if i % 10 == 0 {
            assert!(
                rootfs_of(root, &img) == want,
                "trial {i} (seed {seed}): the image differs"
            );
        }
        check_clean(root, &format!("trial {i} (seed {seed})"));
        let left = leftovers(root);
        assert!(
            left.is_empty(),
            "trial {i} (seed {seed}): left behind {left:?}"
        );
    }
    eprintln!("random kills: {killed} pulls killed, {finished} finished first");
    assert!(
        killed > trials / 2,
        "most kills should land mid-pull: {killed} of {trials}"
    );
    drop(reg);
}

#[test]
fn a_misbehaving_registry_gives_clear_errors_and_never_poisons_the_store() {
    let Some((reg, reference, img)) = busybox_store(
        "a_misbehaving_registry_gives_clear_errors_and_never_poisons_the_store",
        &[],
    ) else {
        return;
    };
    let want = rootfs_of(reference.path(), &img);
    let repo = "lib/busybox:latest";
    let through = |port: u16| format!("127.0.0.1:{port}/{repo}");
    // (fault, whether the pull through it succeeds, what a failure says)
    let cases: Vec<(&str, Fault, bool, &str)> = vec![
        (
            "a 500 then success",
            Fault::Status {
                on: "/blobs/",
                status: 500,
                times: 2,
            },
            true,
            "",
        ),
        (
            "a 500 for ever",
            Fault::Status {
                on: "/blobs/",
                status: 500,
                times: 1000,
            },
            false,
            "HTTP 500",
        ),
        (
            "a redirect loop",
            Fault::RedirectLoop { on: "/blobs/" },
            false,
            "redirect",
        ),
        (
            "a wrong manifest Content-Type",
            Fault::ContentType {
                on: "/manifests/",
                value: "text/plain",
            },
            true,
            "",
        ),
        (
            "a tampered blob",
            Fault::Tamper { on: "/blobs/" },
            false,
            "the manifest says",
        ),
        (
            "a tampered manifest",
            Fault::Tamper {
                on: "/manifests/sha256:",
            },
            false,
            "does not match",
        ),
        ("no answer at all", Fault::Silent, false, "no answer"),
    ];
    let digest = {
        let (code, out, err) = husk(reference.path(), &["image", "inspect", &img]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["RepoDigests"][0]
            .as_str()
            .unwrap()
            .split('@')
            .nth(1)
            .unwrap()
            .to_string()
    };
    for (what, fault, succeeds, says) in cases {
        let proxy = fault_proxy(reg.port, fault);
        let store = store();
        let root = store.path();
        // The tampered manifest is caught only when pulled by digest.
        let name = match fault {
            Fault::Tamper {
                on: "/manifests/sha256:",
            } => {
                format!("127.0.0.1:{}/lib/busybox@{digest}", proxy.port)
            }
            _ => through(proxy.port),
        };
        let started = Instant::now();
        let out = husk_cmd(root)
            .env("HUSK_REGISTRY_TIMEOUT", "2")
            .args(["pull", "-q", &name])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(
            proxy.hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "{what}: the fault never happened"
        );
        if succeeds {
            assert!(out.status.success(), "{what}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert!(err.contains(says), "{what}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{what}: one line, not {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: took {:?}",
            started.elapsed()
        );
        // Whatever happened, the real registry's image then pulls into the same store.
        let real = format!("127.0.0.1:{}/{repo}", reg.port);
        recovers(root, &real, &want, what);
    }
}

#[test]
fn a_kept_partial_download_as_long_as_the_blob_is_committed_without_a_request() {
    let Some((reg, reference, img)) = busybox_store(
        "a_kept_partial_download_as_long_as_the_blob_is_committed_without_a_request",
        &[],
    ) else {
        return;
    };
    let want = rootfs_of(reference.path(), &img);
    // Every blob the registry has, as a whole partial download in a fresh store, behind a proxy
    // that refuses Range requests (416): as a killed pull leaves them after the last byte.
    let proxy = fault_proxy(reg.port, Fault::RefuseRanges);
    let name = format!("127.0.0.1:{}/lib/busybox", proxy.port);
    let whole = store();
    let root = whole.path();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    // The blobs a pull downloads resumably: the config and the layer (not the manifest).
    let (code, out, err) = husk(reference.path(), &["image", "inspect", &img]);
    assert_eq!(code, 0, "{err}");
    let manifest = out.split("@sha256:").nth(1).unwrap()[..64].to_string();
    let blobs: Vec<std::path::PathBuf> = std::fs::read_dir(reference.path().join("blobs/sha256"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() != manifest)
        .map(|e| e.path())
        .collect();
    assert_eq!(blobs.len(), 2);
    for b in &blobs {
        let hex = b.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(b, root.join("tmp").join(format!("{hex}.partial"))).unwrap();
    }
    recovers(root, &name, &want, "whole partial downloads");
    assert_eq!(
        proxy.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no Range request was needed"
    );
    // Half a blob kept, and a registry that will not resume: the download starts over.
    let half = store();
    let root = half.path();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    for b in &blobs {
        let data = std::fs::read(b).unwrap();
        let hex = b.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(
            root.join("tmp").join(format!("{hex}.partial")),
            &data[..data.len() / 2],
        )
        .unwrap();
    }
    recovers(root, &name, &want, "half partial downloads and a 416");
    assert!(
        proxy.hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the proxy refused a range"
    );
}

/// A tmpfs of `mb` megabytes at a fresh directory, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new(mb: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount a tmpfs");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        unmount_under(self.0.path());
    }
}

#[test]
fn a_full_disk_fails_in_one_line_and_loses_nothing() {
    let Some((reg, reference, img)) =
        busybox_store("a_full_disk_fails_in_one_line_and_loses_nothing", &[])
    else {
        return;
    };
    let want = rootfs_of(reference.path(), &img);
    let disk = SmallDisk::new(24);
    let root = disk.0.path().join("store");
    // Filled but for a little: the pull meets the end of the disk half way.
    let filler = disk.0.path().join("filler");
    let free = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs into a zeroed struct we own.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s.f_bavail * s.f_frsize
    };
    std::fs::create_dir_all(&root).unwrap();
    let room = free(&root);
    std::fs::write(&filler, vec![0u8; (room - 700_000) as usize]).unwrap();
    let (code, _, err) = husk(&root, &["pull", "-q", &img]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::remove_file(&filler).unwrap();
    recovers(&root, &img, &want, "a disk that filled mid-pull");

    // A container that fills the disk from its upper directory: its own writes fail, husk's
    // records stay whole, and once it frees the space every command works again.
    let (code, id, err) = husk(&root, &["run", "-d", &img, "sh", "-c",
        "dd if=/dev/zero of=/fill bs=1M count=64 2>/dev/null; sleep 2; rm /fill; echo after; exit 3"]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while free(&root) > 1 << 20 {
        assert!(
            Instant::now() < deadline,
            "the container never filled the disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = husk(&root, &["ps"]);
    assert_eq!(code, 0, "{err}");
    support::push_big_image(&reg, "team/big");
    let big = format!("127.0.0.1:{}/team/big:big", reg.port);
    let (code, out, err) = husk(&root, &["pull", "-q", &big]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(husk(&root, &["wait", &id]).1.trim(), "3");
    // Lines written while the disk was full are lost; the ones after are whole.
    assert_eq!(husk(&root, &["logs", &id]).1, "after\n");
    assert_eq!(husk(&root, &["rm", &id]).0, 0);
    assert_eq!(husk(&root, &["run", "--rm", &img, "true"]).0, 0);
    check_clean(&root, "a container that filled the disk");
    drop(disk);
}

#[test]
fn many_commands_at_once_keep_the_store_whole() {
    let extra = support::tar_of(&[("extra", b"a second image's own layer\n" as &[u8])]);
    let Some((reg, _reference, a)) =
        busybox_store("many_commands_at_once_keep_the_store_whole", &[])
    else {
        return;
    };
    support::push_busybox_image_with(&reg, "lib/busybox", "more", &[extra]);
    let b = format!("{a}:more");
    let store = store();
    let root = store.path().to_path_buf();
    let secs: u64 = std::env::var("HUSK_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let until = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (root, a, b) = (root.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(w * 7919 + 17);
                // Per command: how often it ran, how often it worked; and the failures seen.
                let mut tally: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
                let mut errors: BTreeMap<String, usize> = BTreeMap::new();
                while Instant::now() < until {
                    let img = if rng.below(2) == 0 { &a } else { &b };
                    let (kind, args): (&str, Vec<&str>) = match rng.below(5) {
                        0 => ("pull", vec!["pull", "-q", img]),
                        1 => ("rmi", vec!["rmi", img]),
                        2 => ("prune", vec!["image", "prune"]),
                        3 => ("run", vec!["run", "--rm", img, "true"]),
                        _ => ("images", vec!["images", "-q"]),
                    };
                    let (out, err) = counted_run(&root, &args, kind, &mut tally);
                    if !out.status.success() {
                        let lines: Vec<&str> =
                            err.lines().filter(|l| l.starts_with("husk: ")).collect();
                        assert_eq!(
                            lines.len(),
                            1,
                            "{args:?}: a clear one-line error, not {err}"
                        );
                        // The error's kind, without the names and digests that vary.
                        let kind: String = lines[0]
                            .split([':', '"'])
                            .filter(|w| !w.contains("127.0.0.1") && !w.contains("sha256"))
                            .map(|w| w.split(" by container").next().unwrap_or(w))
                            .collect::<Vec<_>>()
                            .join(":");
                        *errors.entry(format!("{} {kind}", args[0])).or_default() += 1;
                    }
                }
                (tally, errors)
            })
        })
        .collect();
    let (tally, _errors) = join_clients(workers, secs);
    for kind in ["pull", "rmi", "prune", "run"] {
        assert!(
            tally.get(kind).is_some_and(|t| t.1 > 0),
            "{kind} never worked: {tally:?}"
        );
    }
    for img in [&a, &b] {
        let (code, _, err) = husk(&root, &["pull", "-q", img]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = husk(&root, &["run", "--rm", img, "true"]);
        assert_eq!(code, 0, "{err}");
    }
    check_clean(&root, "many commands at once");
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
}

/// Flip one byte in the middle of a file.
fn flip_a_byte(p: &Path) {
    let mut data = std::fs::read(p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(p, data).unwrap();
}

#[test]
fn system_check_names_what_is_damaged_and_repair_mends_it() {
    let Some((reg, reference, img)) = busybox_store(
        "system_check_names_what_is_damaged_and_repair_mends_it",
        &[],
    ) else {
        return;
    };
    let want = rootfs_of(reference.path(), &img);
    for driver in ["erofs", "overlay"] {
        let store = store();
        let root = store.path();
        let (code, _, err) = husk_env_driver(root, driver, &["pull", "-q", &img]);
        assert_eq!(code, 0, "{err}");
        check_clean(root, "a plain pull");
        // A damaged layer, as a disk or a hand could leave it.
        let layer = std::fs::read_dir(root.join("layers"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .unwrap();
        if driver == "erofs" {
            flip_a_byte(&layer);
        } else {
            std::fs::write(layer.join("etc/passwd"), "intruder::0:0::/:/bin/sh\n").unwrap();
        }
        std::fs::write(root.join("tmp/0123.partial"), b"left").unwrap();
        let (code, out, _) = husk(root, &["system", "check"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("differs from what its blob"),
            "{driver}: {out}"
        );
        assert!(out.contains("0123.partial: left behind"), "{out}");
        let (code, out, err) = husk(root, &["system", "check", "--repair"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("(repaired)"), "{out}");
        check_clean(root, "a repair");
        assert!(
            rootfs_of(root, &img) == want,
            "{driver}: the repaired layer differs"
        );

        // A damaged blob: removed, and the image is pulled again.
        let config = {
            let (_, out, _) = husk(root, &["image", "inspect", &img]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v[0]["Id"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        };
        flip_a_byte(&root.join("blobs/sha256").join(&config));
        let (code, out, _) = husk(root, &["system", "check", "--repair"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("blob sha256:{config}: its content hashes to")),
            "{out}"
        );
        assert!(out.contains("is missing: pull the image again"), "{out}");
        recovers(root, &img, &want, "a repaired blob");
    }
    drop(reg);
}
