//! The verbs: what a user can do with containers, volumes and images, as one `Engine` opened
//! on a store root. Each verb takes typed options and returns a typed report; the command line
//! above turns them into tables, JSON and exit codes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use husk_image::images::{ImageRecord, Reclaimed};
use husk_image::manifest::Platform;
use husk_image::registry::Options as RegistryOptions;
use husk_image::{Digest, Reference};
use serde_json::{json, Value};

use crate::create::{self, PullProgress};
use crate::error::{failed, Context, Error, Result};
use crate::layers;
use crate::logs::{self, LogLine};
use crate::monitor::{self, Exit, Stdio};
use crate::options::{
    CommitOptions, ExecOptions, Filter, ListOptions, LogOptions, RunOptions, UpdateOptions,
};
use crate::orphans;
use crate::remove::remove;
use crate::store::{self, Container, Status};
use crate::volumes::{self, Volume};

/// One step of an image's `history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryStep {
    /// The image's id, on the newest step only (docker's `<missing>` on the others).
    pub id: Option<String>,
    pub created: Option<String>,
    pub created_by: String,
    /// Bytes of the layer the step made, as stored (0 for a step that made none).
    pub size: u64,
    pub comment: String,
}

/// What `start --all` did: the names it started, and those it could not, with why.
#[derive(Debug)]
pub struct StartAll {
    pub started: Vec<String>,
    pub failed: Vec<(String, Error)>,
}

/// How the engine is opened.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store: images, layers, containers, volumes.
    pub root: PathBuf,
    /// `auto`, `overlay` or `erofs`; the store's own choice when unset.
    pub storage_driver: Option<String>,
    /// The husk binary, run as `husk reap-layer-mounts` to unmount idle layers after a grace
    /// period. Without it a layer's shared mount goes as soon as its last user leaves.
    pub layer_reaper: Option<PathBuf>,
    /// Where the store's live state goes (husk-runtime's state, network namespaces) when it is
    /// not under the root: a rootless user's `$XDG_RUNTIME_DIR/husk`. The default root's is
    /// /run/husk; any other root keeps its own inside.
    pub live_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            root: PathBuf::from(store::DEFAULT_ROOT),
            storage_driver: None,
            layer_reaper: None,
            live_dir: None,
        }
    }
}

/// Where the container's stdio goes while `run` or `start` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A monitor process of its own holds the container and writes its log; the call returns
    /// once the container started.
    Detached,
    /// This process is the monitor: the container's output goes to the log and to this
    /// process's stdout and stderr, its stdin is forwarded (with `interactive`), and the call
    /// returns when it exits.
    Logged,
    /// As `Logged`, but the container gets this process's stdio itself and nothing is logged
    /// (the fastest start; for containers removed when they exit).
    Direct,
}

/// What `run` did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub id: String,
    pub name: String,
    /// How it ended, when the call held it to the end (not `Attach::Detached`).
    pub exit: Option<Exit>,
    /// An attached run the detach keys left: the container goes on.
    pub detached: bool,
}

/// What `pull` did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image's manifest digest.
    pub manifest: String,
    /// The image's config digest (docker's image ID).
    pub config: String,
    /// The store had no image of this name, or another one.
    pub new: bool,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone)]
pub struct Stats {
    pub id: String,
    pub name: String,
    /// Share of one CPU over the sample window, in percent.
    pub cpu_percent: f64,
    pub memory_usage: u64,
    /// The container's memory limit, or the host's memory when it has none.
    pub memory_limit: u64,
    pub pids: u64,
    pub block_read: u64,
    pub block_written: u64,
    /// Bytes through the container's own interfaces (none on the host's network).
    pub net_received: u64,
    pub net_sent: u64,
}

/// `top`: ps's columns and a row per process of the container.
#[derive(Debug, Clone)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// What `info` tells of the store and the host.
#[derive(Debug, Clone)]
pub struct Info {
    pub containers: usize,
    pub running: usize,
    pub images: usize,
    pub storage_driver: String,
    /// Why that driver.
    pub storage_driver_why: String,
    pub erofs_layers: usize,
    pub directory_layers: usize,
    pub layer_mount_grace: Duration,
    /// 1 or 2.
    pub cgroup_version: u8,
    pub kernel: String,
    pub root: PathBuf,
    /// The host uid of a rootless husk (see `rootless`), None for root.
    pub rootless_uid: Option<u32>,
}

/// One row of `system df`.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub total: usize,
    pub active: usize,
    pub size: u64,
    /// What removing the unused ones would free.
    pub reclaimable: u64,
}

impl Usage {
    fn add(&mut self, size: u64, active: bool) {
        self.total += 1;
        self.size += size;
        if active {
            self.active += 1;
        } else {
            self.reclaimable += size;
        }
    }
}

/// `system df`.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub images: Usage,
    pub containers: Usage,
    pub volumes: Usage,
}

/// What `remove_image` did.
#[derive(Debug)]
pub struct ImageRemoval {
    pub untagged: Vec<ImageRecord>,
    pub reclaimed: Reclaimed,
}

/// The engine on one store.
pub struct Engine {
    pub(crate) root: PathBuf,
}

impl Engine {
    /// Open the store at `config.root`, making it if need be. Reads husk's config file now (a
    /// detached monitor later leaves the caller's directory, and a relative $HUSK_CONFIG means
    /// that one).
    pub fn open(config: Config) -> Result<Engine> {
        husk_image::config::preload();
        let mut root = config.root;
        // One spelling of the root everywhere, so mount points compare equal to /proc's.
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the store {}", root.display()))?;
        if let Ok(c) = std::fs::canonicalize(&root) {
            root = c;
        }
        if let Some(live) = &config.live_dir {
            store::set_live_dir(&root, live);
        }
        if let Some(d) = &config.storage_driver {
            husk_image::snapshot::request(d);
        }
        if let Some(r) = config.layer_reaper {
            layers::set_reaper(r);
        }
        // What husks killed since the last command left (see orphans).
        orphans::reap_all(&root);
        Ok(Engine { root })
    }

    /// The engine on the store at `root`, with the defaults otherwise.
    pub fn at(root: impl Into<PathBuf>) -> Result<Engine> {
        Engine::open(Config {
            root: root.into(),
            ..Config::default()
        })
    }

    /// The store's root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---- images -------------------------------------------------------------------------

