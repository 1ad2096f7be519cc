//! `husk`: the docker-like command line over husk-engine. It parses flags (husk-cli's clap
//! definitions), turns them into engine options, calls the engine, and prints what comes back
//! as docker does: tables, JSON, progress, and docker's exit codes. No container logic lives
//! here.

mod containers;
mod docs;
mod events;
mod images;
mod networks;
mod progress;
mod table;
mod template;
mod timefmt;
mod units;

use clap::Parser;

use husk_cli::husk::{
    ContainerCommand, GenerateCommand, HuskCli, HuskCommand, ImageCommand, SystemCommand,
};
use husk_engine::image::Reference;
use husk_engine::{Config, Engine};

fn main() {
    // Nothing husk's caller left open may reach a container or its monitor: not as an fd, and
    // not as a cwd through /proc/self/fd/N (CVE-2024-21626). husk opens its own fds later.
    // SAFETY: close_range on fds this process does not use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let cli = parse_cli();
    // What needs no store: the completion scripts and the man pages.
    match &cli.command {
        HuskCommand::Completion { shell } => std::process::exit(docs::completion(*shell)),
        HuskCommand::ManPages { dir } => std::process::exit(docs::man_pages(dir)),
        _ => {}
    }
    let config = match store_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("husk: {e}");
            std::process::exit(125);
        }
    };
    if let HuskCommand::ReapLayerMounts { layers } = &cli.command {
        // Started with the root already canonical; a store deleted meanwhile stays deleted.
        let code = match Engine::open(config).and_then(|e| e.reap_layer_mounts(layers)) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        std::process::exit(code);
    }
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("husk: {e}");
            std::process::exit(125);
        }
    };
    let e = &engine;
    let result = match &cli.command {
        HuskCommand::Pull(a) => images::pull(e, a),
        HuskCommand::Push(a) => images::push(e, a),
        HuskCommand::Commit(a) => images::commit(e, a),
        HuskCommand::Build(a) => images::build(e, a),
        HuskCommand::Images(a) | HuskCommand::Image(ImageCommand::Ls(a)) => images::images(e, a),
        HuskCommand::Tag(a) => Reference::parse(&a.target)
            .map_err(Into::into)
            .and_then(|t| e.tag(&a.source, &t).map_err(Into::into)),
        HuskCommand::Rmi(a) | HuskCommand::Image(ImageCommand::Rm(a)) => {
            images::rmi(e, &a.images, a.force)
        }
        HuskCommand::Image(ImageCommand::Prune(a)) => images::image_prune(e, a.all),
        HuskCommand::Image(ImageCommand::Inspect(a)) => images::inspect(e, &a.image),
        HuskCommand::Image(ImageCommand::Mount(a)) => e
            .mount_image(&a.image)
            .map(|mp| println!("{}", mp.display()))
            .map_err(Into::into),
        HuskCommand::Image(ImageCommand::Unmount(a)) => e
            .unmount_image(&a.image)
            .map(|id| println!("{id}"))
            .map_err(Into::into),
        HuskCommand::Save(a) | HuskCommand::Image(ImageCommand::Save(a)) => images::save(e, a),
        HuskCommand::Load(a) | HuskCommand::Image(ImageCommand::Load(a)) => images::load(e, a),
        HuskCommand::Login(a) => images::login(e, a),
        HuskCommand::Logout(a) => {
            let server = a.server.clone().unwrap_or_else(|| "docker.io".into());
            match e.logout(&server) {
                Ok(true) => {
                    println!("Removing login credentials for {server}");
                    Ok(())
                }
                Ok(false) => Err(anyhow::anyhow!("not logged in to {server}")),
                Err(e) => Err(e.into()),
            }
        }
        HuskCommand::Run(a) | HuskCommand::Container(ContainerCommand::Run(a)) => {
            containers::run(e, a)
        }
        HuskCommand::Create(a) | HuskCommand::Container(ContainerCommand::Create(a)) => {
            containers::create(e, a)
        }
        HuskCommand::Ps(a) | HuskCommand::Container(ContainerCommand::Ls(a)) => {
            containers::ps(e, a)
        }
        HuskCommand::Logs(a) | HuskCommand::Container(ContainerCommand::Logs(a)) => {
            containers::logs(e, a)
        }
        HuskCommand::Exec(a) => containers::exec(e, a),
        HuskCommand::Start(a) | HuskCommand::Container(ContainerCommand::Start(a)) => {
            containers::start(e, a)
        }
        HuskCommand::Stop(a) | HuskCommand::Container(ContainerCommand::Stop(a)) => {
            containers::stop(e, a)
        }
        HuskCommand::Restart(a) => containers::restart(e, a),
        HuskCommand::Rename(a) => e.rename(&a.container, &a.new_name).map_err(Into::into),
        HuskCommand::Update(a) => containers::update(e, a),
        HuskCommand::Pause(a) => containers::each(&a.containers, |q| {
            e.pause(q)?;
            println!("{q}");
            Ok(())
        }),
        HuskCommand::Unpause(a) => containers::each(&a.containers, |q| {
            e.unpause(q)?;
            println!("{q}");
            Ok(())
        }),
        HuskCommand::Kill(a) | HuskCommand::Container(ContainerCommand::Kill(a)) => {
            containers::kill(e, a)
        }
        HuskCommand::Rm(a) | HuskCommand::Container(ContainerCommand::Rm(a)) => {
            containers::rm(e, a)
        }
        HuskCommand::Wait(a) | HuskCommand::Container(ContainerCommand::Wait(a)) => {
            containers::wait(e, &a.containers)
        }
        HuskCommand::Inspect(a) => images::inspect_any(e, a),
        HuskCommand::Container(ContainerCommand::Inspect(a)) => {
            containers::inspect(e, &a.containers)
        }
        HuskCommand::Top(a) => containers::top(e, &a.container),
        HuskCommand::Stats(a) => containers::stats(e, a),
        HuskCommand::Container(ContainerCommand::Prune(_)) => containers::container_prune(e),
        HuskCommand::Volume(v) => containers::volume(e, v),
        HuskCommand::Network(n) => networks::network(e, n),
        HuskCommand::Port(a) => networks::port(e, a),
        HuskCommand::Cp(a) => containers::cp(e, a),
        HuskCommand::Info | HuskCommand::System(SystemCommand::Info) => images::info(e),
        HuskCommand::System(SystemCommand::Check(a)) => images::check(e, a.repair),
        HuskCommand::System(SystemCommand::Df) => images::system_df(e),
        HuskCommand::System(SystemCommand::Migrate) => e
            .migrate()
            .map(|pid| match pid {
                Some(pid) => println!("husk-pause {pid} ended: the next command maps /etc/subuid and /etc/subgid afresh"),
                None => println!("no husk-pause process was running"),
            })
            .map_err(Into::into),
        HuskCommand::System(SystemCommand::Prune(a)) => images::system_prune(e, a),
        HuskCommand::Version(a) => images::version(e, a),
        HuskCommand::Generate(GenerateCommand::Systemd(a)) => units::systemd(e, a),
        HuskCommand::History(a) | HuskCommand::Image(ImageCommand::History(a)) => {
            images::history(e, a)
        }
        HuskCommand::Diff(a) => containers::diff(e, &a.container),
        HuskCommand::Attach(a) => containers::attach(e, a),
        HuskCommand::Export(a) => containers::export(e, a),
        HuskCommand::Import(a) | HuskCommand::Image(ImageCommand::Import(a)) => {
            images::import(e, a)
        }
        HuskCommand::Events(a) | HuskCommand::System(SystemCommand::Events(a)) => {
            events::events(e, a)
        }
        HuskCommand::ReapLayerMounts { .. }
        | HuskCommand::Completion { .. }
        | HuskCommand::ManPages { .. } => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("husk: {e:#}");
        std::process::exit(1);
    }
}

