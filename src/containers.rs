//! The container and volume commands: flags → engine options, reports → docker's tables and
//! JSON, and docker's exit codes.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Result};
use husk_cli::husk::{
    CpArgs, ExecArgs, KillArgs, LimitArgs, LogsArgs, PsArgs, PullPolicy, RmArgs, RunArgs,
    StartArgs, StatsArgs, StopArgs, UpdateArgs, VolumeCommand,
};
use husk_engine::options::{self, Filter, Mount, Network, Seccomp, SecurityOpt};
use husk_engine::{
    Attach, Container, Engine, ExecOptions, ListOptions, LogOptions, PullEvent, RunOptions, Status,
    Stream,
};
use serde_json::json;

use crate::progress::PullDisplay;
use crate::table::{human_bytes, table, table_of};
use crate::template::{write_items, Output};
use crate::timefmt;

/// A Go duration flag (`--health-interval 1s`), the flag named in its error.
fn duration(flag: &str, v: Option<&str>) -> husk_engine::Result<Option<std::time::Duration>> {
    v.map(|s| {
        options::parse_duration(s).map_err(|e| husk_engine::Error::Invalid(format!("{flag}: {e}")))
    })
    .transpose()
}

/// `run`'s flags as engine options.
fn run_options(a: &RunArgs) -> husk_engine::Result<RunOptions> {
    let mut o = RunOptions {
        built: None,
        image: a.image.clone(),
        pull: match a.pull {
            PullPolicy::Always => options::PullPolicy::Always,
            PullPolicy::Missing => options::PullPolicy::Missing,
            PullPolicy::Never => options::PullPolicy::Never,
        },
        platform: a.platform.clone(),
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        name: a.name.clone(),
        auto_remove: a.rm,
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        labels: options::parse_labels(&a.label),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        network: match &a.network {
            Some(n) => Network::parse(n)?,
            None => Network::Default,
        },
        publish: a
            .publish
            .iter()
            .map(|p| options::parse_publish(p))
            .collect::<husk_engine::Result<Vec<_>>>()?
            .concat(),
        publish_all: a.publish_all,
        network_aliases: a.network_alias.clone(),
        add_hosts: a
            .add_host
            .iter()
            .map(|h| options::parse_add_host(h))
            .collect::<husk_engine::Result<_>>()?,
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        read_only: a.read_only,
        memory: memory(&a.limits)?,
        memory_swap: memory_swap(&a.limits)?,
        cpu_shares: a.limits.cpu_shares,
        cpus: a.limits.cpus,
        pids_limit: a.limits.pids_limit,
        ulimits: a
            .ulimit
            .iter()
            .map(|u| options::parse_ulimit(u))
            .collect::<husk_engine::Result<_>>()?,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        no_new_privileges: false,
        seccomp: Seccomp::Default,
        init: a.init,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        timeout: a.timeout,
        mounts: Vec::new(),
        tty: a.tty,
        interactive: a.interactive,
        restart: options::RestartPolicy::parse(&a.restart)?,
        die_with_parent: a.die_with_parent,
        userns: options::Userns::parse(a.userns.as_deref().unwrap_or("host"))?,
        id_maps: options::IdMaps::parse(&a.uidmap, &a.gidmap)?,
        shm_size: flag_bytes("--shm-size", a.shm_size.as_deref())?,
        sysctls: a
            .sysctl
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(husk_engine::Error::Invalid(format!(
                    "invalid --sysctl {kv:?}: use NAME=VALUE"
                ))),
            })
            .collect::<husk_engine::Result<_>>()?,
        devices: a
            .device
            .iter()
            .filter(|d| !husk_engine::is_cdi_name(d))
            .map(|d| options::DeviceMapping::parse(d))
            .collect::<husk_engine::Result<_>>()?,
        cdi_devices: a
            .device
            .iter()
            .filter(|d| husk_engine::is_cdi_name(d))
            .cloned()
            .collect(),
        gpus: a.gpus.clone(),
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        group_add: a.group_add.clone(),
        ipc: options::NamespaceMode::parse("ipc", a.ipc.as_deref().unwrap_or(""))?,
        pid: options::NamespaceMode::parse("pid", a.pid.as_deref().unwrap_or(""))?,
        uts: options::NamespaceMode::parse("uts", a.uts.as_deref().unwrap_or(""))?,
        oom_kill_disable: a.oom_kill_disable,
        memory_reservation: flag_bytes("--memory-reservation", a.memory_reservation.as_deref())?,
        blkio_weight: a.blkio_weight,
        device_read_bps: rates(&a.device_read_bps, true)?,
        device_write_bps: rates(&a.device_write_bps, true)?,
        device_read_iops: rates(&a.device_read_iops, false)?,
        device_write_iops: rates(&a.device_write_iops, false)?,
        volumes_from: a.volumes_from.clone(),
        cidfile: a.cidfile.clone(),
        rootfs: a.rootfs.then(|| {
            std::fs::canonicalize(&a.image).unwrap_or_else(|_| std::path::PathBuf::from(&a.image))
        }),
        report: a.report.is_some() || a.report_file.is_some(),
        detach_keys: husk_engine::attach::parse_detach_keys(&a.detach_keys)?,
        attach: options::Streams::parse(&a.attach_streams)?,
        health: options::HealthOptions {
            cmd: a.health_cmd.clone(),
            interval: duration("--health-interval", a.health_interval.as_deref())?,
            timeout: duration("--health-timeout", a.health_timeout.as_deref())?,
            start_period: duration("--health-start-period", a.health_start_period.as_deref())?,
            retries: a.health_retries,
            disabled: a.no_healthcheck,
        },
        log: if a.log_driver.is_some() || !a.log_opt.is_empty() {
            Some(options::LogConfig::parse(
                a.log_driver.as_deref(),
                &a.log_opt,
            )?)
        } else {
            None
        },
    };
    for f in &a.label_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            husk_engine::Error::Invalid(format!("cannot read the label file {}: {e}", f.display()))
        })?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        for (k, v) in options::parse_labels(&lines) {
            // Labels on the command line win over the file's.
            o.labels.entry(k).or_insert(v);
        }
    }
    for s in &a.security_opt {
        match options::parse_security_opt(s)? {
            SecurityOpt::NoNewPrivileges(on) => o.no_new_privileges = on,
            SecurityOpt::Seccomp(s) => o.seccomp = s,
            SecurityOpt::Ignored => {}
        }
    }
    // docker's order: -v, then --mount, then --tmpfs.
    for v in &a.volume {
        o.mounts.push(Mount::parse_volume(v)?);
    }
    for m in &a.mount {
        o.mounts.push(Mount::parse_mount(m)?);
    }
    o.mounts
        .extend(a.tmpfs.iter().map(|t| Mount::parse_tmpfs(t)));
    Ok(o)
}

