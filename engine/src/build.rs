//! `build`: a Dockerfile's instructions taken one by one as docker's classic builder takes
//! them. Each step ends in an image of its own (a config and manifest in the store, named by
//! nothing), which is what the next step starts from:
//! - instructions that only change settings (ENV, CMD, LABEL, …) change the config;
//! - RUN runs in a container of the image so far (the engine's own create and monitor), and
//!   what it changed becomes a layer (`commit::layer`);
//! - COPY and ADD unpack a tar of their sources into a created, never started container, and
//!   what that changed becomes a layer the same way.
//!
//! The cache keys a step by its parent image, its text, the build arguments in scope and, for
//! COPY and ADD, the content of what is copied (names, modes and bytes, not times), as the
//! classic builder does; `<root>/build-cache/<key>` names the manifest the step made. An entry
//! whose image is gone from the store (pruned) is a miss.
//!
//! Sources are read from the context with every path resolved inside it (RESOLVE_IN_ROOT):
//! a symlink in the context pointing out of it resolves inside the context, never to a host
//! file; symlinks below a copied directory are copied as symlinks.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use husk_image::compose;
use husk_image::digest::HashingWriter;
use husk_image::images::ImageRecord;
use husk_image::manifest::{Descriptor, Platform};
use husk_image::store::Store;
use husk_image::{Digest, Reference};
use serde_json::{json, Value};

use crate::dockerfile::{self, Command, Instruction, Kind};
use crate::dockerignore::Ignore;
use crate::error::{failed, Context, Error, Result};
use crate::json::{array, object};
use crate::monitor::Stdio;
use crate::options::{Network, RunOptions, Streams};
use crate::store::{self, Container};

/// `build`'s settings.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile; `<context>/Dockerfile` when unset.
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    /// The stage to stop at.
    pub target: Option<String>,
    pub no_cache: bool,
    /// Pull every FROM image, even one in the store.
    pub pull: bool,
    pub platform: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// RUN's output is not shown (it is, with the error, when a step fails).
    pub quiet: bool,
    /// RUN's network unless the RUN says `--network`.
    pub network: Network,
}

