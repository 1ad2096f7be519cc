//! The monitor of one container: it creates and starts the container through husk-runtime's
//! library, holds the container's stdio, writes the json-file log, records the exit code,
//! finish time and OOM kill, and honours `--rm`. For an attached `husk run` it is the `husk`
//! process itself; `run -d` and `start` fork one per container (setsid, subreaper), as
//! DESIGN.md decides: no daemon.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::attach;
use crate::error::{failed, Context, Error, Result};
use crate::events;
use crate::health::Checker;
use crate::layers::{mount_rootfs, unmount_rootfs};
use crate::logs;
use crate::store::{self, Container, Holder, Status};
use crate::time;
use crate::usage::{self, ResourceUsage, Sampler};

/// How a supervised container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Its exit code, 128+N for signal N.
    pub code: i32,
    /// When the engine ended it (its `timeout` ran out): why, in one line naming it.
    pub killed: Option<String>,
    /// What it used, from its cgroup: with `RunOptions::report`, or when its record is kept
    /// (no `--rm`); None otherwise, or where it never started.
    pub usage: Option<ResourceUsage>,
}

/// How the container's stdio is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// The container gets our terminal or fds directly; nothing is logged (an attached
    /// `run --rm`: the fastest start).
    Direct,
    /// Output goes to the log and, when attached, to our stdout/stderr too (those of
    /// `streams`; stdin is ours only if it is one of them).
    Logged {
        attach: bool,
        streams: crate::options::Streams,
    },
}

impl Stdio {
    /// Is someone at the other end (our caller's terminal or pipes)?
    fn attached(self) -> bool {
        matches!(self, Stdio::Direct | Stdio::Logged { attach: true, .. })
    }
}

fn dup(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we own.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot dup a descriptor");
    }
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn dup2(from: RawFd, to: RawFd) {
    // SAFETY: dup2 between descriptors of this process.
    unsafe { libc::dup2(from, to) };
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")
}

/// Create and start container `id`, then hold it until it exits; returns how it ended.
/// `started` hears once whether the start worked (a detached `run` waits for that). With a
/// restart policy that says so, a detached monitor starts it again after docker's back-off
/// (100 ms, doubling, at most a minute, back to 100 ms after 10 s of running); an attached
/// one hands the container to a detached monitor and returns the exit.
pub fn supervise(
    root: &Path,
    id: &str,
    stdio: Stdio,
    started: &mut dyn FnMut(std::result::Result<(), &Error>),
) -> Result<Exit> {
    supervise_joined(root, id, stdio, started, None)
}

