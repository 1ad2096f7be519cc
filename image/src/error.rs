//! Errors of the image crate: one line each, naming the thing and the cause.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {why}")]
    Reference { reference: String, why: String },
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Digest(String),
    #[error("blob {expected} does not match its digest (the content hashes to {actual})")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {digest} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// A removal refused: the image is in use, or a bare id names several tags.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("registry {registry}: {why}")]
    Registry { registry: String, why: String },
    /// The registry refused to resume a download (HTTP 416): the kept part is no good to it.
    #[error("registry {registry}: blob {blob}: HTTP 416, the range to resume from was refused")]
    RangeRefused { registry: String, blob: String },
    #[error("image archive: {0}")]
    Archive(String),
    /// husk's configuration (file, environment, flags): the message names the setting.
    #[error("{0}")]
    Config(String),
    #[error("layer entry {entry:?}: {why}")]
    HostileEntry { entry: String, why: String },
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            err,
        }
    }
}
