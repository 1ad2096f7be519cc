//! `husk`: the docker-like command line. The image commands go to husk-image; `run` builds an
//! OCI spec from the image and the flags (`run`), containers are records (`containers`) run
//! by a monitor (`monitor`) through husk-runtime's library, with json-file logs (`logs`),
//! volumes (`volumes`) and the rest of docker's container commands (`commands`).

mod commands;
mod containers;
mod logs;
mod monitor;
mod progress;
mod reaper;
mod run;
mod security;
mod timefmt;
mod volumes;

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

use husk_cli::husk::{
    ArchiveFormat, ContainerCommand, Format, HuskCli, HuskCommand, ImageCommand, ImagesArgs,
    InspectArgs, LoadArgs, LoginArgs, PullArgs, SaveArgs, SystemCommand,
};
use husk_image::manifest::Platform;
use husk_image::registry::Options;
use husk_image::Reference;

fn main() {
    // Nothing husk's caller left open may reach a container or its monitor: not as an fd, and
    // not as a cwd through /proc/self/fd/N (CVE-2024-21626). husk opens its own fds later.
    // SAFETY: close_range on fds this process does not use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let mut cli = HuskCli::parse();
    if let HuskCommand::ReapLayerMounts { layers } = &cli.command {
        // Started with the root already canonical; a store deleted meanwhile stays deleted.
        let code = match reaper::reap(&cli.root, layers) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        std::process::exit(code);
    }
    // Read now: the monitor of `run -d` leaves for / before it first needs the config, and a
    // relative $HUSK_CONFIG means the caller's directory.
    husk_image::config::preload();
    // One spelling of the root everywhere, so mount points compare equal to /proc's.
    if std::fs::create_dir_all(&cli.root).is_ok() {
        if let Ok(c) = std::fs::canonicalize(&cli.root) {
            cli.root = c;
        }
    }
    if let Some(d) = &cli.storage_driver {
        husk_image::snapshot::request(d);
    }
    let result = match &cli.command {
        HuskCommand::Pull(a) => pull(&cli, a),
        HuskCommand::Images(a) | HuskCommand::Image(ImageCommand::Ls(a)) => images(&cli, a),
        HuskCommand::Tag(a) => Reference::parse(&a.target)
            .map_err(Into::into)
            .and_then(|t| husk_image::images::tag(&cli.root, &a.source, &t).map_err(Into::into)),
        HuskCommand::Rmi(a) | HuskCommand::Image(ImageCommand::Rm(a)) => rmi(&cli, &a.images),
        HuskCommand::Image(ImageCommand::Prune) => husk_image::images::gc(&cli.root)
            .map_err(Into::into)
            .map(|r| {
                println!("Deleted {} blobs and {} layers", r.blobs, r.layers);
                println!("Total reclaimed space: {}", human_size(r.bytes));
            }),
        HuskCommand::Image(ImageCommand::Inspect(a)) => inspect(&cli, &a.image),
        HuskCommand::Image(ImageCommand::Mount(a)) => image_mount(&cli, &a.image),
        HuskCommand::Image(ImageCommand::Unmount(a)) => image_unmount(&cli, &a.image),
        HuskCommand::Save(a) | HuskCommand::Image(ImageCommand::Save(a)) => save(&cli, a),
        HuskCommand::Load(a) | HuskCommand::Image(ImageCommand::Load(a)) => load(&cli, a),
        HuskCommand::Login(a) => login(a),
        HuskCommand::Logout(a) => {
            let server = a.server.clone().unwrap_or_else(|| "docker.io".into());
            match husk_image::auth::remove(&server) {
                Ok(true) => {
                    println!("Removing login credentials for {server}");
                    Ok(())
                }
                Ok(false) => Err(anyhow::anyhow!("not logged in to {server}")),
                Err(e) => Err(e.into()),
            }
        }
        // run exits with the container's code, or docker's 125/126/127 when husk fails.
        HuskCommand::Run(a) | HuskCommand::Container(ContainerCommand::Run(a)) => {
            match run::run(&cli.root, a) {
                run::Outcome::Exited(code) => std::process::exit(code),
                run::Outcome::Failed(code, e) => {
                    eprintln!("husk: {e:#}");
                    std::process::exit(code)
                }
            }
        }
        HuskCommand::Ps(a) | HuskCommand::Container(ContainerCommand::Ls(a)) => {
            commands::ps(&cli.root, a)
        }
        HuskCommand::Logs(a) | HuskCommand::Container(ContainerCommand::Logs(a)) => {
            logs::logs(&cli.root, a)
        }
        HuskCommand::Exec(a) => match commands::exec(&cli.root, a) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("husk: {e:#}");
                std::process::exit(run::exit_code_of(&e))
            }
        },
        HuskCommand::Start(a) | HuskCommand::Container(ContainerCommand::Start(a)) => {
            match commands::start(&cli.root, a) {
                Ok(code) => std::process::exit(code),
                Err(e) => Err(e),
            }
        }
        HuskCommand::Stop(a) | HuskCommand::Container(ContainerCommand::Stop(a)) => {
            commands::stop(&cli.root, a)
        }
        HuskCommand::Restart(a) => commands::restart(&cli.root, a),
        HuskCommand::Kill(a) | HuskCommand::Container(ContainerCommand::Kill(a)) => {
            commands::kill(&cli.root, a)
        }
        HuskCommand::Rm(a) | HuskCommand::Container(ContainerCommand::Rm(a)) => {
            commands::rm(&cli.root, a)
        }
        HuskCommand::Wait(a) | HuskCommand::Container(ContainerCommand::Wait(a)) => {
            commands::wait(&cli.root, &a.containers)
        }
        HuskCommand::Inspect(a) => inspect_any(&cli, a),
        HuskCommand::Container(ContainerCommand::Inspect(a)) => {
            containers::inspect(&cli.root, &a.containers)
        }
        HuskCommand::Top(a) => commands::top(&cli.root, &a.container),
        HuskCommand::Stats(a) => commands::stats(&cli.root, a),
        HuskCommand::Container(ContainerCommand::Prune(_)) => commands::container_prune(&cli.root),
        HuskCommand::Volume(v) => commands::volume(&cli.root, v),
        HuskCommand::Info | HuskCommand::System(SystemCommand::Info) => info(&cli),
        HuskCommand::ReapLayerMounts { .. } => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("husk: {e:#}");
        std::process::exit(1);
    }
}

