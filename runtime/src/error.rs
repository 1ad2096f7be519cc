//! The one error type of the runtime library. Every variant renders as one line that names the
//! thing that failed and why; the binary prints it as is.

use std::fmt::Display;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is part of the one line, not a separate source: callers print one line.
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    #[error("{context}: {err}")]
    Sys { context: String, err: nix::Error },
    #[error("invalid config.json: {0}")]
    InvalidConfig(String),
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container \"{0}\" already exists")]
    Exists(String),
    #[error(
        "invalid container id \"{0}\": use 1 to 1024 of [A-Za-z0-9_.+-], not starting with '.'"
    )]
    InvalidId(String),
    #[error("container \"{id}\" is {status}: {why}")]
    WrongState {
        id: String,
        status: String,
        why: String,
    },
    #[error("{0}")]
    Unsupported(String),
    /// systemd refused or could not be reached (the systemd cgroup driver).
    #[error("systemd: {0}")]
    Systemd(String),
    #[error("hook {path} failed: {why}")]
    Hook { path: String, why: String },
    /// An error that happened inside the container's process and was reported back over the
    /// sync socket: already one line, already names its cause.
    #[error("{0}")]
    Child(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            err: source,
        }
    }
    pub fn sys(context: impl Display, source: nix::Error) -> Self {
        Error::Sys {
            context: context.to_string(),
            err: source,
        }
    }
}

/// Attach a context line to an io or nix error.
pub trait Context<T> {
    fn ctx(self, context: impl Display) -> Result<T>;
    fn ctx_path(self, what: &str, path: &Path) -> Result<T>
    where
        Self: Sized,
    {
        self.ctx(format_args!("{what} {}", path.display()))
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::io(context, e))
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::sys(context, e))
    }
}
