//! `exec`: a new process inside a container's namespaces, cgroup and root.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::setns;
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::channel::{self, Channel, Msg};
use crate::container::{check_lsm, Runtime};
use crate::error::{Context, Error, Result};
use crate::namespaces::{clone_flag, differs_from_ours, proc_name};
use crate::state::Status;
use crate::{cgroups, init, process, supervise, tty};

#[derive(Debug, Default)]
pub struct ExecOpts {
    pub id: String,
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Exec into a paused container too (runc's `--ignore-paused`): the process is frozen with
    /// it from the moment it joins the cgroup, so `exec` returns only after a resume.
    pub ignore_paused: bool,
    /// Existing sub-cgroups of the container to run the process in (runc's `--cgroup`):
    /// `PATH`, or `CONTROLLER[,CONTROLLER]:PATH` for some v1 hierarchies only.
    pub sub_cgroups: Vec<String>,
}

/// Namespaces in the order they are joined: user first, mount last.
const ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

use crate::init::exit;

impl Runtime {
    /// Run a process in the container. Detached: returns its host pid. Attached: waits and
    /// returns its exit code.
    pub fn exec(&self, mut opts: ExecOpts) -> Result<i32> {
        let record = self.record(&opts.id)?;
        // Without a umask of its own, an exec'd process keeps its caller's (the spec; runc's
        // exec does the same, while a container's init gets 0022).
        if opts.process.user().umask().is_none() {
            let current = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            nix::sys::stat::umask(current);
            let mut user = opts.process.user().clone();
            user.set_umask(Some(current.bits()));
            opts.process.set_user(user);
        }
        let status = self.state(&opts.id)?.status;
        let allowed = matches!(status, Status::Running | Status::Created)
            || (status == Status::Paused && opts.ignore_paused);
        if !allowed {
            return Err(Error::WrongState {
                id: opts.id.clone(),
                status: status.to_string(),
                why: if status == Status::Paused {
                    "exec into a paused container needs --ignore-paused".into()
                } else {
                    "exec needs a running container".into()
                },
            });
        }
        let mut record = record;
        if let Some(cg) = &record.cgroup {
            record.cgroup = Some(sub_cgroup(cg, &opts.sub_cgroups)?);
        } else if !opts.sub_cgroups.is_empty() {
            return Err(Error::Unsupported(format!(
                "container {} has no cgroup for --cgroup to be under",
                opts.id
            )));
        }
        crate::spec::validate_process(&opts.process)?;
        check_lsm(&opts.process)?;
        self.warn_unraisable_ambient(&opts.process)?;
        let pid = record.pid;
        let mut join: Vec<(LinuxNamespaceType, OwnedFd)> = Vec::new();
        for t in ORDER {
            let name = proc_name(t);
            if std::path::Path::new(&format!("/proc/{pid}/ns/{name}")).exists()
                && differs_from_ours(pid, name)?
            {
                let f = fs::File::open(format!("/proc/{pid}/ns/{name}")).ctx(format_args!(
                    "cannot open {name} namespace of container {}",
                    opts.id
                ))?;
                join.push((t, f.into()));
            }
        }
        let root: OwnedFd = fs::File::open(format!("/proc/{pid}/root"))
            .ctx(format_args!(
                "cannot open the root of container {}",
                opts.id
            ))?
            .into();

        let terminal = opts.process.terminal() == Some(true);
        let (console, proxy): (Option<OwnedFd>, Option<UnixStream>) =
            match (terminal, &opts.console_socket) {
                (false, _) => (None, None),
                (true, Some(path)) => (
                    Some(
                        UnixStream::connect(path)
                            .ctx_path("cannot connect to console socket", path)?
                            .into(),
                    ),
                    None,
                ),
                (true, None) if !opts.detach => {
                    let (a, b) = UnixStream::pair().ctx("cannot create console socketpair")?;
                    (Some(b.into()), Some(a))
                }
                (true, None) => {
                    return Err(Error::InvalidConfig(
                        "exec --tty --detach needs --console-socket".into(),
                    ));
                }
            };

        let (ours, theirs) = channel::pair()?;
        nix::sys::prctl::set_child_subreaper(true).ctx("cannot become a subreaper")?;
        if !opts.detach {
            supervise::block_signals()?;
        }
        // SAFETY: the runtime is single-threaded.
        let intermediate = match unsafe { fork() }.ctx("cannot fork")? {
            ForkResult::Child => {
                drop(ours);
                exec_intermediate(theirs, &join, root, console, &opts, &record)
            }
            ForkResult::Parent { child } => child,
        };
        drop(theirs);
        drop(console);
        let child = match ours.recv()? {
            Some(Msg::Pid(p)) => Pid::from_raw(p),
            Some(Msg::Error(e)) => {
                let _ = nix::sys::wait::waitpid(intermediate, None);
                return Err(Error::Child(e));
            }
            _ => {
                let _ = nix::sys::wait::waitpid(intermediate, None);
                return Err(Error::Child("exec: the intermediate process died".into()));
            }
        };
        let _ = nix::sys::wait::waitpid(intermediate, None);
        let fail = |e: Error| {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            e
        };
        if let Some(cg @ cgroups::CgroupPaths::V2(_)) = &record.cgroup {
            cgroups::add_pid(cg, child.as_raw()).map_err(fail)?;
        }
        // The go-ahead, with the state a seccomp agent is told (the pid: this process's).
        let mut state = serde_json::to_value(self.state(&opts.id).map_err(fail)?)
            .map_err(|e| fail(Error::Child(format!("cannot encode the state: {e}"))))?;
        state["pid"] = child.as_raw().into();
        ours.send(&Msg::HookState(state.to_string()))
            .map_err(fail)?;
        let pty = match &proxy {
            Some(sock) => Some(channel::recv_fd(sock.as_raw_fd()).map_err(fail)?),
            None => None,
        };
        // The socket is close-on-exec: end-of-file means the exec happened.
        match ours.recv() {
            Ok(None) => {}
            Ok(Some(Msg::Error(e))) => return Err(fail(Error::Child(e))),
            Ok(Some(other)) => {
                return Err(fail(Error::Child(format!(
                    "exec: unexpected message {other:?}"
                ))))
            }
            Err(e) => return Err(fail(e)),
        }
        if let Some(pf) = &opts.pid_file {
            crate::util::write_atomic(pf, child.as_raw().to_string().as_bytes(), 0o644)?;
        }
        if opts.detach {
            return Ok(child.as_raw());
        }
        supervise::wait_foreground(child, pty)
    }
}

/// The cgroup an `exec --cgroup` process joins: the container's, with each hierarchy the
/// options name moved down to the sub-cgroup, which must exist and stay inside.
fn sub_cgroup(cg: &cgroups::CgroupPaths, options: &[String]) -> Result<cgroups::CgroupPaths> {
    let mut parsed = Vec::new();
    for opt in options {
        let (controllers, rel) = match opt.split_once(':') {
            Some((c, p)) => (Some(c.split(',').collect::<Vec<_>>()), p),
            None => (None, opt.as_str()),
        };
        let rel = std::path::Path::new(rel.trim_start_matches('/'));
        if rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::InvalidConfig(format!(
                "--cgroup {opt}: the path must be a sub-cgroup of the container's, without . or .."
            )));
        }
        parsed.push((opt, controllers, rel));
    }
    let existing = |opt: &str, dir: PathBuf| -> Result<PathBuf> {
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(Error::InvalidConfig(format!(
                "--cgroup {opt}: {} does not exist (exec joins sub-cgroups, it does not make them)",
                dir.display()
            )))
        }
    };
    match cg {
        cgroups::CgroupPaths::V2(base) => {
            let mut path = base.clone();
            for (opt, controllers, rel) in parsed {
                if controllers.is_some() {
                    return Err(Error::InvalidConfig(format!(
                        "--cgroup {opt}: cgroup v2 has one hierarchy, give the path without controllers"
                    )));
                }
                path = existing(opt, base.join(rel))?;
            }
            Ok(cgroups::CgroupPaths::V2(path))
        }
        cgroups::CgroupPaths::V1(bases) => {
            let mut dirs = bases.clone();
            for (opt, controllers, rel) in parsed {
                let mut matched = false;
                for (key, base) in bases {
                    let hit = controllers
                        .as_ref()
                        .is_none_or(|w| key.split(',').any(|k| w.contains(&k)));
                    if hit {
                        dirs.insert(key.clone(), existing(opt, base.join(rel))?);
                        matched = true;
                    }
                }
                if !matched {
                    return Err(Error::InvalidConfig(format!(
                        "--cgroup {opt}: no mounted cgroup v1 hierarchy has those controllers"
                    )));
                }
            }
            Ok(cgroups::CgroupPaths::V1(dirs))
        }
    }
}