/// What a build is doing, for its output.
#[derive(Debug, Clone)]
pub enum BuildEvent<'a> {
    /// Something the user should know (an ignored directive).
    Note(&'a str),
    Step {
        number: usize,
        total: usize,
        text: &'a str,
    },
    /// The step's image came from the cache.
    Cached,
    /// A RUN's container (short id) runs.
    Running(&'a str),
    /// A RUN's container (short id) was removed.
    Removed(&'a str),
    /// The step's image (short id).
    Produced(&'a str),
}

/// Build arguments docker defines without an ARG line.
const PREDEFINED_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A step's change to its stage: maybe a new layer.
type Apply<'e> =
    dyn FnMut(&mut Stage, &mut dyn FnMut(BuildEvent)) -> Result<Option<compose::Layer>> + 'e;

/// One stage's image so far.
#[derive(Clone)]
struct Stage {
    name: Option<String>,
    config: Value,
    layers: Vec<Descriptor>,
    image: Option<ImageRecord>,
    /// ARG values in scope.
    args: BTreeMap<String, String>,
    /// CMD was set in this stage (an ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl Stage {
    fn id(&self) -> String {
        self.image
            .as_ref()
            .map_or_else(|| "scratch".to_string(), |i| i.config.clone())
    }

    fn settings(&mut self) -> &mut serde_json::Map<String, Value> {
        object(&mut self.config["config"])
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config["config"]["Env"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e.as_str()?.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A word of the Dockerfile with this stage's ENV (first) and ARGs expanded.
    fn expand(&self, word: &str, escape: char) -> Result<String> {
        let env = self.env();
        dockerfile::expand(word, escape, &|name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| self.args.get(name).cloned())
        })
        .map_err(|e| Error::Invalid(e.0))
    }

    fn shell(&self) -> Vec<String> {
        self.config["config"]["Shell"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .filter(|l: &Vec<String>| !l.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }
}

/// Build the Dockerfile in `o.context`; the final image's id.
pub fn build(root: &Path, o: &BuildOptions, events: &mut dyn FnMut(BuildEvent)) -> Result<String> {
    let context = fs::canonicalize(&o.context)
        .with_context(|| format!("build context {}", o.context.display()))?;
    if !context.is_dir() {
        return Err(Error::Invalid(format!(
            "build context {}: not a directory",
            o.context.display()
        )));
    }
    let dockerfile_path = o
        .dockerfile
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let text = fs::read_to_string(&dockerfile_path)
        .with_context(|| format!("cannot read the Dockerfile {}", dockerfile_path.display()))?;
    let df = dockerfile::parse(&text).map_err(|e| Error::Invalid(e.0))?;
    if let Some(s) = &df.syntax {
        events(BuildEvent::Note(&format!(
            "# syntax={s} is ignored: husk builds with its own builder"
        )));
    }
    let ignore = match fs::read_to_string(context.join(".dockerignore")) {
        Ok(t) => Ignore::parse(&t).map_err(|e| Error::Invalid(format!(".dockerignore: {e}")))?,
        Err(_) => Ignore::parse("").map_err(Error::Invalid)?,
    };
    // Global ARGs (before the first FROM), then the stages.
    let first_from = df
        .instructions
        .iter()
        .position(|i| matches!(i.kind, Kind::From { .. }))
        .ok_or_else(|| Error::Invalid("the Dockerfile has no FROM".into()))?;
    if let Some(bad) = df.instructions[..first_from]
        .iter()
        .find(|i| !matches!(i.kind, Kind::Arg(_)))
    {
        return Err(Error::Invalid(format!(
            "Dockerfile line {}: {} before the first FROM (only ARG may come first)",
            bad.line, bad.text
        )));
    }
    let mut stages: Vec<Vec<&Instruction>> = Vec::new();
    for i in &df.instructions[first_from..] {
        if matches!(i.kind, Kind::From { .. }) {
            stages.push(Vec::new());
        }
        if let Some(s) = stages.last_mut() {
            s.push(i);
        }
    }
    let last = match &o.target {
        Some(t) => stages
            .iter()
            .position(|s| matches!(&s[0].kind, Kind::From { alias: Some(a), .. } if a.eq_ignore_ascii_case(t)))
            .ok_or_else(|| Error::Invalid(format!("target stage {t:?} could not be found")))?,
        None => stages.len() - 1,
    };
    let stages = &stages[..=last];
    let total =
        first_from + stages.iter().map(Vec::len).sum::<usize>() + usize::from(!o.labels.is_empty());

    let store = Store::open(root)?;
    // Held to the end: a prune meanwhile waits, and so never frees a step's image.
    let _adding = store.adding()?;
    let mut b = Builder {
        root,
        store: &store,
        o,
        context: &context,
        ignore: &ignore,
        escape: df.escape,
        done: Vec::new(),
        number: 0,
        total,
    };
    let mut global = BTreeMap::new();
    for i in &df.instructions[..first_from] {
        b.number += 1;
        events(BuildEvent::Step {
            number: b.number,
            total,
            text: &i.text,
        });
        if let Kind::Arg(list) = &i.kind {
            for (name, default) in list {
                if let Some(v) = b.arg_value(name, default.as_deref(), &global)? {
                    global.insert(name.clone(), v);
                }
            }
        }
    }
    let mut final_id = String::new();
    for stage in stages {
        let mut st = b.from(stage[0], &global, events)?;
        for i in &stage[1..] {
            b.number += 1;
            events(BuildEvent::Step {
                number: b.number,
                total,
                text: &i.text,
            });
            b.step(&mut st, i, &global, events)?;
        }
        final_id = st.id();
        b.done.push(st);
    }
    if !o.labels.is_empty() {
        let Some(mut st) = b.done.pop() else {
            return Err(failed!("no stage was built"));
        };
        let text = format!(
            "LABEL {}",
            o.labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        b.number += 1;
        events(BuildEvent::Step {
            number: b.number,
            total,
            text: &text,
        });
        b.cached_step(&mut st, &text, "", events, &mut |st, _| {
            let labels = object(st.settings().entry("Labels").or_insert(Value::Null));
            for (k, v) in &o.labels {
                labels.insert(k.clone(), json!(v));
            }
            Ok(None)
        })?;
        final_id = st.id();
        b.done.push(st);
    }
    let Some(st) = b.done.last() else {
        return Err(failed!("no stage was built"));
    };
    let Some(image) = &st.image else {
        return Err(Error::Invalid(
            "the build made no image (a FROM scratch with nothing after it)".into(),
        ));
    };
    let pulled = pulled_of(image, st)?;
    if o.tags.is_empty() {
        // No name: docker's untagged image, found by its id.
        husk_image::images::record_untagged(root, &pulled)?;
    }
    for t in &o.tags {
        husk_image::images::record(root, t, &pulled)?;
        let name = t.to_string();
        crate::events::emit(root, "image", "tag", &image.config, &[("name", &name)]);
    }
    Ok(final_id)
}

/// A context sent as a tar stream (`build -`), unpacked into a directory of the store's
/// scratch space (entries leaving it refused), which the caller removes after the build.
pub fn unpack_context(root: &Path, input: &mut dyn Read) -> Result<PathBuf> {
    let dir = root
        .join("tmp")
        .join(format!("build-context-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut a = tar::Archive::new(husk_image::unpack::decompress(input)?);
    a.set_preserve_permissions(true);
    a.set_overwrite(true);
    // tar's unpack_in refuses `..` and absolute names, and never writes through a symlink
    // it made.
    let entries = a
        .entries()
        .map_err(|e| Error::Invalid(format!("the build context on stdin is not a tar: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| Error::Invalid(format!("the build context on stdin: {e}")))?;
        e.unpack_in(&dir)
            .map_err(|e| Error::Invalid(format!("the build context on stdin: {e}")))?;
    }
    Ok(dir)
}

/// A step's image as `images::record` takes it.
fn pulled_of(image: &ImageRecord, st: &Stage) -> Result<husk_image::pull::Pulled> {
    Ok(husk_image::pull::Pulled {
        manifest: Digest::parse(&image.manifest)?,
        config: Digest::parse(&image.config)?,
        diff_ids: image
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<husk_image::Result<_>>()?,
        layers: Vec::new(),
        size: st.layers.iter().map(|l| l.size).sum(),
        config_created: image.created.clone(),
        platform: image.platform(),
        fresh: Vec::new(),
    })
}

struct Builder<'a> {
    root: &'a Path,
    store: &'a Store,
    o: &'a BuildOptions,
    context: &'a Path,
    ignore: &'a Ignore,
    escape: char,
    /// Stages built so far (for FROM and COPY --from).
    done: Vec<Stage>,
    number: usize,
    total: usize,
}

impl Builder<'_> {
    /// An ARG's value: the --build-arg, else its default expanded.
    fn arg_value(
        &self,
        name: &str,
        default: Option<&str>,
        scope: &BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        if let Some(v) = self.o.build_args.get(name) {
            return Ok(Some(v.clone()));
        }
        let Some(d) = default else {
            return Ok(scope.get(name).cloned().or_else(|| automatic(name)));
        };
        dockerfile::expand(d, self.escape, &|n| scope.get(n).cloned())
            .map(Some)
            .map_err(|e| Error::Invalid(e.0))
    }

    fn from(
        &mut self,
        i: &Instruction,
        global: &BTreeMap<String, String>,
        events: &mut dyn FnMut(BuildEvent),
    ) -> Result<Stage> {
        self.number += 1;
        events(BuildEvent::Step {
            number: self.number,
            total: self.total,
            text: &i.text,
        });
        let Kind::From {
            image,
            alias,
            platform,
        } = &i.kind
        else {
            return Err(failed!("a stage must start with FROM"));
        };
        let expand = |w: &str| {
            dockerfile::expand(w, self.escape, &|n| global.get(n).cloned())
                .map_err(|e| Error::Invalid(format!("Dockerfile line {}: {}", i.line, e.0)))
        };
        let image = expand(image)?;
        let platform = match platform.as_deref().map(expand).transpose()? {
            Some(p) => Some(p),
            None => self.o.platform.clone(),
        };
        let mut st = if image.eq_ignore_ascii_case("scratch") {
            let p = match &platform {
                Some(p) => Platform::parse(p)?,
                None => Platform::host(),
            };
            let mut config = json!({
                "architecture": p.architecture, "os": p.os, "config": {},
                "rootfs": {"type": "layers", "diff_ids": []}, "history": [],
            });
            if let Some(v) = p.variant {
                config["variant"] = json!(v);
            }
            Stage {
                name: None,
                config,
                layers: Vec::new(),
                image: None,
                args: BTreeMap::new(),
                cmd_set: false,
            }
        } else if let Some(prev) = self.done.iter().rev().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&image))
        }) {
            prev.clone()
        } else {
            self.base_image(&image, platform.as_deref())?
        };
        st.name = alias.clone();
        st.args = BTreeMap::new();
        st.cmd_set = false;
        if let Some(img) = &st.image {
            events(BuildEvent::Produced(short(&img.config)));
        }
        // The base image's ONBUILD triggers run first, then are not inherited.
        let triggers: Vec<String> = st.config["config"]["OnBuild"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            st.settings().insert("OnBuild".into(), Value::Null);
            for t in triggers {
                events(BuildEvent::Note(&format!("Executing ONBUILD trigger: {t}")));
                let parsed = dockerfile::parse(&t)
                    .map_err(|e| Error::Invalid(format!("ONBUILD trigger {t:?}: {}", e.0)))?;
                for ti in &parsed.instructions {
                    self.step(&mut st, ti, global, events)?;
                }
            }
        }
        Ok(st)
    }

    /// The stage of an image of the store, pulled when missing (or with --pull).
    fn base_image(&self, image: &str, platform: Option<&str>) -> Result<Stage> {
        let r = Reference::parse(image)?;
        let platform = match platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        };
        let have = crate::create::find_image(self.root, &r, &platform)?;
        if have.is_none() || self.o.pull {
            crate::create::pull(
                self.root,
                &r,
                &platform,
                &husk_image::registry::Options::default(),
                &|_| {},
            )?;
        }
        let record = crate::create::find_image(self.root, &r, &platform)?
            .ok_or_else(|| Error::NoSuchImage(format!("{r} for {platform}")))?;
        let (config, layers) = compose::open(self.store, &Digest::parse(&record.manifest)?)?;
        Ok(Stage {
            name: None,
            config,
            layers,
            image: Some(record),
            args: BTreeMap::new(),
            cmd_set: false,
        })
    }

    /// One instruction of a stage (not FROM).
    fn step(
        &self,
        st: &mut Stage,
        i: &Instruction,
        global: &BTreeMap<String, String>,
        events: &mut dyn FnMut(BuildEvent),
    ) -> Result<()> {
        let esc = self.escape;
        let at = |e: Error| match e {
            Error::Invalid(m) if !m.starts_with("Dockerfile line") => {
                Error::Invalid(format!("Dockerfile line {}: {m}", i.line))
            }
            e => e,
        };
        match &i.kind {
            Kind::From { .. } => Err(failed!("FROM inside a stage")),
            Kind::Arg(list) => {
                for (name, default) in list {
                    // A global ARG redeclared in the stage takes its global value.
                    let mut scope = global.clone();
                    scope.extend(st.args.clone());
                    if let Some(v) = self
                        .arg_value(name, default.as_deref(), &scope)
                        .map_err(at)?
                    {
                        st.args.insert(name.clone(), v);
                    }
                }
                let text = i.text.clone();
                self.cached_step(st, &text, "", events, &mut |_, _| Ok(None))
            }
            Kind::Run { command, network } => {
                let argv = st.argv(command);
                let network = network.clone();
                self.cached_step(st, &i.text, "", events, &mut |st, events| {
                    self.run(st, &argv, network.as_deref(), events)
                })
            }
            Kind::Copy {
                sources,
                dest,
                from,
                chown,
                chmod,
                heredocs,
            } => {
                let from = from
                    .as_ref()
                    .map(|f| st.expand(f, esc))
                    .transpose()
                    .map_err(at)?;
                self.copy(
                    st, i, sources, dest, from, chown, chmod, heredocs, false, events,
                )
                .map_err(at)
            }
            Kind::Add {
                sources,
                dest,
                chown,
                chmod,
                heredocs,
            } => self
                .copy(
                    st, i, sources, dest, None, chown, chmod, heredocs, true, events,
                )
                .map_err(at),
            _ => {
                let text = i.text.clone();
                let kind = i.kind.clone();
                self.cached_step(st, &text, "", events, &mut |st, _| {
                    settings(st, &kind, esc).map(|()| None)
                })
                .map_err(at)
            }
        }
    }

    /// A step through the cache: its key from the parent, `text`, the ARGs in scope and
    /// `content`; on a miss `apply` changes the stage (and may return a new layer), and the
    /// result is stored as an image and remembered.
    fn cached_step(
        &self,
        st: &mut Stage,
        text: &str,
        content: &str,
        events: &mut dyn FnMut(BuildEvent),
        apply: &mut Apply,
    ) -> Result<()> {
        let key = Digest::of(
            format!(
                "{}\n{text}\n{}\n{content}",
                st.id(),
                serde_json::to_string(&st.args).unwrap_or_default()
            )
            .as_bytes(),
        );
        let entry = self.root.join("build-cache").join(key.hex());
        if !self.o.no_cache {
            if let Some(image) = self.cached(&entry, st) {
                events(BuildEvent::Cached);
                events(BuildEvent::Produced(short(&image.config)));
                return Ok(());
            }
        }
        let layer = apply(st, events)?;
        let now = crate::time::now();
        let mut history = json!({"created": now, "created_by": text, "comment": "husk build"});
        match layer {
            Some(l) => {
                array(&mut st.config["rootfs"]["diff_ids"]).push(json!(l.diff_id.to_string()));
                st.layers.push(l.descriptor);
            }
            None => history["empty_layer"] = json!(true),
        }
        array(&mut st.config["history"]).push(history);
        st.config["created"] = json!(now);
        let image = self.materialize(st)?;
        let dir = self.root.join("build-cache");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(".{}.{}", key.hex(), std::process::id()));
        fs::write(&tmp, &image.manifest)
            .and_then(|()| fs::rename(&tmp, &entry))
            .with_context(|| format!("cannot write {}", entry.display()))?;
        events(BuildEvent::Produced(short(&image.config)));
        Ok(())
    }

    /// The stage a cache entry names, if its image is whole in the store.
    fn cached(&self, entry: &Path, st: &mut Stage) -> Option<ImageRecord> {
        let manifest = Digest::parse(fs::read_to_string(entry).ok()?.trim()).ok()?;
        if !self.store.has(&manifest) {
            return None;
        }
        let (config, layers) = compose::open(self.store, &manifest).ok()?;
        st.config = config;
        st.layers = layers;
        self.materialize(st).ok()
    }

    /// Store the stage's config and manifest (its layers are stored already) and make it the
    /// stage's image.
    fn materialize(&self, st: &mut Stage) -> Result<ImageRecord> {
        let pulled = compose::compose(self.root, self.store, &st.config, &st.layers, &|_| {})?;
        let name = format!("build-step-{}", short(&pulled.config.to_string()));
        let image = ImageRecord::of(name, None, &pulled);
        st.image = Some(image.clone());
        Ok(image)
    }

    /// A container of the stage's image, created (not started) with `command`.
    fn container(&self, st: &Stage, command: Vec<String>, network: Option<&str>) -> Result<String> {
        let image = st.image.clone().ok_or_else(|| {
            Error::Invalid("RUN needs an image: FROM scratch has no shell to run it".into())
        })?;
        let network = match network {
            Some("none") => Network::None,
            Some("host") => Network::Host,
            Some("default") | None => self.o.network.clone(),
            Some(other) => Network::Named(other.to_string()),
        };
        // ARGs in scope and the predefined proxy ones given, as RUN's environment (an ENV of
        // the same name wins).
        let predefined = self
            .o
            .build_args
            .iter()
            .filter(|(k, _)| PREDEFINED_ARGS.contains(&k.as_str()));
        let env: Vec<String> = st
            .args
            .iter()
            .chain(predefined)
            .filter(|(k, _)| !st.env().iter().any(|(e, _)| e == *k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let opts = RunOptions {
            image: image.name.clone(),
            built: Some(image),
            command,
            entrypoint: Some(String::new()),
            env,
            network,
            attach: Some(Streams {
                stdin: false,
                stdout: !self.o.quiet,
                stderr: !self.o.quiet,
            }),
            ..RunOptions::default()
        };
        crate::create::create(self.root, &opts, &|_| {})
    }

    fn run(
        &self,
        st: &Stage,
        argv: &[String],
        network: Option<&str>,
        events: &mut dyn FnMut(BuildEvent),
    ) -> Result<Option<compose::Layer>> {
        let id = self.container(st, argv.to_vec(), network)?;
        events(BuildEvent::Running(short(&id)));
        let streams = Streams {
            stdin: false,
            stdout: !self.o.quiet,
            stderr: !self.o.quiet,
        };
        let exit = crate::monitor::supervise(
            self.root,
            &id,
            Stdio::Logged {
                attach: true,
                streams,
            },
            &mut |_| {},
        );
        let result = exit.and_then(|exit| {
            if exit.code != 0 {
                let shown = argv.join(" ");
                let mut why = format!(
                    "step {}/{}: the command '{shown}' returned a non-zero code: {}",
                    self.number, self.total, exit.code
                );
                if self.o.quiet {
                    if let Ok(out) = fs::read_to_string(store::log_path(self.root, &id)) {
                        let text: Vec<String> = out
                            .lines()
                            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                            .filter_map(|v| v["log"].as_str().map(|s| s.trim_end().to_string()))
                            .collect();
                        if !text.is_empty() {
                            why.push_str(&format!(" (output: {})", text.join(" / ")));
                        }
                    }
                }
                return Err(Error::Failed(why));
            }
            let c = Container::load(self.root, &id)?;
            crate::commit::layer(self.root, &c)
        });
        self.discard(&id);
        events(BuildEvent::Removed(short(&id)));
        result
    }

    fn discard(&self, id: &str) {
        if let Ok(c) = Container::load(self.root, id) {
            let _ = crate::remove::remove(self.root, &c, true);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        st: &mut Stage,
        i: &Instruction,
        sources: &[String],
        dest: &str,
        from: Option<String>,
        chown: &Option<String>,
        chmod: &Option<String>,
        heredocs: &[dockerfile::Heredoc],
        add: bool,
        events: &mut dyn FnMut(BuildEvent),
    ) -> Result<()> {
        let esc = self.escape;
        let word = if add { "ADD" } else { "COPY" };
        let dest = st.expand(dest, esc)?;
        let workdir = st.config["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let dest_abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{dest}", workdir.trim_end_matches('/'))
        };
        let dest_abs = normalize(&dest_abs);
        let mode =
            match chmod {
                Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                    Error::Invalid(format!("{word} --chmod={m}: not an octal mode"))
                })?),
                None => None,
            };
        let chown = chown.as_ref().map(|c| st.expand(c, esc)).transpose()?;
        // Where the sources are read from: the context, a stage, or an image (mounted).
        let mut mounted: Option<FromMount> = None;
        let (src_root, ignore): (PathBuf, Option<&Ignore>) = match &from {
            None => (self.context.to_path_buf(), Some(self.ignore)),
            Some(f) => {
                let stage = match f.parse::<usize>() {
                    Ok(n) => self.done.get(n).cloned(),
                    Err(_) => self
                        .done
                        .iter()
                        .rev()
                        .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(f)))
                        .cloned(),
                };
                let stage = match stage {
                    Some(s) => s,
                    None => self.base_image(f, self.o.platform.as_deref())?,
                };
                let m = FromMount::new(self.root, &stage)?;
                let p = m.path.clone();
                mounted = Some(m);
                (p, None)
            }
        };
        let mut expanded = Vec::new();
        for s in sources {
            if heredocs.iter().any(|h| &h.name == s) {
                expanded.push(Source::Heredoc(s.clone()));
                continue;
            }
            let s = st.expand(s, esc)?;
            if add
                && (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@"))
            {
                return Err(Error::Invalid(format!(
                    "ADD {s}: remote sources are not supported (the builder has no internet); put the file in the context"
                )));
            }
            for m in matches(&src_root, &s, ignore)? {
                expanded.push(Source::Path(m));
            }
        }
        if expanded.is_empty() {
            return Err(Error::Invalid(format!(
                "{word} failed: no source files were specified"
            )));
        }
        // Written once: the tar of what lands, and a hash of its names, modes and bytes.
        let file = self.store.scratch("copy")?;
        let single_file = expanded.len() == 1
            && match &expanded[0] {
                Source::Path(p) => {
                    !(src_root.join(p).is_dir() || add && is_archive(&src_root.join(p)))
                }
                Source::Heredoc(_) => true,
            };
        let mut bodies = Vec::new();
        for h in heredocs {
            let body = if h.expand {
                st.expand(&h.body, esc)?
            } else {
                h.body.clone()
            };
            bodies.push((h.name.clone(), body));
        }
        let plan = Plan {
            src_root: &src_root,
            ignore,
            mode,
            add,
            heredocs: &bodies,
        };
        let mut hash = HashingWriter::new(std::io::sink());
        // Into a directory, unless one file goes to a name that is not one (decided when
        // the container tells whether dest is a directory; both tars are cheap to redo).
        let write = |into_dir: bool,
                     file: &fs::File,
                     hash: &mut HashingWriter<std::io::Sink>|
         -> Result<String> {
            let mut f = file;
            f.set_len(0)
                .context("cannot reset the copy's scratch file")?;
            f.rewind().context("cannot reset the copy's scratch file")?;
            let mut tar = tar::Builder::new(f);
            let landing = if into_dir || !single_file {
                for s in &expanded {
                    plan.add(&mut tar, s, None, hash)?;
                }
                dest_abs.clone()
            } else {
                let name = Path::new(&dest_abs)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| Error::Invalid(format!("{word} to {dest}: no file name")))?;
                plan.add(&mut tar, &expanded[0], Some(&name), hash)?;
                parent_of(&dest_abs)
            };
            tar.into_inner()
                .and_then(|mut f| f.flush())
                .context("cannot write the copy's tar")?;
            Ok(landing)
        };
        let dir_dest = dest.ends_with('/') || dest.ends_with("/.") || !single_file;
        write(dir_dest, &file, &mut hash)?;
        let (_, content, _) = hash.finish();
        let from_id = match &mounted {
            Some(m) => m.id.clone(),
            None => String::new(),
        };
        let key_content = format!(
            "{content} {from_id} {} {:?}",
            chown.clone().unwrap_or_default(),
            mode
        );
        let text = i.text.clone();
        let result = self.cached_step(st, &text, &key_content, events, &mut |st, _| {
            if st.layers.is_empty() {
                // Nothing below (FROM scratch): the tar, under its landing directory, is
                // the layer itself.
                let landing = write(dir_dest, &file, &mut HashingWriter::new(std::io::sink()))?;
                return layer_of_tar(self.store, &landing, &file, chown.as_deref()).map(Some);
            }
            let id = self.container(st, vec!["/husk-build-copy".into()], Some("none"))?;
            let outcome = (|| {
                let c = Container::load(self.root, &id)?;
                crate::copy::unpack_in(
                    self.root,
                    &c,
                    &dest_abs,
                    chown.as_deref(),
                    &mut |is_dir| {
                        let into_dir = dir_dest || is_dir;
                        let mut scratch_hash = HashingWriter::new(std::io::sink());
                        let landing = write(into_dir, &file, &mut scratch_hash)?;
                        let mut f = file.try_clone().context("cannot reopen the copy's tar")?;
                        f.rewind().context("cannot reread the copy's tar")?;
                        Ok((landing, Box::new(f) as Box<dyn Read>))
                    },
                )?;
                crate::commit::layer(self.root, &c)
            })();
            self.discard(&id);
            outcome
        });
        drop(mounted);
        result
    }
}

