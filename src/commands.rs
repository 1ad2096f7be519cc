//! The container commands besides `run`: ps, stop, kill, rm, wait, start, restart, exec,
//! inspect, top, stats, container prune, and the volume commands.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use husk_cli::husk::{
    ExecArgs, Format, KillArgs, PsArgs, RmArgs, StartArgs, StatsArgs, StopArgs, VolumeCommand,
};
use serde_json::{json, Value};

use crate::containers::{self, Container, Status};
use crate::monitor;
use crate::timefmt;
use crate::volumes;

/// Remove a stopped container: its runtime state, mount, directory and name, and with
/// `anonymous_volumes` the anonymous volumes made for it.
pub fn remove(root: &Path, c: &Container, anonymous_volumes: bool) -> Result<()> {
    let dir = containers::dir(root, &c.id);
    // A monitor that just recorded the exit is finishing up (unmounting, or removing a --rm
    // container itself): give it a moment, without holding the lock it may need.
    if let Ok(cur) = Container::load(root, &c.id) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while cur.busy()
            && cur.state.monitor_pid != std::process::id() as i32
            && cur.observed().status != Status::Running
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    {
        let _l = match containers::lock(root, &c.id) {
            Ok(l) => l,
            // Gone meanwhile: its monitor removed it (`--rm`), which is what was asked.
            Err(_) if !dir.exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        // Decide on what is on disk now, not on what the caller read earlier.
        let current = match Container::load(root, &c.id) {
            Ok(cur) => Some(cur),
            Err(_) if !dir.join("container.json").exists() => None,
            Err(e) => return Err(e),
        };
        if let Some(cur) = &current {
            if cur.observed().status == Status::Running {
                bail!("container {} is running", c.name);
            }
            if cur.busy() && cur.state.monitor_pid != std::process::id() as i32 {
                bail!(
                    "container {} is being started or stopped by another husk",
                    c.name
                );
            }
            // The exit code outlives the record, for `wait` on a --rm container.
            let _ = containers::save_exit(root, &c.id, cur.state.exit_code);
        }
        let _ = monitor::runtime(root).delete(&c.id, true);
        monitor::unmount_rootfs(root, &c.id);
        match std::fs::remove_file(dir.join("container.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove container {}", c.name)),
        }
    }
    // The name goes with the record, whatever happens to the directory.
    containers::release_name(root, &c.name, &c.id);
    if anonymous_volumes {
        for v in &c.anonymous_volumes {
            let _ = volumes::remove(root, v, false);
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// Wait until the container is no longer running (its monitor recorded the exit), at most
/// `limit`. Watches the monitor with a pidfd, so no polling loop spins.
pub fn wait_stopped(root: &Path, id: &str, limit: Option<Duration>) -> Result<Option<Container>> {
    let deadline = limit.map(|l| Instant::now() + l);
    loop {
        let c = match Container::load(root, id) {
            Ok(c) => c,
            Err(_) => return Ok(None), // removed (--rm)
        };
        let st = c.observed();
        if st.status != Status::Running {
            return Ok(Some(c));
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(Some(c));
        }
        let step = left
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_millis(200));
        // SAFETY: pidfd_open of a pid; the fd is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, st.monitor_pid, 0) };
        if fd >= 0 {
            // SAFETY: just opened.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let mut p = [libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll on one pollfd we own.
            unsafe { libc::poll(p.as_mut_ptr(), 1, step.as_millis() as i32) };
            // The monitor may have exited before saving: give the record a moment.
            if p[0].revents != 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            std::thread::sleep(step);
        }
    }
}

fn signal(name: &str) -> Result<nix::sys::signal::Signal> {
    husk_runtime::util::parse_signal(name).ok_or_else(|| anyhow!("invalid signal {name:?}"))
}

/// Stop one container: its stop signal, then SIGKILL to every process after `timeout`.
pub fn stop_one(root: &Path, c: &Container, sig: Option<&str>, timeout: Option<i64>) -> Result<()> {
    if c.observed().status != Status::Running {
        return Ok(());
    }
    let rt = monitor::runtime(root);
    let sig = signal(sig.unwrap_or(&c.stop_signal))?;
    let timeout = timeout.unwrap_or(c.stop_timeout);
    let _ = rt.kill(&c.id, sig, false);
    let limit = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
    if let Some(c) = wait_stopped(root, &c.id, limit)? {
        if c.observed().status == Status::Running {
            let _ = rt.kill(&c.id, nix::sys::signal::Signal::SIGKILL, true);
            wait_stopped(root, &c.id, Some(Duration::from_secs(10)))?;
        }
    }
    Ok(())
}

pub fn stop(root: &Path, a: &StopArgs) -> Result<()> {
    each(&a.containers, |q| {
        let c = containers::find(root, q)?;
        stop_one(root, &c, a.signal.as_deref(), a.time)?;
        println!("{q}");
        Ok(())
    })
}

pub fn restart(root: &Path, a: &StopArgs) -> Result<()> {
    each(&a.containers, |q| {
        let c = containers::find(root, q)?;
        // Marked first, so a --rm container's monitor does not remove it on the way.
        Container::update(root, &c.id, |c| c.state.restarting = true)?;
        stop_one(root, &c, a.signal.as_deref(), a.time)?;
        start_one(root, &c.id, false)?;
        println!("{q}");
        Ok(())
    })
}

pub fn kill(root: &Path, a: &KillArgs) -> Result<()> {
    let sig = signal(&a.signal)?;
    each(&a.containers, |q| {
        let c = containers::find(root, q)?;
        if c.observed().status != Status::Running {
            bail!(
                "cannot kill container {q}: container {} is not running",
                c.id
            );
        }
        monitor::runtime(root)
            .kill(&c.id, sig, false)
            .map_err(|e| anyhow!("cannot kill container {q}: {e}"))?;
        println!("{q}");
        Ok(())
    })
}

pub fn rm(root: &Path, a: &RmArgs) -> Result<()> {
    each(&a.containers, |q| {
        let c = containers::find(root, q)?;
        if c.observed().status == Status::Running {
            if !a.force {
                bail!("cannot remove container {q}: container is running: stop the container before removing or force remove");
            }
            let _ = monitor::runtime(root).kill(&c.id, nix::sys::signal::Signal::SIGKILL, true);
            if let Some(c) = wait_stopped(root, &c.id, Some(Duration::from_secs(10)))? {
                if c.observed().status == Status::Running {
                    bail!("cannot remove container {q}: it did not stop after SIGKILL");
                }
            }
        }
        // A --rm container removes itself when it stops.
        if let Ok(c) = Container::load(root, &c.id) {
            remove(root, &c, a.volumes)?;
        }
        println!("{q}");
        Ok(())
    })
}

pub fn wait(root: &Path, names: &[String]) -> Result<()> {
    each(names, |q| {
        let c = containers::find(root, q)?;
        let code = match wait_stopped(root, &c.id, None)? {
            Some(c) => c.observed().exit_code,
            // Removed after it stopped (--rm): its code was kept for us.
            None => containers::load_exit(root, &c.id).unwrap_or(c.state.exit_code),
        };
        println!("{code}");
        Ok(())
    })
}

fn start_one(root: &Path, id: &str, attach: bool) -> Result<i32> {
    {
        // Claim the start under the lock: a second `start` at once sees a live monitor.
        let _l = containers::lock(root, id)?;
        let c = Container::load(root, id)?;
        if c.observed().status == Status::Running || c.busy() {
            return Ok(0);
        }
        let mut c = c;
        c.state.restarting = false;
        c.state.monitor_pid = std::process::id() as i32;
        c.state.monitor_start =
            husk_runtime::util::process_start_time(c.state.monitor_pid).unwrap_or(0);
        c.save(root)?;
        // The runtime's leftovers from a killed monitor would block a new create.
        let _ = monitor::runtime(root).delete(id, true);
    }
    if attach {
        monitor::supervise(
            root,
            id,
            monitor::Stdio::Logged { attach: true },
            &mut |_| {},
        )
    } else {
        monitor::spawn_detached(root, id).map(|()| 0)
    }
}

/// `start`; with `-a` it returns the container's exit code.
pub fn start(root: &Path, a: &StartArgs) -> Result<i32> {
    if a.attach && a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let mut code = 0;
    each(&a.containers, |q| {
        let c = containers::find(root, q)?;
        code = start_one(root, &c.id, a.attach)?;
        if !a.attach {
            println!("{q}");
        }
        Ok(())
    })?;
    Ok(code)
}

/// Run `f` for each name; report each failure, fail at the end if any did (docker's way).
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = 0;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("husk: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} failed", names.len());
    }
    Ok(())
}

