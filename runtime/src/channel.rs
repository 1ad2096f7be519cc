//! The sync socket between the runtime and the processes it forks. One SOCK_SEQPACKET socketpair:
//! each message is one JSON datagram, so a message can never be read half or merged with the
//! next, and a peer that dies reads as end-of-file instead of a hang.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    /// The intermediate process unshared its user namespace: write its id maps.
    UserNsReady,
    /// Generic go-ahead from the other side.
    Continue,
    /// Host pid of the container's init (or exec'd process).
    Pid(i32),
    /// The init has mounted the rootfs and waits for the createRuntime hooks.
    RunCreateRuntimeHooks,
    /// The init is set up and waits on the exec fifo.
    Ready,
    /// Move yourself into these cgroup v1 directories (write 0 to their `tasks`).
    JoinCgroup(Vec<std::path::PathBuf>),
    /// The state JSON hooks get on stdin (the runtime knows the host pid; the init does not).
    HookState(String),
    /// Something failed; the text is the one-line error the user sees.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

const MAX_MSG: usize = 64 * 1024;

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx("cannot create sync socketpair")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let data = serde_json::to_vec(msg)
            .map_err(|e| Error::io("cannot encode sync message", std::io::Error::other(e)))?;
        match sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&data)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => Ok(()),
            // The peer is gone; if it said why before it went, that is the error to report,
            // not the broken pipe.
            Err(nix::errno::Errno::EPIPE) => match self.pending_error() {
                Some(e) => Err(Error::Child(e)),
                None => Err(Error::sys(
                    "cannot send on sync socket",
                    nix::errno::Errno::EPIPE,
                )),
            },
            Err(e) => Err(Error::sys("cannot send on sync socket", e)),
        }
    }

    /// An `Error` message already waiting from the peer (read without blocking).
    fn pending_error(&self) -> Option<String> {
        let mut buf = vec![0u8; MAX_MSG];
        let mut reset = false;
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let n = match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) if m.bytes > 0 => m.bytes,
                Err(nix::errno::Errno::EINTR) => continue,
                // Reported once, ahead of the queued messages (see `recv`).
                Err(nix::errno::Errno::ECONNRESET) if !reset => {
                    reset = true;
                    continue;
                }
                _ => return None,
            };
            if let Ok(Msg::Error(e)) = serde_json::from_slice::<Msg>(&buf[..n]) {
                return Some(e);
            }
        }
    }

    /// Receive one message; `None` when the peer closed its end (exited).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        let mut reset = false;
        let n = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => break m.bytes,
                Err(nix::errno::Errno::EINTR) => continue,
                // The peer exited leaving a message of ours unread: the kernel says so once,
                // ahead of what the peer sent before it went (its error). Read that next.
                Err(nix::errno::Errno::ECONNRESET) if !reset => {
                    reset = true;
                    continue;
                }
                Err(e) => return Err(Error::sys("cannot read sync socket", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::io("malformed sync message", std::io::Error::other(e)))
    }

    /// Receive a message and insist on `want`; an `Error` from the peer becomes our error.
    pub fn expect(&self, want: Msg, what: &str) -> Result<()> {
        match self.recv()? {
            Some(m) if m == want => Ok(()),
            Some(Msg::Error(e)) => Err(Error::Child(e)),
            Some(other) => Err(Error::Child(format!(
                "{what}: unexpected message {other:?}"
            ))),
            None => Err(Error::Child(format!(
                "{what}: the container process exited early"
            ))),
        }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Send one fd with a short name over a unix socket, as runc's console socket protocol does.
pub fn send_fd(sock: RawFd, name: &str, fd: RawFd) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        sock,
        &[IoSlice::new(name.as_bytes())],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .ctx("cannot send the pty master over the console socket")?;
    Ok(())
}

/// Receive one fd sent with `send_fd`.
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .ctx("cannot receive the pty master")?;
    for c in msg.cmsgs().ctx("cannot read control message")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::Child("no fd arrived on the console socket".into()))
}