/// A layer of the copy tar `file` under directory `landing` (its parents made), owned by
/// `chown` (numbers only: there is no /etc/passwd to ask).
fn layer_of_tar(
    store: &Store,
    landing: &str,
    file: &fs::File,
    chown: Option<&str>,
) -> Result<compose::Layer> {
    let owner = match chown {
        None => (0, 0),
        Some(spec) => {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            match (u.parse::<u64>(), g.parse::<u64>()) {
                (Ok(u), Ok(g)) => (u, g),
                _ => {
                    return Err(Error::Invalid(format!(
                        "--chown={spec}: names need the image's /etc/passwd, and FROM scratch has none; use numbers"
                    )))
                }
            }
        }
    };
    let mut f = file.try_clone().context("cannot reopen the copy's tar")?;
    f.rewind().context("cannot reread the copy's tar")?;
    let mut w = compose::LayerWriter::create(store)?;
    {
        let mut out = tar::Builder::new(&mut w);
        let base = PathBuf::from(landing.trim_start_matches('/'));
        let mut at = PathBuf::new();
        for part in base.iter() {
            at.push(part);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            out.append_data(&mut h, &at, std::io::empty())
                .context("cannot write the layer")?;
        }
        let mut a = tar::Archive::new(f);
        for e in a.entries().context("cannot reread the copy's tar")? {
            let mut e = e.context("cannot reread the copy's tar")?;
            let mut h = e.header().clone();
            let path = base.join(e.path().context("cannot reread the copy's tar")?);
            h.set_uid(owner.0);
            h.set_gid(owner.1);
            match h.entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = e
                        .link_name()
                        .context("cannot reread the copy's tar")?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    out.append_link(&mut h, &path, &target)
                }
                _ => out.append_data(&mut h, &path, &mut e),
            }
            .context("cannot write the layer")?;
        }
        out.into_inner().context("cannot write the layer")?;
    }
    Ok(w.finish(store)?)
}

