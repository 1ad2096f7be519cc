//! The container record store, the bottom of the engine: records, names, locks, kept exit
//! codes and the paths of everything a container owns. One directory per container, `<root>/containers/<id>/`, holding
//! `container.json` (this record), `config.json` (the OCI spec), `upper/`, `work/`, `rootfs/`
//! (the overlay mount point) and `<id>-json.log`.
//!
//! Why files and not SQLite: every write here is one small record replaced with
//! write-to-temp + rename, so a `kill -9` at any point leaves the old or the new record, and a
//! per-container flock orders the writers (the monitor, `stop`, `rm`). Names are claimed with
//! `symlink(id, <root>/names/<name>)`, which the kernel makes atomically: of two
//! `run --name x` at once exactly one wins. `husk run` pays no database open and no journal
//! fsync on its hot path, and there is no schema to migrate.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{bail, failed, Context, Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's init while it runs, and its start time.
    pub pid: i32,
    #[serde(default)]
    pub init_start: u64,
    /// The process that holds the container's stdio and will record its exit (the attached
    /// `husk run` itself, or the detached monitor), and its start time, to tell it from a
    /// recycled pid.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: i32,
    pub oom_killed: bool,
    #[serde(default)]
    pub error: String,
    /// `restart` is stopping it to start it again (a `--rm` container stays), or its restart
    /// policy will start it again once its back-off is over.
    #[serde(default)]
    pub restarting: bool,
    /// Starts its restart policy made since the user last started it.
    #[serde(default)]
    pub restart_count: u32,
    /// `stop`, `kill` or `rm -f` ended it: no restart policy starts it again.
    #[serde(default)]
    pub manually_stopped: bool,
    /// What its last run used, read from its cgroup as it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::ResourceUsage>,
    /// Its healthcheck's verdict, from its monitor's checks (reset to `starting` at each start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// docker's `State.Health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    /// The last five checks, oldest first.
    pub log: Vec<HealthResult>,
}

impl Health {
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }
}

/// One check: when it ran, its exit code (-1: it could not run or ran out of time) and
/// the start of its output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image as named on the command line, normalised.
    pub image: String,
    /// The image's config digest (docker's image ID); empty with `--rootfs`.
    pub image_id: String,
    /// `--rootfs`: the directory that is its root, in place of an image's layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_dir: Option<PathBuf>,
    /// `--uidmap`/`--gidmap`: its user namespace's maps, which its layers are idmapped by at
    /// each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_maps: Option<crate::options::IdMaps>,
    pub created: String,
    /// The container process: args, env, cwd, user, as the spec has them.
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub auto_remove: bool,
    pub tty: bool,
    pub interactive: bool,
    pub stop_signal: String,
    pub stop_timeout: i64,
    /// `--timeout`: seconds a start may run before the container is killed.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// `--die-with-parent`: when the husk that runs it dies, the container is killed and
    /// removed.
    #[serde(default)]
    pub die_with_parent: bool,
    /// `--report`: its monitor samples the peaks the kernel does not keep.
    #[serde(default)]
    pub sample_usage: bool,
    /// `none`, `host`, `container:ID`, or the network's name (`bridge` by default).
    pub network: String,
    /// Networks `network connect` added, beyond `network`.
    #[serde(default)]
    pub extra_networks: Vec<String>,
    /// `-p` and `-P` as asked (host ports picked at start where none was given).
    #[serde(default)]
    pub ports: Vec<crate::options::PortMapping>,
    #[serde(default)]
    pub network_aliases: Vec<String>,
    #[serde(default)]
    pub add_hosts: Vec<(String, String)>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    pub mounts: Vec<MountRecord>,
    /// `--restart`.
    #[serde(default)]
    pub restart_policy: crate::options::RestartPolicy,
    /// `--log-driver` and `--log-opt`.
    #[serde(default)]
    pub log_config: crate::options::LogConfig,
    /// `--health-*` over the image's HEALTHCHECK; None for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::options::Healthcheck>,
    /// Anonymous volumes made for this container (`rm -v` removes them).
    pub anonymous_volumes: Vec<String>,
    pub diff_ids: Vec<String>,
    pub state: State,
}

pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    containers_dir(root).join(id)
}

fn names_dir(root: &Path) -> PathBuf {
    root.join("names")
}

pub fn log_path(root: &Path, id: &str) -> PathBuf {
    dir(root, id).join(format!("{id}-json.log"))
}

/// Is `pid` still the process that started at `start` (clock ticks since boot)?
pub fn alive(pid: i32, start: u64) -> bool {
    husk_runtime::util::process_alive(pid, start)
}

/// An exclusive lock on one container's record, held until dropped.
pub struct Lock(#[allow(dead_code)] fs::File);

pub fn lock(root: &Path, id: &str) -> Result<Lock> {
    husk_sys::lock_file(&dir(root, id).join("lock"), true)
        .map(Lock)
        .map_err(|e| {
            if dir(root, id).exists() {
                failed!("cannot lock container {id}: {e}")
            } else {
                // Removed by another husk meanwhile.
                Error::NoSuchContainer(id.to_string())
            }
        })
}

impl Container {
    /// The maps that turn the host ids in this container's upper directory into the
    /// container's: as root, the upper is written with host ids; rootless, fuse-overlayfs
    /// already keeps the container's ids on disk (see `layers::mount_root`).
    pub fn upper_id_maps(&self) -> Option<&crate::options::IdMaps> {
        self.id_maps
            .as_ref()
            .filter(|_| !crate::rootless::is_rootless())
    }

    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let path = dir(root, id).join("container.json");
        let data = fs::read(&path).map_err(|_| Error::NoSuchContainer(id.to_string()))?;
        serde_json::from_slice(&data)
            .with_context(|| format!("the record {} is corrupt", path.display()))
    }

    /// Replace the record on disk (temp file + rename: readers see the old or the new one).
    pub fn save(&self, root: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self)?;
        husk_runtime::util::write_atomic(&dir(root, &self.id).join("container.json"), &data, 0o600)
            .map_err(|e| failed!("cannot save container {}: {e}", self.name))
    }

    /// Change the record under the container's lock, from what is on disk now.
    pub fn update(root: &Path, id: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
        let _l = lock(root, id)?;
        let mut c = Container::load(root, id)?;
        f(&mut c);
        c.save(root)?;
        Ok(c)
    }

    /// The state as it really is: a record that says running while its monitor is gone was
    /// orphaned by a killed monitor. The container may still run (its init is alive); if not,
    /// its exit status is lost, reported as 255 with the reason, as containerd does.
    pub fn observed(&self) -> State {
        let mut s = self.state.clone();
        if s.status == Status::Running
            && !alive(s.monitor_pid, s.monitor_start)
            && !alive(s.pid, s.init_start)
        {
            s.status = Status::Exited;
            s.exit_code = 255;
            s.error = "the container's monitor was killed; its exit status is unknown".into();
            s.pid = 0;
        }
        s
    }

    /// A husk process is starting, running or stopping this container right now.
    pub fn busy(&self) -> bool {
        alive(self.state.monitor_pid, self.state.monitor_start)
    }

    /// What its events say of it: its name, image and labels (docker's attributes).
    pub fn event_attributes(&self) -> Vec<(&str, &str)> {
        let mut a = vec![("name", self.name.as_str()), ("image", self.image.as_str())];
        a.extend(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        a
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Claim `name` for `id`; fails if another container has it.
pub fn claim_name(root: &Path, name: &str, id: &str) -> Result<()> {
    let d = names_dir(root);
    fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let link = d.join(name);
    let mut result = std::os::unix::fs::symlink(id, &link);
    if result
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
    {
        // A claim whose container never got a directory (a husk killed between the claim
        // and the record) is stale: take it over.
        if let Ok(owner) = fs::read_link(&link) {
            let owner_dir = dir(root, &owner.to_string_lossy());
            if !owner_dir.exists() && fs::remove_file(&link).is_ok() {
                result = std::os::unix::fs::symlink(id, &link);
            }
        }
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let owner = fs::read_link(d.join(name))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            Err(Error::Conflict(format!(
                "the container name \"/{name}\" is already in use by container \"{owner}\"; remove or rename that container to reuse the name"
            )))
        }
        Err(e) => Err(e).with_context(|| format!("cannot claim the name {name}")),
    }
}

fn exits_dir(root: &Path) -> PathBuf {
    root.join("exits")
}

/// Keep a removed container's exit code (for `wait` on a `--rm` container): one line
/// `<id> <code>` appended to the current minute's file, `exits/<unix minute>`. No file per
/// container, and the files of minutes older than two go when a new minute's file starts, so
/// a loop of `run --rm` keeps a bounded number of codes without anyone pruning.
pub fn save_exit(root: &Path, id: &str, code: i32) -> Result<()> {
    use std::io::Write;
    let dir = exits_dir(root);
    fs::create_dir_all(&dir)?;
    let minute = (crate::time::now_secs() / 60.0) as u64;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(minute.to_string()))?;
    let new_minute = f.metadata().is_ok_and(|m| m.len() == 0);
    // One write of a short line: appends from several husks do not interleave. A short write
    // (a full disk) is not continued by a second append, which another husk's line could
    // split: the torn line has no newline and readers skip it.
    let line = format!("{id} {code}\n");
    if f.write(line.as_bytes())? != line.len() {
        bail!("cannot keep the exit code of {id}: short write");
    }
    if new_minute {
        forget_exits_before(root, minute.saturating_sub(2));
    }
    Ok(())
}