fn pull(cli: &HuskCli, a: &PullArgs) -> Result<()> {
    let reference = Reference::parse(&a.image)?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let opts = Options {
        insecure: a.insecure,
        credentials: None,
    };
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(
            out,
            "{}: Pulling from {}",
            reference.tag.as_deref().unwrap_or("latest"),
            reference.repository
        )?;
    }
    drop(out);
    let _adding = husk_image::store::Store::open(&cli.root)?.adding()?;
    let display = progress::PullDisplay::new(a.quiet, false);
    let pulled =
        husk_image::pull::pull_with_progress(&cli.root, &reference, &platform, &opts, &|p| {
            display.event(p)
        })
        .with_context(|| format!("pull {reference}"))?;
    let new = husk_image::images::record(&cli.root, &reference, &pulled)?;
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(out, "Digest: {}", pulled.manifest)?;
        if new {
            writeln!(out, "Status: Downloaded newer image for {reference}")?;
        } else {
            writeln!(out, "Status: Image is up to date for {reference}")?;
        }
    }
    writeln!(out, "{reference}")?;
    Ok(())
}

fn one_image(cli: &HuskCli, query: &str) -> Result<husk_image::images::ImageRecord> {
    husk_image::images::find(&cli.root, query)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no such image: {query}"))
}

/// What uses an image: a running `husk run` container or an `image mount`.
fn image_user(root: &std::path::Path, r: &husk_image::images::ImageRecord) -> Option<String> {
    if let Ok(rd) = std::fs::read_dir(root.join("containers")) {
        for e in rd.flatten() {
            if std::fs::read_to_string(e.path().join("image"))
                .ok()
                .as_deref()
                == Some(r.config.as_str())
            {
                return Some(format!("container {}", e.file_name().to_string_lossy()));
            }
        }
    }
    let mp = husk_image::snapshot::image_mount_point(root, &r.config);
    is_mounted(&mp).then(|| format!("image mount {}", mp.display()))
}