/// The automatic platform ARGs (BuildKit's), for an ARG line without a default.
fn automatic(name: &str) -> Option<String> {
    let p = Platform::host();
    match name {
        "TARGETPLATFORM" | "BUILDPLATFORM" => Some(p.to_string()),
        "TARGETOS" | "BUILDOS" => Some(p.os),
        "TARGETARCH" | "BUILDARCH" => Some(p.architecture),
        "TARGETVARIANT" | "BUILDVARIANT" => Some(p.variant.unwrap_or_default()),
        _ => None,
    }
}

/// A settings-only instruction on the stage's config.
fn settings(st: &mut Stage, kind: &Kind, esc: char) -> Result<()> {
    match kind {
        Kind::Env(pairs) => {
            for (k, raw) in pairs {
                let v = st.expand(raw, esc)?;
                let list = array(st.settings().entry("Env").or_insert(Value::Null));
                list.retain(|e| {
                    e.as_str().and_then(|e| e.split_once('=')).map(|(n, _)| n) != Some(k.as_str())
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        Kind::Label(pairs) => {
            for (k, raw) in pairs {
                let k = st.expand(k, esc)?;
                let v = st.expand(raw, esc)?;
                object(st.settings().entry("Labels").or_insert(Value::Null)).insert(k, json!(v));
            }
        }
        Kind::Workdir(w) => {
            let w = st.expand(w, esc)?;
            let cur = st.config["config"]["WorkingDir"]
                .as_str()
                .unwrap_or("/")
                .to_string();
            let new = if w.starts_with('/') {
                w
            } else {
                format!("{}/{w}", cur.trim_end_matches('/'))
            };
            st.settings()
                .insert("WorkingDir".into(), json!(normalize(&new)));
        }
        Kind::User(u) => {
            let u = st.expand(u, esc)?;
            st.settings().insert("User".into(), json!(u));
        }
        Kind::Cmd(c) => {
            let argv = st.argv(c);
            st.settings().insert("Cmd".into(), json!(argv));
            st.cmd_set = true;
        }
        Kind::Entrypoint(c) => {
            let argv = st.argv(c);
            st.settings().insert("Entrypoint".into(), json!(argv));
            // An ENTRYPOINT clears a CMD it inherited (docker's rule).
            if !st.cmd_set {
                st.settings().insert("Cmd".into(), Value::Null);
            }
        }
        Kind::Expose(ports) => {
            for p in ports {
                let p = st.expand(p, esc)?;
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let valid = num
                    .split_once('-')
                    .map_or(num.parse::<u16>().is_ok(), |(a, b)| {
                        a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok()
                    });
                if !valid || !["tcp", "udp", "sctp"].contains(&proto) {
                    return Err(Error::Invalid(format!("EXPOSE {p}: not a port")));
                }
                object(st.settings().entry("ExposedPorts").or_insert(Value::Null))
                    .insert(format!("{num}/{proto}"), json!({}));
            }
        }
        Kind::Volume(paths) => {
            for p in paths {
                let p = st.expand(p, esc)?;
                object(st.settings().entry("Volumes").or_insert(Value::Null)).insert(p, json!({}));
            }
        }
        Kind::Healthcheck(h) => {
            let mut v = json!({"Test": h.test});
            for (k, x) in [
                ("Interval", h.interval),
                ("Timeout", h.timeout),
                ("StartPeriod", h.start_period),
                ("StartInterval", h.start_interval),
                ("Retries", h.retries),
            ] {
                if let Some(x) = x {
                    v[k] = json!(x);
                }
            }
            st.settings().insert("Healthcheck".into(), v);
        }
        Kind::StopSignal(s) => {
            let s = st.expand(s, esc)?;
            st.settings().insert("StopSignal".into(), json!(s));
        }
        Kind::Shell(s) => {
            st.settings().insert("Shell".into(), json!(s));
        }
        Kind::Onbuild(t) => {
            array(st.settings().entry("OnBuild").or_insert(Value::Null)).push(json!(t));
        }
        Kind::Maintainer(m) => {
            st.config["author"] = json!(m);
        }
        Kind::From { .. }
        | Kind::Run { .. }
        | Kind::Copy { .. }
        | Kind::Add { .. }
        | Kind::Arg(_) => {}
    }
    Ok(())
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// `/a/./b/../c/` → `/a/c` (lexically, as docker cleans paths).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent_of(p: &str) -> String {
    Path::new(p)
        .parent()
        .map_or_else(|| "/".to_string(), |x| x.display().to_string())
}

enum Source {
    /// Relative to the source root, `/`-separated.
    Path(String),
    Heredoc(String),
}

/// The paths under `root` a source names (globs matched), relative; an error for one outside.
fn matches(root: &Path, source: &str, ignore: Option<&Ignore>) -> Result<Vec<String>> {
    let cleaned = {
        let mut parts: Vec<&str> = Vec::new();
        for c in source.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(Error::Invalid(format!(
                            "{source}: the path is outside the build context"
                        )));
                    }
                }
                c => parts.push(c),
            }
        }
        parts.join("/")
    };
    let globbed = cleaned.contains(['*', '?', '[']);
    if !globbed {
        let rel = if cleaned.is_empty() {
            ".".to_string()
        } else {
            cleaned
        };
        if rel != "." && ignore.is_some_and(|i| i.excluded(&rel)) {
            return Err(Error::Invalid(format!(
                "{source}: not found in the build context (excluded by .dockerignore)"
            )));
        }
        resolve(root, &rel).map_err(|e| {
            Error::Invalid(format!("{source}: not found in the build context ({e})"))
        })?;
        return Ok(vec![rel]);
    }
    let mut out = Vec::new();
    let depth = cleaned.split('/').count();
    glob_walk(root, "", depth, &cleaned, ignore, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{source}: no file in the build context matches"
        )));
    }
    Ok(out)
}

