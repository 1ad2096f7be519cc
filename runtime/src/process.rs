//! The last steps before `execve` of a container process, shared by the init and `exec`:
//! limits, scheduling, identity, capabilities, no_new_privs, cwd, and the fd table.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process};

use crate::error::{Context, Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The program to exec, found the way execvp would, in the container's root and the process's
/// own PATH. Done before `start` is allowed, so a missing binary fails `create` with one line.
pub fn resolve_program(process: &Process) -> Result<CString> {
    let args = process.args().as_deref().unwrap_or_default();
    let prog = args
        .first()
        .ok_or_else(|| Error::InvalidConfig("process.args is empty".into()))?;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidConfig(format!("process.args[0] {prog:?} has a NUL byte")))
    };
    if prog.contains('/') {
        let p = if Path::new(prog).is_absolute() {
            PathBuf::from(prog)
        } else {
            process.cwd().join(prog)
        };
        // As runc's lookup: a directory or a file without an execute bit is refused here, at
        // create, rather than by execve after start.
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() || m.permissions().mode() & 0o111 == 0 => Err(Error::io(
                format!("exec: {prog:?}"),
                std::io::Error::from_raw_os_error(libc::EACCES),
            )),
            Ok(_) => cstr(&p),
            Err(e) => Err(Error::io(format!("exec: {prog:?}"), e)),
        };
    }
    let path = env_value(process, "PATH").unwrap_or(DEFAULT_PATH.to_string());
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(prog);
        if let Ok(m) = std::fs::metadata(&cand) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return cstr(&cand);
            }
        }
    }
    Err(Error::Child(format!(
        "exec: {prog:?}: executable file not found in $PATH"
    )))
}

fn env_value(process: &Process, key: &str) -> Option<String> {
    process
        .env()
        .iter()
        .flatten()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .next_back()
}

/// Run on the CPUs of `list` ("0-3,7"): `process.execCPUAffinity`'s initial and final sets.
pub fn set_cpu_affinity(list: &str, which: &str) -> Result<()> {
    let cpus = crate::util::parse_list(list, nix::sched::CpuSet::count())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "process.execCPUAffinity.{which} {list:?}: use CPU ranges like 0-3,7"
            ))
        })?;
    let mut set = nix::sched::CpuSet::new();
    for c in cpus {
        set.set(c)
            .map_err(|e| Error::sys(format!("execCPUAffinity.{which} CPU {c}"), e))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .ctx(format_args!("cannot set execCPUAffinity.{which} {list:?}"))
}

/// argv and envp as execve wants them.
pub fn argv_envp(process: &Process) -> Result<(Vec<CString>, Vec<CString>)> {
    let to_c = |s: &String| {
        CString::new(s.as_bytes())
            .map_err(|_| Error::InvalidConfig(format!("{s:?} has a NUL byte")))
    };
    let argv = process
        .args()
        .iter()
        .flatten()
        .map(to_c)
        .collect::<Result<Vec<_>>>()?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let envp = env.iter().map(to_c).collect::<Result<Vec<_>>>()?;
    Ok((argv, envp))
}

/// HOME from the container's /etc/passwd, "/" when the user has no entry (runc does the same).
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".into())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::__rlimit_resource_t
}