pub fn load_exit(root: &Path, id: &str) -> Option<i32> {
    let mut minutes: Vec<(u64, PathBuf)> = fs::read_dir(exits_dir(root))
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    minutes.sort_by_key(|m| std::cmp::Reverse(m.0));
    minutes.iter().find_map(|(_, path)| {
        let text = fs::read_to_string(path).ok()?;
        text.split_inclusive('\n').rev().find_map(|l| {
            let (i, code) = l.strip_suffix('\n')?.split_once(' ')?;
            (i == id).then(|| code.parse().ok())?
        })
    })
}

/// Forget kept exit codes older than a minute (`container prune`).
pub fn prune_exits(root: &Path) {
    forget_exits_before(
        root,
        ((crate::time::now_secs() / 60.0) as u64).saturating_sub(1),
    );
}

/// Remove the minute files before `minute`, and anything else in `exits/` (a file per
/// container, as husk kept them before) older than a minute.
fn forget_exits_before(root: &Path, minute: u64) {
    let Ok(rd) = fs::read_dir(exits_dir(root)) else {
        return;
    };
    for e in rd.flatten() {
        let old = match e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            Some(m) => m < minute,
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60),
        };
        if old {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The index of containers a monitor holds right now: `<root>/monitored/<id>`, made when a
/// monitor takes a container and removed when it lets go. What a killed monitor leaves there
/// is how the next husk command finds its orphan without reading every record.
fn monitored_dir(root: &Path) -> PathBuf {
    root.join("monitored")
}

/// Who holds a container, as its monitored index entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A detached monitor (`run -d`, `start`, a restart policy's).
    Detached,
    /// The attached `husk run` or `start -a` itself.
    Attached,
}

impl Holder {
    fn tag(self) -> &'static [u8] {
        match self {
            Holder::Detached => b"detached",
            Holder::Attached => b"attached",
        }
    }

    pub fn from_tag(tag: &[u8]) -> Holder {
        if tag == Holder::Detached.tag() {
            Holder::Detached
        } else {
            Holder::Attached
        }
    }
}