fn is_mounted(p: &std::path::Path) -> bool {
    husk_sys::is_mount_point(p)
}

fn rmi(cli: &HuskCli, images: &[String]) -> Result<()> {
    let root = cli.root.clone();
    for q in images {
        let (removed, freed) = husk_image::images::remove(&cli.root, q, &|r| image_user(&root, r))?;
        for r in removed {
            println!(
                "Untagged: {}:{}",
                r.name,
                r.tag.as_deref().unwrap_or("<none>")
            );
        }
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
fn inspect_any(cli: &HuskCli, a: &InspectArgs) -> Result<()> {
    let mut out = Vec::new();
    for n in &a.names {
        let kind = a.kind.as_deref();
        if kind != Some("image") {
            if let Ok(c) = containers::find(&cli.root, n) {
                out.push(commands::inspect_value(&cli.root, &c));
                continue;
            }
        }
        if kind != Some("container") {
            if let Ok(v) = image_value(cli, n) {
                out.push(v);
                continue;
            }
        }
        anyhow::bail!("no such object: {n}");
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn inspect(cli: &HuskCli, query: &str) -> Result<()> {
    let v = image_value(cli, query)?;
    println!("{}", serde_json::to_string_pretty(&json!([v]))?);
    Ok(())
}

fn image_value(cli: &HuskCli, query: &str) -> Result<serde_json::Value> {
    let r = one_image(cli, query)?;
    let store = husk_image::store::Store::open(&cli.root)?;
    let config: serde_json::Value =
        serde_json::from_reader(store.open_blob(&husk_image::Digest::parse(&r.config)?)?)?;
    Ok(json!({
        "Id": r.config, "RepoTags": [format!("{}:{}", r.name, r.tag.clone().unwrap_or_else(|| "<none>".into()))],
        "RepoDigests": [format!("{}@{}", r.name, r.manifest)], "Created": r.created, "Size": r.size,
        "Architecture": config["architecture"], "Os": config["os"], "Config": config["config"],
        "RootFS": {"Type": "layers", "Layers": r.diff_ids}
    }))
}

fn image_mount(cli: &HuskCli, query: &str) -> Result<()> {
    let r = one_image(cli, query)?;
    let mp = husk_image::snapshot::image_mount_point(&cli.root, &r.config);
    if !is_mounted(&mp) {
        std::fs::create_dir_all(&mp)?;
        let diff_ids: Vec<husk_image::Digest> = r
            .diff_ids
            .iter()
            .map(|d| husk_image::Digest::parse(d))
            .collect::<husk_image::Result<_>>()?;
        husk_image::snapshot::mount(&cli.root, &diff_ids, None, &mp)?;
    }
    println!("{}", mp.display());
    Ok(())
}

fn image_unmount(cli: &HuskCli, query: &str) -> Result<()> {
    let r = one_image(cli, query)?;
    let mp = husk_image::snapshot::image_mount_point(&cli.root, &r.config);
    if !is_mounted(&mp) {
        anyhow::bail!("image {query} is not mounted");
    }
    husk_image::snapshot::unmount(&mp)?;
    let _ = std::fs::remove_dir(&mp);
    let diff_ids: Vec<husk_image::Digest> = r
        .diff_ids
        .iter()
        .filter_map(|d| husk_image::Digest::parse(d).ok())
        .collect();
    crate::reaper::release_layers(&cli.root, &diff_ids);
    println!("{}", r.config.trim_start_matches("sha256:"));
    Ok(())
}

fn info(cli: &HuskCli) -> Result<()> {
    let (driver, why) = husk_image::snapshot::choose(&cli.root)?;
    let images = husk_image::images::list(&cli.root)?.len();
    let all = containers::list(&cli.root)?;
    let running = all
        .iter()
        .filter(|c| c.observed().status == containers::Status::Running)
        .count();
    let (mut dirs, mut erofs) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(cli.root.join("layers")) {
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
    let cgroups = match husk_runtime::cgroups::detect() {
        husk_runtime::cgroups::Version::V1 => "1",
        husk_runtime::cgroups::Version::V2 => "2",
    };
    println!("Containers: {}", all.len());
    println!(" Running: {running}");
    println!(" Stopped: {}", all.len() - running);
    println!("Images: {images}");
    println!("Storage Driver: {}", driver.name());
    println!(" Why: {why}");
    println!(" Layers: {erofs} EROFS images, {dirs} directories");
    println!(
        " Layer Mount Grace: {}s",
        husk_image::snapshot::mount_grace()?.as_secs_f64()
    );
    println!("Cgroup Version: {cgroups}");
    println!(
        "Kernel Version: {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!("Husk Root Dir: {}", cli.root.display());
    Ok(())
}

fn save(cli: &HuskCli, a: &SaveArgs) -> Result<()> {
    let images = a
        .images
        .iter()
        .map(|q| one_image(cli, q))
        .collect::<Result<Vec<_>>>()?;
    let format = match a.format {
        ArchiveFormat::DockerArchive => husk_image::archive::Format::DockerArchive,
        ArchiveFormat::OciArchive => husk_image::archive::Format::OciArchive,
    };
    match &a.output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves no half archive.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(std::path::Path::new(".")))
                .with_context(|| format!("cannot create a file beside {}", path.display()))?;
            husk_image::archive::save(
                &cli.root,
                &images,
                format,
                std::io::BufWriter::new(tmp.as_file()),
            )?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                anyhow::bail!(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                );
            }
            husk_image::archive::save(&cli.root, &images, format, std::io::stdout().lock())?;
        }
    }
    Ok(())
}

fn load(cli: &HuskCli, a: &LoadArgs) -> Result<()> {
    // As docker load: bars on a terminal, only the "Loaded image" lines otherwise.
    let quiet = a.quiet || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let display = progress::PullDisplay::new(quiet, false);
    let progress = |p: husk_image::pull::Progress| display.event(p);
    let _adding = husk_image::store::Store::open(&cli.root)?.adding()?;
    let loaded = match &a.input {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            husk_image::archive::load(&cli.root, std::io::BufReader::new(f), &progress)
        }
        None => husk_image::archive::load(&cli.root, std::io::stdin().lock(), &progress),
    }
    .with_context(|| match &a.input {
        Some(p) => format!("load {}", p.display()),
        None => "load from stdin".into(),
    })?;
    for l in loaded {
        for name in &l.names {
            husk_image::images::record(&cli.root, name, &l.pulled)?;
            println!("Loaded image: {name}");
        }
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.pulled.config);
        }
    }
    Ok(())
}