pub fn set_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } != 0 {
            return Err(Error::io(
                format!(
                    "cannot set {} to soft {} hard {} (raising a hard limit needs CAP_SYS_RESOURCE)",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(adj: Option<i32>) -> Result<()> {
    if let Some(v) = adj {
        crate::util::write_file(Path::new("/proc/self/oom_score_adj"), &v.to_string())?;
    }
    Ok(())
}

pub fn set_io_priority(process: &Process) -> Result<()> {
    let Some(io) = process.io_priority() else {
        return Ok(());
    };
    use oci_spec::runtime::IOPriorityClass::*;
    let class: i64 = match io.class() {
        IoprioClassRt => 1,
        IoprioClassBe => 2,
        IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&io.priority()) {
        return Err(Error::InvalidConfig(format!(
            "ioPriority.priority {} is outside 0..7",
            io.priority()
        )));
    }
    let value = (class << 13) | io.priority();
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, value).
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } != 0 {
        return Err(Error::io(
            "cannot set ioPriority",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

pub fn set_scheduler(process: &Process) -> Result<()> {
    let Some(s) = process.scheduler() else {
        return Ok(());
    };
    use oci_spec::runtime::LinuxSchedulerFlag as F;
    use oci_spec::runtime::LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(self, attr, 0).
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(Error::io(
            format!("cannot set scheduler {:?}", s.policy()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub fn set_personality(linux: Option<&oci_spec::runtime::Linux>) -> Result<()> {
    let Some(p) = linux.and_then(|l| l.personality().as_ref()) else {
        return Ok(());
    };
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let persona: libc::c_ulong = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(Error::Unsupported(
            "linux.personality.flags are not supported".into(),
        ));
    }
    // SAFETY: personality(2) with a plain value.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(Error::io(
            "cannot set personality",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Join a fresh session keyring named after the container, so containers do not share the
/// host's keys (runc does the same unless --no-new-keyring).
pub fn new_session_keyring(name: &str) -> Result<()> {
    let c = CString::new(name).unwrap_or_default();
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    // SAFETY: keyctl with a valid C string.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keyrings, and user namespaces past their key quota, are not errors.
        if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EDQUOT)) {
            return Ok(());
        }
        return Err(Error::io("cannot join a new session keyring", e));
    }
    Ok(())
}

fn to_caps(set: Option<&oci_spec::runtime::Capabilities>) -> Result<HashSet<caps::Capability>> {
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match caps::Capability::from_str(&name) {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => {
                return Err(Error::Unsupported(format!(
                    "capability {name} is unknown to husk-runtime"
                )))
            }
        }
    }
    Ok(out)
}

/// Parsed capability sets, converted before the identity switch so a bad name fails early.
pub struct CapSets {
    bounding: HashSet<caps::Capability>,
    effective: HashSet<caps::Capability>,
    inheritable: HashSet<caps::Capability>,
    permitted: HashSet<caps::Capability>,
    ambient: HashSet<caps::Capability>,
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapSets> {
        Ok(CapSets {
            bounding: to_caps(c.and_then(|c| c.bounding().as_ref()))?,
            effective: to_caps(c.and_then(|c| c.effective().as_ref()))?,
            inheritable: to_caps(c.and_then(|c| c.inheritable().as_ref()))?,
            permitted: to_caps(c.and_then(|c| c.permitted().as_ref()))?,
            ambient: to_caps(c.and_then(|c| c.ambient().as_ref()))?,
        })
    }

    /// Whether the kernel lets a process raise ambient `c`: only if it is also permitted and
    /// inheritable. The spec says a runtime should not fail for capabilities it cannot grant,
    /// and `runc spec` lists ambient ones without inheritable ones: the rest are skipped.
    fn raisable(&self, c: &caps::Capability) -> bool {
        self.permitted.contains(c) && self.inheritable.contains(c)
    }

    /// The ambient capabilities asked for that cannot be raised, by name.
    pub fn unraisable_ambient(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ambient
            .iter()
            .filter(|c| !self.raisable(c))
            .map(|c| c.to_string())
            .collect();
        v.sort();
        v
    }

    /// A capability the container asks for that this runtime itself does not hold cannot be
    /// granted: say which, instead of a bare EPERM from capset.
    fn check_grantable(&self) -> Result<()> {
        let have = caps::read(None, caps::CapSet::Permitted)
            .map_err(|e| Error::Unsupported(format!("cannot read capabilities: {e}")))?;
        for set in [
            &self.effective,
            &self.permitted,
            &self.inheritable,
            &self.ambient,
        ] {
            if let Some(c) = set.iter().find(|c| !have.contains(c)) {
                return Err(Error::Unsupported(format!(
                    "capability {c} was asked for but is not in this host's capability bounding set"
                )));
            }
        }
        Ok(())
    }
}

fn caps_err(what: &str) -> impl Fn(caps::errors::CapsError) -> Error + '_ {
    move |e| Error::Unsupported(format!("cannot set {what} capabilities: {e}"))
}

/// Switch to the process's user and groups, keeping exactly the capabilities it was given.
pub fn set_identity_and_caps(
    process: &Process,
    caps_sets: &CapSets,
    allow_setgroups: bool,
) -> Result<()> {
    caps_sets.check_grantable()?;
    // Bounding first: dropping needs CAP_SETPCAP, which the identity switch may take away.
    for cap in caps::all() {
        if !caps_sets.bounding.contains(&cap)
            && caps::has_cap(None, caps::CapSet::Bounding, cap).unwrap_or(false)
        {
            caps::drop(None, caps::CapSet::Bounding, cap).map_err(caps_err("bounding"))?;
        }
    }
    let user = process.user();
    if allow_setgroups {
        let gids: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).ctx("cannot set additional groups")?;
    } else if user
        .additional_gids()
        .as_ref()
        .is_some_and(|g| !g.is_empty())
    {
        return Err(Error::Unsupported(
            "additionalGids cannot be set: setgroups is denied in this user namespace".into(),
        ));
    }
    // Keep the permitted set across the uid change; effective is rebuilt below.
    nix::sys::prctl::set_keepcaps(true).ctx("cannot set keepcaps")?;
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(format_args!("cannot set gid {}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(format_args!("cannot set uid {}", user.uid()))?;
    nix::sys::prctl::set_keepcaps(false).ctx("cannot clear keepcaps")?;
    // capset checks each call against the sets as they stand: inheritable while we still hold
    // everything, then effective (must stay within permitted), then permitted itself.
    caps::set(None, caps::CapSet::Inheritable, &caps_sets.inheritable)
        .map_err(caps_err("inheritable"))?;
    caps::set(None, caps::CapSet::Effective, &caps_sets.effective)
        .map_err(caps_err("effective"))?;
    caps::set(None, caps::CapSet::Permitted, &caps_sets.permitted)
        .map_err(caps_err("permitted"))?;
    caps::clear(None, caps::CapSet::Ambient).map_err(caps_err("ambient"))?;
    for cap in caps_sets.ambient.iter().filter(|c| caps_sets.raisable(c)) {
        caps::raise(None, caps::CapSet::Ambient, *cap).map_err(caps_err("ambient"))?;
    }
    Ok(())
}

/// Ask the kernel to put the program we are about to exec under the configured AppArmor
/// profile and SELinux label. Both take effect at execve, so this is the last thing before it.
pub fn set_lsm_labels(process: &Process) -> Result<()> {
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        let newer = Path::new("/proc/self/attr/apparmor/exec");
        let path = if newer.exists() {
            newer
        } else {
            Path::new("/proc/self/attr/exec")
        };
        crate::util::write_file(path, &format!("exec {profile}"))?;
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        crate::util::write_file(Path::new("/proc/self/attr/exec"), label)?;
    }
    Ok(())
}

pub fn set_no_new_privs(process: &Process) -> Result<()> {
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().ctx("cannot set no_new_privs")?;
    }
    Ok(())
}

pub fn set_umask(process: &Process) {
    let mask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// chdir to process.cwd, then make sure it is inside the container: a cwd like
/// /proc/self/fd/N names whatever fd N is, which may be a directory of the host (the
/// CVE-2024-21626 attack). Outside the root, the kernel's getcwd answers "(unreachable)…" and
/// libc ENOENT.
pub fn enter_cwd(process: &Process) -> Result<()> {
    nix::unistd::chdir(process.cwd()).ctx(format_args!(
        "cannot enter process.cwd {}",
        process.cwd().display()
    ))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(crate::error::Error::InvalidConfig(format!(
            "process.cwd {} is outside the container",
            process.cwd().display()
        ))),
    }
}

/// Every fd from 3 + preserve_fds up is closed on exec: nothing of the runtime's, or of whoever
/// started it, leaks into the container (the CVE-2024-21626 class).
pub fn close_fds_on_exec(preserve_fds: u32) -> Result<()> {
    let first = 3 + preserve_fds;
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with the CLOEXEC flag only marks fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Old kernels: mark each open fd by hand.
        for entry in std::fs::read_dir("/proc/self/fd")
            .ctx("cannot list /proc/self/fd")?
            .flatten()
        {
            if let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            {
                if fd >= first as i32 {
                    // SAFETY: setting FD_CLOEXEC on a possibly stale fd is harmless.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                }
            }
        }
    }
    // Preserved fds must survive the exec.
    for fd in 3..first {
        // SAFETY: clearing FD_CLOEXEC on an fd the caller asked us to pass.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
    }
    Ok(())
}

/// Restore the signal state a fresh process expects: nothing blocked, default dispositions.
pub fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: resetting to the default handler.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
}

/// execve, mapping failure to the exit codes shells and docker use (126 cannot run, 127 not found).
pub fn exec(path: &CString, argv: &[CString], envp: &[CString]) -> ! {
    let err = match nix::unistd::execve(path, argv, envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let prog = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    eprintln!("husk-runtime: exec {prog:?}: {}", err.desc());
    let code = if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    // SAFETY: leaving the process without running destructors of the runtime.
    unsafe { libc::_exit(code) }
}
