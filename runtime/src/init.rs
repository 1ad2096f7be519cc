//! The processes `create` forks: the intermediate one (joins and creates namespaces, then forks
//! the init so the init is pid 1 of a new pid namespace) and the container's init itself (root
//! filesystem, identity, then it blocks on the exec fifo until `start`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::channel::{Channel, Msg};
use crate::error::{Context, Error, Result};
use crate::mounts::{self, Rootfs};
use crate::namespaces::Plan;
use crate::{devices, hooks, process, tty};

pub struct InitArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// The container's state directory, where the exec fifo is.
    pub state_dir: OwnedFd,
    /// The runtime's lock on the container: closed first thing, or the container would hold
    /// it (flock locks belong to the open file, which fork shares) and block `start`.
    pub lock_fd: std::os::fd::RawFd,
    /// Connected console socket, when process.terminal is set.
    pub console: Option<OwnedFd>,
    pub plan: Plan,
    /// The idmapped binds, made before the init (see `mounts::prepare_idmapped`).
    pub idmapped: Vec<Option<OwnedFd>>,
}

pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: a forked child leaves without unwinding or running the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

/// The intermediate process. Never returns.
pub fn intermediate(chan: Channel, args: InitArgs) -> ! {
    // SAFETY: closing our copy of the lock fd; nothing else in this process uses it.
    unsafe { libc::close(args.lock_fd) };
    process::reset_signals();
    // A user namespace of the container's own, or the one the runtime already runs in
    // (rootless husk, rootless podman): either way its root makes no device nodes and mounts
    // sysfs only for a network namespace it owns.
    let in_user_ns = args.plan.new_user
        || args
            .plan
            .join
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::User)
        || husk_sys::in_user_namespace();
    let mut reached = Reached::default();
    let result = (|| -> Result<()> {
        // Nothing in the container may ptrace or open /proc/PID/{mem,fd,exe} of the runtime's
        // processes before the user program replaced them.
        nix::sys::prctl::set_dumpable(false).ctx("cannot clear dumpable")?;
        args.plan.join_all()?;
        args.plan.unshare_user()?;
        if args.plan.new_user {
            // A non-root runtime may only write /proc/PID/uid_map of a dumpable process.
            nix::sys::prctl::set_dumpable(true).ctx("cannot set dumpable")?;
            chan.send(&Msg::UserNsReady)?;
            chan.expect(Msg::Continue, "waiting for id maps")?;
            nix::sys::prctl::set_dumpable(false).ctx("cannot clear dumpable")?;
        }
        // The other namespaces before the identity changes: in a new user namespace the
        // runtime's caller can still search the directories the container's files are in, so
        // they are opened now, in the container's mount namespace (see `Reached`).
        args.plan.unshare_rest()?;
        if args.plan.new_user {
            reached = Reached::open(args.spec, args.rootfs, args.bundle)?;
        }
        if in_user_ns {
            nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
                .ctx("cannot become gid 0 in the user namespace")?;
            nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
                .ctx("cannot become uid 0 in the user namespace")?;
        }
        if args
            .plan
            .new
            .contains(crate::namespaces::clone_flag(LinuxNamespaceType::Network))
        {
            // runc brings a new network namespace's loopback up; callers count on it.
            husk_sys::loopback_up().ctx("cannot bring up lo in the new network namespace")?;
        }
        if args
            .plan
            .new
            .contains(crate::namespaces::clone_flag(LinuxNamespaceType::Time))
        {
            if let Some(linux) = args.spec.linux() {
                // In a user namespace /proc/self of a non-dumpable process belongs to the
                // host's root, whom the namespace's root is not: EACCES. Dumpable for the write.
                if in_user_ns {
                    nix::sys::prctl::set_dumpable(true).ctx("cannot set dumpable")?;
                }
                let written = crate::namespaces::write_time_offsets(linux);
                nix::sys::prctl::set_dumpable(false).ctx("cannot clear dumpable")?;
                written?;
            }
        }
        Ok(())
    })();
    fork_and_report(chan, result, "the container init", |chan| {
        init(chan, args, in_user_ns, reached)
    })
}

/// What the init of a new user namespace reaches through descriptors opened before it became
/// the namespace's root, as runc's mount source descriptors: that root may not search the
/// directories above them (a rootless store is its user's alone, mode 0700). The paths are
/// `/proc/self/fd/N[/NAME]`; the descriptors close when the init has switched its root.
#[derive(Default)]
struct Reached {
    fds: Vec<OwnedFd>,
    /// The rootfs, when it is a mount point: through its parent directory, so the lookup of
    /// its name crosses the mounts on it, as a path's does.
    rootfs: Option<std::path::PathBuf>,
    /// Bind sources, by the index of their `mounts` entry.
    sources: Vec<Option<std::path::PathBuf>>,
}