fn status_text(c: &Container) -> String {
    let st = c.observed();
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            timefmt::human_duration(
                timefmt::now_secs()
                    - st.started_at
                        .as_deref()
                        .and_then(timefmt::parse)
                        .unwrap_or(0.0)
            )
        ),
        Status::Exited => format!(
            "Exited ({}) {}",
            st.exit_code,
            st.finished_at
                .as_deref()
                .map(timefmt::ago)
                .unwrap_or_default()
        ),
    }
}

fn command_text(c: &Container) -> String {
    let mut parts = vec![c.path.clone()];
    parts.extend(c.args.iter().cloned());
    format!("\"{}\"", parts.join(" "))
}

fn matches(c: &Container, filter: &str) -> Result<bool> {
    let (k, v) = filter
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid filter {filter:?}: use KEY=VALUE"))?;
    let st = c.observed();
    Ok(match k {
        "status" => st.status.as_str() == v,
        "name" => c.name.contains(v),
        "id" => c.id.starts_with(v),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => c.labels.get(lk).is_some_and(|x| x == lv),
            None => c.labels.contains_key(v),
        },
        "ancestor" => c.image == v || c.image_id.trim_start_matches("sha256:").starts_with(v),
        "exited" => st.status == Status::Exited && st.exit_code.to_string() == v,
        _ => bail!("invalid filter {k:?}: husk knows status, name, id, label, ancestor, exited"),
    })
}