/// Mark container `id` held by `holder`, this process: the entry says `TAG PID START`, so
/// that every command's sweep tells a live holder from a dead one with one read of /proc,
/// without the record's lock (what keeps a command fast with a thousand containers alive).
pub fn mark_monitored(root: &Path, id: &str, holder: Holder) -> Result<()> {
    let d = monitored_dir(root);
    fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let me = std::process::id() as i32;
    let start = husk_runtime::util::process_start_time(me).unwrap_or(0);
    let mut entry = holder.tag().to_vec();
    entry.extend_from_slice(format!(" {me} {start}").as_bytes());
    fs::write(d.join(id), entry).with_context(|| format!("cannot mark container {id} monitored"))
}

/// A monitored entry's holder tag, and its holder process (pid, start time) where the entry
/// names one (entries of older husks do not).
pub fn parse_monitored(entry: &[u8]) -> (&[u8], Option<(i32, u64)>) {
    let text = std::str::from_utf8(entry).unwrap_or("");
    let mut words = text.split_whitespace();
    let tag = words.next().unwrap_or("");
    let holder = match (words.next().map(str::parse), words.next().map(str::parse)) {
        (Some(Ok(pid)), Some(Ok(start))) => Some((pid, start)),
        _ => None,
    };
    (&entry[..tag.len().min(entry.len())], holder)
}

pub fn unmark_monitored(root: &Path, id: &str) {
    let _ = fs::remove_file(monitored_dir(root).join(id));
}

/// The monitored index: each id with its holder's tag.
pub fn monitored(root: &Path) -> Vec<(String, Vec<u8>)> {
    fs::read_dir(monitored_dir(root))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let tag = fs::read(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), tag)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names that point at container `id` (one, unless a crash left a second).
pub fn names_of(root: &Path, id: &str) -> Vec<String> {
    fs::read_dir(names_dir(root))
        .map(|rd| {
            rd.flatten()
                .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == id))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn release_name(root: &Path, name: &str, id: &str) {
    let link = names_dir(root).join(name);
    if fs::read_link(&link).is_ok_and(|t| t.as_os_str() == id) {
        let _ = fs::remove_file(link);
    }
}

/// Every container record, newest first.
pub fn list(root: &Path) -> Result<Vec<Container>> {
    let d = containers_dir(root);
    let rd = match fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        // A directory without a record is a container being made or removed (`.gone-ID`).
        if let Ok(c) = Container::load(root, &id) {
            out.push(c);
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created));
    Ok(out)
}

/// A container by name, full id or unique id prefix, as docker accepts them.
pub fn find(root: &Path, query: &str) -> Result<Container> {
    let q = query.trim_start_matches('/');
    if let Ok(id) = fs::read_link(names_dir(root).join(q)) {
        if let Ok(c) = Container::load(root, &id.to_string_lossy()) {
            return Ok(c);
        }
    }
    if q.is_empty() || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NoSuchContainer(query.to_string()));
    }
    // Only the records whose id has the prefix are read, not every container's.
    let d = containers_dir(root);
    let rd = match fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoSuchContainer(query.to_string()))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
    };
    let mut matches = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(q))
        .filter_map(|e| Container::load(root, &e.file_name().to_string_lossy()).ok());
    match (matches.next(), matches.next()) {
        (None, _) => Err(Error::NoSuchContainer(query.to_string())),
        (Some(c), None) => Ok(c),
        _ => bail!("multiple containers match the ID prefix {query}; give more of it"),
    }
}

/// A fresh container or volume id: 64 hex digits from the kernel's random pool.
pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// docker-style "adjective_surname" names, unique in this store.
pub fn generated_name(root: &Path, id: &str) -> String {
    const LEFT: [&str; 16] = [
        "brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen", "lucid", "modest",
        "nifty", "quirky", "serene", "tender", "vibrant", "zealous",
    ];
    const RIGHT: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "franklin", "galileo", "hopper", "kepler",
        "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
    ];
    let b = id.as_bytes();
    for i in 0..b.len().saturating_sub(1) {
        let name = format!(
            "{}_{}",
            LEFT[(b[i] % 16) as usize],
            RIGHT[(b[i + 1] % 16) as usize]
        );
        // The claim is a symlink to an id, relative: `exists()` would follow it and miss it.
        if fs::symlink_metadata(names_dir(root).join(&name)).is_err() {
            return name;
        }
    }
    format!("husk_{}", &id[..12.min(id.len())])
}