impl Reached {
    fn open(spec: &Spec, rootfs: &Path, bundle: &Path) -> Result<Reached> {
        let mut r = Reached::default();
        let mut open = |p: &Path| -> Option<std::path::PathBuf> {
            let c = CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: open(2) of a NUL-terminated path; the fd is owned below.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                // Left to the mount, which names it with its error.
                return None;
            }
            // SAFETY: a new fd from the kernel.
            r.fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            Some(format!("/proc/self/fd/{fd}").into())
        };
        // A rootfs that is a plain directory is left a path: the mount it is on is found by
        // walking up its path (`make_parent_mount_private`), which a descriptor would cut off.
        if let (Some(parent), Some(name)) = (rootfs.parent(), rootfs.file_name()) {
            let own_mount = matches!(
                (mounts::mount_id(rootfs), mounts::mount_id(parent)),
                (Ok(a), Ok(b)) if a != 0 && a != b
            );
            if own_mount {
                r.rootfs = open(parent).map(|p| p.join(name));
            }
        }
        for m in spec.mounts().iter().flatten() {
            let opts = mounts::parse_options(m.options().as_deref().unwrap_or_default());
            let bind = opts.bind || m.typ().as_deref() == Some("bind");
            let source = m.source().as_ref().filter(|_| bind).map(|s| {
                if s.is_absolute() {
                    s.clone()
                } else {
                    bundle.join(s)
                }
            });
            let reached = source.and_then(|s| open(&s));
            r.sources.push(reached);
        }
        Ok(r)
    }
}

/// The end of an intermediate process: report a setup error, or fork `child`, send its pid
/// (in the runtime's pid namespace, which is ours) and exit.
pub(crate) fn fork_and_report(
    chan: Channel,
    setup: Result<()>,
    what: &str,
    child: impl FnOnce(Channel) -> std::convert::Infallible,
) -> ! {
    if let Err(e) = setup {
        let _ = chan.send(&Msg::Error(e.to_string()));
        exit(1);
    }
    // SAFETY: this process is single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => match child(chan) {},
        Ok(ForkResult::Parent { child }) => {
            let sent = chan.send(&Msg::Pid(child.as_raw()));
            exit(if sent.is_ok() { 0 } else { 1 })
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(format!("cannot fork {what}: {e}")));
            exit(1)
        }
    }
}

/// The container's init. Never returns: it execs the user program or exits.
fn init(chan: Channel, args: InitArgs, in_user_ns: bool, reached: Reached) -> ! {
    let prepared = prepare(&chan, &args, in_user_ns, reached);
    let (prog, argv, envp, seccomp, agent) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.to_string()));
            exit(1)
        }
    };
    if chan.send(&Msg::Ready).is_err() {
        exit(1);
    }
    let hook_state = match chan.recv() {
        Ok(Some(Msg::HookState(s))) => s,
        _ => exit(1),
    };
    let process = match args.spec.process() {
        Some(p) => p,
        None => exit(1),
    };
    let agent = agent.map(|socket| Agent {
        socket,
        pid: serde_json::from_str::<serde_json::Value>(&hook_state)
            .ok()
            .and_then(|v| v["pid"].as_i64())
            .unwrap_or(0) as i32,
        state: hook_state.clone(),
    });
    // What runc does before `create` returns: a seccomp agent gets its listener now, and a
    // limit or filter the kernel refuses fails `create`, not `start`.
    let before = before_barrier(process, args.spec, seccomp.as_ref(), agent.as_ref());
    let told = match &before {
        Ok(()) => chan.send(&Msg::Ready),
        Err(e) => chan.send(&Msg::Error(e.to_string())),
    };
    if before.is_err() || told.is_err() {
        exit(1);
    }
    drop(chan);

    // The exec barrier: opening the fifo for writing blocks until `start` opens it to read.
    let fifo_name = CString::new(crate::state::EXEC_FIFO).unwrap_or_default();
    // SAFETY: openat relative to the state directory fd we hold.
    let fifo = unsafe {
        libc::openat(
            args.state_dir.as_raw_fd(),
            fifo_name.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if fifo < 0 {
        exit(1);
    }
    // SAFETY: a new fd from the kernel.
    let fifo = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fifo) });
    drop(args.state_dir);
    let finished = (|| -> Result<()> {
        hooks::run_all_with_env(
            args.spec
                .hooks()
                .as_ref()
                .and_then(|h| h.start_container().as_ref()),
            state_with_own_pid(&hook_state).as_bytes(),
            process.env().as_deref().unwrap_or_default(),
        )?;
        after_barrier(process, args.preserve_fds, seccomp.as_ref(), agent.as_ref())
    })();
    use std::io::Write;
    let mut fifo = fifo;
    match finished {
        Ok(()) => {
            if fifo.write_all(b"0").is_err() {
                exit(1);
            }
        }
        Err(e) => {
            let _ = fifo.write_all(e.to_string().as_bytes());
            exit(1);
        }
    }
    // The fifo stays open through execve (close-on-exec): its end-of-file tells `start` the
    // program is executed.
    process::exec(&prog, &argv, &envp)
}

