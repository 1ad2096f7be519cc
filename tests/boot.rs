//! After a reboot: `husk start --all` brings back what the restart policies say (as docker's
//! daemon does when it starts), and `husk generate systemd` writes the units that run it.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::path::Path;

use common::*;

fn record(root: &Path, name: &str) -> serde_json::Value {
    let id = std::fs::read_link(root.join("names").join(name)).unwrap();
    let data = std::fs::read(root.join("containers").join(id).join("container.json")).unwrap();
    serde_json::from_slice(&data).unwrap()
}

fn running(root: &Path) -> Vec<String> {
    let (_, out, _) = husk(root, &["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn start_all_brings_back_what_the_restart_policies_say_after_a_reboot() {
    let Some((_reg, root, img)) = busybox_store("start_all_brings_back", &[]) else {
        return;
    };
    let r = root.path();
    for (name, policy) in [
        ("always", "always"),
        ("always-stopped", "always"),
        ("unless", "unless-stopped"),
        ("unless-stopped", "unless-stopped"),
        ("failing", "on-failure"),
        ("plain", "no"),
    ] {
        let (code, _, err) = husk(
            r,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--restart",
                policy,
                &img,
                "sleep",
                "1000",
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "succeeded",
            "--restart",
            "on-failure",
            &img,
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        husk(r, &["stop", "-t", "0", "always-stopped", "unless-stopped"]).0,
        0
    );
    assert_eq!(husk(r, &["wait", "succeeded"]).0, 0);

    // The reboot: every monitor and every container process dies at once, nothing records it.
    let mut pids = Vec::new();
    for name in ["always", "unless", "failing", "plain"] {
        let rec = record(r, name);
        pids.push(rec["state"]["monitor_pid"].as_i64().unwrap() as i32);
        pids.push(rec["state"]["pid"].as_i64().unwrap() as i32);
    }
    for pid in pids {
        assert!(pid > 0);
        // SAFETY: kill(2) of processes this test started (the monitors and their inits).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        running(r),
        Vec::<String>::new(),
        "the reboot left nothing running"
    );

    let (code, out, err) = husk(r, &["start", "--all"]);
    assert_eq!(code, 0, "{err}");
    let mut started: Vec<&str> = out.lines().collect();
    started.sort();
    // docker's rules: `always` even after a stop; `unless-stopped` unless stopped;
    // `on-failure` after the failure a reboot is, not after a clean exit; `no` never.
    assert_eq!(
        started,
        ["always", "always-stopped", "failing", "unless"],
        "{out}"
    );
    assert_eq!(
        running(r),
        ["always", "always-stopped", "failing", "unless"]
    );
    // Again: nothing more to start.
    let (code, out, _) = husk(r, &["start", "--all"]);
    assert_eq!((code, out.as_str()), (0, ""));

    let (code, _, err) = husk(r, &["start", "--all", "plain"]);
    assert_eq!(code, 125, "{err}");
    let (code, _, err) = husk(r, &["start"]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(
        husk(
            r,
            &["rm", "-f", "always", "always-stopped", "unless", "failing"]
        )
        .0,
        0
    );
}

#[test]
fn generate_systemd_writes_units_that_systemd_accepts() {
    let Some((_reg, root, img)) = busybox_store("generate_systemd_writes_units", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "create",
            "--name",
            "web",
            "--stop-timeout",
            "5",
            "--restart",
            "always",
            &img,
            "sleep",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, unit, err) = husk(r, &["generate", "systemd", "web"]);
    assert_eq!(code, 0, "{err}");
    let husk_bin = env!("CARGO_BIN_EXE_husk");
    let root_s = std::fs::canonicalize(r).unwrap().display().to_string();
    assert!(
        unit.contains(&format!("ExecStart={husk_bin} --root {root_s} start web\n")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!(
            "ExecStop={husk_bin} --root {root_s} stop -t 5 web\n"
        )),
        "{unit}"
    );
    assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = husk(
        r,
        &[
            "generate",
            "systemd",
            "--boot",
            "--files",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let boot = dir.path().join("husk-restart.service");
    assert_eq!(out.trim(), boot.display().to_string());
    let text = std::fs::read_to_string(&boot).unwrap();
    assert!(
        text.contains(&format!(
            "ExecStart={husk_bin} --root {root_s} start --all\n"
        )),
        "{text}"
    );
    std::fs::write(dir.path().join("container-web.service"), &unit).unwrap();

    // systemd's own check of both units, where there is a systemd to ask.
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&boot)
        .arg(dir.path().join("container-web.service"))
        .output()
    {
        Ok(o) => {
            let said = text_of(&o.stderr);
            assert!(o.status.success(), "systemd-analyze verify: {said}");
            assert!(
                !said.contains("container-web") && !said.contains("husk-restart"),
                "{said}"
            );
        }
        Err(e) => eprintln!("SKIP systemd-analyze verify: {e}"),
    }

    let (code, _, err) = husk(r, &["generate", "systemd", "nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
    assert_eq!(husk(r, &["generate", "systemd"]).0, 125);
    assert_eq!(husk(r, &["rm", "web"]).0, 0);
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