fn glob_walk(
    root: &Path,
    rel: &str,
    depth: usize,
    pattern: &str,
    ignore: Option<&Ignore>,
    out: &mut Vec<String>,
) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    let dir = root.join(rel);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if ignore.is_some_and(|i| i.excluded(&path)) {
            continue;
        }
        let prefix: String = pattern
            .split('/')
            .take(path.split('/').count())
            .collect::<Vec<_>>()
            .join("/");
        if !crate::dockerignore::glob_matches(&prefix, &path).map_err(Error::Invalid)? {
            continue;
        }
        if depth == 1 {
            out.push(path);
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            glob_walk(root, &path, depth - 1, pattern, ignore, out)?;
        }
    }
    Ok(())
}

/// `rel` under `root`, resolved inside it (a symlink on the way resolves within root): the
/// path of what it names on the host.
fn resolve(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let dir = fs::File::open(root)?;
    let fd = husk_sys::open_in_root(dir.as_raw_fd(), Path::new(rel), libc::O_PATH, 0)?;
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether `p` is a local archive ADD unpacks: a tar, plain or compressed.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(r) = husk_image::unpack::decompress(f) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut r = r;
    r.read_exact(&mut head).is_ok() && &head[257..262] == b"ustar"
}

/// What a COPY or ADD writes into its tar.
struct Plan<'a> {
    src_root: &'a Path,
    ignore: Option<&'a Ignore>,
    mode: Option<u32>,
    add: bool,
    /// Heredoc sources: (name, body expanded as the Dockerfile asked).
    heredocs: &'a [(String, String)],
}

