//! CDI devices (`--device vendor.com/class=name`) and `--gpus` (`nvidia.com/gpu` devices),
//! from CDI specs the test writes (JSON and YAML, as `nvidia-ctk cdi generate` writes them),
//! with host nodes every machine has standing in for the devices.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::path::Path;

use common::*;

fn husk_cdi(root: &Path, specs: &Path, args: &[&str]) -> (i32, String, String) {
    husk_vars(root, &[("HUSK_CDI_SPEC_DIRS", specs.as_os_str())], args)
}

#[test]
fn cdi_devices_and_gpus_get_what_their_specs_say() {
    let Some((_reg, root, img)) = busybox_store("cdi_devices_and_gpus", &[]) else {
        return;
    };
    let r = root.path();
    let specs = tempfile::tempdir().unwrap();
    let conf = specs.path().join("fake.conf");
    std::fs::write(&conf, "from the host\n").unwrap();
    std::fs::write(
        specs.path().join("example.json"),
        serde_json::to_vec(&serde_json::json!({
            "cdiVersion": "0.6.0",
            "kind": "example.com/dev",
            "containerEdits": {"env": ["FROM_SPEC=1"]},
            "devices": [
                {"name": "null", "containerEdits": {
                    "deviceNodes": [{"path": "/dev/fake-null", "hostPath": "/dev/null"}],
                    "env": ["FAKE_DEV=null"]}},
                {"name": "zero", "containerEdits": {
                    "deviceNodes": [{"path": "/dev/fake-zero", "hostPath": "/dev/zero"},
                                    {"path": "/dev/fake-kmsg", "hostPath": "/dev/kmsg", "permissions": "r"}],
                    "mounts": [{"hostPath": conf, "containerPath": "/etc/fake.conf", "options": ["ro", "bind"]}],
                    "additionalGIDs": [4242]}},
            ],
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        specs.path().join("nvidia.yaml"),
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n\
         - name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/gpu0\n      hostPath: /dev/null\n\
         - name: \"1\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/gpu1\n      hostPath: /dev/zero\n\
         - name: all\n  containerEdits:\n    deviceNodes:\n    - path: /dev/gpu0\n      hostPath: /dev/null\n    - path: /dev/gpu1\n      hostPath: /dev/zero\n\
         containerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n",
    )
    .unwrap();
    let s = specs.path();

    let (code, out, err) = husk_cdi(
        r,
        s,
        &["run", "--rm", "--device", "example.com/dev=null", "--device", "example.com/dev=zero", &img, "sh", "-c",
          "echo $FAKE_DEV $FROM_SPEC; head -c 4 /dev/fake-zero | wc -c; cat /etc/fake.conf; id -G; echo x > /dev/fake-null && echo written; (echo x > /dev/fake-kmsg) 2>/dev/null || echo refused"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "null 1");
    assert_eq!(lines[1].trim(), "4");
    assert_eq!(lines[2], "from the host");
    assert!(lines[3].split(' ').any(|g| g == "4242"), "{out}");
    assert_eq!(lines[4], "written");
    assert_eq!(
        lines[5], "refused",
        "the cgroup rule gives only what the spec's permissions say"
    );

    // --gpus: all, a count, a list.
    for (gpus, want) in [
        ("all", "/dev/gpu0 /dev/gpu1"),
        ("1", "/dev/gpu0"),
        ("device=1", "/dev/gpu1"),
    ] {
        let (code, out, err) = husk_cdi(
            r,
            s,
            &[
                "run",
                "--rm",
                "--gpus",
                gpus,
                &img,
                "sh",
                "-c",
                "ls /dev/gpu* | tr '\\n' ' '; echo $NVIDIA_VISIBLE_DEVICES",
            ],
        );
        assert_eq!(code, 0, "--gpus {gpus}: {err}");
        assert_eq!(out, format!("{want} void\n"), "--gpus {gpus}");
    }

    // Bad input: one line, exit 125, no container made.
    let empty = tempfile::tempdir().unwrap();
    for (dir, args, says) in [
        (s, vec!["--gpus", "3"], "there are 2 GPUs"),
        (s, vec!["--gpus", "some"], "invalid --gpus"),
        (s, vec!["--device", "example.com/dev=nosuch"], "null, zero"),
        (s, vec!["--device", "other.com/x=1"], "no CDI spec"),
        (empty.path(), vec!["--gpus", "all"], "nvidia-ctk"),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend([img.as_str(), "true"]);
        let (code, _, err) = husk_cdi(r, dir, &full);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    std::fs::write(specs.path().join("broken.yaml"), "kind: [unclosed").unwrap();
    let (code, _, err) = husk_cdi(r, s, &["run", "--rm", "--gpus", "all", &img, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("broken.yaml") && err.contains("malformed"),
        "{err}"
    );
    assert_eq!(husk(r, &["ps", "-aq"]).1, "");
}
