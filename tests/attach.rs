//! `husk attach`: a terminal joins a detached container through its monitor: its output
//! (stdout and stderr apart), its stdin with -i, its exit code at the end, signals with
//! --sig-proxy, the detach keys that leave it running, and several clients at once.

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn attach(root: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_husk"))
        .arg("--root")
        .arg(root)
        .arg("attach")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A reader thread per stream: what arrives, as it arrives.
fn watch(r: impl Read + Send + 'static) -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = r;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 || chunk[..n].iter().any(|b| tx.send(*b).is_err()) {
                break;
            }
        }
    });
    rx
}

/// Read from `rx` until what was read contains `want`; what was read.
fn until_seen(rx: &mpsc::Receiver<u8>, want: &str) -> String {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&got).contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => got.push(b),
            Err(_) => panic!(
                "never saw {want:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn wait_code(child: &mut Child) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("attach did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running(root: &Path, name: &str) -> bool {
    let (_, out, _) = husk(root, &["ps", "--filter", &format!("name={name}"), "-q"]);
    !out.trim().is_empty()
}

#[test]
fn attach_joins_output_and_stdin_and_ends_with_the_exit_code() {
    let Some((_reg, root, img)) = busybox_store("attach_joins_output_and_stdin", &[]) else {
        return;
    };
    let r = root.path();
    let script =
        "while read l; do [ \"$l\" = quit ] && exit 7; echo \"got $l\"; echo \"err $l\" >&2; done";
    let (code, _, err) = husk(
        r,
        &[
            "run", "-d", "-i", "--name", "echoer", &img, "sh", "-c", script,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut a = attach(r, &["echoer"]);
    let mut b = attach(r, &["--no-stdin", "echoer"]);
    let (a_out, a_err) = (
        watch(a.stdout.take().unwrap()),
        watch(a.stderr.take().unwrap()),
    );
    let b_out = watch(b.stdout.take().unwrap());
    let mut a_in = a.stdin.take().unwrap();
    a_in.write_all(b"one\n").unwrap();
    until_seen(&a_out, "got one\n");
    until_seen(&a_err, "err one\n");
    // The second client may still be connecting: say it until it hears.
    let mut heard = false;
    for _ in 0..50 {
        a_in.write_all(b"two\n").unwrap();
        if b_out.recv_timeout(Duration::from_millis(200)).is_ok() {
            heard = true;
            break;
        }
    }
    assert!(heard, "the second client never heard the container");
    // (Its first byte went to the check above.)
    until_seen(&b_out, "two\n");
    // Only what is new: the earlier output is in `logs`, not replayed.
    a_in.write_all(b"quit\n").unwrap();
    assert_eq!(wait_code(&mut a), 7, "the container's exit code");
    assert_eq!(wait_code(&mut b), 7);
    let (_, logs, _) = husk(r, &["logs", "echoer"]);
    assert!(logs.starts_with("got one\ngot two\n"), "{logs}");
    assert_eq!(husk(r, &["rm", "echoer"]).0, 0);
}

#[test]
fn the_detach_keys_leave_the_container_running() {
    let Some((_reg, root, img)) = busybox_store("the_detach_keys_leave_it_running", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "-i",
            "--name",
            "stay",
            &img,
            "sh",
            "-c",
            "while read l; do echo \"got $l\"; done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut a = attach(r, &["stay"]);
    let out = watch(a.stdout.take().unwrap());
    let mut input = a.stdin.take().unwrap();
    // ctrl-p alone is typed through; ctrl-p ctrl-q leaves.
    input.write_all(b"a\x10b\n").unwrap();
    until_seen(&out, "got a\x10b");
    input.write_all(b"\x10\x11").unwrap();
    assert_eq!(wait_code(&mut a), 0);
    assert!(running(r, "stay"), "detaching does not stop it");

    // Keys of one's own; the default ones then pass through.
    let mut a = attach(r, &["--detach-keys", "ctrl-x,x", "stay"]);
    let out = watch(a.stdout.take().unwrap());
    let mut input = a.stdin.take().unwrap();
    input.write_all(b"c\x10\x11d\n").unwrap();
    until_seen(&out, "got c\x10\x11d");
    input.write_all(b"\x18x").unwrap();
    assert_eq!(wait_code(&mut a), 0);
    assert!(running(r, "stay"));

    let (code, _, err) = husk(r, &["attach", "--detach-keys", "ctrl-pp", "stay"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ctrl-pp") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(husk(r, &["rm", "-f", "stay"]).0, 0);
    let (code, _, err) = husk(r, &["attach", "stay"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(husk(r, &["create", "--name", "idle", &img, "true"]).0, 0);
    let (code, _, err) = husk(r, &["attach", "idle"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("you cannot attach to a stopped container"),
        "{err}"
    );
}

#[test]
fn signals_reach_the_container_through_attach() {
    let Some((_reg, root, img)) = busybox_store("signals_reach_the_container", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "--name",
            "trapper",
            &img,
            "sh",
            "-c",
            "trap 'echo caught; exit 3' TERM; while true; do echo tick; sleep 0.1; done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut a = attach(r, &["trapper"]);
    let out = watch(a.stdout.take().unwrap());
    // Output through the client: it is connected, and its signals are blocked for passing on.
    until_seen(&out, "tick\n");
    // SAFETY: kill(2) of the attach client this test started.
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    until_seen(&out, "caught\n");
    assert_eq!(wait_code(&mut a), 3);
    assert_eq!(husk(r, &["rm", "trapper"]).0, 0);
}

#[test]
fn attach_to_a_terminal_container_types_into_its_shell() {
    let Some((_reg, root, img)) = busybox_store("attach_to_a_terminal_container", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(r, &["run", "-d", "-it", "--name", "shell", &img, "sh"]);
    assert_eq!(code, 0, "{err}");
    let mut a = attach(r, &["shell"]);
    let out = watch(a.stdout.take().unwrap());
    let mut input = a.stdin.take().unwrap();
    input.write_all(b"echo sum-$((40+2))\n").unwrap();
    until_seen(&out, "sum-42");
    input.write_all(b"exit 5\n").unwrap();
    assert_eq!(wait_code(&mut a), 5);
    assert_eq!(husk(r, &["rm", "shell"]).0, 0);
}

/// `husk …` under script(1), a terminal of its own, its keyboard `input` (kept open).
fn in_terminal(root: &Path, args: &str) -> Option<Child> {
    let cmd = format!(
        "{} --root {} {args}",
        env!("CARGO_BIN_EXE_husk"),
        root.display()
    );
    Command::new("script")
        .env("HUSK_CONFIG", no_bridge_config())
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()
}

#[test]
fn run_it_and_start_ai_leave_on_the_detach_keys_and_pass_exit_codes() {
    let Some((_reg, root, img)) = busybox_store("run_it_and_start_ai_detach", &[]) else {
        return;
    };
    let r = root.path();
    let Some(mut term) = in_terminal(r, &format!("run -it --name itest {img} sh")) else {
        eprintln!("SKIP run_it_and_start_ai_detach: script(1) is missing");
        return;
    };
    let out = watch(term.stdout.take().unwrap());
    let mut keys = term.stdin.take().unwrap();
    keys.write_all(b"echo sum-$((40+2))\n").unwrap();
    until_seen(&out, "sum-42");
    keys.write_all(b"\x10\x11").unwrap();
    assert_eq!(
        wait_code(&mut term),
        0,
        "the detach keys end the run, not the container"
    );
    assert!(running(r, "itest"));
    // Back in through attach; its exit code comes out.
    let mut a = attach(r, &["itest"]);
    let mut input = a.stdin.take().unwrap();
    input.write_all(b"exit 3\n").unwrap();
    assert_eq!(wait_code(&mut a), 3);
    assert_eq!(husk(r, &["rm", "itest"]).0, 0);

    // An exit code passes through a joined run, and --rm removes the container.
    let mut term = in_terminal(r, &format!("run --rm -it --name gone {img} sh")).unwrap();
    let _out = watch(term.stdout.take().unwrap());
    let mut keys = term.stdin.take().unwrap();
    keys.write_all(b"exit 5\n").unwrap();
    assert_eq!(wait_code(&mut term), 5);
    let (_, all, _) = husk(r, &["ps", "-aq"]);
    assert_eq!(all, "", "--rm removed it");

    // start -ai joins a container made with -it; --detach-keys of one's own.
    assert_eq!(
        husk(r, &["create", "-it", "--name", "later", &img, "sh"]).0,
        0
    );
    let mut term = in_terminal(r, "start -ai --detach-keys ctrl-x later").unwrap();
    let out = watch(term.stdout.take().unwrap());
    let mut keys = term.stdin.take().unwrap();
    keys.write_all(b"echo started-$((1+1))\n").unwrap();
    until_seen(&out, "started-2");
    keys.write_all(b"\x18").unwrap();
    assert_eq!(wait_code(&mut term), 0);
    assert!(running(r, "later"));
    let mut term = in_terminal(r, "start -ai later").unwrap();
    let _out = watch(term.stdout.take().unwrap());
    let mut keys = term.stdin.take().unwrap();
    keys.write_all(b"exit 4\n").unwrap();
    // Running already: start -ai joins it, as docker's start -a attaches.
    assert_eq!(wait_code(&mut term), 4);
    assert_eq!(husk(r, &["rm", "later"]).0, 0);
}

#[test]
fn run_a_joins_only_the_streams_it_names() {
    let Some((_reg, root, img)) = busybox_store("run_a_joins_only_the_named_streams", &[]) else {
        return;
    };
    let r = root.path();
    let script = "echo out; echo err >&2";
    let (code, out, err) = husk(
        r,
        &[
            "run", "--name", "so", "-a", "stdout", &img, "sh", "-c", script,
        ],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "out\n", ""));
    let (_, logs, logs_err) = husk(r, &["logs", "so"]);
    assert_eq!(
        (logs.as_str(), logs_err.as_str()),
        ("out\n", "err\n"),
        "the log has both"
    );
    let (code, out, err) = husk(
        r,
        &["run", "--rm", "-a", "STDERR", &img, "sh", "-c", script],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", "err\n"));
    let (code, out, err) = husk(
        r,
        &[
            "run",
            "--rm",
            "-a",
            "stdout",
            "-a",
            "stderr",
            &img,
            "sh",
            "-c",
            "echo both; exit 6",
        ],
    );
    assert_eq!((code, out.as_str()), (6, "both\n"), "{err}");
    for (args, says) in [
        (vec!["-d", "-a", "stdout"], "-a and -d"),
        (vec!["-a", "stdwhat"], "STDIN, STDOUT and STDERR"),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend([img.as_str(), "true"]);
        let (code, _, err) = husk(r, &full);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    assert_eq!(husk(r, &["rm", "so"]).0, 0);
    assert_eq!(husk(r, &["ps", "-aq"]).1, "");
}

#[test]
fn a_container_that_reads_no_input_never_holds_up_its_monitor() {
    let Some((_reg, root, img)) = busybox_store("a_container_that_reads_no_input", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "-i",
            "--name",
            "deaf",
            &img,
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.05; done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut a = attach(r, &["deaf"]);
    let mut input = a.stdin.take().unwrap();
    // Far more than a pipe holds, typed at a container that never reads it.
    let typist = std::thread::spawn(move || {
        let block = vec![b'x'; 64 << 10];
        for _ in 0..32 {
            if input.write_all(&block).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let ticks = |r: &Path| husk(r, &["logs", "deaf"]).1.lines().count();
    let before = ticks(r);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ticks(r) > before, "the monitor still logs");
    let start = std::time::Instant::now();
    assert_eq!(husk(r, &["stop", "-t", "1", "deaf"]).0, 0);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "and still stops it"
    );
    let _ = a.kill();
    let _ = a.wait();
    let _ = typist.join();
    assert_eq!(husk(r, &["rm", "deaf"]).0, 0);
}

#[test]
fn attach_returns_the_first_exit_of_a_container_its_policy_restarts() {
    let Some((_reg, root, img)) = busybox_store("attach_returns_the_first_exit", &[]) else {
        return;
    };
    let r = root.path();
    let (code, _, err) = husk(
        r,
        &[
            "run",
            "-d",
            "-i",
            "--restart",
            "always",
            "--name",
            "again",
            &img,
            "sh",
            "-c",
            "read l; exit 3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut a = attach(r, &["again"]);
    let mut input = a.stdin.take().unwrap();
    input.write_all(b"go\n").unwrap();
    assert_eq!(wait_code(&mut a), 3);
    assert_eq!(husk(r, &["rm", "-f", "again"]).0, 0);
}
