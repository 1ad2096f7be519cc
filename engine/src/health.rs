//! Healthchecks (docker's HEALTHCHECK and `--health-*`), run by the container's monitor: a
//! checker process it forks once the container has started. The checker waits an interval,
//! execs the check in the container (the exec path's process, with the container's
//! namespaces and confinement), keeps its exit code and the start of its output, and records
//! the verdict in the container's record: `starting` until the first pass, `healthy` after
//! a pass, `unhealthy` after `retries` failures in a row (failures in the start period do
//! not count). A change of verdict is a `health_status: …` event.
//!
//! A process of its own, not a thread of the monitor: a check forks (the exec), and a fork
//! from a thread of a process that also pumps logs would copy that process's locks mid-use.
//! The checker dies with the monitor (PDEATHSIG) and ends when the container's init exits.

use std::fs;
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::error::{Context, Result};
use crate::events;
use crate::options::{ExecOptions, Healthcheck};
use crate::store::{self, Container, Health, HealthResult};

/// docker keeps this much of a check's output.
const OUTPUT_MAX: u64 = 4096;
/// And this many checks.
const LOG_MAX: usize = 5;

/// The checker of one run of a container; `stop` ends it.
pub struct Checker {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Checker {
    /// Fork the checker of container `c`, whose init (`init`) has started; None when it has
    /// no healthcheck.
    pub fn spawn(root: &Path, c: &Container, init: i32) -> Result<Option<Checker>> {
        let Some(hc) = c.healthcheck.clone() else {
            return Ok(None);
        };
        let init_fd = pidfd_open(init).context("cannot watch the container's init")?;
        let monitor = nix::unistd::getpid();
        // SAFETY: the child only sets itself up and runs the checks; it never returns.
        match unsafe { fork() }.context("cannot fork the healthcheck")? {
            ForkResult::Child => {
                // SAFETY: prctl on ourselves.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                if nix::unistd::getppid() != monitor {
                    // SAFETY: leave without the parent's destructors.
                    unsafe { libc::_exit(0) };
                }
                let _ = nix::sys::signal::SigSet::all().thread_unblock();
                isolate(init_fd.as_raw_fd());
                checks(root, &c.id, &c.name, &c.image, &hc, &init_fd);
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                let pidfd = pidfd_open(child.as_raw()).context("cannot watch the healthcheck")?;
                Ok(Some(Checker { pid: child, pidfd }))
            }
        }
    }

    /// Kill the checker (a check it runs dies with the container) and reap it, unless the
    /// monitor's reaping of its children already did.
    pub fn stop(self) {
        // SAFETY: pidfd_send_signal on our pidfd: never another process, whatever its pid.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        let _ = waitpid(self.pid, None);
    }
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// stdio on /dev/null and every other fd closed but `keep`: the checker must hold none of
/// the container's pipes (a stdin the monitor closes must reach EOF) and print nothing on
/// the terminal of an attached run.
fn isolate(keep: RawFd) {
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto our own stdio.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let open: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        if fd > 2 && fd != keep {
            // SAFETY: closing fds of this freshly forked process, which owns them all.
            unsafe { libc::close(fd) };
        }
    }
}

/// The checker's life: a check every interval until the init exits or the record goes.
fn checks(root: &Path, id: &str, name: &str, image: &str, hc: &Healthcheck, init: &OwnedFd) {
    let started = Instant::now();
    let mut next = started + hc.interval();
    loop {
        if exits_within(init, next.saturating_duration_since(Instant::now())) {
            return;
        }
        let began = Instant::now();
        let Some(result) = check(root, id, hc) else {
            // Paused, or not running yet: no verdict this time.
            next = Instant::now() + hc.interval();
            continue;
        };
        let in_start_period = began < started + hc.start_period();
        let mut changed = None;
        let updated = Container::update(root, id, |c| {
            changed = judge(
                c.state.health.get_or_insert_with(Health::starting),
                result,
                in_start_period,
                hc.retries(),
            );
        });
        if updated.is_err() {
            return;
        }
        if let Some(status) = changed {
            events::emit(
                root,
                "container",
                &format!("health_status: {status}"),
                id,
                &[("name", name), ("image", image)],
            );
        }
        next = Instant::now() + hc.interval();
    }
}