impl Plan<'_> {
    /// Source `s` into `tar`: a directory's contents at the top, anything else by its name
    /// (or `name`); ADD's archives unpacked at the top.
    fn add(
        &self,
        tar: &mut tar::Builder<&fs::File>,
        s: &Source,
        name: Option<&str>,
        hash: &mut HashingWriter<std::io::Sink>,
    ) -> Result<()> {
        match s {
            Source::Heredoc(n) => {
                let (_, body) = self
                    .heredocs
                    .iter()
                    .find(|(name, _)| name == n)
                    .ok_or_else(|| failed!("heredoc {n} went missing"))?;
                let target = name.unwrap_or(n);
                let mut head = tar::Header::new_gnu();
                head.set_entry_type(tar::EntryType::Regular);
                head.set_mode(self.mode.unwrap_or(0o644));
                head.set_size(body.len() as u64);
                head.set_mtime(0);
                let _ = writeln!(
                    hash,
                    "F {target} {:o} {}",
                    self.mode.unwrap_or(0o644),
                    body.len()
                );
                let _ = hash.write_all(body.as_bytes());
                tar.append_data(&mut head, target, body.as_bytes())
                    .context("cannot write the copy's tar")
            }
            Source::Path(rel) => {
                let host = resolve(self.src_root, rel)
                    .with_context(|| format!("{rel}: not found in the build context"))?;
                let meta = fs::symlink_metadata(&host)
                    .with_context(|| format!("cannot stat {}", host.display()))?;
                if meta.is_dir() {
                    return self.tree(tar, &host, rel, Path::new(""), hash);
                }
                if self.add && is_archive(&host) {
                    return self.archive(tar, &host, hash);
                }
                let base = name.map(str::to_string).unwrap_or_else(|| {
                    Path::new(rel)
                        .file_name()
                        .map_or_else(|| rel.clone(), |n| n.to_string_lossy().into_owned())
                });
                self.entry(tar, &host, &meta, Path::new(&base), hash)
            }
        }
    }

    /// A directory's contents (the context's .dockerignore applied), recursively.
    fn tree(
        &self,
        tar: &mut tar::Builder<&fs::File>,
        host: &Path,
        rel: &str,
        into: &Path,
        hash: &mut HashingWriter<std::io::Sink>,
    ) -> Result<()> {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(host)
            .with_context(|| format!("cannot read {}", host.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let child_rel = if rel == "." || rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            let meta = e
                .metadata()
                .with_context(|| format!("cannot stat {}", e.path().display()))?;
            let excluded = self.ignore.is_some_and(|i| i.excluded(&child_rel));
            if excluded
                && !(meta.is_dir() && self.ignore.is_some_and(|i| i.may_include_below(&child_rel)))
            {
                continue;
            }
            let at = into.join(&name);
            // An excluded directory walked for the exceptions below it is still made, as
            // the parent of what is copied.
            self.entry(tar, &e.path(), &meta, &at, hash)?;
            if meta.is_dir() {
                self.tree(tar, &e.path(), &child_rel, &at, hash)?;
            }
        }
        Ok(())
    }

    /// One entry (never following a symlink), its name, mode and bytes into the hash.
    fn entry(
        &self,
        tar: &mut tar::Builder<&fs::File>,
        host: &Path,
        meta: &fs::Metadata,
        at: &Path,
        hash: &mut HashingWriter<std::io::Sink>,
    ) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        let mode = self.mode.unwrap_or(meta.mode() & 0o7777);
        h.set_mode(mode);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        let ft = meta.file_type();
        let what = |e: std::io::Error| failed!("cannot copy {}: {e}", host.display());
        if ft.is_dir() {
            let _ = writeln!(hash, "D {} {mode:o}", at.display());
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, at, std::io::empty()).map_err(what)
        } else if ft.is_symlink() {
            let target = fs::read_link(host).map_err(what)?;
            let _ = writeln!(hash, "L {} {}", at.display(), target.display());
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, at, &target).map_err(what)
        } else if ft.is_file() {
            let f = fs::File::open(host).map_err(what)?;
            let _ = writeln!(hash, "F {} {mode:o} {}", at.display(), meta.len());
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let mut tee = Tee {
                inner: f.take(meta.len()),
                hash,
            };
            tar.append_data(&mut h, at, &mut tee).map_err(what)
        } else {
            // Devices, fifos and sockets of a context are not copied (docker's neither).
            Ok(())
        }
    }

    /// ADD of a local archive: its entries at the top.
    fn archive(
        &self,
        tar: &mut tar::Builder<&fs::File>,
        host: &Path,
        hash: &mut HashingWriter<std::io::Sink>,
    ) -> Result<()> {
        let f = fs::File::open(host).with_context(|| format!("cannot open {}", host.display()))?;
        let mut a = tar::Archive::new(husk_image::unpack::decompress(f)?);
        let bad = |e: std::io::Error| Error::Invalid(format!("ADD {}: {e}", host.display()));
        for e in a.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let mut h = e.header().clone();
            let path = e.path().map_err(bad)?.into_owned();
            if path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
            {
                return Err(Error::Invalid(format!(
                    "ADD {}: entry {} leaves the destination",
                    host.display(),
                    path.display()
                )));
            }
            if let Some(m) = self.mode {
                h.set_mode(m);
            }
            let _ = writeln!(hash, "A {} {:?} {}", path.display(), h.mode(), e.size());
            match h.entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = e
                        .link_name()
                        .map_err(bad)?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    tar.append_link(&mut h, &path, &target).map_err(bad)?;
                }
                _ => {
                    let mut tee = Tee {
                        inner: &mut e,
                        hash,
                    };
                    tar.append_data(&mut h, &path, &mut tee).map_err(bad)?;
                }
            }
        }
        Ok(())
    }
}

