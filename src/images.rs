//! The image commands and `info`: flags → engine or image-store calls, reports → docker's
//! output.

use std::io::Write;

use anyhow::{Context, Result};
use husk_cli::husk::{
    ArchiveFormat, ImagesArgs, InspectArgs, LoadArgs, LoginArgs, PullArgs, SaveArgs,
};
use husk_engine::image::manifest::Platform;
use husk_engine::image::registry::Options;
use husk_engine::image::{archive, Reference};
use husk_engine::{Engine, PullEvent};
use serde_json::json;

use crate::progress::PullDisplay;
use crate::table::{human_size, table};
use crate::template::{write_items, Output};
use crate::timefmt;

pub fn pull(engine: &Engine, a: &PullArgs) -> Result<()> {
    let reference = Reference::parse(&a.image)?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let opts = Options {
        insecure: a.insecure,
        credentials: None,
    };
    if !a.quiet {
        println!(
            "{}: Pulling from {}",
            reference.tag.as_deref().unwrap_or("latest"),
            reference.repository
        );
    }
    let display = PullDisplay::new(a.quiet, false);
    let pulled = engine.pull(&reference, &platform, &opts, &|e| {
        if let PullEvent::Progress(p) = e {
            display.event(p)
        }
    })?;
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(out, "Digest: {}", pulled.manifest)?;
        if pulled.new {
            writeln!(out, "Status: Downloaded newer image for {reference}")?;
        } else {
            writeln!(out, "Status: Image is up to date for {reference}")?;
        }
    }
    writeln!(out, "{reference}")?;
    Ok(())
}

/// `push NAME[:TAG]`, printing docker's lines.
pub fn push(engine: &Engine, a: &husk_cli::husk::PushArgs) -> Result<()> {
    let reference = Reference::parse(&a.image)?;
    let opts = Options {
        insecure: a.insecure,
        credentials: None,
    };
    if !a.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let display = crate::progress::PushDisplay::new(a.quiet);
    let pushed = engine.push(&reference, &opts, &|p| display.event(p))?;
    if a.quiet {
        println!("{}", pushed.digest);
    } else {
        println!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        );
    }
    Ok(())
}

/// `build`: docker's classic step lines on stdout (only the id with -q); exit 1 on failure.
pub fn build(engine: &Engine, a: &husk_cli::husk::BuildArgs) -> Result<()> {
    use husk_engine::BuildEvent;
    let mut build_args = std::collections::BTreeMap::new();
    for kv in &a.build_arg {
        match kv.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // A bare name takes this environment's value, or is left unset.
            None => {
                if let Ok(v) = std::env::var(kv) {
                    build_args.insert(kv.clone(), v);
                }
            }
        }
    }
    let tags = a
        .tag
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let stdin = a.context == "-";
    let o = husk_engine::BuildOptions {
        context: if stdin {
            ".".into()
        } else {
            a.context.clone().into()
        },
        dockerfile: a.file.clone(),
        tags: tags.clone(),
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        platform: a.platform.clone(),
        labels: husk_engine::options::parse_labels(&a.label),
        quiet: a.quiet,
        network: husk_engine::NetworkMode::parse(a.network.as_deref().unwrap_or(""))?,
    };
    let quiet = a.quiet;
    let mut out = std::io::stdout();
    let mut events = |e: BuildEvent| {
        if quiet {
            return;
        }
        // A closed stdout is not worth failing a build over.
        let _ = match e {
            BuildEvent::Note(n) => writeln!(out, "{n}"),
            BuildEvent::Step {
                number,
                total,
                text,
            } => writeln!(out, "Step {number}/{total} : {text}"),
            BuildEvent::Cached => writeln!(out, " ---> Using cache"),
            BuildEvent::Running(id) => writeln!(out, " ---> Running in {id}"),
            BuildEvent::Removed(id) => writeln!(out, "Removing intermediate container {id}"),
            BuildEvent::Produced(id) => writeln!(out, " ---> {id}"),
        };
        let _ = out.flush();
    };
    let result = if stdin {
        let mut input = std::io::stdin().lock();
        engine.build(&o, Some(&mut input), &mut events)
    } else {
        engine.build(&o, None, &mut events)
    };
    let id = match result {
        Ok(id) => id,
        Err(e) => {
            eprintln!("husk: {e}");
            std::process::exit(1);
        }
    };
    if quiet {
        println!("{id}");
    } else {
        println!(
            "Successfully built {}",
            &id.trim_start_matches("sha256:")[..12]
        );
        for t in &tags {
            println!("Successfully tagged {t}");
        }
    }
    Ok(())
}