/// The state a hook run in the container gets: `pid` as the container sees it (the spec: "for
/// hooks executed in the container namespace, it is the pid as seen by the container").
fn state_with_own_pid(state: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["pid"] = std::process::id().into();
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}

type Program = (
    CString,
    Vec<CString>,
    Vec<CString>,
    Option<crate::seccomp::Filter>,
    Option<std::os::unix::net::UnixStream>,
);

fn prepare(chan: &Channel, args: &InitArgs, in_user_ns: bool, reached: Reached) -> Result<Program> {
    let rootfs = reached.rootfs.as_deref().unwrap_or(args.rootfs);
    nix::unistd::setsid().ctx("setsid failed")?;
    let spec = args.spec;
    let linux = spec.linux().as_ref();
    let has_ns = |t| linux.is_some_and(|l| args.plan.has(l, t));
    // The runtime moves us into our cgroup while we mount (on cgroup v1 that move waits for an
    // RCU grace period, the largest single cost of a start): wait for it only where it matters,
    // before the cgroup filesystem is mounted, the cgroup namespace made, or devices created.
    let joined = std::cell::Cell::new(false);
    let join_cgroup = || -> Result<()> {
        if !joined.replace(true) {
            match chan.recv()? {
                Some(Msg::Continue) => {}
                Some(Msg::JoinCgroup(dirs)) => crate::cgroups::v1::join_self(&dirs)?,
                Some(Msg::Error(e)) => return Err(Error::Child(e)),
                _ => {
                    return Err(Error::Child(
                        "the runtime went away before the cgroup was ready".into(),
                    ))
                }
            }
            args.plan.unshare_cgroup()?;
        }
        Ok(())
    };
    Rootfs {
        spec,
        rootfs,
        bundle: args.bundle,
        in_user_ns,
        new_cgroup_ns: args.plan.new_cgroup,
        shares_mount_ns: !has_ns(LinuxNamespaceType::Mount),
        before_cgroup_mount: &join_cgroup,
        idmapped: &args.idmapped,
        sources: &reached.sources,
    }
    .prepare()?;
    join_cgroup()?;
    devices::create(spec, rootfs, in_user_ns)?;

    chan.send(&Msg::RunCreateRuntimeHooks)?;
    let state = match chan.recv()? {
        Some(Msg::HookState(s)) => s,
        Some(Msg::Error(e)) => return Err(Error::Child(e)),
        _ => {
            return Err(Error::Child(
                "the runtime went away during createRuntime hooks".into(),
            ))
        }
    };
    hooks::run_all(
        spec.hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_ref()),
        state_with_own_pid(&state).as_bytes(),
    )?;

    // The agent's socket is a host path: connect while the host's root is still ours.
    let seccomp = seccomp_filter(args.spec)?;
    let agent = match &seccomp {
        Some(f) => crate::seccomp::connect_agent(f)?,
        None => None,
    };
    mounts::switch_root(rootfs, args.no_pivot, !has_ns(LinuxNamespaceType::Mount))?;
    drop(reached.fds);
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).ctx(format_args!("cannot set hostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        if !has_ns(LinuxNamespaceType::Uts) {
            return Err(Error::InvalidConfig(
                "domainname is set but there is no uts namespace".into(),
            ));
        }
        // SAFETY: setdomainname with a pointer and its length.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(Error::io(
                format!("cannot set domainname {d:?}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = crate::spec::sysctl_file(key);
        crate::util::write_file(&path, value)?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process is missing".into()))?;
    // Before the root may turn read-only: the pty's slave is bound onto /dev/console.
    if process.terminal() == Some(true) {
        let console = args.console.as_ref().ok_or_else(|| {
            Error::InvalidConfig("process.terminal needs a console socket".into())
        })?;
        let size = process.console_size().map(|b| (b.height(), b.width()));
        tty::setup(console.as_raw_fd(), size, true)?;
    }
    // As runc: a missing cwd is made (docker's `-w /new/dir`), inside the new root and before
    // it may turn read-only, while the init is still root.
    if !process.cwd().exists() {
        std::fs::create_dir_all(process.cwd()).ctx(format_args!(
            "cannot create process.cwd {}",
            process.cwd().display()
        ))?;
    }
    mounts::finalize(spec)?;

    process::set_oom_score_adj(process.oom_score_adj())?;
    if !args.no_new_keyring {
        process::new_session_keyring(args.id)?;
    }
    let prog = process::resolve_program(process)?;
    let (argv, envp) = process::argv_envp(process)?;
    // Limits the kernel refuses, and capability names it does not know, fail `create`.
    process::set_rlimits(process)?;
    process::CapSets::from_spec(process.capabilities().as_ref())?;
    Ok((prog, argv, envp, seccomp, agent))
}

/// The container's seccomp filter, compiled (errors surface at `create`, not after `start`).
pub fn seccomp_filter(spec: &Spec) -> Result<Option<crate::seccomp::Filter>> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()
}

