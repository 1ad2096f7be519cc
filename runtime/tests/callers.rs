//! What the real callers depend on: hooks at the spec's moments, the console socket protocol,
//! and `exec`.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A hook that appends "<name> <stdin>" to `log` (host busybox, run by the host's kernel).
fn recording_hook(name: &str, log: &Path) -> Value {
    json!({
        "path": BUSYBOX,
        "args": ["sh", "-c", format!("printf '%s ' {name} >> {}; cat >> {}; echo >> {}", log.display(), log.display(), log.display())]
    })
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    if !require_root("hooks_run_in_order_with_the_state_on_stdin") {
        return;
    }
    let root = Root::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("hooks.log");
    let mut b = Bundle::new(&["sh", "-c", "sleep 1000"]);
    let rec = |n: &str| recording_hook(n, &log);
    // startContainer runs inside the container: its path is the container's busybox, and it
    // writes where the container can see: the bound log directory.
    let start_container = json!({"path": "/bin/busybox", "args": ["sh", "-c", "printf 'startContainer ' >> /hooklog/hooks.log; cat >> /hooklog/hooks.log; echo >> /hooklog/hooks.log"]});
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [rec("prestart")],
            "createRuntime": [rec("createRuntime")],
            "createContainer": [rec("createContainer")],
            "startContainer": [start_container],
            "poststart": [rec("poststart")],
            "poststop": [rec("poststop")]
        });
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/hooklog", "type": "bind", "source": log_dir.path(), "options": ["rbind"]}));
    });
    let id = unique_id("hooks");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let after_create = fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = after_create
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["prestart", "createRuntime", "createContainer"]);
    let pid = root.state(&id)["pid"].as_i64().unwrap();
    for line in after_create.lines() {
        let (name, json) = line.split_once(' ').unwrap();
        let state: Value = serde_json::from_str(json).expect("state JSON on stdin");
        assert_eq!(state["id"], id.as_str());
        // Hooks in the runtime's namespace see the host pid; createContainer runs in the
        // container's, where the init is pid 1.
        let want = if name == "createContainer" { 1 } else { pid };
        assert_eq!(state["pid"].as_i64(), Some(want), "{name}");
        assert_eq!(state["status"], "creating");
        assert_eq!(
            Path::new(state["bundle"].as_str().unwrap()),
            fs::canonicalize(b.path()).unwrap()
        );
    }
    root.ok(&["start", &id]);
    let after_start = fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = after_start
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(names[3..], ["startContainer", "poststart"]);
    let poststart: Value = serde_json::from_str(
        after_start
            .lines()
            .nth(4)
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(poststart["status"], "running");
    let start_container: Value = serde_json::from_str(
        after_start
            .lines()
            .nth(3)
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(
        start_container["pid"], 1,
        "startContainer runs in the container"
    );
    root.ok(&["delete", "--force", &id]);
    let after_delete = fs::read_to_string(&log).unwrap();
    let last = after_delete.lines().last().unwrap();
    assert!(last.starts_with("poststop "), "{last}");
    let poststop: Value = serde_json::from_str(last.split_once(' ').unwrap().1).unwrap();
    assert_eq!(poststop["status"], "stopped");
}

#[test]
fn a_failing_create_hook_fails_create_and_leaves_nothing() {
    if !require_root("a_failing_create_hook_fails_create_and_leaves_nothing") {
        return;
    }
    let root = Root::new();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let mut b = Bundle::new(&["true"]);
        b.edit(|c| c["hooks"] = json!({ kind: [{"path": BUSYBOX, "args": ["sh", "-c", "echo hook said no >&2; exit 3"]}] }));
        let id = unique_id("hookfail");
        let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{kind}");
        let err = error_line(&out);
        assert!(
            err.contains("exit status 3") && err.contains("hook said no"),
            "{kind}: {err}"
        );
        assert!(!root.container_dir(&id).exists(), "{kind}: state left");
        assert_no_cgroup(&id);
    }
}

#[test]
fn poststop_hooks_run_after_a_failed_create_too() {
    if !require_root("poststop_hooks_run_after_a_failed_create_too") {
        return;
    }
    // The spec's lifecycle: a failing create hook stops the container and goes on to destroy,
    // whose poststop hooks MUST run.
    let root = Root::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("hooks.log");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] = json!({
            "createRuntime": [{"path": BUSYBOX, "args": ["sh", "-c", "exit 3"]}],
            "poststop": [recording_hook("poststop", &log)]
        })
    });
    let id = unique_id("poststopfail");
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    let logged = fs::read_to_string(&log).unwrap_or_default();
    let (name, state) = logged.trim().split_once(' ').expect("poststop ran");
    assert_eq!(name, "poststop");
    let state: Value = serde_json::from_str(state).unwrap();
    assert_eq!(
        (state["id"].as_str(), state["status"].as_str()),
        (Some(id.as_str()), Some("stopped"))
    );
}