pub fn ps(root: &Path, a: &PsArgs) -> Result<()> {
    let mut list = Vec::new();
    for c in containers::list(root)? {
        if !a.all && a.filter.is_empty() && !a.latest && c.observed().status != Status::Running {
            continue;
        }
        let mut keep = true;
        for f in &a.filter {
            keep &= matches(&c, f)?;
        }
        if keep {
            list.push(c);
        }
    }
    if a.latest {
        list.truncate(1);
    }
    let id = |c: &Container| {
        if a.no_trunc {
            c.id.clone()
        } else {
            c.short_id().to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &list {
            writeln!(out, "{}", id(c))?;
        }
        return Ok(());
    }
    if a.format == Format::Json {
        for c in &list {
            let st = c.observed();
            writeln!(
                out,
                "{}",
                json!({
                    "ID": id(c), "Image": c.image, "Command": command_text(c), "CreatedAt": c.created,
                    "RunningFor": timefmt::ago(&c.created), "State": st.status.as_str(),
                    "Status": status_text(c), "Names": c.name, "Labels": c.labels,
                    "Mounts": c.mounts.iter().map(|m| if m.name.is_empty() { m.source.clone() } else { m.name.clone() }).collect::<Vec<_>>(),
                })
            )?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|c| {
            let mut cmd = command_text(c);
            if !a.no_trunc && cmd.chars().count() > 22 {
                cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
            }
            [
                id(c),
                c.image.clone(),
                cmd,
                timefmt::ago(&c.created),
                status_text(c),
                c.name.clone(),
            ]
        })
        .collect();
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ];
    table(&mut out, header, &rows)
}

fn table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> Result<()> {
    let mut w = header.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
            } else {
                s.push_str(c);
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// docker-shaped `inspect` of a container.
pub fn inspect_value(root: &Path, c: &Container) -> Value {
    let st = c.observed();
    let spec: Value = std::fs::read(containers::dir(root, &c.id).join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(Value::Null);
    let res = &spec["linux"]["resources"];
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status == Status::Running,
            "Paused": false, "Restarting": false,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": c.image_id,
        "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "",
        "LogPath": containers::log_path(root, &c.id),
        "Name": format!("/{}", c.name),
        "RestartCount": 0,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "AutoRemove": c.auto_remove,
            "NetworkMode": c.network,
            "Memory": res["memory"]["limit"].as_i64().unwrap_or(0),
            "MemorySwap": res["memory"]["swap"].as_i64().unwrap_or(0),
            "CpuShares": res["cpu"]["shares"].as_u64().unwrap_or(0),
            "CpuQuota": res["cpu"]["quota"].as_i64().unwrap_or(0),
            "CpuPeriod": res["cpu"]["period"].as_u64().unwrap_or(0),
            "PidsLimit": res["pids"]["limit"].as_i64(),
            "ReadonlyRootfs": spec["root"]["readonly"].as_bool().unwrap_or(false),
            "CapAdd": null, "CapDrop": null,
            "Privileged": res["devices"][0]["allow"].as_bool().unwrap_or(false),
            "Ulimits": spec["process"]["rlimits"],
        },
        "Mounts": c.mounts,
        "Config": {
            "Hostname": c.hostname,
            "User": c.user,
            "Tty": c.tty,
            "OpenStdin": c.interactive,
            "Env": c.env,
            "Cmd": std::iter::once(c.path.clone()).chain(c.args.iter().cloned()).collect::<Vec<_>>(),
            "Image": c.image,
            "WorkingDir": c.working_dir,
            "Labels": c.labels,
            "StopSignal": c.stop_signal,
            "StopTimeout": c.stop_timeout,
        },
    })
}

