//! The container lifecycle as the runtime spec orders it: create, start, state, kill, delete,
//! plus runc's list, ps, pause, resume and update. This is the runtime's side; the container's
//! side is in `init`.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxResources, Spec};

use crate::cgroups::{self, CgroupPaths};
use crate::channel::{self, Msg};
use crate::error::{Context, Error, Result};
use crate::init::{self, InitArgs};
use crate::logging::Logger;
use crate::namespaces::Plan;
use crate::state::{ContainerDir, OciState, Record, Status};
use crate::util::{process_start_time, rfc3339_now, validate_id, write_atomic};
use crate::{hooks, spec};

/// The runtime as a library: a state root and where to log.
pub struct Runtime {
    pub root: PathBuf,
    pub log: Logger,
    /// Cgroups as systemd scopes (`--systemd-cgroup`) instead of directories we make.
    pub systemd_cgroup: bool,
    /// runc's `--rootless`: whether a cgroup the kernel refuses us is skipped (for a config
    /// without limits). None is runc's `auto`: skipped in a user namespace.
    pub rootless: Option<bool>,
}

#[derive(Debug, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// A connected socket that receives the pty master instead of `console_socket` (used by a
    /// foreground `run`, which proxies the terminal itself).
    pub console_fd: Option<OwnedFd>,
}

/// Undo a half-made container: kill what was forked, remove its cgroup and state directory.
struct Cleanup {
    dir: Option<ContainerDir>,
    cgroup: Option<CgroupPaths>,
    systemd_unit: Option<String>,
    shared_rootfs: Option<(PathBuf, u64)>,
    /// The config's poststop hooks and the state they get: the spec runs them after a failed
    /// create too (a failing hook "continues the lifecycle" at destroy).
    poststop: Option<(Vec<oci_spec::runtime::Hook>, Vec<u8>)>,
    children: Vec<Pid>,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.systemd_unit = None;
        self.shared_rootfs = None;
        self.poststop = None;
        self.children.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.children {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        // We are the subreaper during create: every child comes back to us to be reaped.
        for pid in &self.children {
            let _ = waitpid(*pid, None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cgroups::signal_all(cg, Signal::SIGKILL);
            let _ = cgroups::remove(cg);
        }
        if let Some(unit) = &self.systemd_unit {
            let _ = cgroups::systemd::stop(unit);
        }
        if let Some((rootfs, original)) = &self.shared_rootfs {
            let _ = crate::mounts::unmount_shared_rootfs(rootfs, *original);
        }
        if let Some(dir) = &self.dir {
            let _ = dir.remove();
        }
        // Failures here are only warnings in the spec; there is nowhere left to report them.
        if let Some((poststop, state)) = &self.poststop {
            for hook in poststop {
                let _ = hooks::run(hook, state);
            }
        }
    }
}

/// Features a config may ask for that this runtime cannot honour yet: refused, never ignored.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    // Compiled here too, so a bad profile fails before anything exists.
    crate::init::seccomp_filter(spec)?;
    if linux.is_some_and(|l| l.intel_rdt().is_some()) {
        return Err(Error::Unsupported("linux.intelRdt is not supported".into()));
    }
    if let Some(p) = linux.and_then(|l| l.memory_policy().as_ref()) {
        crate::mempolicy::parse(p)?;
    }
    if linux.is_some_and(|l| l.net_devices().as_ref().is_some_and(|d| !d.is_empty())) {
        return Err(Error::Unsupported(
            "linux.netDevices is not supported".into(),
        ));
    }
    if let Some(p) = spec.process() {
        check_lsm(p)?;
    }
    Ok(())
}

/// AppArmor and SELinux: applied where the host has them (`process::set_lsm_labels`); asked
/// for and absent is an error, found before anything is created.
pub fn check_lsm(p: &oci_spec::runtime::Process) -> Result<()> {
    if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty())
        && !Path::new("/sys/kernel/security/apparmor").exists()
    {
        return Err(Error::Unsupported(
            "process.apparmorProfile is set but AppArmor is not enabled on this host".into(),
        ));
    }
    if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty())
        && !Path::new("/sys/fs/selinux/enforce").exists()
    {
        return Err(Error::Unsupported(
            "process.selinuxLabel is set but SELinux is not enabled on this host".into(),
        ));
    }
    Ok(())
}