/// Pull progress on stderr (stdout is the container's), and docker's "Unable to find" line.
pub fn show_pull(display: &PullDisplay, e: PullEvent) {
    match e {
        PullEvent::NotFound(r) => eprintln!("Unable to find image '{r}' locally"),
        PullEvent::Progress(p) => display.event(p),
    }
}

/// `run`: exits with the container's code, or docker's 125/126/127 when it could not run.
pub fn run(engine: &Engine, a: &RunArgs) -> ! {
    if a.tty && a.interactive && !a.detach && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // docker's check: a terminal for the container needs one at this end.
        eprintln!("husk: the input device is not a TTY");
        std::process::exit(1);
    }
    let result = run_options(a).and_then(|opts| {
        if a.detach && !a.attach_streams.is_empty() {
            return Err(husk_engine::Error::Invalid(
                "conflicting options: -a and -d".into(),
            ));
        }
        let attach = if a.detach {
            Attach::Detached
        } else if a.rm && opts.attach.is_none() {
            // An attached `run --rm` hands the container our stdio: nothing to log, it goes.
            Attach::Direct
        } else {
            Attach::Logged
        };
        let display = PullDisplay::new(false, true);
        engine.run(&opts, attach, &|e| show_pull(&display, e))
    });
    match result {
        // The detach keys left it running: nothing to say, as docker says nothing.
        Ok(r) if r.detached => std::process::exit(0),
        Ok(r) => match r.exit {
            None => {
                println!("{}", r.id);
                std::process::exit(0)
            }
            Some(exit) => {
                if let Some(why) = &exit.killed {
                    eprintln!("husk: {why}");
                }
                if a.report.is_some() || a.report_file.is_some() {
                    if let Err(e) = report(a, &r.name, &r.id, &exit) {
                        eprintln!("husk: {e:#}");
                    }
                }
                std::process::exit(exit.code)
            }
        },
        Err(e) => {
            eprintln!("husk: {e}");
            std::process::exit(e.exit_code())
        }
    }
}