pub fn top(root: &Path, q: &str) -> Result<()> {
    let c = containers::find(root, q)?;
    if c.observed().status != Status::Running {
        bail!("container {q} is not running");
    }
    let pids = monitor::runtime(root)
        .ps(&c.id)
        .map_err(|e| anyhow!("cannot list the processes of {q}: {e}"))?;
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let out = std::process::Command::new("ps")
        .args([
            "-o",
            "uid,pid,ppid,c,stime,tty,time,cmd",
            "-p",
            &list.join(","),
        ])
        .output()
        .context("cannot run ps (procps)")?;
    std::io::stdout().write_all(&out.stdout)?;
    Ok(())
}

fn human(b: u64) -> String {
    crate::human_bytes(b, true)
}

/// `stats`: one table with `--no-stream`, else a new one every second until interrupted (the
/// screen cleared between them on a terminal).
pub fn stats(root: &Path, a: &StatsArgs) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        if !a.no_stream && terminal {
            print!("\x1b[2J\x1b[H");
        }
        stats_once(root, a, if a.no_stream { 500 } else { 1000 })?;
        if a.no_stream {
            return Ok(());
        }
    }
}

fn stats_once(root: &Path, a: &StatsArgs, window_ms: u64) -> Result<()> {
    let list: Vec<Container> = if a.containers.is_empty() {
        containers::list(root)?
            .into_iter()
            .filter(|c| a.all || c.observed().status == Status::Running)
            .collect()
    } else {
        a.containers
            .iter()
            .map(|q| containers::find(root, q))
            .collect::<Result<_>>()?
    };
    let rt = monitor::runtime(root);
    let sample = |c: &Container| {
        rt.record(&c.id)
            .ok()
            .and_then(|r| r.cgroup)
            .map(|cg| husk_runtime::cgroups::stats::read_stats(&cg))
    };
    // CPU % is the usage over a short window, as docker's first sample.
    let first: Vec<_> = list.iter().map(sample).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(window_ms));
    let dt = t0.elapsed().as_nanos() as f64;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (c, before) in list.iter().zip(first) {
        let after = sample(c);
        let (cpu, mem, limit, pids, blk_r, blk_w) = match (&before, &after) {
            (Some(b), Some(s)) => {
                let used = s.cpu.usage.total.saturating_sub(b.cpu.usage.total) as f64;
                let (r, w) =
                    s.blkio
                        .io_service_bytes_recursive
                        .iter()
                        .fold((0, 0), |acc, e| match e.op.as_str() {
                            "Read" | "read" => (acc.0 + e.value, acc.1),
                            "Write" | "write" => (acc.0, acc.1 + e.value),
                            _ => acc,
                        });
                (
                    100.0 * used / dt,
                    s.memory.usage.usage,
                    s.memory.usage.limit,
                    s.pids.current,
                    r,
                    w,
                )
            }
            _ => (0.0, 0, 0, 0, 0, 0),
        };
        let host_mem = host_memory();
        let limit = if limit == 0 || limit > host_mem {
            host_mem
        } else {
            limit
        };
        let mem_pct = if limit > 0 {
            100.0 * mem as f64 / limit as f64
        } else {
            0.0
        };
        json_rows.push(json!({
            "ID": c.short_id(), "Name": c.name, "CPUPerc": format!("{cpu:.2}%"),
            "MemUsage": format!("{} / {}", human(mem), human(limit)), "MemPerc": format!("{mem_pct:.2}%"),
            "BlockIO": format!("{} / {}", human(blk_r), human(blk_w)), "PIDs": pids.to_string(), "NetIO": "0B / 0B",
        }));
        rows.push([
            c.short_id().to_string(),
            c.name.clone(),
            format!("{cpu:.2}%"),
            format!("{} / {}", human(mem), human(limit)),
            format!("{mem_pct:.2}%"),
            "0B / 0B".to_string(),
            format!("{} / {}", human(blk_r), human(blk_w)),
            pids.to_string(),
        ]);
    }
    let mut out = std::io::stdout().lock();
    if a.format == Format::Json {
        for r in json_rows {
            writeln!(out, "{r}")?;
        }
        return Ok(());
    }
    table(
        &mut out,
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ],
        &rows,
    )
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn container_prune(root: &Path) -> Result<()> {
    containers::prune_exits(root);
    let mut out = std::io::stdout().lock();
    let mut first = true;
    for c in containers::list(root)? {
        if c.observed().status == Status::Running || c.busy() {
            continue;
        }
        remove(root, &c, false)?;
        if first {
            writeln!(out, "Deleted Containers:")?;
            first = false;
        }
        writeln!(out, "{}", c.id)?;
    }
    Ok(())
}

