//! Foreground supervision for `run` and `exec` without --detach: the runtime stays the parent
//! (as subreaper), forwards the signals it gets to the container process, proxies the pty when
//! it made one, reaps everything that comes back to it, and returns the exit code as a shell
//! reports it (the code, or 128 + signal).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Context, Result};

/// Signals a foreground runtime passes on instead of dying of them.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
        Signal::SIGCONT,
        Signal::SIGPIPE,
        Signal::SIGALRM,
    ] {
        set.add(s);
    }
    set
}

/// The signals waiting on `sfd` (made from [`forwarded_signals`]): SIGCHLD reaps `pid` into
/// `code` (once: a late SIGCHLD after the reap must not replace the code with 255), SIGWINCH
/// copies our terminal's size to `winsize_to` when there is one, and while `pid` runs the
/// others go to it when `forward` says so.
pub fn take_signals(
    sfd: &SignalFd,
    pid: Pid,
    code: &mut Option<i32>,
    winsize_to: Option<std::os::fd::RawFd>,
    forward: impl Fn(i32) -> bool,
) -> Result<()> {
    while let Ok(Some(info)) = sfd.read_signal() {
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGCHLD {
            if code.is_none() {
                *code = reap(pid)?;
            }
        } else if let (libc::SIGWINCH, Some(fd)) = (sig, winsize_to) {
            crate::tty::copy_winsize(0, fd);
        } else if code.is_none() && forward(sig) {
            if let Ok(s) = Signal::try_from(sig) {
                let _ = kill(pid, s);
            }
        }
    }
    Ok(())
}

/// Block the forwarded signals (call before forking the container, so none is lost between the
/// fork and the wait loop). Children unblock them before exec.
pub fn block_signals() -> Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_signals()), None)
        .ctx("cannot block signals")
}

pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// A pidfd of `pid`: readable once it exits. The wait loops poll it beside the signalfd, since
/// SIGCHLD reaches the signalfd only when no other thread of the process takes it first (a
/// program that embeds the runtime or the engine may have threads that do not block it).
pub fn pidfd(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open of our child; the fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: just opened.
    (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// Wait for `pid`, forwarding signals and, with `pty`, copying stdin to it and it to stdout.
pub fn wait_foreground(pid: Pid, pty: Option<OwnedFd>) -> Result<i32> {
    let sfd = SignalFd::with_flags(
        &forwarded_signals(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .ctx("cannot create signalfd")?;
    let raw_mode = pty.as_ref().and_then(|p| {
        crate::tty::copy_winsize(0, p.as_raw_fd());
        crate::tty::make_raw(0)
    });
    let mut stdin_open = pty.is_some();
    let mut pty_open = pty.is_some();
    let mut result = None;
    let exited = pidfd(pid);
    // The container may have exited before we got here: check once before sleeping.
    if let Some(code) = reap(pid)? {
        result = Some(code);
    }
    while result.is_none() || pty_open {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        if let Some(p) = &pty {
            if pty_open {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open && result.is_none() {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            }
        }
        let exited_at = match &exited {
            Some(fd) if result.is_none() => {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        // After the process exited, drain the pty without blocking forever.
        let timeout = if result.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) if result.is_some() => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(crate::error::Error::sys("poll failed", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready[0] {
            take_signals(
                &sfd,
                pid,
                &mut result,
                pty.as_ref().map(|p| p.as_raw_fd()),
                // Without a pty the window size is nobody's business.
                |sig| sig != libc::SIGWINCH,
            )?;
        }
        if exited_at.is_some_and(|i| ready[i]) && result.is_none() {
            result = reap(pid)?;
        }
        if let Some(p) = &pty {
            let mut i = 1;
            if pty_open {
                if ready[i] && !copy(p.as_raw_fd(), 1) {
                    pty_open = false;
                }
                i += 1;
            }
            if stdin_open
                && result.is_none()
                && fds.len() > i
                && ready[i]
                && !copy(0, p.as_raw_fd())
            {
                stdin_open = false;
            }
        }
    }
    if let Some(t) = raw_mode {
        crate::tty::restore(0, &t);
    }
    Ok(result.unwrap_or(255))
}

/// Reap every child that is ready; the exit code of `pid` if it was among them.
pub fn reap(pid: Pid) -> Result<Option<i32>> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(st) => {
                if st.pid() == Some(pid) {
                    code = exit_code(st);
                }
            }
            Err(nix::errno::Errno::ECHILD) => {
                if code.is_none() {
                    // Nothing left to wait for: the process is gone and was reaped elsewhere.
                    code = Some(255);
                }
                break;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(crate::error::Error::sys("waitpid failed", e)),
        }
    }
    Ok(code)
}

/// Copy what is readable from `from` to `to`; false at end of file or error.
fn copy(from: i32, to: i32) -> bool {
    let mut buf = [0u8; 16 * 1024];
    // SAFETY: read/write on fds we hold, into and from a stack buffer.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return false;
    }
    let mut off = 0usize;
    while off < n as usize {
        let w = unsafe { libc::write(to, buf[off..].as_ptr().cast(), n as usize - off) };
        if w <= 0 {
            return false;
        }
        off += w as usize;
    }
    true
}
