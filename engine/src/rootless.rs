//! Rootless husk: a user without root works as root of a user namespace mapped from
//! `/etc/subuid` and `/etc/subgid` (through `newuidmap`/`newgidmap`), as podman does.
//!
//! One long-lived process, `husk-pause`, holds that user namespace and a mount namespace of
//! its own. Every husk command of the user joins both before it does anything else, so the
//! overlay mounts one command makes are the ones the next command sees, and a file the store
//! holds has the same owner for every command.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::Command;

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{ForkResult, Gid, Uid};

/// What can stop a user's husk from entering its namespace.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RootlessError {
    let what = what.into();
    move |source| RootlessError::Io { what, source }
}

/// Where a user's husk keeps things, as the XDG base directories say.
#[derive(Debug, Clone)]
pub struct UserDirs {
    /// The store: `$XDG_DATA_HOME/husk` (`~/.local/share/husk`).
    pub data: PathBuf,
    /// Live state, gone at logout or boot: `$XDG_RUNTIME_DIR/husk`.
    pub live: PathBuf,
    /// `$XDG_CONFIG_HOME/husk/config.json` (`~/.config/husk/config.json`).
    pub config: PathBuf,
}

/// The directories of the user `uid`, from the environment and its passwd entry's home.
pub fn user_dirs(uid: u32) -> Result<UserDirs, RootlessError> {
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let home = env_dir("HOME")
        .or_else(|| {
            nix::unistd::User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .ok_or_else(|| {
            RootlessError::Setup(format!(
                "rootless husk needs a home directory: HOME is unset and uid {uid} has no passwd entry"
            ))
        })?;
    let data = env_dir("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share"));
    let config = env_dir("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
    // Without XDG_RUNTIME_DIR (su, cron): logind's directory when it is there, else one in
    // /tmp that must be ours.
    let live = match env_dir("XDG_RUNTIME_DIR").or_else(|| {
        let run = PathBuf::from(format!("/run/user/{uid}"));
        fs::metadata(&run)
            .is_ok_and(|m| m.uid() == uid)
            .then_some(run)
    }) {
        Some(l) => l,
        None => tmp_runtime_dir(uid)?,
    };
    Ok(UserDirs {
        data: data.join("husk"),
        live: live.join("husk"),
        config: config.join("husk/config.json"),
    })
}

/// `/tmp/husk-run-UID`, the runtime directory of a user without one (su, cron). /tmp is
/// everyone's: the directory must be made by us, or be a directory (not a link) of ours that
/// no one else may enter, or another user could read or swap what we keep there.
fn tmp_runtime_dir(uid: u32) -> Result<PathBuf, RootlessError> {
    let dir = PathBuf::from(format!("/tmp/husk-run-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("cannot create {}", dir.display()))(e)),
    }
    let m = fs::symlink_metadata(&dir).map_err(io(format!("cannot read {}", dir.display())))?;
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(RootlessError::Setup(format!(
            "{} is not a private directory of uid {uid} (someone else made it?): remove it, or set XDG_RUNTIME_DIR",
            dir.display()
        )));
    }
    Ok(dir)
}

/// One range of subordinate ids: `start` on the host, `count` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// The largest block of ids, besides 0, that a user namespace's `uid_map` (or `gid_map`)
/// text maps: rootless husk's namespace maps the user as 0 and its subordinate ids from 1.
/// Contiguous lines count as one block.
pub fn namespace_range(map: &str) -> Option<IdRange> {
    let mut inside: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
            let (start, _, count) = (f.next()??, f.next()??, f.next()??);
            Some((start, start + count))
        })
        .collect();
    inside.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in inside {
        match merged.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => merged.push((s, e)),
        }
    }
    merged
        .into_iter()
        .map(|(s, e)| (s.max(1), e.min(u64::from(u32::MAX))))
        .filter(|(s, e)| s < e)
        .max_by_key(|(s, e)| e - s)
        .map(|(s, e)| IdRange {
            start: s as u32,
            count: (e - s) as u32,
        })
}

