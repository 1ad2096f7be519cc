//! OCI hooks: run with the container's state JSON on stdin, in order, each within its timeout.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run `hooks` one after another; the first failure stops the list and is returned.
pub fn run_all(hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for hook in hooks.into_iter().flatten() {
        run(hook, state_json)?;
    }
    Ok(())
}

/// `run_all` for startContainer hooks: one without `env` gets the container process's
/// environment, as runc's do (its init has that environment when it runs them).
pub fn run_all_with_env(
    hooks: Option<&Vec<Hook>>,
    state_json: &[u8],
    process_env: &[String],
) -> Result<()> {
    for hook in hooks.into_iter().flatten() {
        let mut hook = hook.clone();
        if hook.env().is_none() {
            hook.set_env(Some(process_env.to_vec()));
        }
        run(&hook, state_json)?;
    }
    Ok(())
}

fn memfd() -> Option<File> {
    // SAFETY: memfd_create with a static name.
    let fd = unsafe { libc::memfd_create(c"husk-hook-output".as_ptr(), libc::MFD_CLOEXEC) };
    // SAFETY: a new fd from the kernel.
    (fd >= 0).then(|| File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

pub fn run(hook: &Hook, state_json: &[u8]) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |why: String| Error::Hook {
        path: path.clone(),
        why,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    // A hook without `env` inherits the runtime's environment (as Go's exec does for runc);
    // one with `env` gets exactly that.
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    let output = memfd();
    cmd.stdin(Stdio::piped());
    match &output {
        Some(f) => {
            let out = f
                .try_clone()
                .map_err(|e| fail(format!("cannot capture output: {e}")))?;
            let err = f
                .try_clone()
                .map_err(|e| fail(format!("cannot capture output: {e}")))?;
            cmd.stdout(out).stderr(err);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    // The state goes to the hook's stdin inside the timeout loop, without blocking: a hook
    // that never reads a large state must still be stopped at its timeout.
    let mut stdin = child.stdin.take();
    if let Some(s) = &stdin {
        // SAFETY: fcntl on the pipe fd we own.
        unsafe { libc::fcntl(s.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let mut written = 0usize;
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    let status = loop {
        if let Some(s) = stdin.as_mut() {
            match s.write(&state_json[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // A hook that does not read its stdin is fine (EPIPE).
                Err(_) => written = state_json.len(),
            }
            if written >= state_json.len() {
                stdin = None; // closes the pipe: end of input
            }
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("cannot wait: {e}"))),
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {}s", t.as_secs())));
            }
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Some(mut f) = output {
        let _ = f.rewind();
        let _ = (&mut f).take(4096).read_to_string(&mut text);
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    };
    Err(fail(if text.is_empty() {
        how
    } else {
        format!("{how}: {text}")
    }))
}