/// The command line, or docker's answer to a bad one: the problem in one line, where to read
/// more, exit 125 (clap's own would be several lines, a tip, exit 2).
fn parse_cli() -> HuskCli {
    let e = match HuskCli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = command_path(&args);
    let line = match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(a))) if a.starts_with('-') => {
            format!("unknown flag: {}", a.split('=').next().unwrap_or(a))
        }
        // clap's text without its usage, tip and help lines, on one line.
        _ => e
            .render()
            .to_string()
            .lines()
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("Usage:")
                    && !l.starts_with("tip:")
                    && !l.starts_with("For more information")
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    eprintln!("husk: {line}");
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("{path} ")
    };
    eprintln!("See 'husk {path}--help'.");
    std::process::exit(125)
}

/// The store this command works on. A user without root first joins its user namespace (see
/// husk_engine::rootless) and works on its own store, live state and config file.
fn store_config(cli: &HuskCli) -> Result<Config, husk_engine::rootless::RootlessError> {
    use husk_engine::rootless;
    let mut config = Config {
        root: cli
            .root
            .clone()
            .unwrap_or_else(|| husk_engine::DEFAULT_ROOT.into()),
        storage_driver: cli.storage_driver.clone(),
        // This binary is the reaper of idle layer mounts (`reap-layer-mounts`).
        layer_reaper: Some("/proc/self/exe".into()),
        live_dir: None,
    };
    let Some(uid) = rootless::rootless_uid() else {
        return Ok(config);
    };
    let dirs = rootless::user_dirs(uid)?;
    rootless::enter(&dirs)?;
    // The store is the user's alone: no other user reads its images or containers.
    rootless::private_dir(&dirs.data)?;
    if std::env::var_os("HUSK_CONFIG").is_none() {
        std::env::set_var("HUSK_CONFIG", &dirs.config);
    }
    let same = |a: &std::path::Path, b: &std::path::Path| {
        a == b
            || std::fs::canonicalize(a)
                .is_ok_and(|c| std::fs::canonicalize(b).is_ok_and(|d| c == d))
    };
    match &cli.root {
        Some(r) if !same(r, &dirs.data) => {}
        _ => {
            config.root = dirs.data.clone();
            config.live_dir = Some(dirs.live);
        }
    }
    Ok(config)
}

/// The subcommands `args` name (`run`, `network create`), past the global flags.
fn command_path(args: &[String]) -> String {
    use clap::CommandFactory;
    let mut cmd = HuskCli::command();
    let mut path = Vec::new();
    let mut words = args.iter();
    while let Some(w) = words.next() {
        if w == "--root" || w == "--storage-driver" {
            words.next();
            continue;
        }
        if w.starts_with('-') {
            continue;
        }
        let Some(sub) = cmd
            .get_subcommands()
            .find(|s| s.get_name() == w || s.get_all_aliases().any(|a| a == w))
            .cloned()
        else {
            break;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    path.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_command_line_names_the_command_to_read_about() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::command_path(&args(&["run", "--x", "img"])), "run");
        assert_eq!(
            super::command_path(&args(&[
                "--root", "network", "network", "create", "--bogus"
            ])),
            "network create"
        );
        assert_eq!(
            super::command_path(&args(&["container", "ls", "-z"])),
            "container ls"
        );
    }

    #[test]
    fn the_command_line_and_the_engine_agree_on_the_default_root() {
        assert_eq!(husk_cli::husk::DEFAULT_ROOT, husk_engine::DEFAULT_ROOT);
    }
}