fn exec_intermediate(
    chan: Channel,
    join: &[(LinuxNamespaceType, OwnedFd)],
    root: OwnedFd,
    console: Option<OwnedFd>,
    opts: &ExecOpts,
    record: &crate::state::Record,
) -> ! {
    let config = &record.config;
    process::reset_signals();
    let mut agent = None;
    let result = (|| -> Result<()> {
        nix::sys::prctl::set_dumpable(false).ctx("cannot clear dumpable")?;
        // execCPUAffinity.initial: where the runtime's side runs until it is in the cgroup.
        if let Some(cpus) = affinity(&opts.process, false) {
            process::set_cpu_affinity(&cpus, "initial")?;
        }
        // A SCMP_ACT_NOTIFY profile's agent listens on a host path: connect before joining.
        if let Some(f) = init::seccomp_filter(config)? {
            agent = crate::seccomp::connect_agent(&f)?;
        }
        // Still on the host: on v1 join the container's cgroup ourselves, the fast way, so the
        // process we fork is born in it.
        if let Some(cgroups::CgroupPaths::V1(dirs)) = &record.cgroup {
            cgroups::v1::join_self(&dirs.values().cloned().collect::<Vec<_>>())?;
        }
        for (t, fd) in join {
            setns(fd, clone_flag(*t))
                .ctx(format_args!("cannot join {} namespace", proc_name(*t)))?;
            if *t == LinuxNamespaceType::User {
                nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
                    .ctx("cannot become gid 0 in the user namespace")?;
                nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
                    .ctx("cannot become uid 0 in the user namespace")?;
            }
        }
        // The container's root, also for a container started with --no-pivot (chroot).
        nix::unistd::fchdir(&root).ctx("cannot enter the container root")?;
        nix::unistd::chroot(".").ctx("cannot chroot into the container root")?;
        nix::unistd::chdir("/").ctx("cannot chdir to /")?;
        Ok(())
    })();
    drop(root);
    init::fork_and_report(chan, result, "the exec process", |chan| {
        exec_process(chan, console, opts, config, agent)
    })
}