fn login(a: &LoginArgs) -> Result<()> {
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
    let opts = Options {
        insecure: a.insecure,
        credentials: Some((user.clone(), password.clone())),
    };
    husk_image::registry::Registry::check_login(&server, &opts)?;
    husk_image::auth::store(&server, &user, &password)?;
    println!("Login Succeeded");
    Ok(())
}

fn human_size(b: u64) -> String {
    human_bytes(b, false)
}

/// Sizes as docker prints them: decimal with up to three decimals (`images`: "1.5MB"), or
/// binary with two (`stats`: "1.50MiB").
fn human_bytes(b: u64, binary: bool) -> String {
    let (base, units) = if binary {
        (1024.0, ["B", "KiB", "MiB", "GiB", "TiB"])
    } else {
        (1000.0, ["B", "kB", "MB", "GB", "TB"])
    };
    let mut v = b as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else if binary {
        format!("{v:.2}{}", units[i])
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

fn images(cli: &HuskCli, a: &ImagesArgs) -> Result<()> {
    let list = husk_image::images::list(&cli.root)?;
    let mut out = std::io::stdout().lock();
    let id = |config: &str| {
        let hex = config.trim_start_matches("sha256:");
        if a.no_trunc {
            config.to_string()
        } else {
            hex.chars().take(12).collect()
        }
    };
    if a.format == Format::Json {
        for r in &list {
            let v = serde_json::json!({
                "Repository": r.name, "Tag": r.tag.clone().unwrap_or_else(|| "<none>".into()),
                "ID": id(&r.config), "Digest": r.manifest, "CreatedAt": r.created, "Size": human_size(r.size)
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    if a.quiet {
        for r in &list {
            writeln!(out, "{}", id(&r.config))?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|r| {
            [
                r.name.clone(),
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
    let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
    let mut w = header.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            } else {
                s.push_str(c);
            }
        }
        s
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]))?;
    }
    Ok(())
}