/// Everything after `create`'s checks up to execve (what `exec` does in one go): limits and
/// scheduling while still privileged, then identity and capabilities, then no_new_privs and
/// the seccomp filter.
pub fn finish_process(
    process: &oci_spec::runtime::Process,
    spec: &Spec,
    preserve_fds: u32,
    seccomp: Option<&crate::seccomp::Filter>,
    agent: Option<&Agent>,
) -> Result<()> {
    process::set_rlimits(process)?;
    before_barrier(process, spec, seccomp, agent)?;
    after_barrier(process, preserve_fds, seccomp, agent)
}

/// Install `f`; with SCMP_ACT_NOTIFY the listener goes to the agent at once: the filter is in
/// force from here on, and only the agent can answer what it notifies.
fn install_filter(f: &crate::seccomp::Filter, agent: Option<&Agent>) -> Result<()> {
    let listener = crate::seccomp::install(f)?;
    if let (Some(l), Some(a)) = (listener, agent) {
        crate::seccomp::send_listener(&a.socket, l, f, a.pid, &a.state)?;
    }
    Ok(())
}

/// The steps before the exec barrier, while still privileged: I/O priority, scheduling,
/// personality, default signal dispositions, and, without no_new_privs, the seccomp filter
/// (installing one then needs CAP_SYS_ADMIN, so it goes in before the capabilities are
/// dropped, as runc does; its agent then hears of it during `create`).
pub fn before_barrier(
    process: &oci_spec::runtime::Process,
    spec: &Spec,
    seccomp: Option<&crate::seccomp::Filter>,
    agent: Option<&Agent>,
) -> Result<()> {
    process::set_io_priority(process)?;
    process::set_scheduler(process)?;
    process::set_personality(spec.linux().as_ref())?;
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    {
        crate::mempolicy::apply(&crate::mempolicy::parse(p)?)?;
    }
    process::reset_signals();
    if let (Some(f), false) = (seccomp, process.no_new_privileges() == Some(true)) {
        install_filter(f, agent)?;
    }
    Ok(())
}

/// The steps after the exec barrier: identity and capabilities, cwd, umask, LSM labels,
/// no_new_privs, fds, and with no_new_privs the seccomp filter as late as possible, so that it
/// constrains the user program and not the runtime's last steps.
pub fn after_barrier(
    process: &oci_spec::runtime::Process,
    preserve_fds: u32,
    seccomp: Option<&crate::seccomp::Filter>,
    agent: Option<&Agent>,
) -> Result<()> {
    let caps = process::CapSets::from_spec(process.capabilities().as_ref())?;
    let allow_setgroups = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true);
    process::set_identity_and_caps(process, &caps, allow_setgroups)?;
    process::enter_cwd(process)?;
    process::set_umask(process);
    process::set_lsm_labels(process)?;
    process::set_no_new_privs(process)?;
    process::close_fds_on_exec(preserve_fds)?;
    if let (Some(f), true) = (seccomp, process.no_new_privileges() == Some(true)) {
        install_filter(f, agent)?;
    }
    Ok(())
}

/// The seccomp agent of a SCMP_ACT_NOTIFY profile: connected, and what it is told.
pub struct Agent {
    pub socket: std::os::unix::net::UnixStream,
    /// The container process's pid as the runtime sees it, and the container's state JSON.
    pub pid: i32,
    pub state: String,
}