impl Runtime {
    /// Say which ambient capabilities the process will not get (see `CapSets::raisable_ambient`).
    pub(crate) fn warn_unraisable_ambient(&self, p: &oci_spec::runtime::Process) -> Result<()> {
        let skipped =
            crate::process::CapSets::from_spec(p.capabilities().as_ref())?.unraisable_ambient();
        if !skipped.is_empty() {
            self.log.warn(&format!(
                "ambient capabilities {} are not raised: they are not also inheritable and permitted",
                skipped.join(", ")
            ));
        }
        Ok(())
    }

    pub fn new(root: impl Into<PathBuf>, log: Logger) -> Self {
        Runtime {
            root: root.into(),
            log,
            systemd_cgroup: false,
            rootless: None,
        }
    }

    /// runc's `--rootless true|false|auto` (None).
    pub fn with_rootless(mut self, rootless: Option<bool>) -> Self {
        self.rootless = rootless;
        self
    }

    /// runc's rule for the state directory: `$XDG_RUNTIME_DIR/husk-runtime` for a rootless
    /// caller (not root, or root of a user namespace whose `$USER` is not root, as podman
    /// runs it), else /run/husk-runtime.
    pub fn default_root() -> PathBuf {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty());
        let honor = xdg.is_some()
            && (!nix::unistd::geteuid().is_root()
                || (husk_sys::in_user_namespace()
                    && std::env::var("USER").map_or(true, |u| u != "root")));
        match xdg {
            Some(x) if honor => PathBuf::from(x).join("husk-runtime"),
            _ => PathBuf::from("/run/husk-runtime"),
        }
    }

    /// Use the systemd cgroup driver (runc's `--systemd-cgroup`).
    pub fn with_systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    fn dir(&self, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        Ok(ContainerDir::new(&self.root, id))
    }

    fn hook_state(&self, record: &Record, status: Status) -> Vec<u8> {
        let st = OciState {
            oci_version: record.oci_version.clone(),
            id: record.id.clone(),
            status,
            pid: record.pid,
            bundle: record.bundle.clone(),
            rootfs: record.rootfs.clone(),
            created: record.created.clone(),
            owner: record.owner.clone(),
            annotations: record.config.annotations().clone().unwrap_or_default(),
        };
        serde_json::to_vec(&st).unwrap_or_default()
    }

    /// `create`: everything up to the exec barrier. Returns the init's host pid.
    pub fn create(&self, mut opts: CreateOpts) -> Result<i32> {
        validate_id(&opts.id)?;
        let bundle =
            fs::canonicalize(&opts.bundle).ctx_path("bundle is not usable:", &opts.bundle)?;
        let (spec, warnings) = spec::load(&bundle)?;
        for w in &warnings {
            self.log.warn(w);
        }
        self.log.debug("create: config loaded");
        refuse_unsupported(&spec)?;
        if let Some(p) = spec.process() {
            self.warn_unraisable_ambient(p)?;
        }
        let kernel_memory = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .is_some_and(|m| m.kernel().is_some() || m.kernel_tcp().is_some());
        if kernel_memory {
            // Deprecated in Linux 5.4 and gone from cgroup v2; runc ignores them the same way.
            self.log.warn("memory.kernel and memory.kernelTCP are ignored: kernel memory limits are deprecated");
        }
        let rootfs = spec::rootfs_path(&spec, &bundle)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let process = spec.process().clone().unwrap_or_default();
        let terminal = process.terminal() == Some(true);
        // Connect the console socket before anything exists, so a bad path costs nothing.
        let console: Option<OwnedFd> = if terminal {
            match (opts.console_fd.take(), &opts.console_socket) {
                (Some(fd), _) => Some(fd),
                (None, Some(path)) => Some(
                    UnixStream::connect(path)
                        .ctx_path("cannot connect to console socket", path)?
                        .into(),
                ),
                (None, None) => {
                    return Err(Error::InvalidConfig(
                        "process.terminal is true but no --console-socket was given".into(),
                    ))
                }
            }
        } else {
            None
        };
        let plan = Plan::from_spec(&linux)?;
        let scope = if self.systemd_cgroup {
            let scope = cgroups::systemd::scope_for(linux.cgroups_path().as_deref(), &opts.id)?;
            if !cgroups::systemd::booted() {
                return Err(Error::Unsupported(
                    "--systemd-cgroup needs systemd as the init of this machine (/run/systemd/system is missing)".into(),
                ));
            }
            Some(scope)
        } else {
            None
        };

        // Without a mount namespace the container's mounts are made in ours, on a bind of the
        // rootfs: remember what was there so delete takes off exactly what the container added.
        let shares_mount_ns = !linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount);
        let shared_rootfs_mount = if shares_mount_ns {
            Some(crate::mounts::mount_id(&rootfs)?)
        } else {
            None
        };

        let dir = ContainerDir::create(&self.root, &opts.id)?;
        let mut cleanup = Cleanup {
            dir: Some(dir.clone()),
            cgroup: None,
            systemd_unit: None,
            shared_rootfs: None,
            poststop: None,
            children: Vec::new(),
        };
        cleanup.shared_rootfs = shared_rootfs_mount.map(|m| (rootfs.clone(), m));
        let lock = dir.lock()?;
        nix::unistd::mkfifo(
            &dir.fifo_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .ctx("cannot create exec fifo")?;
        // Anyone in the container may be the one to open it (the init after it changed uid).
        fs::set_permissions(
            dir.fifo_path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o622),
        )
        .ctx("cannot chmod exec fifo")?;

        let mut record = Record {
            oci_version: spec.version().clone(),
            id: opts.id.clone(),
            pid: 0,
            init_start_time: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: rfc3339_now(),
            owner: nix::unistd::geteuid().to_string(),
            cgroup: None,
            systemd_unit: None,
            shared_rootfs_mount,
            config: spec.clone(),
            exit_status: None,
            creating: true,
        };
        dir.save(&record)?;
        if let Some(hooks) = spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
            cleanup.poststop = Some((hooks, self.hook_state(&record, Status::Stopped)));
        }

        let state_dir: OwnedFd = fs::File::open(&dir.path)
            .ctx_path("cannot open", &dir.path)?
            .into();
        let (ours, theirs) = channel::pair()?;
        nix::sys::prctl::set_child_subreaper(true).ctx("cannot become a subreaper")?;
        let idmapped = crate::mounts::prepare_idmapped(&spec, &bundle)?;
        let args = InitArgs {
            id: &opts.id,
            spec: &spec,
            rootfs: &rootfs,
            bundle: &bundle,
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            preserve_fds: opts.preserve_fds,
            state_dir,
            lock_fd: lock.raw(),
            console,
            plan,
            idmapped,
        };
        // SAFETY: the runtime is single-threaded here (no thread was ever started).
        let intermediate = match unsafe { fork() }.ctx("cannot fork")? {
            ForkResult::Child => {
                drop(ours);
                init::intermediate(theirs, args)
            }
            ForkResult::Parent { child } => child,
        };
        drop(args);
        drop(theirs);
        cleanup.children.push(intermediate);
        self.log.debug("create: forked");

        if linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User && n.path().is_none())
        {
            ours.expect(Msg::UserNsReady, "creating the user namespace")?;
            crate::namespaces::write_id_maps(intermediate.as_raw(), &linux)?;
            ours.send(&Msg::Continue)?;
        }
        // The cgroup is made while the children set up namespaces and mounts. systemd makes a
        // scope only with a process in it: the init, once it exists.
        if scope.is_none() && (nix::unistd::geteuid().is_root() || linux.cgroups_path().is_some()) {
            let path = cgroups::container_path(linux.cgroups_path().as_deref(), &opts.id)?;
            let resources = linux.resources().as_ref();
            match cgroups::create(&path, resources, None) {
                Ok(paths) => {
                    cleanup.cgroup = Some(paths.clone());
                    record.cgroup = Some(paths);
                }
                // runc's rootless rule: a user namespace's root runs without a cgroup where
                // it may not make one, unless the config asks for limits.
                Err(e)
                    if cgroups::is_denied(&e)
                        && self.rootless.unwrap_or_else(husk_sys::in_user_namespace) =>
                {
                    if cgroups::has_limits(resources) {
                        return Err(Error::Unsupported(format!(
                            "{e}: the limits in linux.resources need a cgroup this user may write (cgroup v2, with the subtree delegated to the user: systemd's Delegate=yes for user@UID.service)"
                        )));
                    }
                    self.log
                        .debug("create: no cgroup (not delegated to this user namespace)");
                }
                Err(e) => return Err(e),
            }
        }
        self.log.debug("create: cgroup ready");
        let pid = match ours.recv()? {
            Some(Msg::Pid(p)) => p,
            Some(Msg::Error(e)) => return Err(Error::Child(e)),
            _ => {
                return Err(Error::Child(
                    "the intermediate process exited without reporting the init".into(),
                ))
            }
        };
        cleanup.children.insert(0, Pid::from_raw(pid));
        let _ = waitpid(intermediate, None);
        cleanup.children.retain(|p| *p != intermediate);
        record.pid = pid;
        record.init_start_time = process_start_time(pid).unwrap_or(0);
        if let Some(scope) = &scope {
            let resources = linux.resources().as_ref();
            cgroups::systemd::start(scope, pid, resources, cgroups::detect(), &opts.id)?;
            // Only now ours to stop: a refused start may be for a unit someone else runs.
            cleanup.systemd_unit = Some(scope.unit.clone());
            cgroups::systemd::wait_started(pid, &scope.unit)?;
            let paths = cgroups::create(&scope.path, resources, Some(pid))?;
            cleanup.cgroup = Some(paths.clone());
            record.cgroup = Some(paths);
            record.systemd_unit = Some(scope.unit.clone());
        }
        dir.save(&record)?;
        // On v1 a host-root init joins its cgroup itself, the fast way (see v1::join_self); in a
        // user namespace it may not write the host's cgroupfs, so we move it.
        let in_user_ns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User);
        match &record.cgroup {
            Some(CgroupPaths::V1(dirs)) if !in_user_ns => {
                ours.send(&Msg::JoinCgroup(dirs.values().cloned().collect()))?;
            }
            Some(cg) => {
                cgroups::add_pid(cg, pid)?;
                ours.send(&Msg::Continue)?;
            }
            None => ours.send(&Msg::Continue)?,
        }
        self.log.debug("create: init forked");
        ours.expect(Msg::RunCreateRuntimeHooks, "setting up the root filesystem")?;
        self.log.debug("create: rootfs mounted");
        let state = self.hook_state(&record, Status::Creating);
        if let Some(h) = spec.hooks() {
            hooks::run_all(h.prestart().as_ref(), &state)?;
            hooks::run_all(h.create_runtime().as_ref(), &state)?;
        }
        ours.send(&Msg::HookState(
            String::from_utf8_lossy(&state).into_owned(),
        ))?;
        ours.expect(Msg::Ready, "preparing the container process")?;
        self.log.debug("create: init ready");

        record.creating = false;
        dir.save(&record)?;
        let state = self.hook_state(&record, Status::Created);
        ours.send(&Msg::HookState(
            String::from_utf8_lossy(&state).into_owned(),
        ))?;
        // The init's last steps before the barrier (the seccomp filter, its agent's listener).
        ours.expect(Msg::Ready, "installing the seccomp filter")?;
        // Only a create that succeeds leaves a pid file.
        if let Some(pf) = &opts.pid_file {
            let pf = if pf.is_absolute() {
                pf.clone()
            } else {
                std::env::current_dir().unwrap_or_default().join(pf)
            };
            write_atomic(&pf, pid.to_string().as_bytes(), 0o644)?;
        }
        cleanup.disarm();
        Ok(pid)
    }

    /// `start`: release the init from the exec barrier and wait for its verdict.
    pub fn start(&self, id: &str) -> Result<()> {
        let dir = self.dir(id)?;
        let _lock = dir.lock()?;
        let record = dir.load()?;
        let status = dir.status(&record);
        if status != Status::Created {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                why: "only a created container can be started".into(),
            });
        }
        let verdict = read_exec_fifo(&dir, &record);
        self.log.debug("start: init released");
        let _ = fs::remove_file(dir.fifo_path());
        verdict?;
        let state = self.hook_state(&record, Status::Running);
        if let Some(h) = record.config.hooks() {
            for hook in h.poststart().iter().flatten() {
                if let Err(e) = hooks::run(hook, &state) {
                    self.log.warn(&format!("poststart {e}"));
                }
            }
        }
        Ok(())
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let dir = self.dir(id)?;
        let record = dir.load()?;
        Ok(dir.oci_state(&record))
    }

    pub fn record(&self, id: &str) -> Result<Record> {
        self.dir(id)?.load()
    }

    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let dir = self.dir(id)?;
        let _lock = dir.lock()?;
        let record = dir.load()?;
        let status = dir.status(&record);
        // A stopped init can leave processes behind (no pid namespace of its own): --all
        // still reaches them, and with none left it is done, as runc's is (containerd's shim
        // sends it after every stop and logs an error for a failure).
        if all && status == Status::Stopped {
            if let Some(cg) = &record.cgroup {
                if !cgroups::pids(cg)?.is_empty() {
                    return cgroups::signal_all(cg, sig);
                }
            }
            return Ok(());
        }
        if status == Status::Stopped || status == Status::Creating {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                why: "container not running".into(),
            });
        }
        match (&record.cgroup, all) {
            (Some(cg), true) => cgroups::signal_all(cg, sig)?,
            _ => kill(Pid::from_raw(record.pid), sig)
                .ctx(format_args!("cannot signal the init of {id}"))?,
        }
        // A frozen process dies only once thawed.
        if status == Status::Paused && sig == Signal::SIGKILL {
            if let Some(cg) = &record.cgroup {
                cgroups::freeze(cg, false)?;
            }
        }
        Ok(())
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dir = self.dir(id)?;
        if !dir.path.exists() {
            return if force {
                Ok(())
            } else {
                Err(Error::NotFound(id.into()))
            };
        }
        let _lock = match dir.lock() {
            Ok(l) => l,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let record = match dir.load() {
            Ok(r) => r,
            // A record too broken to read can still be removed by force.
            Err(_) if force => return dir.remove(),
            Err(e) => return Err(e),
        };
        match dir.status(&record) {
            Status::Stopped => {}
            Status::Created | Status::Creating => self.kill_and_wait(&record)?,
            s @ (Status::Running | Status::Paused) => {
                if !force {
                    return Err(Error::WrongState {
                        id: id.into(),
                        status: s.to_string(),
                        why: "stop it first or use delete --force".into(),
                    });
                }
                self.kill_and_wait(&record)?;
            }
        }
        self.destroy(&dir, &record)
    }

    /// SIGKILL every process of the container and wait until they are gone.
    fn kill_and_wait(&self, record: &Record) -> Result<()> {
        match &record.cgroup {
            Some(cg) => {
                cgroups::signal_all(cg, Signal::SIGKILL)?;
                if cgroups::is_frozen(cg) {
                    cgroups::freeze(cg, false)?;
                }
            }
            // pid 0 would signal our own process group.
            None if record.pid > 0 => {
                let _ = kill(Pid::from_raw(record.pid), Signal::SIGKILL);
            }
            None => {}
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut nap = Duration::from_micros(100);
        loop {
            let init_gone = !crate::state::init_alive(record);
            let rest_gone = match &record.cgroup {
                Some(cg) => cgroups::pids(cg)?
                    .iter()
                    .all(|p| crate::util::process_state(*p).is_none_or(|s| s == 'Z')),
                None => true,
            };
            if init_gone && rest_gone {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Child(format!(
                    "processes of container {} did not die after SIGKILL",
                    record.id
                )));
            }
            // Reap anything that is ours to reap (a foreground run's init).
            let _ = waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    fn destroy(&self, dir: &ContainerDir, record: &Record) -> Result<()> {
        if let Some(cg) = &record.cgroup {
            // Without a pid namespace of its own, processes can outlive the init.
            if !cgroups::pids(cg)?.is_empty() {
                self.kill_and_wait(record)?;
            }
            cgroups::remove(cg)?;
        }
        if let Some(original) = record.shared_rootfs_mount {
            crate::mounts::unmount_shared_rootfs(&record.rootfs, original)?;
        }
        if let Some(unit) = &record.systemd_unit {
            // The cgroup is gone already; a unit systemd cannot stop must not keep the
            // container's record alive.
            if let Err(e) = cgroups::systemd::stop(unit) {
                self.log.warn(&e.to_string());
            }
        }
        let state = self.hook_state(record, Status::Stopped);
        if let Some(h) = record.config.hooks() {
            for hook in h.poststop().iter().flatten() {
                if let Err(e) = hooks::run(hook, &state) {
                    self.log.warn(&format!("poststop {e}"));
                }
            }
        }
        dir.remove()
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        for id in crate::state::list_ids(&self.root)? {
            let dir = ContainerDir::new(&self.root, &id);
            if let Ok(record) = dir.load() {
                out.push(dir.oci_state(&record));
            }
        }
        Ok(out)
    }

    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let dir = self.dir(id)?;
        let record = dir.load()?;
        if dir.status(&record) == Status::Stopped {
            return Ok(Vec::new());
        }
        match &record.cgroup {
            Some(cg) => cgroups::pids(cg),
            None => Ok(vec![record.pid]),
        }
    }

    fn running_cgroup(
        &self,
        id: &str,
        want: &[Status],
        why: &str,
    ) -> Result<(ContainerDir, Record, CgroupPaths)> {
        let dir = self.dir(id)?;
        let record = dir.load()?;
        let status = dir.status(&record);
        if !want.contains(&status) {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                why: why.into(),
            });
        }
        let cg = record
            .cgroup
            .clone()
            .ok_or_else(|| Error::Unsupported(format!("container {id} has no cgroup")))?;
        Ok((dir, record, cg))
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let (dir, _r, cg) = self.running_cgroup(
            id,
            &[Status::Running, Status::Created],
            "only a running container can be paused",
        )?;
        let _lock = dir.lock()?;
        cgroups::freeze(&cg, true)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let (dir, _r, cg) = self.running_cgroup(
            id,
            &[Status::Paused],
            "only a paused container can be resumed",
        )?;
        let _lock = dir.lock()?;
        cgroups::freeze(&cg, false)
    }

    /// Apply new resources and remember them in the record.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let (dir, mut record, cg) = self.running_cgroup(
            id,
            &[Status::Running, Status::Created, Status::Paused],
            "resources of a stopped container cannot change",
        )?;
        let _lock = dir.lock()?;
        if let Some(unit) = &record.systemd_unit {
            cgroups::systemd::set_properties(unit, resources, cgroups::detect())?;
        }
        cgroups::apply(&cg, resources)?;
        if let Some(linux) = record.config.linux_mut() {
            linux.set_resources(Some(resources.clone()));
        }
        dir.save(&record)
    }

    /// Reap a foreground container's init and record how it ended.
    pub fn record_exit(&self, id: &str, status: i32) -> Result<()> {
        let dir = self.dir(id)?;
        let _lock = dir.lock()?;
        let mut record = dir.load()?;
        record.exit_status = Some(status);
        dir.save(&record)
    }
}

