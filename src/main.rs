//! `husk`: the docker-like command line over husk-engine. It parses flags (husk-cli's clap
//! definitions), turns them into engine options, calls the engine, and prints what comes back
//! as docker does: tables, JSON, progress, and docker's exit codes. No container logic lives
//! here.

mod containers;
mod images;
mod networks;
mod progress;
mod table;
mod timefmt;

use clap::Parser;

use husk_cli::husk::{ContainerCommand, HuskCli, HuskCommand, ImageCommand, SystemCommand};
use husk_engine::image::Reference;
use husk_engine::{Config, Engine};

use crate::table::human_size;

fn main() {
    // Nothing husk's caller left open may reach a container or its monitor: not as an fd, and
    // not as a cwd through /proc/self/fd/N (CVE-2024-21626). husk opens its own fds later.
    // SAFETY: close_range on fds this process does not use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let cli = HuskCli::parse();
    let config = Config {
        root: cli.root.clone(),
        storage_driver: cli.storage_driver.clone(),
        // This binary is the reaper of idle layer mounts (`reap-layer-mounts`).
        layer_reaper: Some("/proc/self/exe".into()),
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
        HuskCommand::Images(a) | HuskCommand::Image(ImageCommand::Ls(a)) => images::images(e, a),
        HuskCommand::Tag(a) => Reference::parse(&a.target)
            .map_err(Into::into)
            .and_then(|t| e.tag(&a.source, &t).map_err(Into::into)),
        HuskCommand::Rmi(a) | HuskCommand::Image(ImageCommand::Rm(a)) => images::rmi(e, &a.images),
        HuskCommand::Image(ImageCommand::Prune) => e.prune_images().map_err(Into::into).map(|r| {
            println!("Deleted {} blobs and {} layers", r.blobs, r.layers);
            println!("Total reclaimed space: {}", human_size(r.bytes));
        }),
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
        HuskCommand::Info | HuskCommand::System(SystemCommand::Info) => images::info(e),
        HuskCommand::System(SystemCommand::Check(a)) => images::check(e, a.repair),
        HuskCommand::ReapLayerMounts { .. } => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("husk: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_and_the_engine_agree_on_the_default_root() {
        assert_eq!(husk_cli::husk::DEFAULT_ROOT, husk_engine::DEFAULT_ROOT);
    }
}
