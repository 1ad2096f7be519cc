//! Load without loss: eight clients at once running, exec'ing into, stopping, starting and
//! removing containers of six shared names. Every command either works or fails with one
//! clear line; afterwards `ps` tells the truth about every container left, and once they
//! are removed no record, name, mount, cgroup, layer mount or process remains.
//!
//! `HUSK_LOAD_SECS` sets how long the clients run (default 20; the "minutes" is
//! `HUSK_LOAD_SECS=180 cargo test --test load`).

#[path = "../image/tests/support/registry.rs"]
mod support;

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const NAMES: [&str; 6] = ["load0", "load1", "load2", "load3", "load4", "load5"];
const CLIENTS: u64 = 8;

/// The cgroup directories of container `id`, v1 and v2 alike.
fn cgroups_of(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let top = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![top.to_path_buf()];
    dirs.extend(
        std::fs::read_dir(top)
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    for d in dirs {
        let p = d.join("husk").join(id);
        if p.exists() {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Processes of this store other than its layer-mount reapers (monitors, mostly).
fn husk_processes(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name().to_str()?.parse::<i32>().ok()?;
                    let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    (cmd.contains(&root) && !cmd.contains("reap-layer-mounts")).then_some(cmd)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn eight_clients_on_shared_names_lose_and_leak_nothing() {
    let Some((_reg, store, img)) =
        busybox_store("eight_clients_on_shared_names_lose_and_leak_nothing", &[])
    else {
        return;
    };
    let root = store.path().to_path_buf();
    let secs: u64 = std::env::var("HUSK_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Every container id a `run -d` printed: each is checked for leftovers at the end.
    let made: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let (root, img, made) = (root.clone(), img.clone(), made.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(w * 104_729 + 31);
                let mut tally: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
                let mut errors: BTreeMap<String, usize> = BTreeMap::new();
                while Instant::now() < deadline {
                    let name = NAMES[rng.below(NAMES.len() as u64) as usize];
                    let (kind, args): (&str, Vec<&str>) = match rng.below(10) {
                        0 | 1 => (
                            "run -d",
                            vec!["run", "-d", "--name", name, &img, "sleep", "600"],
                        ),
                        2 => ("exec", vec!["exec", name, "true"]),
                        3 => ("stop", vec!["stop", "-t", "1", name]),
                        4 => ("start", vec!["start", name]),
                        5 => ("rm", vec!["rm", name]),
                        6 => ("rm -f", vec!["rm", "-f", name]),
                        7 => ("inspect", vec!["inspect", "-f", "{{.State.Status}}", name]),
                        8 => ("ps -a", vec!["ps", "-a"]),
                        _ => ("run --rm", vec!["run", "--rm", &img, "true"]),
                    };
                    let (out, err) = counted_run(&root, &args, kind, &mut tally);
                    if out.status.success() {
                        if kind == "run -d" {
                            made.lock()
                                .unwrap()
                                .insert(text(&out.stdout).trim().to_string());
                        }
                        continue;
                    }
                    // `exec` of a container stopped under it ends as its process did.
                    if kind == "exec" && err.is_empty() && out.status.code() == Some(137) {
                        *errors.entry("exec killed by a stop".into()).or_default() += 1;
                        continue;
                    }
                    let lines: Vec<&str> =
                        err.lines().filter(|l| l.starts_with("husk: ")).collect();
                    assert_eq!(
                        (lines.len(), err.lines().count()),
                        (1, 1),
                        "{args:?} (exit {:?}): a clear one-line error, not {err:?}",
                        out.status.code()
                    );
                    // The error's kind, without the names and ids that vary.
                    let kind_of: String = lines[0]
                        .split('"')
                        .step_by(2)
                        .collect::<Vec<_>>()
                        .join("…")
                        .split_whitespace()
                        .filter(|w| !(w.len() >= 12 && w.bytes().all(|b| b.is_ascii_hexdigit())))
                        .map(|w| if w.starts_with("load") { "NAME" } else { w })
                        .collect::<Vec<_>>()
                        .join(" ");
                    *errors.entry(format!("{kind}: {kind_of}")).or_default() += 1;
                }
                (tally, errors)
            })
        })
        .collect();
    let (tally, errors) = join_clients(clients, secs);
    for kind in [
        "run -d", "exec", "stop", "start", "rm -f", "ps -a", "run --rm",
    ] {
        assert!(
            tally.get(kind).is_some_and(|t| t.1 > 0),
            "{kind} never worked: {tally:?}"
        );
    }
    assert_eq!(
        tally["ps -a"].0, tally["ps -a"].1,
        "ps -a failed: {errors:?}"
    );

    // `ps` tells the truth: what it lists is what the records hold, a running container's
    // init is alive in its cgroup, a stopped one has no process left; every name is one
    // container's, and every container keeps its name.
    let (code, listed, err) = husk(&root, &["ps", "-a", "-q", "--no-trunc"]);
    assert_eq!(code, 0, "{err}");
    let listed: BTreeSet<String> = listed.lines().map(str::to_string).collect();
    let records: BTreeSet<String> = dir_entries(&root.join("containers")).into_iter().collect();
    assert_eq!(listed, records, "ps -a and the records differ");
    let mut names_seen = BTreeSet::new();
    for id in &listed {
        let (code, out, err) = husk(
            &root,
            &[
                "inspect",
                "-f",
                "{{.Name}} {{.State.Status}} {{.State.Pid}}",
                id,
            ],
        );
        assert_eq!(code, 0, "{err}");
        let f: Vec<&str> = out.split_whitespace().collect();
        let (name, status, pid) = (f[0].trim_start_matches('/'), f[1], f[2]);
        assert!(NAMES.contains(&name), "{id}: named {name:?}");
        assert!(
            names_seen.insert(name.to_string()),
            "two containers named {name}"
        );
        let link = std::fs::read_link(root.join("names").join(name)).expect("a name link");
        assert_eq!(link.to_string_lossy(), *id, "{name} points elsewhere");
        let procs = processes_of(id);
        match status {
            "running" => {
                let pid: i32 = pid.parse().expect("a pid");
                assert!(
                    procs.contains(&pid),
                    "{id} running, but pid {pid} is not in its cgroup ({procs:?})"
                );
            }
            "exited" | "created" => assert!(procs.is_empty(), "{id} {status}, yet {procs:?} run"),
            other => panic!("{id}: status {other} after the clients stopped"),
        }
    }
    let names: BTreeSet<String> = dir_entries(&root.join("names")).into_iter().collect();
    assert_eq!(names, names_seen, "name links without a container");

    // Removing what is left leaves nothing at all.
    if !listed.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(listed.iter().map(String::as_str));
        let (code, _, err) = husk(&root, &args);
        assert_eq!(code, 0, "{err}");
    }
    let made = made.lock().unwrap().clone();
    assert!(!made.is_empty());
    until(
        "the last layer mount to go",
        Duration::from_secs(10),
        || layer_mounts(&root) == 0,
    );
    for id in &made {
        assert!(processes_of(id).is_empty(), "{id} left processes");
        assert!(cgroups_of(id).is_empty(), "{id} left {:?}", cgroups_of(id));
    }
    assert_eq!(mounts_left(&root), Vec::<String>::new());
    // A monitor lets go of its record before it drops its monitored entry and exits.
    until("the last monitor to exit", Duration::from_secs(10), || {
        dir_entries(&root.join("monitored")).is_empty() && husk_processes(&root).is_empty()
    });
    for dir in ["containers", "names"] {
        assert_eq!(dir_entries(&root.join(dir)), Vec::<String>::new(), "{dir}/");
    }
    let (code, out, err) = husk(&root, &["ps", "-a", "-q"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // And the store still runs containers.
    let (code, _, err) = husk(&root, &["run", "--rm", &img, "true"]);
    assert_eq!(code, 0, "{err}");
}
