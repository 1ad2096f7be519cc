//! Making a container: its image (pulled if the policy says so), its record, name, root mount,
//! volumes and OCI spec. What fails half way is undone: no name, mount, volume or directory
//! of a container that was never made stays behind.

use std::fs;
use std::path::Path;

use husk_image::images::ImageRecord;
use husk_image::manifest::{ImageConfig, Platform};
use husk_image::registry::Options;
use husk_image::{Digest, Reference};

use crate::error::{Context, Error, Result};
use crate::layers;
use crate::options::{PullPolicy, RunOptions};
use crate::spec;
use crate::store::{self, Container};
use crate::volumes;

/// What a pull tells its caller as it goes.
pub enum PullEvent<'a> {
    /// `run` found no local image of this name and pulls it.
    NotFound(&'a Reference),
    Progress(husk_image::pull::Progress<'a>),
}

/// The callback that hears of a pull's progress (from the download threads too).
pub type PullProgress<'a> = &'a (dyn Fn(PullEvent) + Sync);

/// The stored image a reference names (by digest, or by name and tag).
pub fn find_image(root: &Path, r: &Reference) -> Result<Option<ImageRecord>> {
    Ok(husk_image::images::list(root)?.into_iter().find(|i| {
        i.name == r.name()
            && (r.digest.as_ref().map(|d| d.to_string()) == Some(i.manifest.clone())
                || (r.digest.is_none() && i.tag == r.tag))
    }))
}

/// Pull `r` into the store and record its name; true when the store had no such image.
pub fn pull(
    root: &Path,
    r: &Reference,
    platform: &Platform,
    opts: &Options,
    progress: PullProgress,
) -> Result<(husk_image::pull::Pulled, bool)> {
    let _adding = husk_image::store::Store::open(root)?.adding()?;
    let pulled = husk_image::pull::pull_with_progress(root, r, platform, opts, &|p| {
        progress(PullEvent::Progress(p))
    })
    .with_context(|| format!("pull {r}"))?;
    let new = husk_image::images::record(root, r, &pulled)?;
    Ok((pulled, new))
}

fn image(root: &Path, a: &RunOptions, progress: PullProgress) -> Result<ImageRecord> {
    let r = Reference::parse(&a.image)?;
    let have = find_image(root, &r)?;
    let need_pull = match (a.pull, &have) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => {
            return Err(Error::NoSuchImage(format!("{r} (and --pull=never)")))
        }
        _ => false,
    };
    if need_pull {
        let platform = a
            .platform
            .as_deref()
            .map(Platform::parse)
            .transpose()?
            .unwrap_or_else(Platform::host);
        if have.is_none() {
            progress(PullEvent::NotFound(&r));
        }
        pull(root, &r, &platform, &Options::default(), progress)?;
    }
    find_image(root, &r)?.ok_or_else(|| Error::NoSuchImage(r.to_string()))
}