/// `supervise`, with `join` (an `attach` client connected before the start, and its
/// terminal's size) as the first run's first client.
fn supervise_joined(
    root: &Path,
    id: &str,
    stdio: Stdio,
    started: &mut dyn FnMut(std::result::Result<(), &Error>),
    mut join: Option<attach::Join>,
) -> Result<Exit> {
    let mut noop = |_: std::result::Result<(), &Error>| {};
    let mut first = true;
    let mut delay = BACKOFF_START;
    loop {
        let began = std::time::Instant::now();
        let report: &mut dyn FnMut(std::result::Result<(), &Error>) =
            if first { &mut *started } else { &mut noop };
        first = false;
        let (exit, again) = supervise_once(root, id, stdio, report, join.take())?;
        if !again {
            return exit;
        }
        delay = if began.elapsed() >= std::time::Duration::from_secs(10) {
            BACKOFF_START
        } else {
            delay
        };
        if stdio.attached() {
            // docker's attached run returns the exit; the restarts go on without it.
            wait_backoff(root, id, delay);
            let _ = Container::update(root, id, |c| {
                c.state.monitor_pid = 0;
                c.state.monitor_start = 0;
            });
            if !stopped_by_user(root, id) {
                let _ = spawn_detached(root, id);
            }
            return exit;
        }
        if !wait_backoff(root, id, delay) {
            let _ = Container::update(root, id, |c| {
                c.state.restarting = false;
                c.state.monitor_pid = 0;
                c.state.monitor_start = 0;
            });
            return exit;
        }
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

const BACKOFF_START: std::time::Duration = std::time::Duration::from_millis(100);
const BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(60);

fn stopped_by_user(root: &Path, id: &str) -> bool {
    Container::load(root, id).map_or(true, |c| c.state.manually_stopped)
}

/// Sleep out a restart's back-off; false when a `stop`, `kill` or `rm` came meanwhile.
fn wait_backoff(root: &Path, id: &str, delay: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + delay;
    loop {
        if stopped_by_user(root, id) {
            return false;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
    }
}

/// Does the container's restart policy want it started again after exiting with `code`?
pub(crate) fn restart_wanted(c: &Container, code: i32) -> bool {
    if c.state.manually_stopped {
        return false;
    }
    let p = &c.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => code != 0 && (p.max_retries == 0 || c.state.restart_count < p.max_retries),
        _ => false,
    }
}

/// One run of the container; how it ended, and whether its policy restarts it.
fn supervise_once(
    root: &Path,
    id: &str,
    stdio: Stdio,
    started: &mut dyn FnMut(std::result::Result<(), &Error>),
    join: Option<attach::Join>,
) -> Result<(Result<Exit>, bool)> {
    let c = Container::load(root, id)?;
    let rt = store::runtime(root);
    let timed_out = Arc::new(AtomicBool::new(false));
    // In the index while held: if this process dies, the next husk command finds what it
    // left (see orphans).
    let holder = if stdio.attached() {
        Holder::Attached
    } else {
        Holder::Detached
    };
    store::mark_monitored(root, id, holder)?;
    let mut run = Running::default();
    let result = (|| {
        mount_rootfs(root, &c)?;
        // The host ports stay held (bound) while the container runs.
        let _ports = crate::networking::attach(root, &c)?;
        launch(root, &c, &rt, stdio, started, &timed_out, &mut run, join)
    })();
    // Whatever happened: the runtime's state, the cgroup and the mount go; the record says
    // how it ended, and what it used, read before its cgroup goes.
    let cgroup = rt.record(id).ok().and_then(|r| r.cgroup);
    let oom = cgroup
        .as_ref()
        .is_some_and(|cg| husk_runtime::cgroups::stats::oom_kills(cg) > 0);
    let code_so_far = match &result {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    let fired = timed_out
        .load(Ordering::SeqCst)
        .then(|| c.timeout.unwrap_or_default());
    // Read only where someone will see it: `--report`, or a record kept for `inspect` (a
    // plain `run --rm` skips the dozen reads).
    let wanted = c.sample_usage || !c.auto_remove;
    let used = match (&cgroup, run.started) {
        (Some(cg), Some(t)) if wanted => Some(usage::collect(
            cg,
            run.sampler.take(),
            t.elapsed(),
            code_so_far,
            usage::exit_reason(code_so_far, oom, fired),
        )),
        _ => None,
    };
    let ran = run.started.is_some();
    let mut attached = run.attach.take();
    drop(run);
    let _ = rt.delete(id, true);
    crate::networking::detach(root, id);
    unmount_rootfs(root, id);
    let (code, mut error) = match &result {
        Ok(code) => (*code, String::new()),
        Err(e) => (e.exit_code(), e.to_string()),
    };
    let mut killed = None;
    if timed_out.load(Ordering::SeqCst) {
        error = format!(
            "killed after its --timeout of {} s",
            c.timeout.unwrap_or_default()
        );
        killed = Some(format!("container {} {error}", c.name));
    }
    if let Err(e) = &result {
        started(Err(e));
    }
    let mut again = false;
    let updated = Container::update(root, id, |c| {
        c.state.status = Status::Exited;
        c.state.exit_code = code;
        c.state.oom_killed = oom;
        c.state.finished_at = Some(time::now());
        c.state.pid = 0;
        c.state.error = error.clone();
        c.state.usage = used.clone();
        again = restart_wanted(c, code);
        if again {
            // Still ours: `ps` says Restarting, and no `start` races the back-off.
            c.state.restarting = true;
            c.state.restart_count += 1;
            return;
        }
        // Done with it, unless it is ours to remove next: the process that held it may live
        // on (an attached run in a program that embeds the engine), and must not look busy.
        if !c.auto_remove || c.state.restarting {
            c.state.monitor_pid = 0;
            c.state.monitor_start = 0;
        }
    });
    if ran {
        // The record as it is now: a `rename` meanwhile names it.
        let now = updated.as_ref().unwrap_or(&c);
        let mut attrs = now.event_attributes();
        if oom {
            events::emit(root, "container", "oom", id, &attrs);
        }
        let code_text = code.to_string();
        attrs.push(("exitCode", &code_text));
        events::emit(root, "container", "die", id, &attrs);
    }
    // Clients hear the exit once it is recorded: `rm` or `start` right after works.
    if let Some(server) = &mut attached {
        server.finish(code);
    }
    drop(attached);
    let restarting = updated.as_ref().is_ok_and(|c| c.state.restarting);
    let removing = c.auto_remove && !restarting;
    if removing {
        let _ = crate::remove::remove(root, &c, true);
    }
    store::unmark_monitored(root, id);
    if !removing {
        updated?;
    }
    Ok((
        result.map(|code| Exit {
            code,
            killed,
            usage: used,
        }),
        again,
    ))
}

/// What `launch` leaves for the end of the run: when the container's process started, and
/// the sampler of the peaks the kernel does not keep (with `--report`).
#[derive(Default)]
struct Running {
    started: Option<std::time::Instant>,
    sampler: Option<Sampler>,
    /// The `attach` socket and its clients, told the exit once it is recorded.
    attach: Option<attach::Server>,
}

#[allow(clippy::too_many_arguments)]
fn launch(
    root: &Path,
    c: &Container,
    rt: &husk_runtime::Runtime,
    stdio: Stdio,
    started: &mut dyn FnMut(std::result::Result<(), &Error>),
    timed_out: &Arc<AtomicBool>,
    run: &mut Running,
    join: Option<attach::Join>,
) -> Result<i32> {
    let dir = store::dir(root, &c.id);
    let proxy = if c.tty {
        let (a, b) = UnixStream::pair().context("cannot create a console socket pair")?;
        Some((a, b))
    } else {
        None
    };
    let (mut console_ours, console_theirs) = match proxy {
        Some((a, b)) => (Some(a), Some(OwnedFd::from(b))),
        None => (None, None),
    };
    let attach = stdio.attached();
    let joins = match stdio {
        Stdio::Logged { streams, .. } => streams,
        Stdio::Direct => Default::default(),
    };
    // The container's stdio while it is created: ours, swapped in, and back out whatever
    // happens (the guard), so husk's own errors still reach the user.
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    let saved = StdioGuard::save(&null)?;
    let mut pipes = None;
    // Detached with -i: stdin stays open (a pipe nobody writes yet), as docker keeps it.
    let mut _stdin_keep = None;
    if !(attach && c.interactive && joins.stdin) {
        if c.interactive && !c.tty {
            let (r, w) = pipe()?;
            dup2(r.as_raw_fd(), 0);
            _stdin_keep = Some(w);
        } else {
            dup2(null.as_raw_fd(), 0);
        }
    }
    if stdio != Stdio::Direct && !c.tty {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        dup2(out_w.as_raw_fd(), 1);
        dup2(err_w.as_raw_fd(), 2);
        pipes = Some((out_r, err_r));
    }
    husk_runtime::supervise::block_signals()?;
    let created = rt.create(husk_runtime::CreateOpts {
        id: c.id.clone(),
        bundle: dir.clone(),
        console_fd: console_theirs,
        ..Default::default()
    });
    drop(saved);
    let pid = created?;
    let pty = match console_ours.take() {
        Some(sock) => Some(husk_runtime::channel::recv_fd(sock.as_raw_fd())?),
        None => None,
    };
    let (monitor_pid, monitor_start) = (std::process::id() as i32, own_start());
    let init_start = husk_runtime::util::process_start_time(pid).unwrap_or(0);
    // The log exists before the caller hears that the container started, so a `logs -f`
    // right after `run -d` finds it.
    let log = match stdio {
        Stdio::Direct => None,
        _ => Some(logs::Writer::open(
            &store::log_path(root, &c.id),
            &c.log_config,
            logs::attrs_of(c),
        )?),
    };
    // Bound before the caller hears that it started: an `attach` right after `run -d` finds
    // it. Without it the container runs all the same, unattachable.
    let mut server = match stdio {
        Stdio::Direct => None,
        _ => attach::Server::bind(&dir).ok(),
    };
    if let Some(j) = join {
        // Its terminal's size before the container's first word (a shell asks at once).
        if let (Some(p), Some((rows, cols))) = (&pty, j.size) {
            husk_runtime::tty::set_size(p.as_raw_fd(), rows, cols);
        }
        if let Some(s) = &mut server {
            s.add(j.sock);
        }
    }
    if c.sample_usage {
        run.sampler = rt
            .record(&c.id)
            .ok()
            .and_then(|r| r.cgroup)
            .and_then(|cg| Sampler::start(&cg));
    }
    rt.start(&c.id)?;
    run.started = Some(std::time::Instant::now());
    Container::update(root, &c.id, |c| {
        c.state.status = Status::Running;
        c.state.pid = pid;
        c.state.init_start = init_start;
        c.state.monitor_pid = monitor_pid;
        c.state.monitor_start = monitor_start;
        c.state.started_at = Some(time::now());
        c.state.finished_at = None;
        c.state.exit_code = 0;
        c.state.oom_killed = false;
        c.state.error.clear();
        c.state.restarting = false;
        c.state.health = c.healthcheck.as_ref().map(|_| store::Health::starting());
    })?;
    started(Ok(()));
    events::emit(root, "container", "start", &c.id, &c.event_attributes());
    let checker = match Checker::spawn(root, c, pid) {
        Ok(checker) => checker,
        Err(e) => {
            // The container runs on; `inspect` says why nothing judges its health.
            let _ = Container::update(root, &c.id, |c| {
                if let Some(h) = &mut c.state.health {
                    h.log.push(store::HealthResult {
                        start: time::now(),
                        end: time::now(),
                        exit_code: -1,
                        output: e.to_string(),
                    });
                }
            });
            None
        }
    };
    let watchdog = match c.timeout {
        Some(secs) => Some(arm_timeout(pid, secs, timed_out.clone())?),
        None => None,
    };
    let result = match log {
        None => {
            husk_runtime::supervise::wait_foreground(Pid::from_raw(pid), pty).map_err(Error::from)
        }
        Some(log) => {
            // What `attach` clients type goes to the container's stdin when it has one open
            // (-i): its terminal, or the pipe kept for it.
            let stdin_to = match (c.interactive, &pty, &_stdin_keep) {
                (false, _, _) => None,
                (true, Some(p), _) => Some(p.as_raw_fd()),
                (true, None, w) => w.as_ref().map(|w| w.as_raw_fd()),
            };
            let streams: Vec<(OwnedFd, usize)> = match (pipes, pty) {
                (Some((o, e)), _) => vec![(o, 0), (e, 1)],
                (None, Some(p)) => vec![(p, 0)],
                (None, None) => Vec::new(),
            };
            let mut joined = Joined {
                server,
                stdin_to,
                tty: c.tty,
            };
            // docker puts the terminal in raw mode and forwards stdin only with -i and -t.
            let r = pump(
                Pid::from_raw(pid),
                streams,
                log,
                attach && c.tty && c.interactive && joins.stdin,
                attach,
                [joins.stdout, joins.stderr],
                &mut joined,
            );
            run.attach = joined.server.take();
            r
        }
    };
    if let Some(checker) = checker {
        checker.stop();
    }
    // The init is gone (or the wait failed: then it is killed now), so the watchdog ends at
    // once; joined, the monitor is single-threaded again before a restart forks.
    if let Some(w) = watchdog {
        if result.is_err() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = w.join();
    }
    result
}

/// `--timeout`: a thread that SIGKILLs the init after `secs`, through a pidfd so that a pid
/// reused after the init was reaped is never hit; `fired` says it did. It waits on the pidfd,
/// which turns readable when the init exits, so it ends with the container.
fn arm_timeout(pid: i32, secs: u64, fired: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>> {
    // SAFETY: pidfd_open of our container's init; the fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("--timeout needs pidfd_open (Linux 5.3+)");
    }
    // SAFETY: just opened.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    std::thread::Builder::new()
        .name("timeout".into())
        .spawn(move || {
            // Signals for husk are the main thread's to take (it forwards them); none here.
            let _ = nix::sys::signal::SigSet::all().thread_block();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut p = libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                // SAFETY: poll on one pollfd we own.
                match unsafe { libc::poll(&mut p, 1, ms) } {
                    n if n > 0 => return, // the init exited first
                    0 => {}
                    // Cannot wait on it (EINTR aside): sleep out the time instead.
                    _ if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) => {
                        std::thread::sleep(left)
                    }
                    _ => {}
                }
            }
            // SAFETY: pidfd_send_signal on our pidfd; ESRCH once the init is gone.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if r == 0 {
                fired.store(true, Ordering::SeqCst);
            }
        })
        .context("cannot start the --timeout thread")
}