/// The store's default root; its runtime state lives under /run (tmpfs, gone at boot).
pub const DEFAULT_ROOT: &str = "/var/lib/husk";

/// The live state of a store whose root is not the default one and that keeps its live state
/// apart (a rootless user's, in `$XDG_RUNTIME_DIR/husk`): its root and that directory.
static LIVE_DIR: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();

/// Keeps the live state of the store at `root` in `live` (for this process; first call wins).
pub fn set_live_dir(root: &Path, live: &Path) {
    let _ = LIVE_DIR.set((root.to_path_buf(), live.to_path_buf()));
}

/// Where the store at `root` keeps what is gone at boot: /run/husk for the default root, the
/// registered directory of a rootless store, or nothing apart (tests, benchmarks: their roots
/// stay self-contained).
fn live_dir(root: &Path) -> Option<PathBuf> {
    if root == Path::new(DEFAULT_ROOT) {
        return Some(PathBuf::from("/run/husk"));
    }
    LIVE_DIR
        .get()
        .filter(|(r, _)| r == root)
        .map(|(_, live)| live.clone())
}

/// husk-runtime's state for this store's containers.
pub fn runtime_root(root: &Path) -> PathBuf {
    live_dir(root).map_or_else(|| root.join("run"), |l| l.join("runtime"))
}

/// The live state of this store's networks (network namespaces, IPAM, port claims, the DNS
/// server's files): gone at boot with the containers that used them, as runtime state is.
pub fn net_dir(root: &Path) -> PathBuf {
    live_dir(root).map_or_else(|| root.join("net"), |l| l.join("net"))
}

/// The file container `id`'s network namespace is bound to while it runs (its `SandboxKey`).
pub fn netns_path(root: &Path, id: &str) -> PathBuf {
    net_dir(root).join("netns").join(id)
}

/// husk-runtime, as a library, on this store's runtime state.
pub fn runtime(root: &Path) -> husk_runtime::Runtime {
    let log = husk_runtime::logging::Logger::new(None, husk_runtime::logging::Format::Text, false);
    husk_runtime::Runtime::new(runtime_root(root), log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_kept_a_few_minutes_in_one_file_a_minute() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert_eq!(load_exit(r, "a"), None);
        save_exit(r, "a", 3).unwrap();
        save_exit(r, "b", 137).unwrap();
        assert_eq!((load_exit(r, "a"), load_exit(r, "b")), (Some(3), Some(137)));
        assert_eq!(load_exit(r, "c"), None);
        // An older minute's file, and a file per container as older husks kept them.
        let minute = (crate::time::now_secs() / 60.0) as u64;
        fs::write(exits_dir(r).join((minute - 5).to_string()), "old 1\n").unwrap();
        let legacy = exits_dir(r).join("legacy");
        fs::write(&legacy, "2").unwrap();
        let f = fs::File::options().write(true).open(&legacy).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
            .unwrap();
        assert_eq!(load_exit(r, "old"), Some(1));
        prune_exits(r);
        assert_eq!(load_exit(r, "old"), None, "older than a minute");
        assert!(!legacy.exists());
        assert_eq!(load_exit(r, "a"), Some(3), "this minute's stay");
        // A torn line (no newline) is not read as a code.
        let minute_file = exits_dir(r).join(minute.to_string());
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&minute_file)
            .unwrap();
        std::io::Write::write_all(&mut f, b"torn 13").unwrap();
        assert_eq!(load_exit(r, "torn"), None);
        // One line each, not one file each (two files if a minute turned meanwhile).
        for i in 0..20 {
            save_exit(r, &format!("id{i}"), i).unwrap();
        }
        assert_eq!(load_exit(r, "id7"), Some(7));
        assert!(fs::read_dir(exits_dir(r)).unwrap().count() <= 2);
    }
}