#[test]
fn poststart_hooks_run_after_the_program_is_executed() {
    if !require_root("poststart_hooks_run_after_the_program_is_executed") {
        return;
    }
    // The hook reads the container process's command line through the host pid in its state:
    // by then it is the user's program, not the runtime's init.
    let root = Root::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("cmdline");
    let mut b = Bundle::new(&["sleep", "1000"]);
    let script = format!(
        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); tr '\\0' ' ' < /proc/$pid/cmdline > {}",
        log.display()
    );
    b.edit(|c| {
        c["hooks"] = json!({"poststart": [{"path": BUSYBOX, "args": ["sh", "-c", script]}]})
    });
    let id = unique_id("poststart");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(fs::read_to_string(&log).unwrap().trim(), "sleep 1000");
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn a_failing_start_container_hook_fails_start() {
    if !require_root("a_failing_start_container_hook_fails_start") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| {
        c["hooks"] =
            json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]})
    });
    let id = unique_id("startfail");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = root.hr(&["start", &id]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("exit status 4"),
        "{}",
        error_line(&out)
    );
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
}

#[test]
fn hook_timeouts_are_honoured() {
    if !require_root("hook_timeouts_are_honoured") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] =
            json!({"createRuntime": [{"path": BUSYBOX, "args": ["sleep", "30"], "timeout": 1}]})
    });
    let id = unique_id("hooktimeout");
    let t = Instant::now();
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the hook was not stopped at its timeout"
    );
    assert!(
        error_line(&out).contains("timed out"),
        "{}",
        error_line(&out)
    );
    assert!(!root.container_dir(&id).exists());
}

#[test]
fn a_failing_poststart_hook_only_warns() {
    if !require_root("a_failing_poststart_hook_only_warns") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.edit(|c| c["hooks"] = json!({"poststart": [{"path": BUSYBOX, "args": ["false"]}]}));
    let id = unique_id("poststart");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = root.hr(&["start", &id]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("level=warning"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(root.status(&id), "running");
    root.ok(&["delete", "-f", &id]);
}

/// Accept one connection on `sock` and receive the pty master sent over it.
fn receive_pty(listener: UnixListener) -> std::thread::JoinHandle<fs::File> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        let fd = husk_runtime::channel::recv_fd(conn.as_raw_fd()).expect("pty master arrives");
        fs::File::from(fd)
    })
}

fn read_until_eof(mut master: fs::File) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // A pty master reads EIO once the last slave holder is gone.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

#[test]
fn terminal_goes_over_the_console_socket() {
    if !require_root("terminal_goes_over_the_console_socket") {
        return;
    }
    let root = Root::new();
    // /dev/console is the pty too (the spec: the runtime binds it there), with a read-only
    // root as well.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "tty; stty size; [ -t 0 ] && echo stdin-is-tty; [ \"$(stat -c %t:%T /dev/console)\" = \"$(stat -c %t:%T $(tty))\" ] && echo console-is-the-pty",
    ]);
    b.edit(|c| {
        c["process"]["terminal"] = true.into();
        c["process"]["consoleSize"] = json!({"height": 40, "width": 100});
        c["root"]["readonly"] = true.into();
    });
    let sock = b.path().join("console.sock");
    let got = receive_pty(UnixListener::bind(&sock).unwrap());
    let id = unique_id("tty");
    root.ok(&[
        "create",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let master = got.join().unwrap();
    root.ok(&["start", &id]);
    let out = read_until_eof(master);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/dev/pts/0", "40 100", "stdin-is-tty", "console-is-the-pty"],
        "{out:?}"
    );
    root.wait_status(&id, "stopped");
    root.ok(&["delete", &id]);
}

#[test]
fn terminal_without_console_socket_is_refused_for_create() {
    if !require_root("terminal_without_console_socket_is_refused_for_create") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["terminal"] = true.into());
    let id = unique_id("nosock");
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        error_line(&out).contains("--console-socket"),
        "{}",
        error_line(&out)
    );
    assert!(!root.container_dir(&id).exists());
}

#[test]
fn exec_runs_in_the_container_with_its_flags() {
    if !require_root("exec_runs_in_the_container_with_its_flags") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("exec");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let init = root.state(&id)["pid"].as_i64().unwrap();

    let out = root.ok(&[
        "exec",
        "--env",
        "X=1",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        "echo $X; pwd; id -u; id -g; readlink /proc/self/ns/pid; hostname",
    ]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[..4], ["1", "/tmp", "1000", "1000"]);
    assert_eq!(
        Path::new(l[4]),
        fs::read_link(format!("/proc/{init}/ns/pid")).unwrap(),
        "same pid namespace"
    );
    assert_eq!(l[5], "husk");

    // Exit codes pass through.
    let out = root.hr(&["exec", &id, "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    // The process is in the container's cgroup and visible to ps.
    let out = root.ok(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert!(
        out.lines()
            .any(|l| l.contains(":pids:/") || l.starts_with("0::/")),
        "{out}"
    );

    // --process FILE.
    let pfile = b.path().join("process.json");
    fs::write(&pfile, serde_json::to_vec(&json!({"args": ["sh", "-c", "echo from-process-json $Y"], "cwd": "/", "env": ["Y=2", "PATH=/bin"], "user": {"uid": 0, "gid": 0}})).unwrap()).unwrap();
    assert_eq!(
        root.ok(&["exec", "--process", pfile.to_str().unwrap(), &id])
            .trim(),
        "from-process-json 2"
    );

    // --detach with --pid-file: the process lives in the container and shows in ps.
    let pid_file = b.path().join("exec.pid");
    root.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "500",
    ]);
    let epid: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<i64> = serde_json::from_str(&root.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&epid) && pids.contains(&init), "{pids:?}");

    // A missing program is a clear error.
    let out = root.hr(&["exec", &id, "no-such-program"]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("no-such-program"),
        "{}",
        error_line(&out)
    );

    // The runtime is not dumpable while it sits in the container: no process there can open
    // the runtime's /proc/PID/exe (the CVE-2019-5736 class).
    root.ok(&["delete", "-f", &id]);
    let out = root.hr(&["exec", &id, "true"]);
    assert!(!out.status.success(), "exec into a deleted container fails");
}