/// Open the exec fifo to release the init, then read its verdict: "0" when the process is about
/// to exec, an error line when a startContainer hook or the last setup step failed.
fn read_exec_fifo(dir: &ContainerDir, record: &Record) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.fifo_path())
        .ctx("cannot open exec fifo")?;
    let mut got = Vec::new();
    loop {
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&fifo),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(0) => {
                if !crate::state::init_alive(record) {
                    return Err(Error::Child(format!(
                        "container {} init exited before it could start",
                        record.id
                    )));
                }
                continue;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("cannot poll exec fifo", e)),
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read into a stack buffer from an fd we own.
        let n = unsafe { libc::read(fifo.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
            continue;
        }
        if n == 0 {
            // Writer closed: at the init's execve (the fd is close-on-exec), so poststart hooks
            // run after the user's program is executed, as the spec orders. Success was "0",
            // anything else is the init's error line.
            return match got.as_slice() {
                b"0" => Ok(()),
                [] => Err(Error::Child(format!(
                    "container {} init exited before it could start",
                    record.id
                ))),
                msg => Err(Error::Child(String::from_utf8_lossy(msg).into_owned())),
            };
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(Error::io("cannot read exec fifo", e));
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

impl Runtime {
    /// `run`: create and start; unless detached, stay in the foreground as the container's
    /// parent, then delete it (unless `keep`) and return its exit code.
    pub fn run(&self, mut opts: CreateOpts, detach: bool, keep: bool) -> Result<i32> {
        let id = opts.id.clone();
        self.log.debug("run: begin");
        let proxy = if !detach && opts.console_socket.is_none() {
            let (a, b) = UnixStream::pair().ctx("cannot create console socketpair")?;
            opts.console_fd = Some(b.into());
            Some(a)
        } else {
            None
        };
        if !detach {
            crate::supervise::block_signals()?;
        }
        let pid = self.create(opts)?;
        let started = (|| {
            let record = self.record(&id)?;
            let terminal =
                record.config.process().as_ref().and_then(|p| p.terminal()) == Some(true);
            let pty = match (&proxy, terminal) {
                (Some(sock), true) => Some(channel::recv_fd(sock.as_raw_fd())?),
                _ => None,
            };
            self.start(&id)?;
            Ok(pty)
        })();
        let pty = match started {
            Ok(p) => p,
            Err(e) => {
                let _ = self.delete(&id, true);
                return Err(e);
            }
        };
        if detach {
            return Ok(0);
        }
        let code = crate::supervise::wait_foreground(Pid::from_raw(pid), pty)?;
        self.log.debug("run: container exited");
        if keep {
            self.record_exit(&id, code)?;
        } else {
            self.delete(&id, true)?;
        }
        self.log.debug("run: deleted");
        Ok(code)
    }
}