/// `--report`: what the run used, as one short block of text or as JSON, on stderr or in
/// `--report-file`.
fn report(a: &RunArgs, name: &str, id: &str, exit: &husk_engine::Exit) -> Result<()> {
    let json = match a.report.as_deref() {
        Some(f) => f == "json",
        None => true, // only --report-file: a file is for programs
    };
    let text = match &exit.usage {
        None => {
            if json {
                serde_json::to_string(&json!({"container": name, "id": id,
                    "exit_code": exit.code, "usage": null}))?
            } else {
                format!("husk: report: container {name} ended with code {}; it never ran, nothing was measured", exit.code)
            }
        }
        Some(u) if json => {
            let mut v = serde_json::to_value(u)?;
            v["container"] = json!(name);
            v["id"] = json!(id);
            serde_json::to_string(&v)?
        }
        Some(u) => {
            let peak = |v: Option<u64>, f: &dyn Fn(u64) -> String| {
                v.map_or_else(|| "unknown".to_string(), f)
            };
            format!(
                "husk: report: container {name} {} after {:.2} s\n  cpu {:.2} s user, {:.2} s system | memory peak {} | io {} read, {} written | pids peak {} | OOM kills {}",
                u.exit_reason,
                u.wall_seconds,
                u.cpu_user_seconds,
                u.cpu_system_seconds,
                peak(u.memory_peak_bytes, &|b| human_bytes(b, true)),
                human_bytes(u.io_read_bytes, true),
                human_bytes(u.io_write_bytes, true),
                peak(u.pids_peak, &|p| p.to_string()),
                u.oom_kills,
            )
        }
    };
    match &a.report_file {
        Some(f) => std::fs::write(f, format!("{text}\n"))
            .map_err(|e| anyhow::anyhow!("cannot write the report to {}: {e}", f.display())),
        None => {
            eprintln!("{text}");
            Ok(())
        }
    }
}

/// A size flag's value, the flag named in the error.
fn flag_bytes(flag: &str, v: Option<&str>) -> husk_engine::Result<Option<i64>> {
    v.map(|v| {
        options::parse_bytes(v).map_err(|e| husk_engine::Error::Invalid(format!("{flag} {v}: {e}")))
    })
    .transpose()
}

/// `--device-read-bps` and kin.
fn rates(list: &[String], bytes: bool) -> husk_engine::Result<Vec<(std::path::PathBuf, u64)>> {
    list.iter()
        .map(|s| options::parse_device_rate(s, bytes))
        .collect()
}

fn memory(l: &LimitArgs) -> husk_engine::Result<Option<i64>> {
    l.memory.as_deref().map(options::parse_bytes).transpose()
}

/// `--memory-swap`: bytes, or -1 for no limit on swap.
fn memory_swap(l: &LimitArgs) -> husk_engine::Result<Option<i64>> {
    Ok(match l.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(options::parse_bytes(s)?),
        None => None,
    })
}

/// `CONTAINER:PATH` (a name before the colon, no slash in it) or a host path (`./a:b` is one).
fn container_part(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

/// `cp`: one side a container, the other the host or `-`; docker's message on stderr.
pub fn cp(engine: &Engine, a: &CpArgs) -> Result<()> {
    use husk_engine::CopyOutside;
    let copied = match (container_part(&a.src), container_part(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some((c, p)), None) => {
            if a.dest == "-" {
                let mut out = std::io::stdout().lock();
                engine.copy_out(c, p, CopyOutside::TarOut(&mut out))?;
                return Ok(());
            }
            engine.copy_out(c, p, CopyOutside::Host(a.dest.clone().into()))?
        }
        (None, Some((c, p))) => {
            if a.src == "-" {
                let mut input = std::io::stdin().lock();
                engine.copy_in(c, CopyOutside::TarIn(&mut input), p)?;
                return Ok(());
            }
            engine.copy_in(c, CopyOutside::Host(a.src.clone().into()), p)?
        }
    };
    if !a.quiet {
        eprintln!(
            "Successfully copied {} to {}",
            human_bytes(copied, false),
            a.dest
        );
    }
    Ok(())
}

/// `update`: new limits for each container; docker prints each name.
pub fn update(engine: &Engine, a: &UpdateArgs) -> Result<()> {
    let l = &a.limits;
    let opts = husk_engine::UpdateOptions {
        memory: memory(l)?,
        memory_swap: memory_swap(l)?,
        cpus: l.cpus,
        cpu_shares: l.cpu_shares,
        pids_limit: l.pids_limit,
    };
    each(&a.containers, |q| {
        engine.update(q, &opts)?;
        println!("{q}");
        Ok(())
    })
}

/// `create`: the new container's id, or docker's 125 and one line.
pub fn create(engine: &Engine, a: &RunArgs) -> ! {
    let display = PullDisplay::new(false, true);
    match run_options(a).and_then(|opts| engine.create(&opts, &|e| show_pull(&display, e))) {
        Ok(id) => {
            println!("{id}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("husk: {e}");
            std::process::exit(e.exit_code())
        }
    }
}

/// Run `f` for each name; report each failure in its line, exit 1 at the end if any failed
/// (docker's way).
pub fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = 0;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("husk: {e:#}");
            failed += 1;
        }
    }
    // docker prints each failure and exits 1, with no summary line.
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