/// The ranges `/etc/subuid` (or `/etc/subgid`) gives the user named `name` with id `id`: lines
/// `NAME:START:COUNT` or `ID:START:COUNT`; comments and malformed lines are skipped.
pub fn subordinate_ranges(text: &str, name: &str, id: u32) -> Vec<IdRange> {
    let id = id.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            let start = start.parse().ok()?;
            let count: u32 = count.parse().ok()?;
            (count > 0).then_some(IdRange { start, count })
        })
        .collect()
}

/// The maps of the user namespace: the user as root (0), then its subordinate ranges from 1 on.
/// As `newuidmap` takes them: `INSIDE HOST COUNT` triples.
pub fn id_map_args(own: u32, ranges: &[IdRange]) -> Vec<String> {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut inside: u64 = 1;
    for r in ranges {
        args.extend([inside.to_string(), r.start.to_string(), r.count.to_string()]);
        inside += u64::from(r.count);
    }
    args
}

/// How many ids the namespace maps (1 with no subordinate range: the user alone).
pub fn mapped_ids(ranges: &[IdRange]) -> u64 {
    1 + ranges.iter().map(|r| u64::from(r.count)).sum::<u64>()
}

/// The environment variable that tells a husk process started inside the namespace (a monitor,
/// the layer reaper) whose namespace it is: the user's uid on the host.
pub const ENV: &str = "_HUSK_ROOTLESS_UID";

/// The host uid of a rootless husk: our own when we are not root, or the one the process that
/// entered the namespace left in `_HUSK_ROOTLESS_UID`. None for root.
pub fn rootless_uid() -> Option<u32> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Some(euid.as_raw());
    }
    if !husk_sys::in_user_namespace() {
        return None;
    }
    std::env::var(ENV).ok().and_then(|v| v.parse().ok())
}

/// Whether a container of this process may hold supplementary group `gid`: any group for
/// root, else one the user namespace maps, and none where setgroups is denied (a single-id map).
pub fn gid_usable(gid: u32) -> bool {
    if !husk_sys::in_user_namespace() {
        return true;
    }
    if fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny") {
        return false;
    }
    let map = fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
    map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(gid))
    })
}

/// Whether this husk is rootless (a user's, in its namespace): what it may make is decided by
/// this, not by being in some user namespace, which root in an unprivileged LXC is too.
pub fn is_rootless() -> bool {
    rootless_uid().is_some()
}

/// What a rootless husk may do with cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delegation {
    /// The highest cgroup v2 directory above (or at) this process's own that the user owns,
    /// as systemd's `user@UID.service` is with `Delegate=yes`; its path in the hierarchy.
    Subtree(PathBuf),
    /// None is the user's, and why.
    Refused(String),
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Finds the cgroup subtree delegated to this user: the ancestors of this process's cgroup
/// whose directory, `cgroup.procs` and `cgroup.subtree_control` are the user's (a delegation
/// hands over exactly those), up to the first that is not.
pub fn delegation() -> Delegation {
    let v2 = nix::sys::statfs::statfs(CGROUP_ROOT)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !v2 {
        return Delegation::Refused(
            "this host's cgroups are v1, where nothing is delegated to a user (limits need cgroup v2 with a subtree delegated to the user)".into(),
        );
    }
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| PathBuf::from(p.trim())))
        })
        .unwrap_or_else(|| PathBuf::from("/"));
    let me = nix::unistd::geteuid().as_raw();
    let uid = rootless_uid().unwrap_or(me);
    let owned = |p: &std::path::Path| fs::symlink_metadata(p).is_ok_and(|m| m.uid() == me);
    let mut found = None;
    let mut at = Some(own.as_path());
    while let Some(rel) = at {
        let dir = std::path::Path::new(CGROUP_ROOT).join(rel.strip_prefix("/").unwrap_or(rel));
        if rel == std::path::Path::new("/")
            || !owned(&dir)
            || !owned(&dir.join("cgroup.procs"))
            || !owned(&dir.join("cgroup.subtree_control"))
        {
            break;
        }
        found = Some(rel.to_path_buf());
        at = rel.parent();
    }
    match found {
        Some(d) => Delegation::Subtree(d),
        None => Delegation::Refused(format!(
            "its cgroup {} is not delegated to uid {uid} (start husk in a cgroup v2 subtree the user owns, as `systemd-run --user --scope husk ...` does under systemd's user@{uid}.service)",
            own.display()
        )),
    }
}