#[test]
fn exec_with_a_tty_over_the_console_socket() {
    if !require_root("exec_with_a_tty_over_the_console_socket") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("exectty");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let sock = b.path().join("exec.sock");
    let got = receive_pty(UnixListener::bind(&sock).unwrap());
    root.ok(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; echo done",
    ]);
    let out = read_until_eof(got.join().unwrap());
    assert!(
        out.starts_with("/dev/pts/") && out.contains("done"),
        "{out:?}"
    );
    root.ok(&["delete", "-f", &id]);
}

#[test]
fn exec_into_a_stopped_container_fails() {
    if !require_root("exec_into_a_stopped_container_fails") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("stopped");
    root.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    root.wait_status(&id, "stopped");
    let out = root.hr(&["exec", &id, "true"]);
    assert!(error_line(&out).contains("stopped"), "{}", error_line(&out));
    root.ok(&["delete", &id]);
}

#[test]
fn processes_in_the_container_cannot_reach_the_runtime_binary() {
    if !require_root("processes_in_the_container_cannot_reach_the_runtime_binary") {
        return;
    }
    let root = Root::new();
    // A created container's init is still husk-runtime, waiting on the exec fifo: the moment
    // the CVE-2019-5736 class attacks. An exec'd process must not open its exe, fds or memory.
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("exe");
    root.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let init = root.state(&id)["pid"].as_i64().unwrap();
    assert!(fs::read_link(format!("/proc/{init}/exe"))
        .unwrap()
        .to_string_lossy()
        .contains("husk-runtime"));
    let out = root.ok(&["exec", &id, "sh", "-c",
        "for p in exe mem; do cat /proc/1/$p > /dev/null 2>&1 && echo $p-OPEN || echo $p-denied; done; \
         for f in /proc/1/fd/* /proc/1/cwd /proc/1/root; do readlink $f > /dev/null 2>&1 && echo OPEN-$f; done; echo fd-denied; \
         echo x >> /proc/1/exe 2>/dev/null && echo exe-WRITABLE || echo exe-not-writable"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["exe-denied", "mem-denied", "fd-denied", "exe-not-writable"],
        "{out}"
    );
    root.ok(&["delete", &id]);
}

#[test]
fn a_foreground_run_forwards_signals() {
    if !require_root("a_foreground_run_forwards_signals") {
        return;
    }
    let root = Root::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done",
    ]);
    let id = unique_id("fwd");
    let running = root.spawn(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    root.track(&id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.rootfs().join("tmp/ready").exists() {
        assert!(Instant::now() < deadline, "container never got ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = Root::finish(running);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
}

#[test]
fn a_foreground_run_with_a_terminal_proxies_the_pty() {
    if !require_root("a_foreground_run_with_a_terminal_proxies_the_pty") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["sh", "-c", "read line; echo got:$line; tty"]);
    b.edit(|c| c["process"]["terminal"] = true.into());
    // The runtime's own stdio is a pty we hold the master of, as a user's terminal would be.
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = fs::File::from(pty.slave);
    let id = unique_id("fgtty");
    root.track(&id);
    let mut child = root
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = fs::File::from(pty.master);
    use std::io::{Read, Write};
    master.write_all(b"hello\r").unwrap();
    let status = child.wait().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Our slave copies were handed to the child and closed here, so reads end with EIO.
    let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .unwrap();
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    assert!(status.success(), "{out}");
    assert!(out.contains("got:hello"), "{out:?}");
    assert!(
        out.contains("/dev/pts/0"),
        "the container has its own pty: {out:?}"
    );
}

#[test]
fn a_hook_that_never_reads_a_large_state_still_times_out() {
    if !require_root("a_hook_that_never_reads_a_large_state_still_times_out") {
        return;
    }
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["annotations"] = json!({"big": "x".repeat(512 * 1024)});
        c["hooks"] =
            json!({"createRuntime": [{"path": BUSYBOX, "args": ["sleep", "30"], "timeout": 1}]});
    });
    let id = unique_id("bigstate");
    let t = Instant::now();
    let out = root.hr(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the hook outlived its timeout"
    );
    assert!(
        error_line(&out).contains("timed out"),
        "{}",
        error_line(&out)
    );
}