/// Make container from `a`: returns its id. The record names this process as the one holding
/// the container, until a monitor takes over or `release` is called.
pub fn create(root: &Path, a: &RunOptions, progress: PullProgress) -> Result<String> {
    if let Some(n) = &a.name {
        husk_runtime::util::validate_id(n).map_err(|_| {
            Error::Invalid(format!(
                "invalid container name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            ))
        })?;
    }
    // Held until the record names the image: a prune or rmi meanwhile waits for it, then
    // sees the container and leaves the image's blobs and layers be.
    let _adding = husk_image::store::Store::open(root)?.adding()?;
    let image = image(root, a, progress)?;
    let store = husk_image::store::Store::open(root)?;
    let config_digest = Digest::parse(&image.config)?;
    let config: ImageConfig = serde_json::from_reader(store.open_blob(&config_digest)?)
        .context("the image config is corrupt")?;
    let diff_ids: Vec<Digest> = image
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<husk_image::Result<_>>()?;

    let id = store::random_id()?;
    let mut name = match &a.name {
        Some(n) => n.clone(),
        None => store::generated_name(root, &id),
    };
    let stop_signal = a
        .stop_signal
        .clone()
        .or_else(|| {
            config.config["StopSignal"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "SIGTERM".into());
    husk_runtime::util::parse_signal(&stop_signal)
        .ok_or_else(|| Error::Invalid(format!("invalid stop signal {stop_signal:?}")))?;
    let labels = a.labels.clone();
    // The directory first: a name whose container has no directory counts as stale.
    let dir = store::dir(root, &id);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut claimed = store::claim_name(root, &name, &id);
    // A generated name another husk took meanwhile: the next free one.
    for _ in 0..16 {
        if a.name.is_some() || !matches!(claimed, Err(Error::Conflict(_))) {
            break;
        }
        name = store::generated_name(root, &id);
        claimed = store::claim_name(root, &name, &id);
    }
    if let Err(e) = claimed {
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    let made = (|| -> Result<()> {
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        // A --rm container's upper directory goes when it exits: it skips overlayfs's syncs
        // (podman does the same), so its end does not wait for a syncfs of the host's file
        // system, dirty with whatever else the machine writes.
        let upper = husk_image::snapshot::Upper {
            dir: &upper,
            work: &work,
            volatile: a.auto_remove,
        };
        husk_image::snapshot::mount(root, &diff_ids, Some(upper), &rootfs)?;
        let image_volumes: Vec<String> = config.config["Volumes"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let volumes = volumes::resolve(root, &a.mounts, &image_volumes, &rootfs)?;
        let anonymous = volumes.anonymous.clone();
        let rest = record_container(
            root,
            a,
            &config,
            &rootfs,
            &id,
            &name,
            &image,
            labels,
            stop_signal,
            volumes,
        );
        if rest.is_err() {
            for v in &anonymous {
                let _ = volumes::remove(root, v, true);
            }
        }
        rest
    })();

    if let Err(e) = made {
        if let Ok(c) = Container::load(root, &id) {
            for v in &c.anonymous_volumes {
                let _ = volumes::remove(root, v, true);
            }
            layers::unmount_rootfs(root, &id);
        } else if husk_sys::is_mount_point(&dir.join("rootfs")) {
            // No record yet to say which layers: we know them.
            let _ = husk_image::snapshot::unmount(&dir.join("rootfs"));
            layers::release_layers(root, &diff_ids);
        }
        let _ = fs::remove_dir_all(&dir);
        store::release_name(root, &name, &id);
        return Err(e);
    }
    Ok(id)
}

/// The OCI spec and the record of a container whose root and volumes are ready.
#[allow(clippy::too_many_arguments)]
fn record_container(
    root: &Path,
    a: &RunOptions,
    config: &ImageConfig,
    rootfs: &Path,
    id: &str,
    name: &str,
    image: &ImageRecord,
    labels: std::collections::BTreeMap<String, String>,
    stop_signal: String,
    volumes: volumes::Resolved,
) -> Result<()> {
    let dir = store::dir(root, id);
    let spec = spec::spec(a, config, rootfs, id, &volumes.spec)?;
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)
        .context("cannot write the container's config")?;
    let process = &spec["process"];
    let args = spec::strings(&process["args"]);
    let c = Container {
        id: id.to_string(),
        name: name.to_string(),
        image: a.image.clone(),
        image_id: image.config.clone(),
        created: crate::time::now(),
        path: args.first().cloned().unwrap_or_default(),
        args: args.iter().skip(1).cloned().collect(),
        env: spec::strings(&process["env"]),
        working_dir: process["cwd"].as_str().unwrap_or("/").into(),
        user: a.user.clone().unwrap_or_default(),
        hostname: spec["hostname"].as_str().unwrap_or("").into(),
        labels,
        auto_remove: a.auto_remove,
        tty: a.tty,
        interactive: a.interactive,
        stop_signal,
        stop_timeout: a.stop_timeout.unwrap_or(10),
        timeout: a.timeout,
        network: a.network.as_str().into(),
        mounts: volumes.records,
        anonymous_volumes: volumes.anonymous,
        diff_ids: image.diff_ids.clone(),
        // Until a monitor takes over, this husk holds the container (prune leaves it be).
        state: store::State {
            monitor_pid: std::process::id() as i32,
            monitor_start: husk_runtime::util::process_start_time(std::process::id() as i32)
                .unwrap_or(0),
            ..Default::default()
        },
    };
    c.save(root)
}
