//! husk-runtime: the runc-compatible command line over the `husk_runtime` library.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Parser;
use husk_cli::runtime::{Command, ListFormat, LogFormat, Rootless, RuntimeCli, UpdateArgs};
use husk_runtime::logging::{Format, Logger};
use husk_runtime::{CreateOpts, ExecOpts, Runtime};
use nix::sys::signal::Signal;

fn main() {
    let cli = RuntimeCli::parse();
    // `--preserve-fds N` hands fds 3..3+N to the container. If the caller did not open them, the
    // numbers would be ours by the time the container starts (lock files, sockets): refuse.
    if let Some(n) = preserved_fds(&cli.command) {
        if let Some(fd) =
            (3..3 + n as i32).find(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0)
        {
            eprintln!("husk-runtime: --preserve-fds {n}: fd {fd} is not open in the caller");
            std::process::exit(1);
        }
    }
    let log = Logger::new(
        cli.global.log.as_deref(),
        match cli.global.log_format {
            LogFormat::Text => Format::Text,
            LogFormat::Json => Format::Json,
        },
        cli.global.debug,
    );
    let code = match dispatch(&cli, &log) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            log.error(&msg);
            // With a log file, containerd and conmon read the error from there; keep stderr
            // saying it too for a person at a terminal.
            if cli.global.log.is_some() {
                eprintln!("husk-runtime: {msg}");
            }
            1
        }
    };
    std::process::exit(code);
}

fn preserved_fds(cmd: &Command) -> Option<u32> {
    match cmd {
        Command::Create(a) => Some(a.preserve_fds),
        Command::Run(a) => Some(a.create.preserve_fds),
        Command::Exec(a) => Some(a.preserve_fds),
        _ => None,
    }
    .filter(|n| *n > 0)
}

fn parse_signal(s: &str) -> Result<Signal> {
    husk_runtime::util::parse_signal(s).ok_or_else(|| anyhow::anyhow!("invalid signal {s:?}"))
}