/// A reader that hashes what passes.
struct Tee<'a, R> {
    inner: R,
    hash: &'a mut HashingWriter<std::io::Sink>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Another stage's (or image's) file system, mounted read-only for COPY --from; unmounted
/// when dropped.
struct FromMount {
    path: PathBuf,
    id: String,
    root: PathBuf,
    diff_ids: Vec<Digest>,
}

impl FromMount {
    fn new(root: &Path, st: &Stage) -> Result<FromMount> {
        let diff_ids: Vec<Digest> = st.config["rootfs"]["diff_ids"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|d| Digest::parse(d.as_str()?).ok())
                    .collect()
            })
            .unwrap_or_default();
        let path = root.join("tmp").join(format!(
            "build-from-{}-{}",
            std::process::id(),
            short(&st.id())
        ));
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        if !diff_ids.is_empty() {
            husk_image::snapshot::mount(root, &diff_ids, None, &path)?;
        }
        Ok(FromMount {
            path,
            id: st.id(),
            root: root.to_path_buf(),
            diff_ids,
        })
    }
}

impl Drop for FromMount {
    fn drop(&mut self) {
        if !self.diff_ids.is_empty() && husk_image::snapshot::unmount(&self.path).is_ok() {
            crate::layers::release_layers(&self.root, &self.diff_ids);
        }
        let _ = fs::remove_dir(&self.path);
    }
}