/// The limits a spec asks for (the keys of `linux.resources` that need a cgroup), by the
/// runtime's own rule of what a cgroup enforces; none for a spec without any.
fn limits_asked(spec: &serde_json::Value) -> Vec<String> {
    let resources = &spec["linux"]["resources"];
    let typed: Option<oci_spec::runtime::LinuxResources> =
        serde_json::from_value(resources.clone()).ok();
    if typed.is_some() && !husk_runtime::cgroups::has_limits(typed.as_ref()) {
        return Vec::new();
    }
    resources
        .as_object()
        .map(|r| {
            r.iter()
                .filter(|(k, v)| *k != "devices" && !v.is_null())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The cgroup v2 controllers the spec's limits need.
fn controllers_for(spec: &serde_json::Value) -> Vec<&'static str> {
    let Ok(r) = serde_json::from_value::<oci_spec::runtime::LinuxResources>(
        spec["linux"]["resources"].clone(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if r.memory()
        .as_ref()
        .is_some_and(|m| *m != Default::default())
    {
        out.push("memory");
    }
    if let Some(c) = r.cpu() {
        if c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.idle().is_some()
        {
            out.push("cpu");
        }
        if c.cpus().is_some() || c.mems().is_some() {
            out.push("cpuset");
        }
    }
    if r.pids().is_some() {
        out.push("pids");
    }
    if r.block_io()
        .as_ref()
        .is_some_and(|b| *b != Default::default())
    {
        out.push("io");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("hugetlb");
    }
    out
}

/// Places a rootless container's cgroup in the user's delegated subtree (`DELEGATED/husk/ID`),
/// where its limits, stats, pause and kill work as root's do. Without a delegation it gets no
/// cgroup, and a spec asking for limits is refused, naming them and what to delegate, before
/// anything is made.
pub fn place_cgroup(spec: &mut serde_json::Value, id: &str) -> Result<(), crate::error::Error> {
    let asked = limits_asked(spec);
    let refuse = |why: String| {
        Err(crate::error::Error::Invalid(format!(
            "rootless husk cannot set {} limits: {why}",
            asked.join(", ")
        )))
    };
    match delegation() {
        Delegation::Subtree(d) => {
            let dir = std::path::Path::new(CGROUP_ROOT).join(d.strip_prefix("/").unwrap_or(&d));
            let busy =
                fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty());
            if busy && !asked.is_empty() {
                return refuse(format!(
                    "the cgroup delegated to this user, {}, has processes of its own, so no cgroup below it gets controllers (cgroup v2's no-internal-processes rule; start husk in a child cgroup of it)",
                    d.display()
                ));
            }
            let has = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let has: Vec<&str> = has.split_whitespace().collect();
            let missing: Vec<&str> = controllers_for(spec)
                .into_iter()
                .filter(|c| !has.contains(c))
                .collect();
            if !missing.is_empty() {
                return refuse(format!(
                    "the {} controller(s) are not delegated to uid {} (cgroup {} has: {}; systemd's Delegate= names them)",
                    missing.join(", "),
                    rootless_uid().unwrap_or(0),
                    d.display(),
                    if has.is_empty() { "none".to_string() } else { has.join(" ") }
                ));
            }
            spec["linux"]["cgroupsPath"] = d.join("husk").join(id).to_string_lossy().into();
            Ok(())
        }
        Delegation::Refused(why) if !asked.is_empty() => refuse(why),
        Delegation::Refused(_) => Ok(()),
    }
}

/// The name of the pause process, as /proc/PID/comm shows it.
const PAUSE_COMM: &str = "husk-pause";

/// Joins the user's namespace, starting its pause process first if none runs; nothing for a
/// process already in it (root there). Must be called while the process has one thread (setns
/// into a user namespace requires it). Afterwards the process is root of the namespace.
pub fn enter(dirs: &UserDirs) -> Result<(), RootlessError> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return Ok(());
    }
    let gid = nix::unistd::getegid().as_raw();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dirs.live)
        .map_err(io(format!("cannot create {}", dirs.live.display())))?;
    let meta =
        fs::metadata(&dirs.live).map_err(io(format!("cannot read {}", dirs.live.display())))?;
    if meta.uid() != uid {
        return Err(RootlessError::Setup(format!(
            "{} belongs to uid {}, not to you (uid {uid}): set XDG_RUNTIME_DIR to a directory of yours",
            dirs.live.display(),
            meta.uid()
        )));
    }
    let lock_path = dirs.live.join("pause.lock");
    let _lock = husk_sys::lock_file(&lock_path, true)
        .map_err(io(format!("cannot lock {}", lock_path.display())))?;
    let pid_path = dirs.live.join("pause.pid");
    let running = fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&pid| is_pause_of(pid, uid));
    let pid = match running {
        Some(pid) => pid,
        None => {
            let pid = start_pause(uid, gid)?;
            let tmp = dirs.live.join("pause.pid.new");
            let written =
                fs::write(&tmp, pid.to_string()).and_then(|()| fs::rename(&tmp, &pid_path));
            if let Err(e) = written {
                // A pause process no pid file names would never be found again.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(io(format!("cannot write {}", pid_path.display()))(e));
            }
            pid
        }
    };
    join(pid)?;
    std::env::set_var(ENV, uid.to_string());
    Ok(())
}

