//! `--uidmap`/`--gidmap`: a container in a user namespace of its own, its image's layers
//! idmapped so that the image's root is the container's root (overlayfs over idmapped layers,
//! Linux 5.19+); its root is an unprivileged id on the host.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

/// The busybox store, searchable by the containers' mapped roots.
fn mapped_store(test: &str) -> Option<(support::TestRegistry, Store, String)> {
    let (reg, root, img) = busybox_store(test, &[])?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    Some((reg, root, img))
}

/// `run --rm` in a user namespace whose root is 200000 on the host.
const MAPPED_RUN: &[&str] = &[
    "run",
    "--rm",
    "--network",
    "none",
    "--uidmap",
    "0:200000:65536",
];

fn one_line_error(r: &Path, args: &[&str], says: &str) {
    let (code, out, err) = husk(r, args);
    assert_eq!(code, 125, "{args:?}: {out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
}

/// The full id of the container named `cm`.
fn cm_id(r: &Path) -> String {
    husk(r, &["inspect", "-f", "{{.Id}}", "cm"])
        .1
        .trim()
        .to_string()
}

fn idmapped_mounts_under(r: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&*r.to_string_lossy()) && l.contains("/idmapped/"))
        .count()
}

#[test]
fn the_image_is_the_containers_roots_and_its_root_is_nobody_on_the_host() {
    let t = "the_image_is_the_containers_roots_and_its_root_is_nobody_on_the_host";
    let Some((_reg, root, img)) = mapped_store(t) else {
        return;
    };
    let r = root.path();
    if !kernel_at_least(5, 19) {
        one_line_error(r, &[MAPPED_RUN, &[img.as_str(), "true"]].concat(), "5.19");
        eprintln!("SKIP {t}: Linux before 5.19 refuses --uidmap (checked above)");
        return;
    }
    // Both layer drivers: the default (EROFS where the kernel has it) and directories.
    let dirs = store();
    std::fs::set_permissions(dirs.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let (code, _, err) = husk(
        dirs.path(),
        &["--storage-driver", "overlay", "pull", "-q", &img],
    );
    assert_eq!(code, 0, "{err}");
    for r in [r, dirs.path()] {
        let (code, out, err) = husk(
            r,
            &[
                "run", "--rm", "--network", "none", "--uidmap", "0:200000:65536", &img, "sh",
                "-c",
                "id -u; stat -c %u:%g /bin/busybox /; cat /proc/self/uid_map; touch /etc/x && echo wrote",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let lines: Vec<String> = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            lines,
            ["0", "0:0", "0:0", "0 200000 65536", "wrote"],
            "{out}{err}"
        );
        assert_eq!(idmapped_mounts_under(r), 0, "idmapped layers left mounted");
    }

    // On the host the container's root is 200000:300000, in its process and in its writes.
    let secret = tempfile::tempdir().unwrap();
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(secret.path().join("key"), "root only\n").unwrap();
    std::fs::set_permissions(
        secret.path().join("key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let vol = format!("{}:/s", secret.path().display());
    let (code, id, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "mapped",
            "--network",
            "none",
            "-v",
            &vol,
            "--uidmap",
            "0:200000:65536",
            "--gidmap",
            "0:300000:65536",
            &img,
            "sh",
            "-c",
            "cat /s/key; echo cat=$?; touch /s/new; echo touch=$?; touch /made; sleep 60",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim();
    let upper_file = r.join("containers").join(id).join("upper/made");
    for _ in 0..100 {
        if upper_file.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let m = std::fs::metadata(&upper_file).expect("the container wrote /made");
    assert_eq!((m.uid(), m.gid()), (200000, 300000));
    let (_, pid, _) = husk(r, &["inspect", "-f", "{{.State.Pid}}", id]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    assert!(status.contains("Uid:\t200000\t200000"), "{status}");
    assert!(status.contains("Gid:\t300000\t300000"), "{status}");
    let (_, logs, _) = husk(r, &["logs", id]);
    assert!(logs.contains("cat=1") && logs.contains("touch=1"), "{logs}");
    assert!(!secret.path().join("new").exists());
    assert_eq!(husk(r, &["rm", "-f", id]).0, 0);

    // A new named volume is the container root's to write, as podman makes it.
    let (code, out, err) = husk(
        r,
        &[
            MAPPED_RUN,
            &[
                "-v",
                "data:/data",
                img.as_str(),
                "sh",
                "-c",
                "touch /data/x && echo wrote",
            ],
        ]
        .concat(),
    );
    assert_eq!((code, out.trim()), (0, "wrote"), "{err}");
    let (_, v, _) = husk(r, &["volume", "inspect", "data"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    let x = Path::new(v[0]["Mountpoint"].as_str().unwrap()).join("x");
    assert_eq!(std::fs::metadata(&x).unwrap().uid(), 200000);

    // `diff` and `commit` see the container's ids, not the host's it wrote.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "cm",
            "--network",
            "none",
            "--uidmap",
            "0:200000:65536",
            &img,
            "sh",
            "-c",
            "mkdir /made && touch /made/f && chown 5:6 /made/f && touch /bin/busybox",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, diff, _) = husk(r, &["diff", "cm"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        ["C /bin", "C /bin/busybox", "A /made", "A /made/f"],
        "{diff}"
    );
    let (code, _, err) = husk(r, &["commit", "cm", "committed:1"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "committed:1",
            "stat",
            "-c",
            "%u:%g",
            "/made",
            "/made/f",
            "/bin/busybox",
        ],
    );
    assert_eq!(
        (code, out.lines().collect::<Vec<_>>()),
        (0, vec!["0:0", "5:6", "0:0"]),
        "{err}"
    );
    // What `cp` puts in is the container's root's, inside.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("in"), "x").unwrap();
    let from = format!("{}/in", src.path().display());
    assert_eq!(husk(r, &["cp", &from, "cm:/made/in"]).0, 0);
    let m = std::fs::metadata(r.join("containers").join(cm_id(r)).join("upper/made/in")).unwrap();
    assert_eq!((m.uid(), m.gid()), (200000, 200000));
    assert_eq!(husk(r, &["rm", "cm"]).0, 0);

    // A second start idmaps the layers again.
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "--name",
            "again",
            "--network",
            "none",
            "--uidmap",
            "0:200000:65536",
            &img,
            "stat",
            "-c",
            "%u",
            "/bin/busybox",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = husk(r, &["start", "-a", "again"]);
    assert_eq!((code, out.trim()), (0, "0"), "{err}");
    assert_eq!(husk(r, &["rm", "again"]).0, 0);
    assert_eq!(idmapped_mounts_under(r), 0, "idmapped layers left mounted");
}

#[test]
fn bad_id_maps_are_one_line_errors_and_make_nothing() {
    let t = "bad_id_maps_are_one_line_errors_and_make_nothing";
    let Some((_reg, root, img)) = busybox_store(t, &[]) else {
        return;
    };
    let r = root.path();
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(extra);
        a.extend([img.as_str(), "true"]);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let cases: [(&[&str], &str); 9] = [
        (
            &["--uidmap", "1:100000:10"],
            "must map the container's id 0",
        ),
        (&["--userns", "auto:size=0"], "auto:size=N"),
        (
            &["--userns", "auto", "--uidmap", "0:100000:65536"],
            "cannot go together",
        ),
        (&["--uidmap", "0:x:1"], "CONTAINER:HOST:SIZE"),
        (&["--uidmap", "0:100000:0"], "CONTAINER:HOST:SIZE"),
        (
            &["--uidmap", "0:100000:10", "--uidmap", "5:200000:10"],
            "overlap",
        ),
        (&["--gidmap", "0:100000:65536"], "needs a --uidmap"),
        (
            &["--uidmap", "0:100000:65536", "--userns", "keep-id"],
            "keep-id",
        ),
        (&["--uidmap", "0:100000:65536", "--rootfs"], "--rootfs"),
    ];
    for (extra, says) in cases {
        let args = run(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        one_line_error(r, &args, says);
    }
    if kernel_at_least(5, 19) {
        // A store the mapped root cannot search: it cannot reach its root directory.
        std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o700)).unwrap();
        one_line_error(
            r,
            &[MAPPED_RUN, &[img.as_str(), "true"]].concat(),
            "chmod o+x",
        );
    }
    let (_, ps, _) = husk(r, &["ps", "-aq"]);
    assert!(ps.trim().is_empty(), "left behind: {ps}");
    assert_eq!(idmapped_mounts_under(r), 0);
}

/// Ensures `/etc/subuid` and `/etc/subgid` give the user `containers` ids, as podman's
/// `--userns auto` wants them.
fn containers_ranges() {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with("containers:")) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .unwrap();
            std::io::Write::write_all(&mut f, b"containers:2147483647:2147483648\n").unwrap();
        }
    }
}

/// The first line of a container's uid_map: (inside, host, size).
fn first_map(r: &Path, id: &str) -> (u64, u64, u64) {
    let (_, pid, _) = husk(r, &["inspect", "-f", "{{.State.Pid}}", id]);
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", pid.trim())).unwrap();
    let f: Vec<u64> = map
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

#[test]
fn userns_auto_gives_each_container_ids_of_its_own() {
    let t = "userns_auto_gives_each_container_ids_of_its_own";
    let Some((_reg, root, img)) = mapped_store(t) else {
        return;
    };
    if !kernel_at_least(5, 19) {
        eprintln!("SKIP {t}: --userns auto needs Linux 5.19 (overlayfs over idmapped layers)");
        return;
    }
    containers_ranges();
    let r = root.path().to_path_buf();
    // Four at once: four blocks, none shared.
    let starts: Vec<std::thread::JoinHandle<String>> = (0..4)
        .map(|_| {
            let (r, img) = (r.clone(), img.clone());
            std::thread::spawn(move || {
                let (code, id, err) = husk(
                    &r,
                    &[
                        "run",
                        "-d",
                        "--network",
                        "none",
                        "--userns",
                        "auto",
                        &img,
                        "sleep",
                        "60",
                    ],
                );
                assert_eq!(code, 0, "{err}");
                id.trim().to_string()
            })
        })
        .collect();
    let mut ids: Vec<String> = starts.into_iter().map(|h| h.join().unwrap()).collect();
    let mut maps: Vec<(u64, u64, u64)> = ids.iter().map(|id| first_map(&r, id)).collect();
    for m in &maps {
        assert_eq!((m.0, m.2), (0, 65536), "{maps:?}");
        assert!(m.1 >= 2_147_483_647, "{maps:?}");
    }
    // An explicit --uidmap right after them, then a smaller auto block: it takes neither's ids.
    let next = maps.iter().map(|m| m.1 + m.2).max().unwrap();
    let explicit = format!("0:{next}:65536");
    for flags in [
        vec!["--uidmap", explicit.as_str()],
        vec!["--userns", "auto:size=1024"],
    ] {
        let mut args = vec!["run", "-d", "--network", "none"];
        args.extend(flags);
        args.extend([img.as_str(), "sleep", "60"]);
        let (code, id, err) = husk(&r, &args);
        assert_eq!(code, 0, "{err}");
        maps.push(first_map(&r, id.trim()));
        ids.push(id.trim().to_string());
    }
    assert_eq!(maps[5].2, 1024, "{maps:?}");
    maps.sort();
    for w in maps.windows(2) {
        assert!(
            w[0].1 + w[0].2 <= w[1].1,
            "two containers share ids: {maps:?}"
        );
    }
    // Inside, the image is root's as it is with --uidmap.
    let (code, out, err) = husk(
        &r,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--userns",
            "auto:size=1024",
            &img,
            "sh",
            "-c",
            "stat -c %u /bin/busybox; cat /proc/self/uid_map",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!((f[0], f[1], f[3]), ("0", "0", "1024"), "{out}");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    assert_eq!(husk(&r, &args).0, 0);
    // The records go with their containers.
    assert_eq!(dir_entries(&r.join("userns")), ["lock"]);
}