/// Add one check's result to `h`; the new verdict, where it changed.
fn judge(
    h: &mut Health,
    result: HealthResult,
    in_start_period: bool,
    retries: u32,
) -> Option<String> {
    let before = h.status.clone();
    let passed = result.exit_code == 0;
    h.log.push(result);
    if h.log.len() > LOG_MAX {
        h.log.remove(0);
    }
    if passed {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    (h.status != before).then(|| h.status.clone())
}

/// True when the init exits within `wait` (or cannot be waited for).
fn exits_within(init: &OwnedFd, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: init.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll on one pollfd we own.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            0 => return false,
            n if n > 0 => return true,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return true,
        }
    }
}

/// Run one check; None when the container is paused or gone from the runtime.
fn check(root: &Path, id: &str, hc: &Healthcheck) -> Option<HealthResult> {
    let c = Container::load(root, id).ok()?;
    let rt = store::runtime(root);
    let state = rt.state(id).ok()?;
    if state.status != husk_runtime::state::Status::Running {
        return None;
    }
    let start = crate::time::now();
    let (exit_code, output) = match run(root, &c, hc) {
        Ok(r) => r,
        Err(e) => (-1, e.to_string()),
    };
    Some(HealthResult {
        start,
        end: crate::time::now(),
        exit_code,
        output,
    })
}

/// Exec the check with its stdout and stderr in a memory file; its exit code (-1 when it
/// ran out of time) and the start of its output.
fn run(root: &Path, c: &Container, hc: &Healthcheck) -> Result<(i32, String)> {
    let command = hc.command().unwrap_or_default();
    let process = crate::exec::process(
        root,
        c,
        &ExecOptions {
            command,
            ..Default::default()
        },
    )?;
    let out = memfd()?;
    // The exec'd process inherits our fds 1 and 2.
    // SAFETY: dup2 onto our own stdio (this process prints nothing).
    unsafe {
        libc::dup2(out.as_raw_fd(), 1);
        libc::dup2(out.as_raw_fd(), 2);
    }
    let pid = store::runtime(root).exec(husk_runtime::ExecOpts {
        id: c.id.clone(),
        process,
        detach: true,
        ..Default::default()
    });
    isolate_stdio();
    let pid = Pid::from_raw(pid?);
    // Detached, the check is our child all the same: the exec made us its subreaper.
    let code = match pidfd_open(pid.as_raw()) {
        Ok(fd) if !exits_within(&fd, hc.timeout()) => {
            // SAFETY: pidfd_send_signal on our pidfd of the check.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            let _ = waitpid(pid, None);
            return Ok((
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    go_duration(hc.timeout())
                ),
            ));
        }
        _ => match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            _ => -1,
        },
    };
    let mut output = Vec::new();
    let mut f = fs::File::from(out);
    let _ = f.rewind();
    let _ = f.take(OUTPUT_MAX).read_to_end(&mut output);
    // Not text, or a character cut at the limit: kept all the same, as docker keeps it.
    Ok((code, String::from_utf8_lossy(&output).into_owned()))
}

fn isolate_stdio() {
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own stdio.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

fn memfd() -> Result<OwnedFd> {
    // SAFETY: memfd_create with a static name; returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"husk-health".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot create the check's output file");
    }
    // SAFETY: just created, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A duration as Go prints one (`30s`, `1.5s`, `500ms`, `1m30s`), for docker's messages.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let (m, s) = ((secs / 60.0).floor() as u64, secs % 60.0);
    let s = if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{}s", (s * 1000.0).round() / 1000.0)
    };
    match m {
        0 => s,
        m if m < 60 => format!("{m}m{s}"),
        m => format!("{}h{}m{s}", m / 60, m % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> HealthResult {
        HealthResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn the_verdict_follows_docker_rules() {
        let mut h = Health::starting();
        // Failures in the start period do not count.
        assert_eq!(judge(&mut h, result(1), true, 2), None);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        assert_eq!(judge(&mut h, result(0), true, 2), Some("healthy".into()));
        assert_eq!(judge(&mut h, result(1), false, 2), None);
        assert_eq!(h.failing_streak, 1);
        assert_eq!(
            judge(&mut h, result(-1), false, 2),
            Some("unhealthy".into())
        );
        assert_eq!(judge(&mut h, result(1), false, 2), None);
        assert_eq!(h.failing_streak, 3);
        assert_eq!(judge(&mut h, result(0), false, 2), Some("healthy".into()));
        assert_eq!(h.failing_streak, 0);
        assert_eq!(h.log.len(), LOG_MAX, "only the last five are kept");
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
