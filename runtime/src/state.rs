//! A container's record under `--root/<id>/`: `state.json` (what `state` prints plus what the
//! runtime needs later), the `exec.fifo` that holds the init before `start`, and a lock file so
//! two commands on one id never interleave.
//!
//! The status is derived, never stored: a live init (same pid *and* start time) with the fifo
//! still present is `created`, without it `running` (or `paused` when frozen); anything else is
//! `stopped`. That survives a killed runtime process, which a stored status would not.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::util::{process_alive, write_atomic};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
const LOCK_FILE: &str = "lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What is kept on disk for one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub oci_version: String,
    pub id: String,
    /// Host pid of the container's init; 0 while it does not exist yet.
    pub pid: i32,
    /// Start time of the init (clock ticks since boot), to tell it from a recycled pid.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    /// Where the container's cgroup lives (one path per v1 hierarchy, or the v2 path).
    pub cgroup: Option<crate::cgroups::CgroupPaths>,
    /// For a container without a mount namespace of its own: the mount its rootfs was on before
    /// the container stacked its own there (`delete` detaches down to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_rootfs_mount: Option<u64>,
    /// The scope unit that holds the cgroup, when systemd made it (`--systemd-cgroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The config the container was created with: poststop hooks and `exec` need it after the
    /// bundle may have changed or gone.
    pub config: Spec,
    /// Exit status of the init, when the runtime itself reaped it (`run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// True until the init reported itself ready (the spec's "creating").
    #[serde(default)]
    pub creating: bool,
}

/// The OCI runtime spec's state object, plus the fields runc adds that containerd reads.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(default)]
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty", default)]
    pub annotations: std::collections::HashMap<String, String>,
}

fn is_zero(p: &i32) -> bool {
    *p == 0
}

/// One container's directory under the runtime root.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
}

/// An exclusive flock on a container's lock file, released on drop.
pub struct Lock(File);

impl Lock {
    /// The fd behind the lock. A forked child shares the lock with us until it closes this.
    pub fn raw(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl ContainerDir {
    pub fn new(root: &Path, id: &str) -> Self {
        ContainerDir {
            id: id.to_string(),
            path: root.join(id),
        }
    }

    /// Create the directory; fails with `Exists` if another create got there first (mkdir is the
    /// arbiter between two concurrent creates of one id).
    pub fn create(root: &Path, id: &str) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .ctx_path("cannot create runtime root", root)?;
        let dir = ContainerDir::new(root, id);
        match fs::DirBuilder::new().mode(0o711).create(&dir.path) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.into()))
            }
            Err(e) => Err(Error::io(
                format!("cannot create {}", dir.path.display()),
                e,
            )),
        }
    }

    pub fn exists(&self) -> bool {
        self.path.join(STATE_FILE).exists()
    }

    pub fn lock(&self) -> Result<Lock> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o600)
            .open(self.path.join(LOCK_FILE))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotFound(self.id.clone())
                } else {
                    Error::io(format!("cannot open lock of container {}", self.id), e)
                }
            })?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(
                format!("cannot lock container {}", self.id),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Lock(f))
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    pub fn load(&self) -> Result<Record> {
        let path = self.path.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(self.id.clone()))
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::Io {
            context: format!(
                "state of container {} is corrupt ({})",
                self.id,
                path.display()
            ),
            err: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    pub fn save(&self, record: &Record) -> Result<()> {
        let data = serde_json::to_vec(record).map_err(|e| Error::Io {
            context: format!("cannot encode state of {}", self.id),
            err: std::io::Error::other(e),
        })?;
        write_atomic(&self.path.join(STATE_FILE), &data, 0o600)
    }

    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("cannot remove {}", self.path.display()),
                e,
            )),
        }
    }

    pub fn status(&self, record: &Record) -> Status {
        if record.pid == 0 && record.creating {
            return Status::Creating;
        }
        if !init_alive(record) {
            return Status::Stopped;
        }
        if record.creating {
            return Status::Creating;
        }
        if self.fifo_path().exists() {
            return Status::Created;
        }
        match &record.cgroup {
            Some(cg) if crate::cgroups::is_frozen(cg) => Status::Paused,
            _ => Status::Running,
        }
    }

    pub fn oci_state(&self, record: &Record) -> OciState {
        let status = self.status(record);
        OciState {
            oci_version: record.oci_version.clone(),
            id: record.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                record.pid
            },
            bundle: record.bundle.clone(),
            rootfs: record.rootfs.clone(),
            created: record.created.clone(),
            owner: record.owner.clone(),
            annotations: record.config.annotations().clone().unwrap_or_default(),
        }
    }
}

/// The init is alive when its pid exists, is not a zombie, and started when ours did.
pub fn init_alive(record: &Record) -> bool {
    process_alive(record.pid, record.init_start_time)
}

/// Ids of every container under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot read {}", root.display()), e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}