pub fn stop(engine: &Engine, a: &StopArgs) -> Result<()> {
    each(&a.containers, |q| {
        engine.stop(q, a.signal.as_deref(), a.time)?;
        println!("{q}");
        Ok(())
    })
}

pub fn restart(engine: &Engine, a: &StopArgs) -> Result<()> {
    each(&a.containers, |q| {
        engine.restart(q, a.signal.as_deref(), a.time)?;
        println!("{q}");
        Ok(())
    })
}

pub fn kill(engine: &Engine, a: &KillArgs) -> Result<()> {
    each(&a.containers, |q| {
        engine.kill(q, &a.signal)?;
        println!("{q}");
        Ok(())
    })
}

pub fn rm(engine: &Engine, a: &RmArgs) -> Result<()> {
    each(&a.containers, |q| {
        engine.remove(q, a.force, a.volumes)?;
        println!("{q}");
        Ok(())
    })
}

pub fn wait(engine: &Engine, names: &[String]) -> Result<()> {
    each(names, |q| {
        println!("{}", engine.wait(q)?);
        Ok(())
    })
}

/// `start`; with `-a` it exits with the container's code.
pub fn start(engine: &Engine, a: &StartArgs) -> Result<()> {
    if a.all {
        let done = engine.start_all()?;
        for name in &done.started {
            println!("{name}");
        }
        for (name, e) in &done.failed {
            eprintln!("husk: cannot start {name}: {e}");
        }
        std::process::exit(i32::from(!done.failed.is_empty()));
    }
    if a.attach && a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let keys = husk_engine::attach::parse_detach_keys(&a.detach_keys)?;
    let mut code = 0;
    each(&a.containers, |q| {
        let exit = if a.attach && a.interactive {
            engine.start_interactive(q, &keys)?
        } else {
            engine.start(q, a.attach)?
        };
        if let Some(exit) = exit {
            if let Some(why) = exit.killed {
                eprintln!("husk: {why}");
            }
            code = exit.code;
        }
        if !a.attach {
            println!("{q}");
        }
        Ok(())
    })?;
    std::process::exit(code)
}

fn status_text(engine: &Engine, c: &Container) -> String {
    let st = c.observed();
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            timefmt::human_duration(
                husk_engine::time::now_secs()
                    - st.started_at
                        .as_deref()
                        .and_then(husk_engine::time::parse)
                        .unwrap_or(0.0)
            ),
            if engine.paused(c) {
                " (Paused)".to_string()
            } else {
                match c.state.health.as_ref().map(|h| h.status.as_str()) {
                    Some("starting") => " (health: starting)".to_string(),
                    Some(status) => format!(" ({status})"),
                    None => String::new(),
                }
            }
        ),
        Status::Exited if c.state.restarting && c.busy() => format!(
            "Restarting ({}) {}",
            st.exit_code,
            st.finished_at
                .as_deref()
                .map(timefmt::ago)
                .unwrap_or_default()
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

/// docker's column titles of `ps`'s template fields.
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

pub fn ps(engine: &Engine, a: &PsArgs) -> Result<()> {
    let opts = ListOptions {
        all: a.all,
        filters: a
            .filter
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<husk_engine::Result<_>>()?,
        latest: a.latest,
    };
    let list = engine.list(&opts)?;
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
    let output = Output::parse(&a.format)?;
    if !matches!(output, Output::Table) {
        let items: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                let st = c.observed();
                let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                json!({
                    "ID": id(c), "Image": c.image, "Command": command_text(c), "CreatedAt": c.created,
                    "RunningFor": timefmt::ago(&c.created), "State": st.status.as_str(),
                    "Status": status_text(engine, c), "Names": c.name, "Labels": labels.join(","),
                    "Mounts": c.mounts.iter().map(|m| if m.name.is_empty() { m.source.clone() } else { m.name.clone() }).collect::<Vec<_>>(),
                    "Ports": engine.ports_column(c), "Networks": c.network,
                })
            })
            .collect();
        return write_items(&mut out, &output, &items, PS_HEADERS);
    }
    let rows: Vec<[String; 7]> = list
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
                status_text(engine, c),
                engine.ports_column(c),
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
        "PORTS",
        "NAMES",
    ];
    table(&mut out, header, &rows)
}