fn dispatch(cli: &RuntimeCli, log: &Logger) -> Result<i32> {
    let root = cli
        .global
        .root
        .clone()
        .unwrap_or_else(Runtime::default_root);
    let rootless = match cli.global.rootless {
        Rootless::True => Some(true),
        Rootless::False => Some(false),
        Rootless::Auto => None,
    };
    let rt = Runtime::new(root, log.clone())
        .with_systemd_cgroup(cli.global.systemd_cgroup)
        .with_rootless(rootless);
    match &cli.command {
        Command::Create(a) => {
            rt.create(create_opts(a))?;
        }
        Command::Start(a) => rt.start(&a.id)?,
        Command::State(a) => {
            let st = rt.state(&a.id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Command::Kill(a) => rt.kill(&a.id, parse_signal(&a.signal)?, a.all)?,
        Command::Delete(a) => rt.delete(&a.id, a.force)?,
        Command::Run(a) => return Ok(rt.run(create_opts(&a.create), a.detach, a.keep)?),
        Command::Exec(a) => {
            let process = exec_process(&rt, a)?;
            let code = rt.exec(ExecOpts {
                id: a.id.clone(),
                process,
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                console_socket: a.console_socket.clone(),
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
                sub_cgroups: a.sub_cgroups.clone(),
            })?;
            return Ok(if a.detach { 0 } else { code });
        }
        Command::Ps(a) => {
            let pids = rt.ps(&a.id)?;
            match a.format {
                ListFormat::Json => println!("{}", serde_json::to_string(&pids)?),
                ListFormat::Table => print_ps_table(&pids, &a.ps_args)?,
            }
        }
        Command::List(a) => {
            let list = rt.list()?;
            if a.quiet {
                for s in &list {
                    println!("{}", s.id);
                }
            } else if a.format == ListFormat::Json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                let mut out = String::from("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n");
                for s in &list {
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\n",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        s.owner
                    ));
                }
                print!("{out}");
            }
        }
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&husk_runtime::features::features())?
        ),
        Command::Spec(a) => {
            let path = a.bundle.join("config.json");
            if path.exists() {
                bail!("{} exists: remove it first", path.display());
            }
            let text =
                serde_json::to_string_pretty(&husk_runtime::features::default_spec(a.rootless))?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Command::Update(a) => rt.update(&a.id, &update_resources(a)?)?,
        Command::Pause(a) => rt.pause(&a.id)?,
        Command::Resume(a) => rt.resume(&a.id)?,
        Command::Events(a) => {
            let interval = husk_runtime::events::parse_duration(&a.interval)?;
            rt.events(&a.id, interval, a.stats, &mut std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

fn create_opts(a: &husk_cli::runtime::CreateArgs) -> CreateOpts {
    CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        console_fd: None,
    }
}

/// The process `exec` runs: --process FILE, or the container's own process with the command
/// and flags laid over it (runc's rules).
fn exec_process(
    rt: &Runtime,
    a: &husk_cli::runtime::ExecArgs,
) -> Result<oci_spec::runtime::Process> {
    if let Some(path) = &a.process {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return serde_json::from_slice(&data)
            .with_context(|| format!("invalid process JSON {}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let record = rt.record(&a.id)?;
    let mut p = record.config.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    // `--env NAME=VALUE` replaces the config's NAME, as runc's does.
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let name = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>()?, Some(g.parse::<u32>()?)),
            None => (
                u.parse::<u32>()
                    .with_context(|| format!("--user {u:?} is not UID[:GID]"))?,
                None,
            ),
        };
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let extra: Vec<oci_spec::runtime::Capability> = a
            .cap
            .iter()
            .map(|c| {
                let name = if c.starts_with("CAP_") {
                    c.clone()
                } else {
                    format!("CAP_{}", c.to_ascii_uppercase())
                };
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .with_context(|| format!("unknown capability {c:?}"))
            })
            .collect::<Result<_>>()?;
        let add = |set: Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.unwrap_or_default();
            s.extend(extra.iter().copied());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding().clone()));
        caps.set_effective(add(caps.effective().clone()));
        caps.set_permitted(add(caps.permitted().clone()));
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if a.apparmor.is_some() {
        p.set_apparmor_profile(a.apparmor.clone());
    }
    if a.process_label.is_some() {
        p.set_selinux_label(a.process_label.clone());
    }
    Ok(p)
}

fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    let mut v = match &a.resources {
        Some(p) if p == Path::new("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read resources from stdin")?;
            serde_json::from_str(&s).context("invalid resources JSON on stdin")?
        }
        Some(p) => {
            let s = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&s)
                .with_context(|| format!("invalid resources JSON in {}", p.display()))?
        }
        None => serde_json::json!({}),
    };
    let mut put = |section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = val;
    };
    if let Some(x) = a.memory {
        put("memory", "limit", x.into())
    }
    if let Some(x) = a.memory_swap {
        put("memory", "swap", x.into())
    }
    if let Some(x) = a.memory_reservation {
        put("memory", "reservation", x.into())
    }
    if let Some(x) = a.cpu_quota {
        put("cpu", "quota", x.into())
    }
    if let Some(x) = a.cpu_period {
        put("cpu", "period", x.into())
    }
    if let Some(x) = a.cpu_shares {
        put("cpu", "shares", x.into())
    }
    if let Some(x) = &a.cpuset_cpus {
        put("cpu", "cpus", x.clone().into())
    }
    if let Some(x) = &a.cpuset_mems {
        put("cpu", "mems", x.clone().into())
    }
    if let Some(x) = a.pids_limit {
        put("pids", "limit", x.into())
    }
    if let Some(x) = a.blkio_weight {
        put("blockIO", "weight", x.into())
    }
    serde_json::from_value(v).context("invalid resources")
}

fn print_ps_table(pids: &[i32], ps_args: &[String]) -> Result<()> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("cannot run ps")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{header}")?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(())
}