/// `process.execCPUAffinity`'s initial (or final) CPU list, when set and not empty.
fn affinity(p: &oci_spec::runtime::Process, last: bool) -> Option<String> {
    let a = p.exec_cpu_affinity().as_ref()?;
    let list = if last {
        a.cpu_affinity_final()
    } else {
        a.initial()
    };
    list.clone().filter(|s| !s.trim().is_empty())
}

fn exec_process(
    chan: Channel,
    console: Option<OwnedFd>,
    opts: &ExecOpts,
    config: &oci_spec::runtime::Spec,
    agent: Option<std::os::unix::net::UnixStream>,
) -> ! {
    let result = (|| -> Result<_> {
        // The go-ahead (we are in the cgroup) carries the container's state, with our pid.
        let (pid, state) = match chan.recv()? {
            Some(Msg::HookState(s)) => {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
                (v["pid"].as_i64().unwrap_or(0) as i32, s)
            }
            _ => {
                return Err(Error::Child(
                    "the runtime went away while waiting for the cgroup".into(),
                ))
            }
        };
        // In the cgroup now: execCPUAffinity.final, or what the kernel gave.
        if let Some(cpus) = affinity(&opts.process, true) {
            process::set_cpu_affinity(&cpus, "final")?;
        }
        nix::unistd::setsid().ctx("setsid failed")?;
        if let Some(c) = &console {
            let size = opts.process.console_size().map(|b| (b.height(), b.width()));
            tty::setup(c.as_raw_fd(), size, false)?;
        }
        drop(console);
        let prog = process::resolve_program(&opts.process)?;
        let (argv, envp) = process::argv_envp(&opts.process)?;
        let seccomp = init::seccomp_filter(config)?;
        let agent = agent.map(|socket| init::Agent { socket, pid, state });
        init::finish_process(
            &opts.process,
            config,
            opts.preserve_fds,
            seccomp.as_ref(),
            agent.as_ref(),
        )?;
        Ok((prog, argv, envp))
    })();
    match result {
        Ok((prog, argv, envp)) => process::exec(&prog, &argv, &envp),
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.to_string()));
            exit(1)
        }
    }
}