pub fn logs(engine: &Engine, a: &LogsArgs) -> Result<()> {
    let since = timefmt::time_arg("--since", &a.since)?;
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number or \"all\""))?,
        ),
    };
    let opts = LogOptions {
        since,
        tail,
        follow: a.follow,
    };
    engine.logs(&a.container, &opts, &mut |l| {
        let text = if a.details {
            // docker's form: `key=value,…` (query-escaped), a space, the line.
            let attrs: Vec<String> = l
                .attrs
                .iter()
                .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
                .collect();
            format!("{} {}", attrs.join(","), l.text)
        } else {
            l.text
        };
        let text = if a.timestamps {
            format!("{} {text}", l.time)
        } else {
            text
        };
        if l.stream == Stream::Stderr {
            std::io::stderr().write_all(text.as_bytes())?;
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Go's `url.QueryEscape`, as docker's `logs --details` writes attributes.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn inspect(engine: &Engine, names: &[String]) -> Result<()> {
    let list = names
        .iter()
        .map(|n| engine.inspect(n))
        .collect::<husk_engine::Result<Vec<_>>>()?;
    println!("{}", serde_json::to_string_pretty(&list)?);
    Ok(())
}

pub fn top(engine: &Engine, q: &str) -> Result<()> {
    let t = engine.top(q)?;
    let titles: Vec<&str> = t.titles.iter().map(String::as_str).collect();
    let rows: Vec<&[String]> = t.processes.iter().map(Vec::as_slice).collect();
    table_of(&mut std::io::stdout().lock(), &titles, &rows)
}

/// docker's column titles of `stats`'s template fields.
const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// `stats`: one table with `--no-stream`, else a new one every second until interrupted (the
/// screen cleared between them on a terminal).
pub fn stats(engine: &Engine, a: &StatsArgs) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        if !a.no_stream && terminal {
            print!("\x1b[2J\x1b[H");
        }
        // CPU % is the usage over a short window, as docker's first sample.
        let window = Duration::from_millis(if a.no_stream { 500 } else { 1000 });
        let list = engine.stats(&a.containers, a.all, window)?;
        let human = |b| human_bytes(b, true);
        let mut out = std::io::stdout().lock();
        let output = Output::parse(&a.format)?;
        if !matches!(output, Output::Table) {
            let items: Vec<serde_json::Value> = list
                .iter()
                .map(|s| json!({
                    "ID": &s.id[..12], "Name": s.name, "CPUPerc": format!("{:.2}%", s.cpu_percent),
                    "MemUsage": format!("{} / {}", human(s.memory_usage), human(s.memory_limit)),
                    "MemPerc": format!("{:.2}%", mem_percent(s)),
                    "BlockIO": format!("{} / {}", human(s.block_read), human(s.block_written)),
                    "PIDs": s.pids.to_string(),
                    "NetIO": format!("{} / {}", human_bytes(s.net_received, false), human_bytes(s.net_sent, false)),
                    "Container": s.name,
                }))
                .collect();
            write_items(&mut out, &output, &items, STATS_HEADERS)?;
        } else {
            let rows: Vec<[String; 8]> = list
                .iter()
                .map(|s| {
                    [
                        s.id[..12].to_string(),
                        s.name.clone(),
                        format!("{:.2}%", s.cpu_percent),
                        format!("{} / {}", human(s.memory_usage), human(s.memory_limit)),
                        format!("{:.2}%", mem_percent(s)),
                        format!(
                            "{} / {}",
                            human_bytes(s.net_received, false),
                            human_bytes(s.net_sent, false)
                        ),
                        format!("{} / {}", human(s.block_read), human(s.block_written)),
                        s.pids.to_string(),
                    ]
                })
                .collect();
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
            )?;
        }
        if a.no_stream {
            return Ok(());
        }
    }
}

fn mem_percent(s: &husk_engine::Stats) -> f64 {
    if s.memory_limit > 0 {
        100.0 * s.memory_usage as f64 / s.memory_limit as f64
    } else {
        0.0
    }
}

