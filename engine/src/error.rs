//! The engine's one error type. Each variant renders as one line that names the thing and the
//! cause (causes are part of the line, not a chain), and says which of docker's exit codes a
//! caller owes the user: 127 and 126 for a command the container could not run, 125 else.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// The thing exists but is in the wrong state or in use: a running container, a taken
    /// name, a volume a container uses.
    #[error("{0}")]
    Conflict(String),
    /// An option or a value in it that the engine refuses, naming it.
    #[error("{0}")]
    Invalid(String),
    /// The container's command does not exist in it (docker's 127).
    #[error("{0}")]
    CommandNotFound(String),
    /// The container's command exists but cannot be executed (docker's 126).
    #[error("{0}")]
    CommandNotExecutable(String),
    // No variant has a `source`: the cause is in the one line already, and a caller that
    // prints the chain (anyhow's `{:#}`) must not print it twice.
    #[error("{0}")]
    Image(husk_image::Error),
    #[error("{0}")]
    Runtime(husk_runtime::Error),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Sys(nix::Error),
    #[error("{0}")]
    Json(serde_json::Error),
    /// Anything else the engine could not do, said in one line.
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {cause}")]
    Context { context: String, cause: Box<Error> },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// docker's exit code for a `run`, `start -a` or `exec` that ended in this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CommandNotFound(_) => 127,
            Error::CommandNotExecutable(_) => 126,
            Error::Context { cause, .. } => cause.exit_code(),
            _ => 125,
        }
    }

    /// The error without the context lines put around it.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { cause, .. } => cause.root(),
            e => e,
        }
    }
}

impl From<husk_image::Error> for Error {
    fn from(e: husk_image::Error) -> Error {
        Error::Image(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Error {
        Error::Sys(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Json(e)
    }
}

impl From<husk_runtime::Error> for Error {
    /// A command the container could not exec arrives from the runtime as the child's own
    /// one-line report; it is sorted here into docker's 127 and 126.
    fn from(e: husk_runtime::Error) -> Error {
        let text = e.to_string();
        let exec = text.contains("exec:");
        if text.contains("executable file not found")
            || exec && text.contains("No such file or directory (os error 2)")
        {
            Error::CommandNotFound(text)
        } else if exec && text.contains("Permission denied") {
            Error::CommandNotExecutable(text)
        } else {
            Error::Runtime(e)
        }
    }
}

/// Put a context line in front of an error, as "context: cause".
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            cause: Box::new(e.into()),
        })
    }
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().to_string(),
            cause: Box::new(e.into()),
        })
    }
}

/// `Error::Failed` from a format string.
macro_rules! failed {
    ($($t:tt)*) => { $crate::error::Error::Failed(format!($($t)*)) };
}

/// Return `Error::Failed` from a format string.
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::failed!($($t)*)) };
}

/// Return `Error::Invalid` from a format string.
macro_rules! invalid {
    ($($t:tt)*) => { return Err($crate::error::Error::Invalid(format!($($t)*))) };
}

pub(crate) use {bail, failed, invalid};