/// Our fds 0-2, put back when dropped. A closed one is saved as /dev/null.
struct StdioGuard([OwnedFd; 3]);

impl StdioGuard {
    fn save(null: &fs::File) -> Result<StdioGuard> {
        let one = |fd: RawFd| dup(fd).or_else(|_| dup(null.as_raw_fd()));
        Ok(StdioGuard([one(0)?, one(1)?, one(2)?]))
    }
}

impl Drop for StdioGuard {
    fn drop(&mut self) {
        for (fd, s) in self.0.iter().enumerate() {
            dup2(s.as_raw_fd(), fd as RawFd);
        }
    }
}

fn own_start() -> u64 {
    husk_runtime::util::process_start_time(std::process::id() as i32).unwrap_or(0)
}

/// The `attach` clients of a run: their socket, where their input goes, and whether the
/// container has a terminal (their size is its size).
struct Joined {
    server: Option<attach::Server>,
    stdin_to: Option<RawFd>,
    tty: bool,
}

/// Where a ready descriptor of `pump`'s poll came from.
#[derive(Clone, Copy)]
enum Source {
    Stream(usize),
    Stdin,
    /// Room in the container's stdin for what waits.
    StdinRoom,
    Attach(usize),
}

/// Copy the container's output to the log (and our stdout/stderr when attached, and to
/// `attach` clients), forward signals when attached, until the init exits and its output
/// is drained.
fn pump(
    pid: Pid,
    streams: Vec<(OwnedFd, usize)>,
    mut log: logs::Writer,
    tty_attached: bool,
    attach: bool,
    shown: [bool; 2],
    joined: &mut Joined,
) -> Result<i32> {
    let sfd = SignalFd::with_flags(
        &husk_runtime::supervise::forwarded_signals(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .context("cannot create a signalfd")?;
    let raw = if tty_attached {
        if let Some((p, _)) = streams.first() {
            husk_runtime::tty::copy_winsize(0, p.as_raw_fd());
        }
        husk_runtime::tty::make_raw(0)
    } else {
        None
    };
    let exited = husk_runtime::supervise::pidfd(pid);
    let mut open: Vec<bool> = vec![true; streams.len()];
    let mut stdin_open = tty_attached;
    let mut code = husk_runtime::supervise::reap(pid)?;
    let mut buf = vec![0u8; 64 * 1024];
    // What is typed for the container, written as fast as it reads it: its stdin is made
    // non-blocking, so a container that does not read never holds up this loop (its output,
    // its exit, its signals); input is read only while little waits.
    let mut pending: Vec<u8> = Vec::new();
    if let Some(fd) = joined.stdin_to {
        // SAFETY: fcntl on an fd we hold open.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
    }
    // A detached monitor from here on mostly waits: what the start or a burst of output
    // touched (code, heap, stack, the read buffer) is not needed for a life that may be
    // long, beside many like it. Given back once it has been idle for a second, so a busy
    // container's monitor never pays for it and a quiet one sleeps small.
    let (mut busy, mut idle) = (!attach, false);
    loop {
        if code.is_some() && !open.iter().any(|o| *o) {
            break;
        }
        let reading = pending.len() < PENDING_MAX;
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, (fd, _)) in streams.iter().enumerate() {
            if open[i] {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(Source::Stream(i));
            }
        }
        // SAFETY: fd 0 stays open for the life of the process.
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        if stdin_open && code.is_none() && reading {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            which.push(Source::Stdin);
        }
        let room_fd = joined
            .stdin_to
            // SAFETY: an fd the caller keeps open for the whole loop.
            .map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        if let (Some(fd), false, None) = (room_fd, pending.is_empty(), code) {
            fds.push(PollFd::new(fd, PollFlags::POLLOUT));
            which.push(Source::StdinRoom);
        }
        let attach_fds = match (&joined.server, code) {
            (Some(s), None) => s.fds(reading),
            _ => Vec::new(),
        };
        for (i, (fd, events)) in attach_fds.iter().enumerate() {
            fds.push(PollFd::new(*fd, *events));
            which.push(Source::Attach(i));
        }
        // The init's exit, however SIGCHLD fares (see `supervise::pidfd`).
        let exited_at = match &exited {
            Some(fd) if code.is_none() => {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        // Once the init is gone, what is still buffered is drained, but nothing waits for
        // processes that escaped with a copy of the pipe.
        let timeout = if code.is_some() {
            PollTimeout::from(200u16)
        } else if busy {
            PollTimeout::from(IDLE_SHED_MS)
        } else {
            PollTimeout::NONE
        };
        if idle {
            // Last before the wait, so that little is touched again before it sleeps.
            idle = false;
            husk_sys::memory::forget(&mut buf);
            husk_sys::memory::shed();
        }
        match poll(&mut fds, timeout) {
            Ok(0) if code.is_some() => break,
            Ok(0) => {
                (busy, idle) = (false, true);
                continue;
            }
            Ok(_) => busy = !attach,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(failed!("poll failed: {e}")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let attach_count = attach_fds.len();
        drop(fds);
        drop(attach_fds);
        let mut attach_ready = vec![false; attach_count];
        if ready[0] {
            // Signals go to the container only while someone is attached (SIGPIPE is ours).
            let winsize_to = streams
                .first()
                .filter(|_| tty_attached)
                .map(|(p, _)| p.as_raw_fd());
            husk_runtime::supervise::take_signals(&sfd, pid, &mut code, winsize_to, |sig| {
                attach && sig != libc::SIGPIPE
            })?;
        }
        if exited_at.is_some_and(|i| ready[i]) && code.is_none() {
            code = husk_runtime::supervise::reap(pid)?;
        }
        for (k, w) in which.iter().enumerate() {
            if !ready[k + 1] {
                continue;
            }
            match w {
                Source::Attach(i) => attach_ready[*i] = true,
                Source::StdinRoom => {}
                Source::Stream(i) => {
                    let (fd, stream) = &streams[*i];
                    let mut f = std::mem::ManuallyDrop::new(
                        // SAFETY: a borrowed view of an fd we keep open; never closed here.
                        unsafe { fs::File::from_raw_fd(fd.as_raw_fd()) },
                    );
                    match f.read(&mut buf) {
                        // A terminal made non-blocking for its input: nothing after all.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Ok(0) | Err(_) => open[*i] = false,
                        Ok(n) => {
                            log.write(*stream, &buf[..n]);
                            if let Some(server) = &mut joined.server {
                                let kind = if *stream == 0 {
                                    attach::STDOUT
                                } else {
                                    attach::STDERR
                                };
                                server.broadcast(kind, &buf[..n]);
                            }
                            if attach && shown[*stream] {
                                let _ = if *stream == 0 {
                                    std::io::stdout().write_all(&buf[..n])
                                } else {
                                    std::io::stderr().write_all(&buf[..n])
                                };
                                let _ = std::io::stdout().flush();
                            }
                        }
                    }
                }
                Source::Stdin => {
                    let n = std::io::stdin().read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        stdin_open = false;
                    } else if joined.stdin_to.is_some() {
                        pending.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
        if let Some(server) = &mut joined.server {
            for request in server.serve(&attach_ready, reading) {
                match request {
                    attach::Request::Stdin(data) => {
                        if joined.stdin_to.is_some() {
                            pending.extend_from_slice(&data);
                        }
                    }
                    attach::Request::Resize { rows, cols } => {
                        if let (true, Some((p, _))) = (joined.tty, streams.first()) {
                            husk_runtime::tty::set_size(p.as_raw_fd(), rows, cols);
                        }
                    }
                    // Not once the init is reaped: its pid may be another process's now.
                    attach::Request::Signal(_) if code.is_some() => {}
                    attach::Request::Signal(sig) => {
                        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
                            let _ = nix::sys::signal::kill(pid, sig);
                        }
                    }
                }
            }
        }
        feed(joined.stdin_to, &mut pending);
    }
    log.finish();
    if let Some(t) = raw {
        husk_runtime::tty::restore(0, &t);
    }
    Ok(code.unwrap_or(255))
}

/// How long a detached monitor is idle before it gives back memory (`husk_sys::memory`).
const IDLE_SHED_MS: u16 = 1000;

/// Input waiting for the container past which no more is read from its clients.
const PENDING_MAX: usize = 64 << 10;

/// Write what `pending` holds to the container's stdin `fd` as far as it takes it now.
/// A stdin the container closed takes nothing more: what waits is dropped.
fn feed(fd: Option<RawFd>, pending: &mut Vec<u8>) {
    let Some(fd) = fd else {
        pending.clear();
        return;
    };
    while !pending.is_empty() {
        // SAFETY: write to an fd the monitor holds open, from a buffer we own.
        let n = unsafe { libc::write(fd, pending.as_ptr().cast(), pending.len()) };
        if n > 0 {
            pending.drain(..n as usize);
            continue;
        }
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::Interrupted => {}
            std::io::ErrorKind::WouldBlock => return,
            _ => {
                pending.clear();
                return;
            }
        }
    }
}

/// `run -d` and `start`: fork a monitor for container `id` (its own session, stdio on
/// /dev/null) and wait until it says the container started, or why it did not.
pub fn spawn_detached(root: &Path, id: &str) -> Result<()> {
    spawn(root, id, None)
}

/// `spawn_detached`, with this process joined to the container through a socket made before
/// the fork (the monitor's first `attach` client, there before the container's first byte);
/// `size` is this terminal's, given to the container's before it starts.
pub fn spawn_joined(root: &Path, id: &str, size: Option<(u16, u16)>) -> Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair().context("cannot create a socket pair")?;
    spawn(
        root,
        id,
        Some((ours.as_raw_fd(), attach::Join { sock: theirs, size })),
    )?;
    Ok(ours)
}

/// Fork the monitor; with `join`, the monitor takes its socket (and closes our end, the fd
/// given with it).
fn spawn(root: &Path, id: &str, join: Option<(RawFd, attach::Join)>) -> Result<()> {
    let (r, w) = pipe()?;
    // SAFETY: husk is single-threaded here (pulls join their threads before returning).
    match unsafe { nix::unistd::fork() }.context("cannot fork the monitor")? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            // The caller's cwd must not stay busy for the container's life.
            let _ = nix::unistd::chdir("/");
            let null = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Ok(n) = &null {
                for fd in 0..3 {
                    dup2(n.as_raw_fd(), fd);
                }
            }
            // The record names this monitor from now on, not the husk that forked it (which
            // may die first, and must not make the container look orphaned).
            let me = std::process::id() as i32;
            let _ = Container::update(root, id, |c| {
                c.state.monitor_pid = me;
                c.state.monitor_start = own_start();
            });
            let mut w = Some(fs::File::from(w));
            let mut report = |r: std::result::Result<(), &Error>| {
                if let Some(mut f) = w.take() {
                    let msg = match r {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("error {} {e}", e.exit_code()),
                    };
                    let _ = f.write_all(msg.as_bytes());
                }
            };
            let join = join.map(|(ours, j)| {
                // SAFETY: the caller's end, copied by the fork; the monitor must not hold it.
                unsafe { libc::close(ours) };
                j
            });
            let code = match supervise_joined(
                root,
                id,
                Stdio::Logged {
                    attach: false,
                    streams: Default::default(),
                },
                &mut report,
                join,
            ) {
                Ok(_) => 0,
                Err(_) => 1,
            };
            // SAFETY: leave without running the parent's atexit handlers or destructors twice.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = fs::File::from(r).read_to_string(&mut msg);
            if msg == "ok" {
                return Ok(());
            }
            // The monitor failed before the container started; it has exited or will now.
            let _ = nix::sys::wait::waitpid(child, None);
            match msg.strip_prefix("error ") {
                Some(e) => {
                    // "error CODE MESSAGE": the code keeps docker's 126 and 127 apart.
                    let (code, text) = e.split_once(' ').unwrap_or(("125", e));
                    Err(match code {
                        "127" => Error::CommandNotFound(text.into()),
                        "126" => Error::CommandNotExecutable(text.into()),
                        _ => Error::Failed(text.into()),
                    })
                }
                None => Err(failed!(
                    "the monitor of container {id} died before the container started"
                )),
            }
        }
    }
}