/// `commit CONTAINER REPOSITORY[:TAG]`: prints the new image's id, as docker does.
pub fn commit(engine: &Engine, a: &husk_cli::husk::CommitArgs) -> Result<()> {
    let reference = a.reference.as_deref().map(Reference::parse).transpose()?;
    let opts = husk_engine::CommitOptions {
        changes: a.change.clone(),
        message: a.message.clone(),
        author: a.author.clone(),
        pause: a.pause,
    };
    println!(
        "{}",
        engine.commit(&a.container, reference.as_ref(), &opts)?
    );
    Ok(())
}

pub fn rmi(engine: &Engine, images: &[String], force: bool) -> Result<()> {
    for q in images {
        let r = engine.remove_image(q, force)?;
        for i in r.untagged {
            println!(
                "Untagged: {}:{}",
                i.name,
                i.tag.as_deref().unwrap_or("<none>")
            );
        }
        let freed = r.reclaimed;
        if freed.layers + freed.blobs > 0 {
            println!(
                "Deleted: {} layers, {} blobs ({})",
                freed.layers,
                freed.blobs,
                human_size(freed.bytes)
            );
        }
    }
    Ok(())
}

/// `inspect`: containers first, then images, as docker resolves names.
pub fn inspect_any(engine: &Engine, a: &InspectArgs) -> Result<()> {
    let mut out = Vec::new();
    for n in &a.names {
        let kind = a.kind.as_deref();
        if kind != Some("image") {
            if let Ok(v) = engine.inspect(n) {
                out.push(v);
                continue;
            }
        }
        if kind != Some("container") {
            if let Ok(v) = engine.inspect_image(n) {
                out.push(v);
                continue;
            }
        }
        anyhow::bail!("no such object: {n}");
    }
    match &a.format {
        // docker's -f: the template over each object, a line each.
        Some(f) if f != "json" => {
            let template = match Output::parse(f)? {
                Output::Template { template, .. } => template,
                _ => anyhow::bail!("invalid --format {f:?} for inspect: give a Go template"),
            };
            for v in &out {
                println!("{}", crate::template::render(&template, v)?);
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}

pub fn inspect(engine: &Engine, query: &str) -> Result<()> {
    let v = engine.inspect_image(query)?;
    println!("{}", serde_json::to_string_pretty(&json!([v]))?);
    Ok(())
}

pub fn info(engine: &Engine) -> Result<()> {
    let i = engine.info()?;
    println!("Containers: {}", i.containers);
    println!(" Running: {}", i.running);
    println!(" Stopped: {}", i.containers - i.running);
    println!("Images: {}", i.images);
    println!("Storage Driver: {}", i.storage_driver);
    println!(" Why: {}", i.storage_driver_why);
    println!(
        " Layers: {} EROFS images, {} directories",
        i.erofs_layers, i.directory_layers
    );
    println!(" Layer Mount Grace: {}s", i.layer_mount_grace.as_secs_f64());
    println!("Cgroup Version: {}", i.cgroup_version);
    println!("Kernel Version: {}", i.kernel);
    println!("Husk Root Dir: {}", i.root.display());
    // docker's own line for its rootless mode, with what differs from root's.
    if let Some(uid) = i.rootless_uid {
        println!("Security Options:\n rootless");
        println!(" Rootless: uid {uid} as root of a user namespace (/etc/subuid, /etc/subgid); layers as directories; networks through pasta; no cgroups, so no limits");
    }
    Ok(())
}

/// `system check`: one line per problem; fails while any is left unrepaired.
pub fn check(engine: &Engine, repair: bool) -> Result<()> {
    let r = engine.check_store(repair)?;
    println!(
        "Checked {} images, {} blobs, {} layers",
        r.images, r.blobs, r.layers
    );
    for p in &r.problems {
        let done = if p.repaired { " (repaired)" } else { "" };
        println!("{}: {}{done}", p.what, p.why);
    }
    let left = r.problems.iter().filter(|p| !p.repaired).count();
    if left > 0 {
        let hint = if repair {
            ""
        } else {
            "; --repair deals with what it can"
        };
        anyhow::bail!("the store has {left} problems{hint}");
    }
    Ok(())
}

pub fn save(engine: &Engine, a: &SaveArgs) -> Result<()> {
    let images = a
        .images
        .iter()
        .map(|q| engine.image(q))
        .collect::<husk_engine::Result<Vec<_>>>()?;
    let format = match a.format {
        ArchiveFormat::DockerArchive => archive::Format::DockerArchive,
        ArchiveFormat::OciArchive => archive::Format::OciArchive,
    };
    write_archive(a.output.as_deref(), |w| {
        engine.save(&images, format, w)?;
        Ok(())
    })
}

/// An archive to `output` (written beside it and renamed: a failure leaves no half
/// archive) or to stdout, which must not be a terminal.
pub fn write_archive(
    output: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match output {
        Some(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(std::path::Path::new(".")))
                .with_context(|| format!("cannot create a file beside {}", path.display()))?;
            let mut w = std::io::BufWriter::new(tmp.as_file());
            write(&mut w)?;
            w.flush()?;
            drop(w);
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                anyhow::bail!(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                );
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            write(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

pub fn load(engine: &Engine, a: &LoadArgs) -> Result<()> {
    // As docker load: bars on a terminal, only the "Loaded image" lines otherwise.
    let quiet = a.quiet || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let display = PullDisplay::new(quiet, false);
    let progress = |p: husk_engine::image::pull::Progress| display.event(p);
    let loaded = match &a.input {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            engine.load(std::io::BufReader::new(f), &progress)
        }
        None => engine.load(std::io::stdin().lock(), &progress),
    }
    .with_context(|| match &a.input {
        Some(p) => format!("load {}", p.display()),
        None => "load from stdin".into(),
    })?;
    for l in loaded {
        for name in &l.names {
            println!("Loaded image: {name}");
        }
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.pulled.config);
        }
    }
    Ok(())
}

pub fn login(engine: &Engine, a: &LoginArgs) -> Result<()> {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".into());
    let user = a
        .username
        .clone()
        .ok_or_else(|| anyhow::anyhow!("login needs --username"))?;
    let password = match (&a.password, a.password_stdin) {
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (None, false) => anyhow::bail!("login needs --password or --password-stdin"),
    };
    engine.login(&server, &user, &password, a.insecure)?;
    println!("Login Succeeded");
    Ok(())
}

pub fn images(engine: &Engine, a: &ImagesArgs) -> Result<()> {
    let list = engine.images()?;
    let mut out = std::io::stdout().lock();
    let id = |config: &str| {
        let hex = config.trim_start_matches("sha256:");
        if a.no_trunc {
            config.to_string()
        } else {
            hex.chars().take(12).collect()
        }
    };
    if a.quiet {
        for r in &list {
            writeln!(out, "{}", id(&r.config))?;
        }
        return Ok(());
    }
    let output = Output::parse(&a.format)?;
    if !matches!(output, Output::Table) {
        let items: Vec<serde_json::Value> = list
            .iter()
            .map(|r| {
                json!({
                    "Repository": familiar(&r.name), "Tag": r.tag.clone().unwrap_or_else(|| "<none>".into()),
                    "ID": id(&r.config), "Digest": r.manifest, "CreatedAt": r.created,
                    "CreatedSince": r.created.as_deref().map(timefmt::ago).unwrap_or_else(|| "N/A".into()),
                    "Size": human_size(r.size),
                })
            })
            .collect();
        let headers = [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("Digest", "DIGEST"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
        ];
        return write_items(&mut out, &output, &items, &headers);
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|r| {
            [
                familiar(&r.name).to_string(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
                id(&r.config),
                r.created
                    .as_deref()
                    .map(timefmt::ago)
                    .unwrap_or_else(|| "N/A".into()),
                human_size(r.size),
            ]
        })
        .collect();
    table(
        &mut out,
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        &rows,
    )
}

/// `image prune [-a]`: what no image references; with `-a` every image no container uses.
pub fn image_prune(engine: &Engine, all: bool) -> Result<()> {
    let (untagged, freed) = if all {
        engine.prune_unused_images()?
    } else {
        engine.prune_images()?
    };
    if !untagged.is_empty() {
        println!("Deleted Images:");
        for i in &untagged {
            if i.name == husk_engine::image::images::UNTAGGED {
                println!("deleted: {}", i.config);
            } else {
                println!(
                    "untagged: {}:{}",
                    familiar(&i.name),
                    i.tag.as_deref().unwrap_or("<none>")
                );
            }
        }
    }
    println!("Deleted {} blobs and {} layers", freed.blobs, freed.layers);
    println!("Total reclaimed space: {}", human_size(freed.bytes));
    Ok(())
}

/// `system df`: docker's table.
pub fn system_df(engine: &Engine) -> Result<()> {
    let du = engine.disk_usage()?;
    let row = |kind: &str, u: &husk_engine::Usage, percent: bool| {
        let pct = if percent && u.size > 0 {
            format!(" ({}%)", u.reclaimable * 100 / u.size)
        } else {
            String::new()
        };
        [
            kind.to_string(),
            u.total.to_string(),
            u.active.to_string(),
            human_size(u.size),
            format!("{}{pct}", human_size(u.reclaimable)),
        ]
    };
    let rows = [
        row("Images", &du.images, true),
        row("Containers", &du.containers, true),
        row("Local Volumes", &du.volumes, true),
    ];
    table(
        &mut std::io::stdout().lock(),
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &rows,
    )
}

/// `system prune`: stopped containers, unused networks, then (with `-a`) unused images and
/// (with `--volumes`) unused anonymous volumes, and what no image references.
pub fn system_prune(engine: &Engine, a: &husk_cli::husk::SystemPruneArgs) -> Result<()> {
    let containers = engine.prune_containers()?;
    if !containers.is_empty() {
        println!("Deleted Containers:");
        for c in &containers {
            println!("{c}");
        }
    }
    let networks = engine.prune_networks()?;
    if !networks.is_empty() {
        println!("Deleted Networks:");
        for n in &networks {
            println!("{n}");
        }
    }
    if a.volumes {
        let volumes = engine.prune_volumes(false)?;
        if !volumes.is_empty() {
            println!("Deleted Volumes:");
            for v in &volumes {
                println!("{v}");
            }
        }
    }
    image_prune(engine, a.all)
}

/// `version`: husk's, the kernel's and the cgroup layout; `--format` as docker's.
pub fn version(engine: &Engine, a: &husk_cli::husk::VersionArgs) -> Result<()> {
    let info = engine.info()?;
    let arch = husk_engine::image::manifest::Platform::host().architecture;
    let v = json!({
        "Client": {"Version": env!("CARGO_PKG_VERSION"), "Os": "linux", "Arch": arch,
                   "KernelVersion": info.kernel},
        "Server": {"Version": env!("CARGO_PKG_VERSION"), "Os": "linux", "Arch": arch,
                   "KernelVersion": info.kernel, "CgroupVersion": info.cgroup_version.to_string(),
                   "Components": [{"Name": "husk-runtime", "Version": env!("CARGO_PKG_VERSION")}]},
    });
    match a.format.as_deref() {
        Some("json") => println!("{v}"),
        Some(f) => match Output::parse(f)? {
            Output::Template { template, .. } => {
                println!("{}", crate::template::render(&template, &v)?)
            }
            _ => println!("{v}"),
        },
        None => {
            println!("Client:");
            println!(" Version:        {}", env!("CARGO_PKG_VERSION"));
            println!(" OS/Arch:        linux/{arch}");
            println!("Engine (husk-engine and husk-runtime, no daemon):");
            println!(" Version:        {}", env!("CARGO_PKG_VERSION"));
            println!(" Kernel Version: {}", info.kernel);
            println!(" Cgroup Version: {}", info.cgroup_version);
        }
    }
    Ok(())
}

/// docker's short form of a Docker Hub name: `busybox` for docker.io/library/busybox,
/// `user/app` for docker.io/user/app; other registries' names as they are.
fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// `history IMAGE`: docker's table (IMAGE, CREATED, CREATED BY, SIZE, COMMENT), newest first.
pub fn history(engine: &Engine, a: &husk_cli::husk::HistoryArgs) -> Result<()> {
    let steps = engine.history(&a.image)?;
    let mut out = std::io::stdout().lock();
    let id = |s: &husk_engine::HistoryStep| match &s.id {
        Some(config) if a.no_trunc => config.clone(),
        Some(config) => config
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect(),
        None => "<missing>".into(),
    };
    if a.quiet {
        for s in &steps {
            writeln!(out, "{}", id(s))?;
        }
        return Ok(());
    }
    let created = |s: &husk_engine::HistoryStep| match (&s.created, a.human) {
        (Some(t), true) => timefmt::ago(t),
        (Some(t), false) => t.clone(),
        (None, _) => "N/A".into(),
    };
    let size = |s: &husk_engine::HistoryStep| {
        if a.human {
            human_size(s.size)
        } else {
            s.size.to_string()
        }
    };
    let created_by = |s: &husk_engine::HistoryStep| {
        if a.no_trunc || s.created_by.chars().count() <= 45 {
            s.created_by.clone()
        } else {
            format!("{}…", s.created_by.chars().take(44).collect::<String>())
        }
    };
    let output = Output::parse(a.format.as_deref().unwrap_or(""))?;
    if !matches!(output, Output::Table) {
        let items: Vec<serde_json::Value> = steps
            .iter()
            .map(|s| {
                json!({
                    "ID": id(s), "CreatedSince": created(s), "CreatedAt": s.created,
                    "CreatedBy": created_by(s), "Size": size(s), "Comment": s.comment,
                })
            })
            .collect();
        let headers = [
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ];
        return write_items(&mut out, &output, &items, &headers);
    }
    let rows: Vec<[String; 5]> = steps
        .iter()
        .map(|s| [id(s), created(s), created_by(s), size(s), s.comment.clone()])
        .collect();
    table(
        &mut out,
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    )
}

/// `import FILE|- NAME[:TAG]`: prints the new image's id, as docker does.
pub fn import(engine: &Engine, a: &husk_cli::husk::ImportArgs) -> Result<()> {
    let reference = a.reference.as_deref().map(Reference::parse).transpose()?;
    let reference = reference.as_ref();
    let id = if a.file == "-" {
        engine.import(std::io::stdin().lock(), reference, &a.change, &a.message)?
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?;
        engine.import(f, reference, &a.change, &a.message)?
    };
    println!("{id}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hub_names_are_shown_short() {
        assert_eq!(super::familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(super::familiar("docker.io/me/app"), "me/app");
        assert_eq!(super::familiar("ghcr.io/me/app"), "ghcr.io/me/app");
    }
}
