//! husk-engine: the docker-like engine as a library. An [`Engine`] opened on a store root makes
//! containers from images (pulled into the store by husk-image), runs them through husk-runtime
//! with a monitor that keeps their logs and exit codes, and keeps their records, names and
//! volumes. Typed options in ([`options`]), typed reports out, one error type ([`Error`]) that
//! says which of docker's exit codes it means.
//!
//! What it must not know: flags, output formats and exit codes (the `husk` binary turns
//! options into calls and reports into tables). The only terminal it touches is the calling
//! process's own stdio, when asked to attach a container to it. It forks (the detached
//! monitor) and so must be called from a single-threaded process for `Attach::Detached`.
//!
//! The modules only point down:
//! - `engine` (the verbs) on top;
//! - `build` (a Dockerfile, step by step, over `create`, `monitor`, `copy` and `commit`;
//!   `dockerfile` parses, `dockerignore` filters the context) below it;
//! - `create` (image + options → a container), `monitor` (runs and holds one), `orphans`
//!   (reaps what a killed husk left; the `--die-with-parent` watcher), `copy` (`cp`,
//!   `export`), `commit` (a container's changes as a layer) and `changes` (`diff`) below it;
//! - `health` (the monitor's healthcheck process), `attach` (the monitor's attach socket
//!   and its clients), `exec` (an exec's process) and `cdi` (CDI devices) below `monitor`
//!   and `create`;
//! - `remove`, `spec` (image config + options → OCI spec), `volumes`, `logs`, `layers` (the
//!   container's root mount and the layers' shared mounts) and `networking` (a container's
//!   namespace, interfaces, ports, names and /etc files while it runs) below those;
//! - `networks` (network records and the CNI plugin list each is), `cni` (the plugin
//!   protocol), `netns`, `ports` (host port claims), `dns` (aardvark-dns) and `etc_files`
//!   below `networking`;
//! - `store` (records, names, locks, kept exit codes, the monitored index, paths), `events`
//!   (the event journal), `usage` (what a run used, from its cgroup), `instructions`
//!   (Dockerfile instructions on an image config), `json` (editing JSON fields of any
//!   shape), `user`, `security`, `options`, `time` and
//!   `error` at the bottom.

pub mod attach;
mod build;
mod cdi;
mod changes;
mod cni;
mod commit;
mod copy;
mod create;
mod dns;
mod dockerfile;
mod dockerignore;
mod engine;
mod engine_network;
pub mod error;
mod etc_files;
pub mod events;
mod exec;
mod health;
mod instructions;
mod json;
mod layers;
mod logs;
mod monitor;
mod netns;
mod networking;
pub mod networks;
pub mod options;
mod orphans;
mod pasta;
mod ports;
mod remove;
pub mod rootless;
mod security;
mod spec;
mod store;
pub mod time;
mod usage;
mod user;
mod userns;
mod volumes;

/// The image store the engine works on: its types (references, platforms, image records,
/// progress) are part of the engine's API.
pub use husk_image as image;

pub use build::{BuildEvent, BuildOptions};
pub use cdi::is_cdi_name;
pub use changes::{Change, ChangeKind};
pub use copy::Outside as CopyOutside;
pub use create::{PullEvent, PullProgress};
pub use engine::{
    Attach, Config, DiskUsage, Engine, HistoryStep, ImageRemoval, Info, PullReport, RunReport,
    StartAll, Stats, Top, Usage,
};
pub use error::{Error, Result};
pub use logs::{LogLine, Stream};
pub use monitor::Exit;
pub use networks::{CreateOptions as NetworkCreateOptions, Network};
pub use options::{
    CommitOptions, ExecOptions, ListOptions, LogOptions, Mount, Network as NetworkMode,
    PortMapping, Protocol, RestartPolicy, RunOptions, UpdateOptions,
};
pub use store::{Container, MountRecord, State, Status, DEFAULT_ROOT};
pub use usage::ResourceUsage;
pub use volumes::Volume;