/// Creates `dir` (and its parents) for the user's eyes only; an existing one keeps its mode.
pub fn private_dir(dir: &std::path::Path) -> Result<(), RootlessError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("cannot create {}", dir.display())))
}

/// Ends the pause process `pause.pid` names, if it is one; its pid. Called from inside its
/// namespace, where owners read differently: the name and the user's private directory vouch.
pub fn end_pause(dirs: &UserDirs) -> Option<i32> {
    let pid_path = dirs.live.join("pause.pid");
    let pid: i32 = fs::read_to_string(&pid_path).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let _ = fs::remove_file(&pid_path);
    if comm.trim_end() != PAUSE_COMM {
        return None;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .ok()?;
    Some(pid)
}

/// Whether `pid` is a pause process of user `uid` (a pid file can outlive its process).
fn is_pause_of(pid: i32, uid: u32) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let owner = fs::metadata(format!("/proc/{pid}")).map(|m| m.uid());
    comm.trim_end() == PAUSE_COMM && owner.is_ok_and(|o| o == uid)
}

fn join(pid: i32) -> Result<(), RootlessError> {
    let open = |ns: &str| -> Result<OwnedFd, RootlessError> {
        let p = format!("/proc/{pid}/ns/{ns}");
        fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(io(format!("cannot open {p} of husk's pause process")))
    };
    let (user, mnt) = (open("user")?, open("mnt")?);
    // setns into a mount namespace moves the cwd to its root: relative paths (`build .`,
    // `load -i x.tar`) must mean what they meant to the caller, so the cwd is found again by
    // its path, which the namespace (a copy of the host's) has too.
    let cwd = std::env::current_dir().ok();
    setns(user.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(|e| {
        RootlessError::Setup(format!(
            "cannot join the user namespace of husk's pause process {pid}: {e}"
        ))
    })?;
    setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS).map_err(|e| {
        RootlessError::Setup(format!(
            "cannot join the mount namespace of husk's pause process {pid}: {e}"
        ))
    })?;
    become_root()?;
    if let Some(cwd) = cwd {
        std::env::set_current_dir(&cwd).map_err(io(format!(
            "cannot return to the working directory {}",
            cwd.display()
        )))?;
    }
    Ok(())
}