pub fn container_prune(engine: &Engine) -> Result<()> {
    let removed = engine.prune_containers()?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Containers:")?;
    }
    for id in removed {
        writeln!(out, "{id}")?;
    }
    Ok(())
}

/// `exec`: exits with the process's code, or docker's 125/126/127.
pub fn exec(engine: &Engine, a: &ExecArgs) -> ! {
    if a.tty && a.interactive && !a.detach && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("husk: the input device is not a TTY");
        std::process::exit(1);
    }
    // What the process gets of our stdio: stdin only with -i, nothing detached.
    let null = |write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open("/dev/null")
    };
    if a.detach || !a.interactive {
        if let Ok(n) = null(false) {
            // SAFETY: dup2 onto our own stdin.
            unsafe { libc::dup2(n.as_raw_fd(), 0) };
        }
    }
    if a.detach {
        if let Ok(n) = null(true) {
            // SAFETY: dup2 onto our own stdout and stderr.
            unsafe {
                libc::dup2(n.as_raw_fd(), 1);
                libc::dup2(n.as_raw_fd(), 2);
            }
        }
    }
    let opts = ExecOptions {
        command: a.command.clone(),
        env: a.env.clone(),
        tty: a.tty,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        privileged: a.privileged,
        detach: a.detach,
    };
    match engine.exec(&a.container, &opts) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("husk: {e}");
            // docker: 126/127 for the command, 1 for a container that is not there or not
            // running (as rm, stop and logs), 125 for husk's own failures.
            let code = match e.root() {
                husk_engine::Error::NoSuchContainer(_) | husk_engine::Error::Conflict(_) => 1,
                _ => e.exit_code(),
            };
            std::process::exit(code)
        }
    }
}

pub fn volume(engine: &Engine, cmd: &VolumeCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        VolumeCommand::Create(a) => {
            let name = engine.create_volume(a.name.as_deref(), options::parse_labels(&a.label))?;
            writeln!(out, "{name}")?;
        }
        VolumeCommand::Ls(a) => {
            let list = engine.volumes()?;
            if a.quiet {
                for v in &list {
                    writeln!(out, "{}", v.name)?;
                }
            } else if let output @ (Output::Json | Output::Template { .. }) =
                Output::parse(&a.format)?
            {
                let items: Vec<serde_json::Value> = list
                    .iter()
                    .map(|v| {
                        let mut j = serde_json::to_value(v).unwrap_or_default();
                        j["Driver"] = json!("local");
                        j["Scope"] = json!("local");
                        j
                    })
                    .collect();
                write_items(
                    &mut out,
                    &output,
                    &items,
                    &[
                        ("Driver", "DRIVER"),
                        ("Name", "VOLUME NAME"),
                        ("Mountpoint", "MOUNTPOINT"),
                        ("Scope", "SCOPE"),
                    ],
                )?;
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
                engine.remove_volume(v, a.force)?;
                println!("{v}");
                Ok(())
            })?;
        }
        VolumeCommand::Inspect(a) => {
            let list = a
                .volumes
                .iter()
                .map(|v| engine.volume(v))
                .collect::<husk_engine::Result<Vec<_>>>()?;
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        VolumeCommand::Prune(a) => {
            writeln!(out, "Deleted Volumes:")?;
            for name in engine.prune_volumes(a.all)? {
                writeln!(out, "{name}")?;
            }
        }
    }
    Ok(())
}

/// `diff CONTAINER`: docker's `A /path`, `C /path`, `D /path` lines.
pub fn diff(engine: &Engine, container: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for c in engine.diff(container)? {
        writeln!(out, "{} {}", c.kind.letter(), c.path)?;
    }
    Ok(())
}

/// `export [-o FILE] CONTAINER`: the tar on stdout (never a terminal) or in FILE, written
/// beside it and renamed, so a failed export leaves no half archive.
pub fn export(engine: &Engine, a: &husk_cli::husk::ExportArgs) -> Result<()> {
    crate::images::write_archive(a.output.as_deref(), |w| {
        engine.export(&a.container, w)?;
        Ok(())
    })
}

/// `attach CONTAINER`: exits with the container's code, or 0 when the detach keys leave it.
pub fn attach(engine: &Engine, a: &husk_cli::husk::AttachArgs) -> Result<()> {
    let keys = husk_engine::attach::parse_detach_keys(&a.detach_keys)?;
    let code = engine
        .attach(&a.container, !a.no_stdin, &keys, a.sig_proxy)?
        .unwrap_or(0);
    std::process::exit(code)
}
