//! The engine as a library, without the husk binary: pull, run attached and detached, logs,
//! wait, docker's exit codes as typed errors, names, filters, volumes, stop, remove, and the
//! embedding example. One test runs the containers in sequence: the engine forks its monitors
//! and wants a process that is not busy in other threads when it does.

#[path = "../../image/tests/support/registry.rs"]
mod support;

use std::path::{Path, PathBuf};

use husk_engine::image::manifest::Platform;
use husk_engine::image::registry::Options;
use husk_engine::image::Reference;
use husk_engine::options::Filter;
use husk_engine::{
    Attach, Engine, Error, ListOptions, LogOptions, Mount, RunOptions, Status, Stream,
};
use support::is_root;

/// What is still mounted at or under `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(root))
        .map(str::to_string)
        .collect()
}

/// A store that removes its containers, then unmounts what is left, when dropped (a test that
/// failed half-way leaves nothing mounted).
struct Store {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl Drop for Store {
    fn drop(&mut self) {
        let all = ListOptions {
            all: true,
            ..ListOptions::default()
        };
        for c in self.engine.list(&all).unwrap_or_default() {
            let _ = self.engine.remove(&c.id, true, true);
        }
        for p in mounts_under(self.engine.root()).iter().rev() {
            if let Ok(c) = std::ffi::CString::new(p.as_str()) {
                // SAFETY: umount2 of a path under this test's own store.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = self.dir.path();
    }
}

fn opts(image: &str, command: &[&str]) -> RunOptions {
    RunOptions {
        image: image.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        // The default bridge would change the host's network; the network tests are the
        // `husk` binary's, in a network namespace of their own.
        network: husk_engine::options::Network::None,
        ..RunOptions::default()
    }
}

/// (stdout, stderr) of a container's log.
fn log_of(engine: &Engine, id: &str) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    engine
        .logs(id, &LogOptions::default(), &mut |l| {
            match l.stream {
                Stream::Stdout => out.push_str(&l.text),
                Stream::Stderr => err.push_str(&l.text),
            }
            Ok(())
        })
        .unwrap();
    (out, err)
}

#[test]
fn an_embedded_engine_runs_containers_from_a_registry_image() {
    if !is_root() {
        eprintln!(
            "SKIP an_embedded_engine_runs_containers_from_a_registry_image: containers need root"
        );
        return;
    }
    let Some(reg) = support::start_registry() else {
        return;
    };
    support::push_busybox_image(&reg, "lib/busybox", "latest");
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::at(dir.path()).unwrap();
    let store = Store { dir, engine };
    let e = &store.engine;
    let img = format!("127.0.0.1:{}/lib/busybox", reg.port);

    // Pulled once; the second pull finds it up to date.
    let reference = Reference::parse(&img).unwrap();
    let insecure = Options::default();
    let first = e
        .pull(&reference, &Platform::host(), &insecure, &|_| {})
        .unwrap();
    assert!(first.new);
    let again = e
        .pull(&reference, &Platform::host(), &insecure, &|_| {})
        .unwrap();
    assert!(!again.new);
    assert_eq!(again.config, first.config);

    // Detached: the monitor keeps both streams apart in the log, and the code for `wait`.
    let mut o = opts(&img, &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    o.name = Some("first".into());
    o.labels.insert("tier".into(), "front".into());
    let run = e.run(&o, Attach::Detached, &|_| {}).unwrap();
    assert!(run.exit.is_none());
    assert_eq!(run.name, "first");
    assert_eq!(e.wait("first").unwrap(), 3);
    assert_eq!(log_of(e, &run.id), ("out\n".into(), "err\n".into()));
    let c = e.container(&run.id[..12]).unwrap();
    assert_eq!(
        (c.observed().status, c.observed().exit_code),
        (Status::Exited, 3)
    );
    assert_eq!(e.inspect("first").unwrap()["State"]["ExitCode"], 3);

    // Attached in this process: the exit code comes back as the call's result.
    let exit = e
        .run(
            &opts(&img, &["sh", "-c", "exit 7"]),
            Attach::Direct,
            &|_| {},
        )
        .unwrap()
        .exit
        .unwrap();
    assert_eq!((exit.code, exit.killed), (7, None));

    // Created, then started: nobody holds it in between.
    let id = e
        .create(&opts(&img, &["sh", "-c", "exit 4"]), &|_| {})
        .unwrap();
    let created = e.container(&id).unwrap();
    assert_eq!(created.observed().status, Status::Created);
    assert!(!created.busy());
    assert!(e.start(&id, false).unwrap().is_none());
    assert_eq!(e.wait(&id).unwrap(), 4);

    // docker's codes, as error kinds: 127, 126, a taken name, an unknown container.
    // Both found out at create, as runc does: the container never starts.
    for attach in [Attach::Detached, Attach::Logged] {
        let err = e
            .run(&opts(&img, &["no-such-command"]), attach, &|_| {})
            .unwrap_err();
        assert_eq!(err.exit_code(), 127, "{attach:?}: {err}");
        let err = e
            .run(&opts(&img, &["/bin/notexec"]), attach, &|_| {})
            .unwrap_err();
        assert_eq!(err.exit_code(), 126, "{attach:?}: {err}");
    }
    let err = e.run(&o, Attach::Detached, &|_| {}).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(
        err.to_string().contains("\"/first\" is already in use"),
        "{err}"
    );
    assert!(matches!(
        e.container("nothing-here"),
        Err(Error::NoSuchContainer(_))
    ));
    assert_eq!(e.wait("nothing-here").unwrap_err().exit_code(), 125);

    // Filters: by label and exit code, and running only by default.
    let by_label = ListOptions {
        filters: vec![Filter::parse("label=tier=front").unwrap()],
        ..ListOptions::default()
    };
    let found: Vec<String> = e
        .list(&by_label)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(found, ["first"]);
    let exited = ListOptions {
        filters: vec![Filter::Exited("7".into())],
        ..ListOptions::default()
    };
    assert_eq!(e.list(&exited).unwrap().len(), 1);
    assert!(e.list(&ListOptions::default()).unwrap().is_empty());

    // A named volume outlives the container that wrote it, and is refused removal while used.
    let mut w = opts(&img, &["sh", "-c", "echo kept > /data/f"]);
    w.mounts.push(Mount::Volume {
        name: Some("data".into()),
        target: "/data".into(),
        readonly: false,
    });
    let writer = e.run(&w, Attach::Detached, &|_| {}).unwrap();
    assert_eq!(e.wait(&writer.id).unwrap(), 0);
    assert!(matches!(
        e.remove_volume("data", false),
        Err(Error::Conflict(_))
    ));
    let mut r = opts(&img, &["cat", "/data/f"]);
    r.mounts = w.mounts.clone();
    r.auto_remove = true;
    let reader = e.run(&r, Attach::Detached, &|_| {}).unwrap();
    assert_eq!(
        e.wait(&reader.id).unwrap(),
        0,
        "a removed container's code is kept"
    );
    e.remove(&writer.id, false, true).unwrap();
    e.remove_volume("data", false).unwrap();
    assert!(matches!(e.volume("data"), Err(Error::NoSuchVolume(_))));

    // stop: the stop signal, then SIGKILL after the timeout (sh as PID 1 ignores SIGTERM).
    let sleeper = e
        .run(&opts(&img, &["sleep", "60"]), Attach::Detached, &|_| {})
        .unwrap();
    assert_eq!(e.list(&ListOptions::default()).unwrap().len(), 1);
    assert!(e
        .top(&sleeper.id)
        .unwrap()
        .processes
        .iter()
        .any(|p| p.join(" ").contains("sleep")));
    e.stop(&sleeper.id, None, Some(1)).unwrap();
    assert_eq!(e.wait(&sleeper.id).unwrap(), 137);
    assert!(matches!(
        e.kill(&sleeper.id, "TERM"),
        Err(Error::Conflict(_))
    ));

    // The embedding example, as a second program on the same store.
    let example = example_binary("run_container");
    let out = std::process::Command::new(&example)
        .arg(e.root())
        .arg(&img)
        .args(["echo", "hello from the example"])
        .output()
        .unwrap_or_else(|err| panic!("{}: {err}", example.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("hello from the example\n"), "{text}");
    assert!(text.contains(" exited with 0"), "{text}");

    // Everything removed: no container, no mount left.
    let removed = e.prune_containers().unwrap();
    assert_eq!(removed.len(), 8, "{removed:?}");
    assert!(e
        .list(&ListOptions {
            all: true,
            ..ListOptions::default()
        })
        .unwrap()
        .is_empty());
    let left = mounts_under(e.root());
    assert!(left.is_empty(), "left mounted: {left:?}");
}

/// cargo builds the examples beside the test executables (target/<profile>/examples).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join("examples").join(name)
}

#[test]
fn errors_say_docker_exit_codes_and_keep_them_through_context() {
    use husk_engine::error::Context;
    let not_found: husk_engine::Result<()> = Err(Error::CommandNotFound(
        "exec: \"x\": executable file not found in $PATH".into(),
    ));
    let wrapped = not_found.context("start web").unwrap_err();
    assert_eq!(wrapped.exit_code(), 127);
    assert_eq!(
        wrapped.to_string(),
        "start web: exec: \"x\": executable file not found in $PATH"
    );
    assert!(matches!(wrapped.root(), Error::CommandNotFound(_)));
    assert_eq!(Error::CommandNotExecutable(String::new()).exit_code(), 126);
    assert_eq!(Error::NoSuchContainer("x".into()).exit_code(), 125);
    // One line, no chain: nothing prints the cause twice.
    let io: husk_engine::Result<()> = Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into());
    let e = io.context("cannot write the log").unwrap_err();
    assert!(std::error::Error::source(&e).is_none());
    assert_eq!(
        e.to_string(),
        "cannot write the log: No space left on device (os error 28)"
    );
}