/// Our ids inside the namespace: root, with root's group alone (the host's other groups are
/// unmapped there; without setgroups rights, as with a single-id map, they stay).
fn become_root() -> Result<(), RootlessError> {
    let _ = nix::unistd::setgroups(&[Gid::from_raw(0)]);
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .and_then(|()| nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)))
        .map_err(|e| RootlessError::Setup(format!("cannot become root of the user namespace: {e}")))
}

/// Starts the pause process: it makes the user namespace, we map it, it makes its mount
/// namespace and then sleeps for good. Returns its pid.
fn start_pause(uid: u32, gid: u32) -> Result<i32, RootlessError> {
    let user = nix::unistd::User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = fs::read_to_string("/etc/subgid").unwrap_or_default();
    let uids = subordinate_ranges(&subuid, &user, uid);
    // newgidmap looks the caller up by user name (or uid) in /etc/subgid, as newuidmap does.
    let gids = subordinate_ranges(&subgid, &user, uid);
    let (to_child, from_parent) = std::os::unix::net::UnixStream::pair()
        .map_err(io("cannot make a socket pair for husk's pause process"))?;
    // SAFETY: we have one thread; the child only runs the code below and never returns.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| RootlessError::Setup(format!("cannot fork husk's pause process: {e}")))?
    {
        ForkResult::Child => {
            drop(to_child);
            pause_main(from_parent)
        }
        ForkResult::Parent { child } => {
            drop(from_parent);
            let pid = child.as_raw();
            let result = map_child(pid, uid, gid, &uids, &gids, &to_child);
            if let Err(e) = result {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(e);
            }
            Ok(pid)
        }
    }
}

fn map_child(
    pid: i32,
    uid: u32,
    gid: u32,
    uids: &[IdRange],
    gids: &[IdRange],
    mut sock: &std::os::unix::net::UnixStream,
) -> Result<(), RootlessError> {
    let mut b = [0u8; 1];
    let gone = |what: &str| {
        RootlessError::Setup(format!(
            "husk's pause process failed while {what} (a kernel or sysctl that forbids unprivileged user namespaces?)"
        ))
    };
    if sock.read(&mut b).ok() != Some(1) || b[0] != b'u' {
        return Err(gone("making its user namespace"));
    }
    write_map(pid, "uid", uid, uids)?;
    write_map(pid, "gid", gid, gids)?;
    sock.write_all(b"m")
        .map_err(io("cannot tell husk's pause process its maps are written"))?;
    if sock.read(&mut b).ok() != Some(1) || b[0] != b'r' {
        return Err(gone("making its mount namespace"));
    }
    Ok(())
}

