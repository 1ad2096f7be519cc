//! The container's terminal: a pty made from the container's own devpts, its master handed over
//! the console socket (one message, one fd, as runc does), its slave made the controlling
//! terminal and stdio of the process.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};

use crate::channel::send_fd;
use crate::error::{Context, Error, Result};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);
nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);

/// Make a pty, send its master over `console`, and make its slave our stdio and ctty; for the
/// init (`bind_console`), also the container's /dev/console, as the spec asks.
pub fn setup(console: RawFd, size: Option<(u64, u64)>, bind_console: bool) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx("cannot open /dev/ptmx")?;
    grantpt(&master).ctx("grantpt failed")?;
    unlockpt(&master).ctx("unlockpt failed")?;
    let name = ptsname_r(&master).ctx("ptsname failed")?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .ctx(format_args!("cannot open pty slave {name}"))?
        .into();
    if let Some((h, w)) = size {
        let ws = Winsize {
            ws_row: h as u16,
            ws_col: w as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid Winsize on a pty fd.
        unsafe { set_winsize(slave.as_raw_fd(), &ws) }.ctx("cannot set console size")?;
    }
    if bind_console {
        bind_dev_console(&name)?;
    }
    send_fd(console, &name, master.as_raw_fd())?;
    drop(master);
    // The caller made us a session leader; the slave becomes our controlling terminal.
    // SAFETY: TIOCSCTTY on an open tty fd.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::io(
            "cannot make the pty our controlling terminal",
            std::io::Error::last_os_error(),
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the stdio slots.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::io(
                "cannot dup the pty onto stdio",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

/// Bind the pty slave `name` onto /dev/console (made as an empty 0666 file to mount on, as runc
/// does; a symlink there is replaced, so the bind cannot be redirected elsewhere).
fn bind_dev_console(name: &str) -> Result<()> {
    let console = std::path::Path::new("/dev/console");
    match std::fs::symlink_metadata(console) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(console).ctx("cannot remove the /dev/console symlink")?
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o666)
        .open(console)
        .ctx("cannot create /dev/console")?;
    nix::mount::mount(
        Some(name),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(format_args!("cannot bind {name} onto /dev/console"))
}

/// Copy the size of terminal `from` onto pty `to`.
pub fn copy_winsize(from: RawFd, to: RawFd) {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ioctls with a valid Winsize pointer; failure (not a tty) is ignored.
    unsafe {
        if get_winsize(from, &mut ws).is_ok() {
            let _ = set_winsize(to, &ws);
        }
    }
}

/// Set terminal `fd`'s size (an `attach` client's); failure (not a tty) is ignored.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: an ioctl with a valid Winsize pointer.
    unsafe {
        let _ = set_winsize(fd, &ws);
    }
}

/// Put a terminal in raw mode; returns the settings to restore.
pub fn make_raw(fd: RawFd) -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    // SAFETY: fd is a terminal fd that outlives this call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let orig = tcgetattr(bfd).ok()?;
    let mut raw = orig.clone();
    cfmakeraw(&mut raw);
    tcsetattr(bfd, SetArg::TCSANOW, &raw).ok()?;
    Some(orig)
}

pub fn restore(fd: RawFd, t: &nix::sys::termios::Termios) {
    // SAFETY: as in make_raw.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = nix::sys::termios::tcsetattr(bfd, nix::sys::termios::SetArg::TCSANOW, t);
}
