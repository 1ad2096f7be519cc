//! `attach`: a terminal joins a running container's stdio through its monitor. The monitor
//! listens on `attach.sock` in the container's directory (as conmon does); each client gets
//! the container's output from then on and may write its stdin, resize its terminal and
//! send it signals. The client leaves on the detach keys (ctrl-p ctrl-q by default, as
//! docker's), and the container goes on.
//!
//! The wire, both ways, is frames of a 1-byte kind, 3 zero bytes and a big-endian u32
//! length (docker's stream framing): from the monitor, kind 1 is stdout and 2 stderr; from
//! the client, 0 is stdin, 4 a terminal size (rows, cols: two u16) and 5 a signal (an i32).
//! When the container exits the monitor sends kind 3, its exit code (an i32), then closes:
//! a client dropped for falling behind sees the close without it.
//!
//! The socket is bound and reached through `/proc/self/fd/N/attach.sock`, a descriptor of
//! the container's directory: a store deep in the file system would make a path longer than
//! a socket address holds (108 bytes).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{failed, Context, Result};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// From the monitor: the container exited, with this code (an i32).
const EXIT: u8 = 3;
const STDIN: u8 = 0;
const RESIZE: u8 = 4;
const SIGNAL: u8 = 5;
const SOCKET: &str = "attach.sock";
/// A frame larger than this is a broken peer.
const FRAME_MAX: usize = 1 << 20;

fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Whole frames at the front of `buf` (taken out of it); Err for a malformed one.
fn take_frames(buf: &mut Vec<u8>) -> std::result::Result<Vec<(u8, Vec<u8>)>, ()> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let len = u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]) as usize;
        if len > FRAME_MAX {
            return Err(());
        }
        if buf.len() - at - 8 < len {
            break;
        }
        out.push((buf[at], buf[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    buf.drain(..at);
    Ok(out)
}

/// The path of the socket in directory `dir` as a short `/proc/self/fd` path, while `dirfd`
/// (returned with it) stays open.
fn short_path(dir: &Path) -> Result<(OwnedFd, String)> {
    let d = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let path = format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd());
    Ok((d.into(), path))
}

/// A client connected before the container starts (`run -it`), and its terminal's size.
pub struct Join {
    pub sock: UnixStream,
    pub size: Option<(u16, u16)>,
}

/// The monitor's end: a listening socket and the clients attached now.
pub struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
    path: std::path::PathBuf,
}

struct Client {
    sock: UnixStream,
    /// What it sent, not yet a whole frame.
    buf: Vec<u8>,
    /// What it has yet to take.
    out: Vec<u8>,
}

impl Client {
    /// Send what it can take now; false when it is gone.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// What clients asked of the container, for the monitor to do.
pub enum Request {
    Stdin(Vec<u8>),
    Resize { rows: u16, cols: u16 },
    Signal(i32),
}

/// Output a client may fall behind by before it is dropped (a terminal on hold, a dead
/// link); the container's output never waits for a client.
const BEHIND_MAX: usize = 4 << 20;

impl Server {
    /// Listen in container directory `dir` (a socket left by a killed monitor is replaced).
    pub fn bind(dir: &Path) -> Result<Server> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let (_d, short) = short_path(dir)?;
        // Made 0600 from the start (the umask of the bind): whoever reaches it types into
        // the container, and a connection made before a chmod would stay.
        let saved = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(&short);
        nix::sys::stat::umask(saved);
        let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("cannot make the attach socket non-blocking")?;
        Ok(Server {
            listener,
            clients: Vec::new(),
            path,
        })
    }

    /// Take a client connected some other way (`Join`).
    pub fn add(&mut self, sock: UnixStream) {
        if sock.set_nonblocking(true).is_ok() {
            self.clients.push(Client {
                sock,
                buf: Vec::new(),
                out: Vec::new(),
            });
        }
    }