/// Writes the `kind` ("uid" or "gid") map of `pid`: with newuidmap/newgidmap when the user has
/// subordinate ids, else the user alone, as an unprivileged process may write itself.
fn write_map(pid: i32, kind: &str, own: u32, ranges: &[IdRange]) -> Result<(), RootlessError> {
    if ranges.is_empty() {
        if kind == "gid" {
            fs::write(format!("/proc/{pid}/setgroups"), "deny")
                .map_err(io(format!("cannot write /proc/{pid}/setgroups")))?;
        }
        let p = format!("/proc/{pid}/{kind}_map");
        return fs::write(&p, format!("0 {own} 1\n")).map_err(io(format!("cannot write {p}")));
    }
    let tool = format!("new{kind}map");
    let out = Command::new(&tool)
        .arg(pid.to_string())
        .args(id_map_args(own, ranges))
        .output()
        .map_err(|e| {
            RootlessError::Setup(format!(
                "cannot run {tool}: {e} (it comes with Debian's uidmap package)"
            ))
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(RootlessError::Setup(format!(
            "{tool} refused the ranges of /etc/sub{kind}: {}",
            why.trim()
        )));
    }
    Ok(())
}

/// The pause process: a user namespace (mapped by its parent), a mount namespace, then sleep.
fn pause_main(sock: std::os::unix::net::UnixStream) -> ! {
    let code = match pause_setup(&sock) {
        Ok(()) => {
            drop(sock);
            loop {
                nix::unistd::pause();
            }
        }
        Err(_) => 1,
    };
    // SAFETY: leaving the forked child without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

fn pause_setup(mut sock: &std::os::unix::net::UnixStream) -> Result<(), nix::Error> {
    use std::os::fd::AsRawFd;
    // Nothing of the parent's but the socket: not its lock on pause.lock, not a caller's pipe.
    let keep = sock.as_raw_fd() as u32;
    // SAFETY: close_range on fds this process no longer uses.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
    }
    unshare(CloneFlags::CLONE_NEWUSER)?;
    let _ = sock.write_all(b"u");
    let mut b = [0u8; 1];
    if sock.read(&mut b).ok() != Some(1) {
        return Err(nix::Error::EPIPE);
    }
    let _ = nix::unistd::setgroups(&[Gid::from_raw(0)]);
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
    unshare(CloneFlags::CLONE_NEWNS)?;
    // Host mounts still arrive here; ours never leave.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    nix::unistd::setsid()?;
    let _ = nix::unistd::chdir("/");
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard fds of this process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // SAFETY: prctl(PR_SET_NAME) with a NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"husk-pause".as_ptr()) };
    // SIGTERM and friends from a terminal's hangup must not end the namespace under its users.
    for s in [
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGPIPE,
    ] {
        // SAFETY: ignoring a signal.
        let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
    }
    let _ = sock.write_all(b"r");
    husk_sys::memory::shed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_names_the_controller_it_needs() {
        let spec = |r: serde_json::Value| serde_json::json!({"linux": {"resources": r}});
        assert_eq!(
            controllers_for(&spec(serde_json::json!({
                "memory": {"limit": 67108864},
                "cpu": {"quota": 50000, "period": 100000, "cpus": "0"},
                "pids": {"limit": 10}
            }))),
            ["memory", "cpu", "cpuset", "pids"]
        );
        assert_eq!(
            controllers_for(&spec(
                serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]})
            )),
            Vec::<&str>::new()
        );
        assert!(limits_asked(&spec(serde_json::json!({"devices": []}))).is_empty());
        assert_eq!(
            limits_asked(&spec(serde_json::json!({"pids": {"limit": 5}}))),
            ["pids"]
        );
    }

    #[test]
    fn a_namespace_range_leaves_out_the_user_and_joins_contiguous_lines() {
        let r = |start, count| Some(IdRange { start, count });
        assert_eq!(namespace_range("0 1001 1\n1 100000 65536\n"), r(1, 65536));
        assert_eq!(
            namespace_range("0 1001 1\n1 100000 10\n11 300000 20\n40 500000 5\n"),
            r(1, 30)
        );
        assert_eq!(namespace_range("0 1001 1\n"), None);
        assert_eq!(namespace_range("0 0 4294967295\n"), r(1, 4294967294));
        assert_eq!(namespace_range("garbage\n"), None);
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_id() {
        let text = "# comment\nalice:100000:65536\n1001:300000:10\nbob:200000:65536\nalice:bad:1\nalice:5:0\n";
        assert_eq!(
            subordinate_ranges(text, "alice", 1001),
            vec![
                IdRange {
                    start: 100000,
                    count: 65536
                },
                IdRange {
                    start: 300000,
                    count: 10
                }
            ]
        );
        assert!(subordinate_ranges(text, "carol", 1003).is_empty());
    }

    #[test]
    fn the_user_is_root_and_its_ranges_follow() {
        let r = [
            IdRange {
                start: 100000,
                count: 65536,
            },
            IdRange {
                start: 300000,
                count: 10,
            },
        ];
        assert_eq!(
            id_map_args(1001, &r),
            ["0", "1001", "1", "1", "100000", "65536", "65537", "300000", "10"]
        );
        assert_eq!(mapped_ids(&r), 65547);
        assert_eq!(mapped_ids(&[]), 1);
    }
}
