//! husk-runtime: an OCI runtime-spec (v1.2) implementation for Linux.
//!
//! `Runtime` is the library face (`husk` calls it in-process); the `husk-runtime` binary is a
//! runc-compatible command line over it. One module per kernel concern; `container` drives the
//! lifecycle from the runtime's side and `init` is the container's side of it.
//!
//! What it must not know: images, registries, container names, logs or volumes. It is handed a
//! bundle (a config.json and a root filesystem already in place) and an id, as runc is.

pub mod cgroups;
pub mod channel;
pub mod container;
pub mod devices;
pub mod error;
pub mod events;
pub mod exec;
pub mod features;
pub mod fsutil;
pub mod hooks;
pub mod init;
pub mod logging;
pub mod mempolicy;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod supervise;
pub mod tty;
pub mod util;

pub use container::{CreateOpts, Runtime};
pub use error::{Error, Result};
pub use exec::ExecOpts;