    /// What to poll: the listener, then each client (its input when `reading`, room for its
    /// output when some waits).
    pub fn fds(&self, reading: bool) -> Vec<(std::os::fd::BorrowedFd<'_>, PollFlags)> {
        let input = if reading {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        std::iter::once((self.listener.as_fd(), PollFlags::POLLIN))
            .chain(self.clients.iter().map(|c| {
                let room = if c.out.is_empty() {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLOUT
                };
                (c.sock.as_fd(), input | room)
            }))
            .collect()
    }

    /// After a poll: `ready` says which of `fds()` had events. New clients are taken in;
    /// what clients sent (when `reading`) comes back as requests; waiting output goes out;
    /// a client that left or broke is dropped.
    pub fn serve(&mut self, ready: &[bool], reading: bool) -> Vec<Request> {
        let mut requests = Vec::new();
        let mut gone = Vec::new();
        for (i, client) in self.clients.iter_mut().enumerate() {
            if !ready.get(i + 1).copied().unwrap_or(false) {
                continue;
            }
            if !client.flush() {
                gone.push(i);
                continue;
            }
            if !reading {
                continue;
            }
            let mut chunk = [0u8; 8192];
            match client.sock.read(&mut chunk) {
                Ok(0) => gone.push(i),
                Ok(n) => {
                    client.buf.extend_from_slice(&chunk[..n]);
                    match take_frames(&mut client.buf) {
                        Ok(frames) => requests.extend(frames.into_iter().filter_map(request)),
                        Err(()) => gone.push(i),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
        if ready.first().copied().unwrap_or(false) {
            while let Ok((sock, _)) = self.listener.accept() {
                // Only this monitor's own user (root) may type into the container.
                let peer =
                    nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials);
                if peer.is_ok_and(|c| c.uid() == nix::unistd::geteuid().as_raw()) {
                    self.add(sock);
                }
            }
        }
        requests
    }

    /// Give output of `stream` (STDOUT or STDERR) to every client: sent as far as it takes
    /// it now, the rest queued.
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let f = frame(stream, data);
        self.clients.retain_mut(|c| {
            if c.out.len() + f.len() > BEHIND_MAX {
                return false;
            }
            c.out.extend_from_slice(&f);
            c.flush()
        });
    }

    /// The container exited with `code`: every client is told (what it has yet to take
    /// first), for up to a second.
    pub fn finish(&mut self, code: i32) {
        let f = frame(EXIT, &code.to_be_bytes());
        for c in &mut self.clients {
            c.out.extend_from_slice(&f);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        self.clients.retain_mut(|c| c.flush());
        while self.clients.iter().any(|c| !c.out.is_empty()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            let ms = left.as_millis().min(1000) as u16;
            if poll(&mut fds, PollTimeout::from(ms)).is_err() {
                break;
            }
            drop(fds);
            self.clients.retain_mut(|c| c.flush());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn request((kind, data): (u8, Vec<u8>)) -> Option<Request> {
    match kind {
        STDIN => Some(Request::Stdin(data)),
        RESIZE if data.len() == 4 => Some(Request::Resize {
            rows: u16::from_be_bytes([data[0], data[1]]),
            cols: u16::from_be_bytes([data[2], data[3]]),
        }),
        SIGNAL if data.len() == 4 => Some(Request::Signal(i32::from_be_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        _ => None,
    }
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container exited with this code.
    Exited(i32),
    /// The connection ended without an exit: the monitor dropped this client (it fell too
    /// far behind) or died; the caller finds how the container ended.
    Ended,
    /// The detach keys were typed: the container goes on.
    Detached,
}

/// The client: this process's stdio joined to the container in directory `dir` until its
/// output ends or `detach_keys` are typed. `stdin`: forward ours; `tty`: the container has a
/// terminal (ours goes raw, its size follows ours); `sig_proxy`: our signals go to it.
pub fn attach(
    dir: &Path,
    stdin: bool,
    tty: bool,
    detach_keys: &[u8],
    sig_proxy: bool,
) -> Result<AttachEnd> {
    join(Connect::Path(dir), stdin, tty, detach_keys, sig_proxy)
}

/// How a client reaches the monitor: through its socket in the container directory, or a
/// socket it already has (`Join`'s other end).
pub enum Connect<'a> {
    Path(&'a Path),
    Joined(UnixStream),
}

/// `attach`'s loop on a connection.
pub fn join(
    to: Connect,
    stdin: bool,
    tty: bool,
    detach_keys: &[u8],
    sig_proxy: bool,
) -> Result<AttachEnd> {
    let mut signals = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGQUIT,
        nix::sys::signal::Signal::SIGWINCH,
    ] {
        signals.add(s);
    }
    // Blocked before the connection: once output comes through, signals are ours to pass.
    signals.thread_block().context("cannot block signals")?;
    let mut sock = match to {
        Connect::Joined(sock) => sock,
        Connect::Path(dir) => {
            let (_d, short) = short_path(dir)?;
            UnixStream::connect(&short).map_err(|e| {
                failed!(
                    "cannot attach: the container's monitor does not answer on {} ({e})",
                    dir.join(SOCKET).display()
                )
            })?
        }
    };
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        &signals,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .context("cannot create a signalfd")?;
    let terminal = tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let raw = if terminal && stdin {
        husk_runtime::tty::make_raw(0)
    } else {
        None
    };
    if terminal {
        send_size(&mut sock);
    }
    let result = pump(&mut sock, &sfd, stdin, tty, detach_keys, sig_proxy);
    if let Some(t) = raw {
        husk_runtime::tty::restore(0, &t);
    }
    let _ = signals.thread_unblock();
    result
}

/// This process's terminal size (rows, cols), if its stdin is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ into a winsize we own.
    (unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0).then_some((ws.ws_row, ws.ws_col))
}

fn send_size(sock: &mut UnixStream) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ into a winsize we own.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
        let mut data = ws.ws_row.to_be_bytes().to_vec();
        data.extend_from_slice(&ws.ws_col.to_be_bytes());
        let _ = sock.write_all(&frame(RESIZE, &data));
    }
}

fn pump(
    sock: &mut UnixStream,
    sfd: &nix::sys::signalfd::SignalFd,
    mut stdin_open: bool,
    tty: bool,
    detach_keys: &[u8],
    sig_proxy: bool,
) -> Result<AttachEnd> {
    let mut buf = Vec::new();
    let mut matched = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: fd 0 stays open for the life of the process.
        let stdin_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        let mut fds = vec![
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(failed!("poll failed: {e}")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready[1] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if tty {
                        send_size(sock);
                    }
                } else if sig_proxy && !tty {
                    let _ = sock.write_all(&frame(SIGNAL, &sig.to_be_bytes()));
                } else {
                    // Not forwarded: the signal ends the attach, as it ends docker's.
                    return Ok(AttachEnd::Detached);
                }
            }
        }
        if stdin_open && ready.get(2).copied().unwrap_or(false) {
            let n = std::io::stdin().read(&mut chunk).unwrap_or(0);
            if n == 0 {
                stdin_open = false;
            } else {
                let (pass, detached) = scan_detach(&chunk[..n], detach_keys, &mut matched);
                if !pass.is_empty() {
                    sock.write_all(&frame(STDIN, &pass))
                        .context("the container's monitor went away")?;
                }
                if detached {
                    return Ok(AttachEnd::Detached);
                }
            }
        }
        if ready[0] {
            let n = match sock.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(AttachEnd::Ended);
            }
            buf.extend_from_slice(&chunk[..n]);
            let frames =
                take_frames(&mut buf).map_err(|()| failed!("the monitor sent a broken frame"))?;
            for (kind, data) in frames {
                if kind == EXIT && data.len() == 4 {
                    return Ok(AttachEnd::Exited(i32::from_be_bytes([
                        data[0], data[1], data[2], data[3],
                    ])));
                }
                let _ = if kind == STDERR {
                    std::io::stderr().write_all(&data)
                } else {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data).and_then(|()| out.flush())
                };
            }
        }
    }
}

/// Pass `input` on except for the detach keys: the bytes to send, and whether the whole
/// sequence was typed. A partial match held back is sent once the next byte breaks it.
fn scan_detach(input: &[u8], keys: &[u8], matched: &mut usize) -> (Vec<u8>, bool) {
    let mut pass = Vec::with_capacity(input.len());
    for &b in input {
        if keys.is_empty() {
            pass.push(b);
            continue;
        }
        if b == keys[*matched] {
            *matched += 1;
            if *matched == keys.len() {
                *matched = 0;
                return (pass, true);
            }
            continue;
        }
        // A broken match: what was held back goes after all, then this byte is looked at
        // as the start of a new one.
        pass.extend_from_slice(&keys[..*matched]);
        *matched = 0;
        if b == keys[0] {
            *matched = 1;
            if keys.len() == 1 {
                *matched = 0;
                return (pass, true);
            }
        } else {
            pass.push(b);
        }
    }
    (pass, false)
}

/// docker's `--detach-keys`: comma-separated `ctrl-<key>` (a-z, @, [, \, ], ^, _) and single
/// characters, e.g. `ctrl-p,ctrl-q`; an empty string turns detaching off.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let b = match c.as_bytes() {
                    [b @ b'a'..=b'z'] => b - b'a' + 1,
                    [b'@'] => 0,
                    [b'['] => 27,
                    [b'\\'] => 28,
                    [b']'] => 29,
                    [b'^'] => 30,
                    [b'_'] => 31,
                    _ => return Err(crate::error::Error::Invalid(format!(
                        "invalid detach keys {s:?}: unknown key {k:?}"
                    ))),
                };
                Ok(b)
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(crate::error::Error::Invalid(format!(
                    "invalid detach keys {s:?}: unknown key {k:?} (use ctrl-a … ctrl-z, or one character)"
                )))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join() {
        let mut buf = frame(STDIN, b"hello");
        buf.extend(frame(RESIZE, &[0, 24, 0, 80]));
        let whole = buf.len();
        buf.extend_from_slice(&frame(STDOUT, b"partial")[..5]);
        let frames = take_frames(&mut buf).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(buf.len(), 5, "a partial frame waits: {whole}");
        assert!(matches!(
            request(frames[1].clone()),
            Some(Request::Resize { rows: 24, cols: 80 })
        ));
        let mut huge = vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(take_frames(&mut huge).is_err());
    }

    #[test]
    fn detach_keys_parse_and_match_across_reads() {
        let keys = parse_detach_keys("ctrl-p,ctrl-q").unwrap();
        assert_eq!(keys, [16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), [b'a', 0]);
        assert!(parse_detach_keys("ctrl-pp").is_err());
        assert!(parse_detach_keys("shift-a").is_err());
        assert!(parse_detach_keys("").unwrap().is_empty());
        let mut m = 0;
        assert_eq!(
            scan_detach(b"ab\x10", &keys, &mut m),
            (b"ab".to_vec(), false)
        );
        assert_eq!(scan_detach(b"\x11", &keys, &mut m), (Vec::new(), true));
        // A ctrl-p that is not followed by ctrl-q goes through.
        let mut m = 0;
        assert_eq!(
            scan_detach(b"\x10x\x10\x10\x11", &keys, &mut m),
            (b"\x10x\x10".to_vec(), true)
        );
        let mut m = 0;
        assert_eq!(
            scan_detach(b"plain", &[], &mut m),
            (b"plain".to_vec(), false)
        );
    }
}