pub fn exec(root: &Path, a: &ExecArgs) -> Result<i32> {
    let c = containers::find(root, &a.container)?;
    if c.observed().status != Status::Running {
        bail!("container {} is not running", a.container);
    }
    let rt = monitor::runtime(root);
    let record = rt
        .record(&c.id)
        .map_err(|e| anyhow!("container {}: {e}", a.container))?;
    let mut process = record
        .config
        .process()
        .clone()
        .ok_or_else(|| anyhow!("container {} has no process", a.container))?;
    let mut env = c.env.clone();
    crate::run::merge_env(&mut env, &a.env);
    process.set_args(Some(a.command.clone()));
    process.set_env(Some(env));
    process.set_terminal(Some(a.tty));
    if let Some(w) = &a.workdir {
        process.set_cwd(w.into());
    }
    if let Some(u) = &a.user {
        let rootfs = containers::dir(root, &c.id).join("rootfs");
        let (uid, gid) = crate::run::resolve_user(&rootfs, u)?;
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(None);
        process.set_user(user);
    }
    if a.privileged {
        let all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
            .map_err(|e| anyhow!("cannot read the capability bounding set: {e}"))?
            .iter()
            .map(|c| c.to_string())
            .collect();
        let caps: oci_spec::runtime::LinuxCapabilities =
            serde_json::from_value(json!({"bounding": all, "effective": all, "permitted": all}))
                .context("capabilities")?;
        process.set_capabilities(Some(caps));
    }
    if a.detach || !a.interactive {
        let null = std::fs::File::open("/dev/null")?;
        // SAFETY: dup2 onto our own stdin.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
    if a.detach {
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        // SAFETY: dup2 onto our own stdout and stderr.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
    rt.exec(husk_runtime::ExecOpts {
        id: c.id.clone(),
        process,
        detach: a.detach,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
    })
    .map(|code| if a.detach { 0 } else { code })
    .map_err(|e| anyhow!("exec: {e}"))
}

pub fn volume(root: &Path, cmd: &VolumeCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        VolumeCommand::Create(a) => {
            let name = match &a.name {
                Some(n) => n.clone(),
                None => crate::run::random_id()?,
            };
            volumes::create(root, &name, crate::run::parse_labels(&a.label), false)?;
            writeln!(out, "{name}")?;
        }
        VolumeCommand::Ls(a) => {
            let list = volumes::list(root)?;
            if a.quiet {
                for v in &list {
                    writeln!(out, "{}", v.name)?;
                }
            } else if a.format == Format::Json {
                for v in &list {
                    writeln!(out, "{}", serde_json::to_string(v)?)?;
                }
            } else {
                let rows: Vec<[String; 2]> = list
                    .iter()
                    .map(|v| ["local".to_string(), v.name.clone()])
                    .collect();
                table(&mut out, ["DRIVER", "VOLUME NAME"], &rows)?;
            }
        }
        VolumeCommand::Rm(a) => {
            drop(out);
            each(&a.volumes, |v| {
                volumes::remove(root, v, a.force)?;
                println!("{v}");
                Ok(())
            })?;
        }
        VolumeCommand::Inspect(a) => {
            let list = a
                .volumes
                .iter()
                .map(|v| volumes::load(root, v))
                .collect::<Result<Vec<_>>>()?;
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        VolumeCommand::Prune(a) => {
            writeln!(out, "Deleted Volumes:")?;
            for v in volumes::list(root)? {
                if (v.anonymous || a.all) && volumes::users(root, &v.name)?.is_empty() {
                    volumes::remove(root, &v.name, false)?;
                    writeln!(out, "{}", v.name)?;
                }
            }
        }
    }
    Ok(())
}