    /// Pull an image into the store and record its name.
    pub fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        opts: &RegistryOptions,
        progress: PullProgress,
    ) -> Result<PullReport> {
        let (pulled, new) = create::pull(&self.root, reference, platform, opts, progress)?;
        let name = reference.to_string();
        crate::events::emit(&self.root, "image", "pull", &name, &[("name", &name)]);
        Ok(PullReport {
            manifest: pulled.manifest.to_string(),
            config: pulled.config.to_string(),
            new,
        })
    }

    /// The stored image `query` names (name, name:tag, id or id prefix).
    pub fn image(&self, query: &str) -> Result<ImageRecord> {
        husk_image::images::find(&self.root, query)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoSuchImage(query.to_string()))
    }

    /// docker-shaped `image inspect` of one image.
    pub fn inspect_image(&self, query: &str) -> Result<Value> {
        let r = self.image(query)?;
        let store = husk_image::store::Store::open(&self.root)?;
        let config: Value = serde_json::from_reader(store.open_blob(&Digest::parse(&r.config)?)?)?;
        Ok(json!({
            "Id": r.config,
            "RepoTags": if r.name == husk_image::images::UNTAGGED { vec![] } else { vec![format!("{}:{}", r.name, r.tag.clone().unwrap_or_else(|| "<none>".into()))] },
            "RepoDigests": if r.name == husk_image::images::UNTAGGED { vec![] } else { vec![format!("{}@{}", r.name, r.manifest)] }, "Created": r.created, "Size": r.size,
            "Architecture": config["architecture"], "Os": config["os"], "Config": config["config"],
            "RootFS": {"Type": "layers", "Layers": r.diff_ids}
        }))
    }

    /// `history`: how the image was made, newest step first, from its config's `history`
    /// (each step that made a layer with that layer's stored size).
    pub fn history(&self, query: &str) -> Result<Vec<HistoryStep>> {
        let r = self.image(query)?;
        let store = husk_image::store::Store::open(&self.root)?;
        let config: Value = serde_json::from_reader(store.open_blob(&Digest::parse(&r.config)?)?)
            .context("the image config is corrupt")?;
        let manifest: Value =
            serde_json::from_reader(store.open_blob(&Digest::parse(&r.manifest)?)?)
                .context("the image manifest is corrupt")?;
        let sizes: Vec<u64> = manifest["layers"]
            .as_array()
            .map(|l| l.iter().map(|d| d["size"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        let mut layers = sizes.into_iter();
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let mut steps: Vec<HistoryStep> = match config["history"].as_array() {
            Some(h) if !h.is_empty() => h
                .iter()
                .map(|e| {
                    let empty = e["empty_layer"].as_bool().unwrap_or(false);
                    HistoryStep {
                        id: None,
                        created: e["created"].as_str().map(str::to_string),
                        created_by: text(&e["created_by"]),
                        size: if empty { 0 } else { layers.next().unwrap_or(0) },
                        comment: text(&e["comment"]),
                    }
                })
                .collect(),
            // No history kept: one step per layer, and nothing to say of how.
            _ => layers
                .map(|size| HistoryStep {
                    id: None,
                    created: r.created.clone(),
                    created_by: String::new(),
                    size,
                    comment: String::new(),
                })
                .collect(),
        };
        steps.reverse();
        if let Some(top) = steps.first_mut() {
            top.id = Some(r.config.clone());
        }
        Ok(steps)
    }

    /// Untag what `query` names and free what no image uses any more; refused while a
    /// container or an image mount uses it, and for an id that tags several names unless
    /// `force`.
    pub fn remove_image(&self, query: &str, force: bool) -> Result<ImageRemoval> {
        let root = self.root.clone();
        let (untagged, reclaimed) =
            husk_image::images::remove(&self.root, query, force, &|r| image_user(&root, r))?;
        for r in &untagged {
            let name = format!("{}:{}", r.name, r.tag.as_deref().unwrap_or("<none>"));
            crate::events::emit(&self.root, "image", "untag", &r.config, &[("name", &name)]);
        }
        if reclaimed.blobs > 0 {
            for id in untagged
                .iter()
                .map(|r| &r.config)
                .collect::<std::collections::BTreeSet<_>>()
            {
                crate::events::emit(&self.root, "image", "delete", id, &[]);
            }
        }
        Ok(ImageRemoval {
            untagged,
            reclaimed,
        })
    }

    /// Mount an image's layers read-only (`image mount`); returns the mount point.
    pub fn mount_image(&self, query: &str) -> Result<PathBuf> {
        let r = self.image(query)?;
        let mp = husk_image::snapshot::image_mount_point(&self.root, &r.config);
        if !husk_sys::is_mount_point(&mp) {
            std::fs::create_dir_all(&mp)
                .with_context(|| format!("cannot create {}", mp.display()))?;
            husk_image::snapshot::mount(&self.root, &diff_ids(&r.diff_ids)?, None, &mp)?;
        }
        Ok(mp)
    }

    /// Undo `mount_image`; returns the image's id.
    pub fn unmount_image(&self, query: &str) -> Result<String> {
        let r = self.image(query)?;
        let mp = husk_image::snapshot::image_mount_point(&self.root, &r.config);
        if !husk_sys::is_mount_point(&mp) {
            return Err(Error::Conflict(format!("image {query} is not mounted")));
        }
        husk_image::snapshot::unmount(&mp)?;
        let _ = std::fs::remove_dir(&mp);
        let ids: Vec<Digest> = r
            .diff_ids
            .iter()
            .filter_map(|d| Digest::parse(d).ok())
            .collect();
        layers::release_layers(&self.root, &ids);
        Ok(r.config.trim_start_matches("sha256:").to_string())
    }

    /// Every named image in the store.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(husk_image::images::list(&self.root)?)
    }

    /// Give the image `source` names a further name.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<()> {
        husk_image::images::tag(&self.root, source, target)?;
        let name = target.to_string();
        crate::events::emit(&self.root, "image", "tag", &name, &[("name", &name)]);
        Ok(())
    }

    /// `image prune`: the untagged images no container uses, then the blobs and layers no
    /// image uses. Returns the images removed and what was freed.
    pub fn prune_images(&self) -> Result<(Vec<ImageRecord>, Reclaimed)> {
        let root = self.root.clone();
        Ok(husk_image::images::remove_untagged(&self.root, &|r| {
            image_user(&root, r)
        })?)
    }

    /// `image prune -a`: every image no container (and no image mount) uses goes, then what
    /// no image references. Returns the images untagged and what was freed.
    pub fn prune_unused_images(&self) -> Result<(Vec<ImageRecord>, Reclaimed)> {
        let (mut untagged, mut freed) = self.prune_images()?;
        for r in husk_image::images::list(&self.root)? {
            if image_user(&self.root, &r).is_some() {
                continue;
            }
            let query = match &r.tag {
                Some(t) => format!("{}:{t}", r.name),
                None => format!("{}@{}", r.name, r.manifest),
            };
            let root = self.root.clone();
            match husk_image::images::remove(&self.root, &query, true, &|r| image_user(&root, r)) {
                Ok((gone, got)) => {
                    untagged.extend(gone);
                    freed.blobs += got.blobs;
                    freed.layers += got.layers;
                    freed.bytes += got.bytes;
                }
                // Taken by a container meanwhile, or gone: left as it is.
                Err(_) => continue,
            }
        }
        let rest = husk_image::images::gc(&self.root)?;
        freed.blobs += rest.blobs;
        freed.layers += rest.layers;
        freed.bytes += rest.bytes;
        Ok((untagged, freed))
    }

    /// `system df`: what images, containers and volumes hold on disk, and what is in use.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let images = husk_image::images::list(&self.root)?;
        let containers = store::list(&self.root)?;
        let mut du = DiskUsage::default();
        for r in &images {
            let used = containers.iter().any(|c| c.image_id == r.config);
            du.images.add(r.size, used);
        }
        for c in &containers {
            let size = husk_image::images::dir_size(&store::dir(&self.root, &c.id).join("upper"));
            du.containers
                .add(size, c.observed().status == Status::Running);
        }
        for v in volumes::list(&self.root)? {
            let used = !volumes::users(&self.root, &v.name)?.is_empty();
            du.volumes
                .add(husk_image::images::dir_size(&v.mountpoint), used);
        }
        Ok(du)
    }

    /// Write `images` as one archive to `out`.
    pub fn save(
        &self,
        images: &[ImageRecord],
        format: husk_image::archive::Format,
        out: impl std::io::Write,
    ) -> Result<()> {
        Ok(husk_image::archive::save(&self.root, images, format, out)?)
    }

    /// Read an archive (docker-archive or OCI layout) into the store and record the names it
    /// gives its images.
    pub fn load(
        &self,
        input: impl std::io::Read,
        progress: &(dyn Fn(husk_image::pull::Progress) + Sync),
    ) -> Result<Vec<husk_image::archive::Loaded>> {
        let _adding = husk_image::store::Store::open(&self.root)?.adding()?;
        let loaded = husk_image::archive::load(&self.root, input, progress)?;
        for l in &loaded {
            for name in &l.names {
                husk_image::images::record(&self.root, name, &l.pulled)?;
            }
        }
        Ok(loaded)
    }

    /// `import`: a file system tarball (plain, gzip or zstd) as a one-layer image named
    /// `reference`, with `changes` (Dockerfile instructions: CMD, ENV, …) in its config and
    /// `message` in its history. Returns the image's id.
    pub fn import(
        &self,
        input: impl std::io::Read,
        reference: Option<&Reference>,
        changes: &[String],
        message: &str,
    ) -> Result<String> {
        let mut config = json!({});
        for change in changes {
            crate::instructions::apply(&mut config, change)?;
        }
        let pulled = husk_image::import::import(
            &self.root,
            input,
            config,
            message,
            &crate::time::now(),
            &|_| {},
        )?;
        let (id, name) = name_image(&self.root, reference, &pulled)?;
        crate::events::emit(&self.root, "image", "import", &id, &[("name", &name)]);
        Ok(id)
    }

    /// `commit`: container `query`'s changes as a new layer on its image, with its settings
    /// (Env, Cmd, WorkingDir, User, Labels) and `changes` as the image's config, named
    /// `reference`. A running container is paused meanwhile when `pause` says so. Returns the
    /// new image's id.
    pub fn commit(
        &self,
        query: &str,
        reference: Option<&Reference>,
        o: &CommitOptions,
    ) -> Result<String> {
        let c = store::find(&self.root, query)?;
        if c.rootfs_dir.is_some() {
            return Err(Error::Invalid(format!(
                "container {} runs a directory (--rootfs), not an image: there is nothing to commit onto",
                c.name
            )));
        }
        let store = husk_image::store::Store::open(&self.root)?;
        let _adding = store.adding()?;
        let base = husk_image::images::list(&self.root)?
            .into_iter()
            .find(|r| r.config == c.image_id)
            .ok_or_else(|| {
                Error::NoSuchImage(format!(
                    "{} (the image of container {}, removed since)",
                    c.image, c.name
                ))
            })?;
        let (mut config, mut layers) =
            husk_image::compose::open(&store, &Digest::parse(&base.manifest)?)?;
        let mut pause = o.pause && c.observed().status == Status::Running && !self.paused(&c);
        if pause {
            match store::runtime(&self.root).pause(&c.id) {
                Ok(()) => {}
                // A rootless container without a delegated cgroup cannot be frozen: it is
                // committed running, as podman commits by default.
                Err(husk_runtime::Error::Unsupported(_)) if crate::rootless::is_rootless() => {
                    pause = false;
                }
                Err(e) => {
                    return Err(failed!(
                        "cannot pause container {} to commit it: {e}",
                        c.name
                    ))
                }
            }
        }
        let layer = crate::commit::layer(&self.root, &c);
        if pause {
            let _ = store::runtime(&self.root).resume(&c.id);
        }
        let layer = layer?;
        let settings = crate::json::object(&mut config["config"]);
        settings.insert("Env".into(), json!(c.env));
        if !c.working_dir.is_empty() {
            settings.insert("WorkingDir".into(), json!(c.working_dir));
        }
        settings.insert("User".into(), json!(c.user));
        if !c.labels.is_empty() {
            settings.insert("Labels".into(), json!(c.labels));
        }
        let command: Vec<String> = std::iter::once(c.path.clone())
            .chain(c.args.iter().cloned())
            .collect();
        let entrypoint: Vec<String> = settings
            .get("Entrypoint")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if !entrypoint.is_empty() && command.starts_with(&entrypoint) {
            settings.insert("Cmd".into(), json!(command[entrypoint.len()..]));
        } else {
            settings.insert("Entrypoint".into(), Value::Null);
            settings.insert("Cmd".into(), json!(command));
        }
        for change in &o.changes {
            crate::instructions::apply(&mut config["config"], change)?;
        }
        let now = crate::time::now();
        config["created"] = json!(now);
        if !o.author.is_empty() {
            config["author"] = json!(o.author);
        }
        let mut step = json!({"created": now, "created_by": command.join(" ")});
        if !o.message.is_empty() {
            step["comment"] = json!(o.message);
        }
        if let Some(l) = &layer {
            crate::json::array(&mut config["rootfs"]["diff_ids"])
                .push(json!(l.diff_id.to_string()));
            layers.push(l.descriptor.clone());
        } else {
            step["empty_layer"] = json!(true);
        }
        crate::json::array(&mut config["history"]).push(step);
        let pulled = husk_image::compose::compose(&self.root, &store, &config, &layers, &|_| {})?;
        let (id, name) = name_image(&self.root, reference, &pulled)?;
        crate::events::emit(
            &self.root,
            "container",
            "commit",
            &c.id,
            &[("name", &c.name), ("image", &name)],
        );
        Ok(id)
    }

    /// `build`: the Dockerfile in `o.context` (or, with `context_tar`, in the tar stream
    /// given), step by step; the final image's id, named by every `o.tags`.
    pub fn build(
        &self,
        o: &crate::build::BuildOptions,
        context_tar: Option<&mut dyn std::io::Read>,
        events: &mut dyn FnMut(crate::build::BuildEvent),
    ) -> Result<String> {
        let Some(input) = context_tar else {
            return crate::build::build(&self.root, o, events);
        };
        let dir = crate::build::unpack_context(&self.root, input)?;
        let mut here = o.clone();
        here.context = dir.clone();
        if let Some(f) = &o.dockerfile {
            if f.is_relative() {
                here.dockerfile = Some(dir.join(f));
            }
        }
        let result = crate::build::build(&self.root, &here, events);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// `push NAME[:TAG]`: the image so named to its registry and repository.
    pub fn push(
        &self,
        reference: &Reference,
        opts: &RegistryOptions,
        progress: &(dyn Fn(husk_image::push::Progress) + Sync),
    ) -> Result<husk_image::push::Pushed> {
        let query = reference.to_string();
        let image = self.image(&query)?;
        let pushed = husk_image::push::push(&self.root, &image, reference, opts, progress)?;
        crate::events::emit(
            &self.root,
            "image",
            "push",
            &image.config,
            &[("name", &query)],
        );
        Ok(pushed)
    }

    /// Check the credentials against `server` and keep them for later pulls.
    pub fn login(&self, server: &str, user: &str, password: &str, insecure: bool) -> Result<()> {
        let opts = RegistryOptions {
            insecure,
            credentials: Some((user.to_string(), password.to_string())),
        };
        husk_image::registry::Registry::check_login(server, &opts)?;
        Ok(husk_image::auth::store(server, user, password)?)
    }

    /// Forget the credentials kept for `server`; false when there were none.
    pub fn logout(&self, server: &str) -> Result<bool> {
        Ok(husk_image::auth::remove(server)?)
    }

    /// Re-verify the image store against its digests; with `repair`, drop or rebuild what is
    /// wrong. Waits for running pulls, and holds off new ones while it runs.
    pub fn check_store(&self, repair: bool) -> Result<husk_image::check::Report> {
        Ok(husk_image::check::check(&self.root, repair)?)
    }

    /// The body of `husk reap-layer-mounts`: wait out the grace, unmount what stayed idle.
    pub fn reap_layer_mounts(&self, layers: &[String]) -> Result<()> {
        layers::reap(&self.root, layers)
    }

    /// The store and the host, as `info` shows them.
    /// `system migrate` (rootless): ends the pause process that holds the user namespace, so
    /// the next command maps the user's subordinate ids as the files say now. Refused while a
    /// container runs: its processes live in that namespace. Returns the pid ended.
    pub fn migrate(&self) -> Result<Option<i32>> {
        let Some(uid) = crate::rootless::rootless_uid() else {
            return Err(Error::Invalid(
                "system migrate is for rootless husk: root has no user namespace to make again"
                    .into(),
            ));
        };
        let running = store::list(&self.root)?
            .iter()
            .filter(|c| c.observed().status == Status::Running)
            .count();
        if running > 0 {
            return Err(Error::Conflict(format!(
                "{running} container(s) still running in the user namespace: stop them first"
            )));
        }
        let dirs = crate::rootless::user_dirs(uid).map_err(|e| Error::Failed(e.to_string()))?;
        Ok(crate::rootless::end_pause(&dirs))
    }

    pub fn info(&self) -> Result<Info> {
        let (driver, why) = husk_image::snapshot::choose(&self.root)?;
        let images = husk_image::images::list(&self.root)?.len();
        let all = store::list(&self.root)?;
        let running = all
            .iter()
            .filter(|c| c.observed().status == Status::Running)
            .count();
        let (mut dirs, mut erofs) = (0, 0);
        if let Ok(rd) = std::fs::read_dir(self.root.join("layers")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') {
                    continue;
                }
                if n.ends_with(".erofs") {
                    erofs += 1;
                } else {
                    dirs += 1;
                }
            }
        }
        Ok(Info {
            containers: all.len(),
            running,
            images,
            storage_driver: driver.name().to_string(),
            storage_driver_why: why,
            erofs_layers: erofs,
            directory_layers: dirs,
            layer_mount_grace: husk_image::snapshot::mount_grace()?,
            cgroup_version: match husk_runtime::cgroups::detect() {
                husk_runtime::cgroups::Version::V1 => 1,
                husk_runtime::cgroups::Version::V2 => 2,
            },
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            root: self.root.clone(),
            rootless_uid: crate::rootless::rootless_uid(),
        })
    }

    // ---- containers ---------------------------------------------------------------------

    /// Make a container without starting it; returns its id.
    pub fn create(&self, opts: &RunOptions, progress: PullProgress) -> Result<String> {
        let id = create::create(&self.root, opts, progress)?;
        // Nobody holds it now: `start` may.
        Container::update(&self.root, &id, |c| {
            c.state.monitor_pid = 0;
            c.state.monitor_start = 0;
        })?;
        Ok(id)
    }

    /// Make a container and start it, held as `attach` says. With `Attach::Detached` the
    /// caller must be single-threaded: the monitor is forked.
    pub fn run(
        &self,
        opts: &RunOptions,
        attach: Attach,
        progress: PullProgress,
    ) -> Result<RunReport> {
        let die = match opts.die_with_parent {
            Some(d) => d,
            // The config file's default is for attached runs: a detached container is meant
            // to outlive the husk that started it.
            None => {
                attach != Attach::Detached
                    && husk_image::config::get("die-with-parent")?.as_bool() == Some(true)
            }
        };
        if die && attach == Attach::Detached {
            return Err(Error::Invalid(
                "conflicting options: --die-with-parent and --detach (a detached container outlives the husk that starts it)".into(),
            ));
        }
        if die && opts.restart.name != "no" {
            return Err(Error::Invalid(
                "conflicting options: --die-with-parent and --restart (a container removed when its husk dies cannot be restarted)".into(),
            ));
        }
        if opts.report && attach == Attach::Detached {
            return Err(Error::Invalid(
                "--report needs an attached run; a detached container's usage is in `husk inspect` (State.Usage)".into(),
            ));
        }
        // Forked first, so that a husk killed at any point from here on leaves nothing.
        let mut watcher = if die {
            Some(orphans::Watcher::spawn(&self.root)?)
        } else {
            None
        };
        let mut opts_here;
        let opts = if die && opts.die_with_parent != Some(true) {
            opts_here = opts.clone();
            opts_here.die_with_parent = Some(true);
            &opts_here
        } else {
            opts
        };
        let id = create::create_with(&self.root, opts, progress, &mut |id| {
            if let Some(w) = &mut watcher {
                w.container(id);
            }
        });
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                if let Some(w) = watcher {
                    w.done();
                }
                return Err(e);
            }
        };
        let name = match Container::load(&self.root, &id) {
            Ok(c) => c.name,
            Err(e) => {
                if let Some(w) = watcher {
                    w.done();
                }
                return Err(e);
            }
        };
        // A terminal of its own, typed into (`run -it`): a monitor of its own holds it and
        // this process joins it, as `attach` does, so that the detach keys can leave it
        // running. Not where this process must be the monitor: to die with it, to time it
        // out or to report on it.
        let joined = attach != Attach::Detached
            && opts.attach.is_none()
            && opts.tty
            && opts.interactive
            && !die
            && !opts.report
            && opts.timeout.is_none();
        let mut detached = false;
        let exit = match attach {
            Attach::Detached => monitor::spawn_detached(&self.root, &id).map(|()| None),
            _ if joined => match join_terminal(&self.root, &id, &opts.detach_keys) {
                Ok(None) => {
                    detached = true;
                    Ok(None)
                }
                Ok(Some(code)) => Ok(Some(Exit {
                    code,
                    killed: None,
                    usage: None,
                })),
                Err(e) => Err(e),
            },
            Attach::Logged => {
                let streams = opts.attach.unwrap_or_default();
                monitor::supervise(
                    &self.root,
                    &id,
                    Stdio::Logged {
                        attach: true,
                        streams,
                    },
                    &mut |_| {},
                )
                .map(Some)
            }
            Attach::Direct => {
                monitor::supervise(&self.root, &id, Stdio::Direct, &mut |_| {}).map(Some)
            }
        };
        // Held to the end: the watcher leaves only once the monitor has recorded the exit.
        if let Some(w) = watcher {
            w.done();
        }
        let exit = exit?;
        Ok(RunReport {
            id,
            name,
            exit,
            detached,
        })
    }

    /// `cp CONTAINER:SRC DEST`: out of a container (running or not) to the host or a tar
    /// stream; the bytes of file content copied.
    pub fn copy_out(&self, query: &str, src: &str, to: crate::copy::Outside) -> Result<u64> {
        let c = store::find(&self.root, query)?;
        crate::copy::copy_out(&self.root, &c, src, to)
    }

    /// `attach`: join this process's stdio to a running container through its monitor until
    /// the container exits (its exit code) or `detach_keys` are typed (None: it goes on).
    /// `stdin`: forward ours (when the container keeps stdin open, `-i`); `sig_proxy`: our
    /// signals go to it (without a terminal).
    pub fn attach(
        &self,
        query: &str,
        stdin: bool,
        detach_keys: &[u8],
        sig_proxy: bool,
    ) -> Result<Option<i32>> {
        let c = store::find(&self.root, query)?;
        if c.observed().status != Status::Running {
            return Err(Error::Conflict(format!(
                "you cannot attach to a stopped container, start it first: {}",
                c.name
            )));
        }
        let dir = store::dir(&self.root, &c.id);
        match crate::attach::attach(&dir, stdin && c.interactive, c.tty, detach_keys, sig_proxy)? {
            crate::attach::AttachEnd::Detached => Ok(None),
            crate::attach::AttachEnd::Exited(code) => {
                wait_let_go(&self.root, &c.id);
                Ok(Some(code))
            }
            crate::attach::AttachEnd::Ended => self.wait(&c.id).map(Some),
        }
    }

    /// `diff`: what the container changed in its image's file system, sorted by path.
    pub fn diff(&self, query: &str) -> Result<Vec<crate::changes::Change>> {
        let c = store::find(&self.root, query)?;
        crate::changes::changes(&self.root, &c)
    }

    /// `export`: the container's file system (no volumes) as a tar stream; the bytes of
    /// file content written.
    pub fn export(&self, query: &str, to: &mut dyn std::io::Write) -> Result<u64> {
        let c = store::find(&self.root, query)?;
        crate::copy::export(&self.root, &c, to)
    }

    /// `cp SRC CONTAINER:DEST`: into a container from the host or a tar stream.
    pub fn copy_in(&self, query: &str, from: crate::copy::Outside, dest: &str) -> Result<u64> {
        let c = store::find(&self.root, query)?;
        crate::copy::copy_in(&self.root, &c, from, dest)
    }

    /// A container by name, full id or unique id prefix.
    pub fn container(&self, query: &str) -> Result<Container> {
        store::find(&self.root, query)
    }

    /// Start a created or stopped container: detached (returns None once it started) or
    /// attached through this process's stdio (returns how it ended). A running one is left be.
    pub fn start(&self, query: &str, attach: bool) -> Result<Option<Exit>> {
        let c = store::find(&self.root, query)?;
        start_one(&self.root, &c.id, attach)
    }

    /// `start -ai`: start and join this terminal to a container with a terminal and open
    /// stdin, as `attach` does, until it exits (its exit) or `detach_keys` leave it (None).
    /// Other containers start attached as `start` does.
    pub fn start_interactive(&self, query: &str, detach_keys: &[u8]) -> Result<Option<Exit>> {
        let c = store::find(&self.root, query)?;
        let joinable =
            c.tty && c.interactive && c.timeout.is_none() && !c.die_with_parent && !c.sample_usage;
        if joinable && c.observed().status == Status::Running {
            // Running already: joined all the same, as docker's `start -a` attaches.
            return Ok(self
                .attach(query, true, detach_keys, true)?
                .map(|code| Exit {
                    code,
                    killed: None,
                    usage: None,
                }));
        }
        start_as(&self.root, &c.id, true, joinable.then_some(detach_keys))
    }

    /// `start --all`: start, detached, every stopped container whose restart policy wants
    /// it running: `always`; `unless-stopped` and `on-failure` unless the user stopped it
    /// (`on-failure` after a failure, which a run cut short by a reboot is, while it has
    /// retries left). What
    /// docker's daemon does when it starts; husk has none, so a boot unit runs this. The
    /// names started, and the failures (name, error), each start on its own.
    pub fn start_all(&self) -> Result<StartAll> {
        let (mut started, mut failed) = (Vec::new(), Vec::new());
        let mut all = self.list(&ListOptions {
            all: true,
            ..Default::default()
        })?;
        // Oldest first, as they were made (a container another one joins comes up first).
        all.reverse();
        for c in all {
            let st = c.observed();
            if st.status == Status::Running || c.busy() {
                continue;
            }
            // docker's `always` comes back at a daemon start even after a `stop`.
            let wanted = c.restart_policy.name == "always"
                || (st.status == Status::Exited && monitor::restart_wanted(&c, st.exit_code));
            if !wanted {
                continue;
            }
            match start_one(&self.root, &c.id, false) {
                Ok(_) => started.push(c.name),
                Err(e) => failed.push((c.name, e)),
            }
        }
        Ok(StartAll { started, failed })
    }

    /// Stop a container: `signal` (its stop signal when None), then SIGKILL to every process
    /// after `timeout` seconds (its stop timeout when None; negative waits for ever).
    pub fn stop(&self, query: &str, signal: Option<&str>, timeout: Option<i64>) -> Result<()> {
        let c = store::find(&self.root, query)?;
        stop_one(&self.root, &c, signal, timeout)?;
        crate::events::emit(
            &self.root,
            "container",
            "stop",
            &c.id,
            &c.event_attributes(),
        );
        Ok(())
    }

    /// Stop and start again; a container removed on exit stays.
    pub fn restart(&self, query: &str, signal: Option<&str>, timeout: Option<i64>) -> Result<()> {
        let c = store::find(&self.root, query)?;
        // Marked first, so a --rm container's monitor does not remove it on the way.
        Container::update(&self.root, &c.id, |c| c.state.restarting = true)?;
        stop_one(&self.root, &c, signal, timeout)?;
        start_one(&self.root, &c.id, false)?;
        crate::events::emit(
            &self.root,
            "container",
            "restart",
            &c.id,
            &c.event_attributes(),
        );
        Ok(())
    }

    /// Give a container another name (running or not). The new name is claimed before the
    /// record changes and the old one let go after, so a crash between leaves the container
    /// findable by one of them. On a user network the DNS server learns the new name.
    pub fn rename(&self, query: &str, new_name: &str) -> Result<()> {
        let c = store::find(&self.root, query)?;
        husk_runtime::util::validate_id(new_name).map_err(|_| {
            Error::Invalid(format!(
                "invalid container name {new_name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            ))
        })?;
        if new_name == c.name {
            return Err(Error::Conflict(format!(
                "renaming a container with the same name as its current name: {new_name}"
            )));
        }
        store::claim_name(&self.root, new_name, &c.id)?;
        if let Err(e) = Container::update(&self.root, &c.id, |r| r.name = new_name.to_string()) {
            store::release_name(&self.root, new_name, &c.id);
            return Err(e);
        }
        store::release_name(&self.root, &c.name, &c.id);
        let mut attrs = c.event_attributes();
        attrs[0].1 = new_name;
        attrs.push(("oldName", &c.name));
        crate::events::emit(&self.root, "container", "rename", &c.id, &attrs);
        if c.observed().status == Status::Running {
            if let Ok(renamed) = Container::load(&self.root, &c.id) {
                crate::networking::renamed(&self.root, &renamed);
            }
        }
        Ok(())
    }

    /// `update`: new limits, applied to a running container's cgroup at once and kept in
    /// its config for every later start.
    pub fn update(&self, query: &str, o: &UpdateOptions) -> Result<()> {
        let c = store::find(&self.root, query)?;
        let path = store::dir(&self.root, &c.id).join("config.json");
        let mut spec: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is corrupt", path.display()))?;
        let res = &mut spec["linux"]["resources"];
        if let Some(m) = o.memory {
            crate::spec::check_memory(m)?;
            res["memory"]["limit"] = json!(m);
        }
        if let Some(swap) = o.memory_swap {
            let Some(limit) = res["memory"]["limit"].as_i64() else {
                return Err(Error::Invalid("--memory-swap needs a memory limit".into()));
            };
            if swap != -1 && swap < limit {
                return Err(Error::Invalid(
                    "--memory-swap must be at least the memory limit".into(),
                ));
            }
            res["memory"]["swap"] = json!(swap);
        } else if let (Some(m), Some(swap)) = (o.memory, res["memory"]["swap"].as_i64()) {
            if swap != -1 && swap < m {
                return Err(Error::Invalid(format!(
                    "memory limit should be smaller than the memory+swap limit ({swap} bytes): update --memory-swap too"
                )));
            }
        }
        if let Some(cpus) = o.cpus {
            crate::spec::check_cpus(cpus)?;
            res["cpu"]["quota"] = json!((cpus * 100_000.0) as i64);
            res["cpu"]["period"] = json!(100_000);
        }
        if let Some(sh) = o.cpu_shares {
            res["cpu"]["shares"] = json!(sh);
        }
        if let Some(p) = o.pids_limit {
            res["pids"]["limit"] = json!(p);
        }
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_value(res.clone())
            .map_err(|e| failed!("the new limits do not make a valid spec: {e}"))?;
        if c.observed().status == Status::Running {
            store::runtime(&self.root)
                .update(&c.id, &resources)
                .map_err(|e| failed!("cannot update container {}: {e}", c.name))?;
        }
        husk_runtime::util::write_atomic(&path, &serde_json::to_vec_pretty(&spec)?, 0o644)
            .map_err(|e| failed!("cannot save container {}'s config: {e}", c.name))
    }

    /// Freeze every process of a running container (its cgroup's freezer).
    pub fn pause(&self, query: &str) -> Result<()> {
        let c = store::find(&self.root, query)?;
        if c.observed().status != Status::Running {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        if self.paused(&c) {
            return Err(Error::Conflict(format!(
                "container {} is already paused",
                c.name
            )));
        }
        store::runtime(&self.root)
            .pause(&c.id)
            .map_err(|e| failed!("cannot pause container {}: {e}", c.name))?;
        crate::events::emit(
            &self.root,
            "container",
            "pause",
            &c.id,
            &c.event_attributes(),
        );
        Ok(())
    }

    /// Thaw a paused container.
    pub fn unpause(&self, query: &str) -> Result<()> {
        let c = store::find(&self.root, query)?;
        if !self.paused(&c) {
            return Err(Error::Conflict(format!(
                "container {} is not paused",
                c.name
            )));
        }
        store::runtime(&self.root)
            .resume(&c.id)
            .map_err(|e| failed!("cannot unpause container {}: {e}", c.name))?;
        crate::events::emit(
            &self.root,
            "container",
            "unpause",
            &c.id,
            &c.event_attributes(),
        );
        Ok(())
    }

    /// Is the container running and frozen (`pause`)?
    pub fn paused(&self, c: &Container) -> bool {
        is_paused(&self.root, c)
    }

    /// Send `signal` to a running container's init.
    pub fn kill(&self, query: &str, signal: &str) -> Result<()> {
        let sig = parse_signal(signal)?;
        let c = store::find(&self.root, query)?;
        mark_stopped_by_user(&self.root, &c.id);
        if c.observed().status != Status::Running {
            return Err(Error::Conflict(format!(
                "cannot kill container {query}: container {} is not running",
                c.id
            )));
        }
        store::runtime(&self.root)
            .kill(&c.id, sig, false)
            .map_err(|e| failed!("cannot kill container {query}: {e}"))?;
        killed_event(&self.root, &c, sig as i32);
        Ok(())
    }

    /// Remove a container; a running one only with `force` (killed first). With `volumes`,
    /// its anonymous volumes go too.
    pub fn remove(&self, query: &str, force: bool, volumes: bool) -> Result<()> {
        let c = store::find(&self.root, query)?;
        // A forced removal that another husk's `start` (or its restart) raced is killed
        // again, a few times, rather than refused as running.
        let mut tries = if force { 5 } else { 1 };
        loop {
            tries -= 1;
            match self.remove_once(query, &c.id, force, volumes) {
                Err(Error::Conflict(_)) if tries > 0 => {}
                Err(Error::NoSuchContainer(_)) => return Ok(()),
                done => return done,
            }
        }
    }

    fn remove_once(&self, query: &str, id: &str, force: bool, volumes: bool) -> Result<()> {
        // Gone since it was found (its `--rm`, another husk's rm): what was asked.
        let c = Container::load(&self.root, id)?;
        if force {
            mark_stopped_by_user(&self.root, &c.id);
            wait_released(&self.root, &c.id);
        }
        if c.observed().status == Status::Running {
            if !force {
                return Err(crate::remove::running_conflict(query));
            }
            let rt = store::runtime(&self.root);
            if rt
                .kill(&c.id, nix::sys::signal::Signal::SIGKILL, true)
                .is_ok()
            {
                killed_event(&self.root, &c, libc::SIGKILL);
            }
            // Frozen processes die once thawed (the v1 freezer holds even SIGKILL).
            let _ = rt.resume(&c.id);
            if let Some(c) = wait_stopped(&self.root, &c.id, Some(Duration::from_secs(10)))? {
                if c.observed().status == Status::Running {
                    return Err(failed!(
                        "cannot remove container {query}: it did not stop after SIGKILL"
                    ));
                }
            }
        }
        // A --rm container removes itself when it stops.
        if let Ok(c) = Container::load(&self.root, &c.id) {
            remove(&self.root, &c, volumes)?;
        }
        Ok(())
    }

    /// Wait until the container stops; its exit code (kept a while after a `--rm` one went).
    pub fn wait(&self, query: &str) -> Result<i32> {
        let c = store::find(&self.root, query)?;
        Ok(match wait_stopped(&self.root, &c.id, None)? {
            Some(c) => c.observed().exit_code,
            // Removed after it stopped (--rm): its code was kept for us.
            None => store::load_exit(&self.root, &c.id).unwrap_or(c.state.exit_code),
        })
    }

    /// The containers `opts` asks for, newest first.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<Container>> {
        let mut list = Vec::new();
        for c in store::list(&self.root)? {
            let all = opts.all || !opts.filters.is_empty() || opts.latest;
            if !all && c.observed().status != Status::Running {
                continue;
            }
            if opts.filters.iter().all(|f| matches(&c, f)) {
                list.push(c);
            }
        }
        if opts.latest {
            list.truncate(1);
        }
        Ok(list)
    }

    /// docker-shaped `inspect` of a container.
    pub fn inspect(&self, query: &str) -> Result<Value> {
        let c = store::find(&self.root, query)?;
        Ok(inspect_value(&self.root, &c))
    }

    /// A container's log lines, to `each`; see `LogOptions`.
    pub fn logs(
        &self,
        query: &str,
        opts: &LogOptions,
        each: &mut dyn FnMut(LogLine) -> Result<()>,
    ) -> Result<()> {
        let c = store::find(&self.root, query)?;
        if c.log_config.driver == "none" {
            return Err(Error::Invalid(format!(
                "configured logging driver does not support reading: container {} logs to none",
                c.name
            )));
        }
        logs::read(&self.root, &c.id, opts, each)
    }

    /// The processes of a running container, as `ps -o uid,pid,ppid,c,stime,tty,time,cmd`.
    pub fn top(&self, query: &str) -> Result<Top> {
        let c = store::find(&self.root, query)?;
        if c.observed().status != Status::Running {
            return Err(Error::Conflict(format!("container {query} is not running")));
        }
        let pids = store::runtime(&self.root)
            .ps(&c.id)
            .map_err(|e| failed!("cannot list the processes of {query}: {e}"))?;
        let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let out = std::process::Command::new("ps")
            .args([
                "-o",
                "uid,pid,ppid,c,stime,tty,time,cmd",
                "-p",
                &list.join(","),
            ])
            .output()
            .context("cannot run ps (procps)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let titles: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        // The last column (the command line) keeps its spaces.
        let n = titles.len().max(1);
        let processes = lines
            .map(|l| {
                let mut cols = Vec::with_capacity(n);
                let mut rest = l.trim_start();
                while cols.len() + 1 < n {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    cols.push(rest[..end].to_string());
                    rest = rest[end..].trim_start();
                }
                cols.push(rest.to_string());
                cols
            })
            .collect();
        Ok(Top { titles, processes })
    }

    /// One sample of each container's resource use over `window` (CPU use needs two
    /// readings): the named ones, or every running one (every one with `all`).
    pub fn stats(&self, queries: &[String], all: bool, window: Duration) -> Result<Vec<Stats>> {
        let list: Vec<Container> = if queries.is_empty() {
            store::list(&self.root)?
                .into_iter()
                .filter(|c| all || c.observed().status == Status::Running)
                .collect()
        } else {
            queries
                .iter()
                .map(|q| store::find(&self.root, q))
                .collect::<Result<_>>()?
        };
        let rt = store::runtime(&self.root);
        let sample = |c: &Container| {
            rt.record(&c.id)
                .ok()
                .and_then(|r| r.cgroup)
                .map(|cg| husk_runtime::cgroups::stats::read_stats(&cg))
        };
        let first: Vec<_> = list.iter().map(sample).collect();
        let t0 = Instant::now();
        std::thread::sleep(window);
        let dt = t0.elapsed().as_nanos() as f64;
        let host_mem = host_memory();
        let mut out = Vec::new();
        for (c, before) in list.iter().zip(first) {
            let after = sample(c);
            let mut s = Stats {
                id: c.id.clone(),
                name: c.name.clone(),
                cpu_percent: 0.0,
                memory_usage: 0,
                memory_limit: 0,
                pids: 0,
                block_read: 0,
                block_written: 0,
                net_received: 0,
                net_sent: 0,
            };
            let pid = c.observed().pid;
            if pid > 0 && c.network != "host" {
                (s.net_received, s.net_sent) = crate::networking::net_io(pid);
            }
            if let (Some(b), Some(a)) = (&before, &after) {
                let used = a.cpu.usage.total.saturating_sub(b.cpu.usage.total) as f64;
                s.cpu_percent = 100.0 * used / dt;
                s.memory_usage = a.memory.usage.usage;
                s.memory_limit = a.memory.usage.limit;
                s.pids = a.pids.current;
                for e in &a.blkio.io_service_bytes_recursive {
                    match e.op.as_str() {
                        "Read" | "read" => s.block_read += e.value,
                        "Write" | "write" => s.block_written += e.value,
                        _ => {}
                    }
                }
            }
            if s.memory_limit == 0 || s.memory_limit > host_mem {
                s.memory_limit = host_mem;
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Remove every stopped container nobody holds; returns their ids.
    pub fn prune_containers(&self) -> Result<Vec<String>> {
        store::prune_exits(&self.root);
        let mut removed = Vec::new();
        for c in store::list(&self.root)? {
            if c.observed().status == Status::Running || c.busy() {
                continue;
            }
            remove(&self.root, &c, false)?;
            removed.push(c.id);
        }
        Ok(removed)
    }

    /// Run a process in a running container, with this process's stdio; its exit code (0
    /// at once with `detach`).
    pub fn exec(&self, query: &str, opts: &ExecOptions) -> Result<i32> {
        let c = store::find(&self.root, query)?;
        if c.observed().status != Status::Running {
            return Err(Error::Conflict(format!("container {query} is not running")));
        }
        let rt = store::runtime(&self.root);
        let joined = crate::exec::process(&self.root, &c, opts).and_then(|process| {
            rt.exec(husk_runtime::ExecOpts {
                id: c.id.clone(),
                process,
                detach: opts.detach,
                pid_file: None,
                console_socket: None,
                preserve_fds: 0,
                ..Default::default()
            })
            // The runtime's error already says "exec: …".
            .map_err(Error::from)
        });
        joined
            .map(|code| if opts.detach { 0 } else { code })
            .map_err(|e| {
                // A container stopped or removed while the exec joined it fails at whichever
                // step came first (its cgroup, namespaces or root gone, a fork in a dying pid
                // namespace): said as what happened, not as the step. A stop that is under way
                // (marked, its processes still dying) is waited for, a second at most; any other
                // failure of a running container is the runtime's, at once.
                for _ in 0..50 {
                    // By its id: the record itself, no name or prefix lookup.
                    match Container::load(&self.root, &c.id) {
                        Err(_) => return Error::NoSuchContainer(query.to_string()),
                        Ok(now) if now.observed().status != Status::Running => {
                            return Error::Conflict(format!("container {query} is not running"))
                        }
                        Ok(now) if now.state.manually_stopped => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Ok(_) => return e,
                    }
                }
                e
            })
    }

    // ---- events -------------------------------------------------------------------------

    /// `events`: each event of the journal that `filter` takes, from `since` (seconds since
    /// the epoch; from now when None, from the journal's start when only `until` is given)
    /// until `until` (for ever when None), given to `on`, which ends it by returning false.
    pub fn events(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        filter: &crate::events::EventFilter,
        on: &mut dyn FnMut(&crate::events::Event) -> bool,
    ) -> Result<()> {
        let nano = |secs: f64| (secs * 1e9) as i64;
        let now = crate::time::now_secs();
        let since = match (since, until) {
            (Some(s), _) => nano(s),
            (None, Some(_)) => 0,
            (None, None) => nano(now),
        };
        let until = until.map(nano);
        let (past, mut cursor) = crate::events::read(&self.root, since);
        let mut give = |e: &crate::events::Event| -> bool {
            if until.is_some_and(|u| e.time_nano > u) {
                return false;
            }
            !filter.matches(e) || on(e)
        };
        for e in &past {
            if !give(e) {
                return Ok(());
            }
        }
        loop {
            let now = nano(crate::time::now_secs());
            let wait = match until {
                Some(u) if now > u => return Ok(()),
                Some(u) => Duration::from_nanos((u - now) as u64).min(Duration::from_secs(1)),
                None => Duration::from_secs(1),
            };
            for e in crate::events::follow(&self.root, &mut cursor, wait) {
                if !give(&e) {
                    return Ok(());
                }
            }
        }
    }

    // ---- volumes ------------------------------------------------------------------------

    /// Make a named volume (a random name when None); returns its name. An existing one is
    /// left as it is.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<String> {
        let name = match name {
            Some(n) => n.to_string(),
            None => store::random_id()?,
        };
        volumes::create(&self.root, &name, labels, false)?;
        crate::events::emit(
            &self.root,
            "volume",
            "create",
            &name,
            &[("driver", "local")],
        );
        Ok(name)
    }

    pub fn volumes(&self) -> Result<Vec<Volume>> {
        volumes::list(&self.root)
    }

    pub fn volume(&self, name: &str) -> Result<Volume> {
        volumes::load(&self.root, name)
    }

    /// Remove a volume no container uses; with `force`, a missing one is no error.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        volumes::remove(&self.root, name, force)?;
        crate::events::emit(
            &self.root,
            "volume",
            "destroy",
            name,
            &[("driver", "local")],
        );
        Ok(())
    }

    /// Remove the anonymous volumes no container uses (every unused one with `all`).
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in volumes::list(&self.root)? {
            if (v.anonymous || all) && volumes::users(&self.root, &v.name)?.is_empty() {
                volumes::remove(&self.root, &v.name, false)?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }
}

/// Name an image just made (`import`, `commit`) as `reference`, or keep it untagged: its id
/// and the name its event gives (the id when it has none).
fn name_image(
    root: &Path,
    reference: Option<&Reference>,
    pulled: &husk_image::pull::Pulled,
) -> Result<(String, String)> {
    match reference {
        Some(r) => {
            husk_image::images::record(root, r, pulled)?;
        }
        None => husk_image::images::record_untagged(root, pulled)?,
    }
    let id = pulled.config.to_string();
    let name = reference.map_or_else(|| id.clone(), |r| r.to_string());
    Ok((id, name))
}

fn diff_ids(ids: &[String]) -> Result<Vec<Digest>> {
    Ok(ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<husk_image::Result<_>>()?)
}

/// What uses an image: a container or an `image mount`.
fn image_user(root: &Path, r: &ImageRecord) -> Option<String> {
    if let Ok(list) = store::list(root) {
        if let Some(c) = list.iter().find(|c| c.image_id == r.config) {
            return Some(format!("container {}", c.name));
        }
    }
    let mp = husk_image::snapshot::image_mount_point(root, &r.config);
    husk_sys::is_mount_point(&mp).then(|| format!("image mount {}", mp.display()))
}

fn parse_signal(name: &str) -> Result<nix::sys::signal::Signal> {
    husk_runtime::util::parse_signal(name)
        .ok_or_else(|| Error::Invalid(format!("invalid signal {name:?}")))
}

/// Wait until the container is no longer running (its monitor recorded the exit), at most
/// `limit`. Watches the monitor with a pidfd, so no polling loop spins.
fn wait_stopped(root: &Path, id: &str, limit: Option<Duration>) -> Result<Option<Container>> {
    let deadline = limit.map(|l| Instant::now() + l);
    loop {
        let c = match Container::load(root, id) {
            Ok(c) => c,
            Err(_) => return Ok(None), // removed (--rm)
        };
        let st = c.observed();
        if st.status != Status::Running {
            return Ok(Some(c));
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(Some(c));
        }
        let step = left
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_millis(200));
        // SAFETY: pidfd_open of a pid; the fd is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, st.monitor_pid, 0) };
        if fd >= 0 {
            // SAFETY: just opened.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let mut p = [libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll on one pollfd we own.
            unsafe { libc::poll(p.as_mut_ptr(), 1, step.as_millis() as i32) };
            // The monitor may have exited before saving: give the record a moment.
            if p[0].revents != 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            std::thread::sleep(step);
        }
    }
}

/// Stop one container: its stop signal, then SIGKILL to every process after `timeout`.
fn is_paused(root: &Path, c: &Container) -> bool {
    c.observed().status == Status::Running
        && store::runtime(root)
            .state(&c.id)
            .is_ok_and(|s| s.status == husk_runtime::state::Status::Paused)
}

/// The user ended it (`stop`, `kill`, `rm -f`): its restart policy leaves it stopped, and a
/// monitor waiting out a restart's back-off gives up.
/// docker's `kill` event: the container was sent signal `sig`.
fn killed_event(root: &Path, c: &Container, sig: i32) {
    let number = sig.to_string();
    let mut attrs = c.event_attributes();
    attrs.push(("signal", &number));
    crate::events::emit(root, "container", "kill", &c.id, &attrs);
}

fn mark_stopped_by_user(root: &Path, id: &str) {
    let _ = Container::update(root, id, |c| c.state.manually_stopped = true);
}

fn stop_one(root: &Path, c: &Container, sig: Option<&str>, timeout: Option<i64>) -> Result<()> {
    mark_stopped_by_user(root, &c.id);
    if c.observed().status != Status::Running {
        // A policy restart's back-off ends with the mark; wait for its monitor to let go.
        wait_released(root, &c.id);
        return Ok(());
    }
    let rt = store::runtime(root);
    let sig = parse_signal(sig.unwrap_or(&c.stop_signal))?;
    let timeout = timeout.unwrap_or(c.stop_timeout);
    if rt.kill(&c.id, sig, false).is_ok() {
        killed_event(root, c, sig as i32);
    }
    // A paused container gets the signal thawed, as docker's stop does.
    if is_paused(root, c) {
        let _ = rt.resume(&c.id);
    }
    let limit = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
    if let Some(c) = wait_stopped(root, &c.id, limit)? {
        if c.observed().status == Status::Running {
            if rt
                .kill(&c.id, nix::sys::signal::Signal::SIGKILL, true)
                .is_ok()
            {
                killed_event(root, &c, libc::SIGKILL);
            }
            wait_stopped(root, &c.id, Some(Duration::from_secs(10)))?;
        }
    }
    Ok(())
}

/// Wait (a few seconds at most) for a monitor in a restart's back-off to let go.
fn wait_released(root: &Path, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match Container::load(root, id) {
            Ok(c) if c.busy() && c.state.restarting => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => return,
        }
    }
}

fn start_one(root: &Path, id: &str, attach: bool) -> Result<Option<Exit>> {
    start_as(root, id, attach, None)
}

/// `start_one`; with `joined` (detach keys), an attached start of a container with a
/// terminal and open stdin joins it as `attach` does (None when the keys left it).
fn start_as(root: &Path, id: &str, attach: bool, joined: Option<&[u8]>) -> Result<Option<Exit>> {
    {
        // Claim the start under the lock: a second `start` at once sees a live monitor.
        let _l = store::lock(root, id)?;
        let mut c = Container::load(root, id)?;
        if c.observed().status == Status::Running || c.busy() {
            return Ok(None);
        }
        c.state.restarting = false;
        // Started by the user: the policy applies again, counting from zero (docker's rule).
        c.state.manually_stopped = false;
        c.state.restart_count = 0;
        c.state.monitor_pid = std::process::id() as i32;
        c.state.monitor_start =
            husk_runtime::util::process_start_time(c.state.monitor_pid).unwrap_or(0);
        c.save(root)?;
        // The runtime's leftovers from a killed monitor would block a new create.
        let _ = store::runtime(root).delete(id, true);
    }
    match joined {
        Some(keys) if attach => Ok(join_terminal(root, id, keys)?.map(|code| Exit {
            code,
            killed: None,
            usage: None,
        })),
        _ if attach => {
            let stdio = Stdio::Logged {
                attach: true,
                streams: Default::default(),
            };
            monitor::supervise(root, id, stdio, &mut |_| {}).map(Some)
        }
        _ => monitor::spawn_detached(root, id).map(|()| None),
    }
}

/// Start container `id` under a monitor of its own and join this terminal to it until it
/// exits (its code) or `detach_keys` leave it (None).
fn join_terminal(root: &Path, id: &str, detach_keys: &[u8]) -> Result<Option<i32>> {
    let sock = monitor::spawn_joined(root, id, crate::attach::terminal_size())?;
    match crate::attach::join(
        crate::attach::Connect::Joined(sock),
        true,
        true,
        detach_keys,
        true,
    )? {
        crate::attach::AttachEnd::Detached => Ok(None),
        crate::attach::AttachEnd::Exited(code) => {
            wait_let_go(root, id);
            Ok(Some(code))
        }
        crate::attach::AttachEnd::Ended => {
            let code = match wait_stopped(root, id, None)? {
                Some(c) => c.observed().exit_code,
                None => store::load_exit(root, id).unwrap_or(0),
            };
            Ok(Some(code))
        }
    }
}

/// After an attach heard the exit: wait (a few seconds at most) until the monitor has let the
/// container go (removed it, after `--rm`), unless its policy restarts it.
fn wait_let_go(root: &Path, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match Container::load(root, id) {
            Ok(c) if c.busy() && !c.state.restarting => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

fn matches(c: &Container, filter: &Filter) -> bool {
    let st = c.observed();
    match filter {
        Filter::Status(v) => st.status.as_str() == v,
        Filter::Name(v) => v.matches(&c.name),
        Filter::IdPrefix(v) => c.id.starts_with(v.as_str()),
        Filter::Label(k, Some(v)) => c.labels.get(k).is_some_and(|x| x == v),
        Filter::Label(k, None) => c.labels.contains_key(k),
        Filter::Ancestor(v) => {
            c.image == *v
                || c.image_id
                    .trim_start_matches("sha256:")
                    .starts_with(v.as_str())
        }
        Filter::Exited(v) => st.status == Status::Exited && st.exit_code.to_string() == *v,
        Filter::Health(v) => {
            let health = match (&c.state.health, st.status) {
                (Some(h), Status::Running) => h.status.as_str(),
                _ => "none",
            };
            health == v
        }
    }
}

/// docker-shaped `inspect` of a container.
fn inspect_value(root: &Path, c: &Container) -> Value {
    let st = c.observed();
    let spec: Value = std::fs::read(store::dir(root, &c.id).join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(Value::Null);
    let paused = is_paused(root, c);
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": if paused { "paused" } else { st.status.as_str() },
            "Running": st.status == Status::Running,
            "Paused": paused, "Restarting": st.status != Status::Running && c.state.restarting && c.busy(),
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            // husk's own: what the last run used (run --report's figures), null before one ended.
            "Usage": st.usage,
            "Health": c.state.health,
        },
        "Image": c.image_id,
        "ResolvConfPath": store::dir(root, &c.id).join("resolv.conf"),
        "HostnamePath": store::dir(root, &c.id).join("hostname"),
        "HostsPath": store::dir(root, &c.id).join("hosts"),
        "NetworkSettings": crate::networking::settings(root, c),
        "LogPath": store::log_path(root, &c.id),
        "Name": format!("/{}", c.name),
        "RestartCount": c.state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": host_config(c, &spec),
        "Mounts": c.mounts,
        "Config": {
            "Hostname": c.hostname,
            "User": c.user,
            "Tty": c.tty,
            "OpenStdin": c.interactive,
            "Env": c.env,
            "Cmd": std::iter::once(c.path.clone()).chain(c.args.iter().cloned()).collect::<Vec<_>>(),
            "Image": c.image,
            "WorkingDir": c.working_dir,
            "Labels": c.labels,
            "StopSignal": c.stop_signal,
            "StopTimeout": c.stop_timeout,
            "Healthcheck": c.healthcheck,
        },
    })
}

/// docker-shaped `HostConfig` of a container, from its record and OCI spec.
fn host_config(c: &Container, spec: &Value) -> Value {
    let res = &spec["linux"]["resources"];
    json!({
        "AutoRemove": c.auto_remove,
        "NetworkMode": c.network,
        "PortBindings": port_bindings(c),
        "LogConfig": {"Type": c.log_config.driver, "Config": log_opts(c)},
        "RestartPolicy": {"Name": c.restart_policy.name, "MaximumRetryCount": c.restart_policy.max_retries},
        "PublishAllPorts": false,
        "ExtraHosts": c.add_hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect::<Vec<_>>(),
        "Dns": c.dns, "DnsSearch": c.dns_search, "DnsOptions": c.dns_options,
        "Memory": res["memory"]["limit"].as_i64().unwrap_or(0),
        "MemorySwap": res["memory"]["swap"].as_i64().unwrap_or(0),
        "CpuShares": res["cpu"]["shares"].as_u64().unwrap_or(0),
        "CpuQuota": res["cpu"]["quota"].as_i64().unwrap_or(0),
        "CpuPeriod": res["cpu"]["period"].as_u64().unwrap_or(0),
        "PidsLimit": res["pids"]["limit"].as_i64(),
        "ReadonlyRootfs": spec["root"]["readonly"].as_bool().unwrap_or(false),
        "CapAdd": null, "CapDrop": null,
        "Privileged": res["devices"][0]["allow"].as_bool().unwrap_or(false),
        "Ulimits": spec["process"]["rlimits"],
        "MemoryReservation": res["memory"]["reservation"].as_i64().unwrap_or(0),
        "OomKillDisable": res["memory"]["disableOOMKiller"].as_bool().unwrap_or(false),
        "CpusetCpus": res["cpu"]["cpus"].as_str().unwrap_or(""),
        "CpusetMems": res["cpu"]["mems"].as_str().unwrap_or(""),
        "BlkioWeight": res["blockIO"]["weight"].as_u64().unwrap_or(0),
        "BlkioDeviceReadBps": throttles(&res["blockIO"]["throttleReadBpsDevice"]),
        "BlkioDeviceWriteBps": throttles(&res["blockIO"]["throttleWriteBpsDevice"]),
        "BlkioDeviceReadIOps": throttles(&res["blockIO"]["throttleReadIOPSDevice"]),
        "BlkioDeviceWriteIOps": throttles(&res["blockIO"]["throttleWriteIOPSDevice"]),
        "ShmSize": shm_size(spec),
        "Sysctls": spec["linux"]["sysctl"],
        "Devices": spec["linux"]["devices"].as_array().map(|d| d.iter().map(|d| json!({"PathInContainer": d["path"], "Major": d["major"], "Minor": d["minor"]})).collect::<Vec<_>>()),
        "GroupAdd": spec["process"]["user"]["additionalGids"],
        "IpcMode": namespace_mode(spec, "ipc"),
        "PidMode": namespace_mode(spec, "pid"),
        "UTSMode": namespace_mode(spec, "uts"),
    })
}

/// docker's `HostConfig.LogConfig.Config`: the options as strings.
fn log_opts(c: &Container) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(size) = c.log_config.max_size {
        m.insert("max-size".into(), json!(size.to_string()));
        m.insert("max-file".into(), json!(c.log_config.max_file.to_string()));
    }
    if !c.log_config.labels.is_empty() {
        m.insert("labels".into(), json!(c.log_config.labels.join(",")));
    }
    if !c.log_config.env.is_empty() {
        m.insert("env".into(), json!(c.log_config.env.join(",")));
    }
    Value::Object(m)
}

/// docker's `HostConfig.PortBindings`: what `-p` asked, an empty host port for "any".
/// docker's `{"Path": "major:minor", "Rate": N}` list of a spec's throttle entries.
fn throttles(v: &Value) -> Value {
    json!(v
        .as_array()
        .map(|a| a
            .iter()
            .map(|e| json!({"Path": format!("{}:{}", e["major"], e["minor"]), "Rate": e["rate"]}))
            .collect::<Vec<_>>())
        .unwrap_or_default())
}

/// /dev/shm's size in bytes, from its mount's `size=` option.
fn shm_size(spec: &Value) -> i64 {
    spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["destination"] == "/dev/shm")
        .flat_map(|m| strings_of(&m["options"]))
        .find_map(|o| {
            o.strip_prefix("size=")
                .and_then(|v| crate::options::parse_bytes(v).ok())
        })
        .unwrap_or(0)
}

fn strings_of(v: &Value) -> Vec<String> {
    crate::spec::strings(v)
}

/// docker's `IpcMode`/`PidMode`/`UTSMode`: "host" when the spec has no such namespace,
/// "container:…" when it joins one by path, else "private" (ipc) or "".
fn namespace_mode(spec: &Value, kind: &str) -> String {
    let ns = spec["linux"]["namespaces"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["type"] == kind).cloned());
    match ns {
        None => "host".into(),
        Some(n) if n["path"].is_string() => {
            format!("container:{}", n["path"].as_str().unwrap_or(""))
        }
        Some(_) if kind == "ipc" => "private".into(),
        Some(_) => String::new(),
    }
}

fn port_bindings(c: &Container) -> Value {
    let mut m = serde_json::Map::new();
    for p in &c.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let e = m.entry(key).or_insert_with(|| json!([]));
        if let Some(v) = e.as_array_mut() {
            v.push(json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": p.host_port.map(|h| h.to_string()).unwrap_or_default(),
            }));
        }
    }
    Value::Object(m)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
