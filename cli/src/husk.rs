//! The `husk` command tree: docker's names, flags and meanings where they overlap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_ROOT: &str = "/var/lib/husk";

#[derive(Debug, Parser)]
#[command(
    name = "husk",
    version,
    about = "A lightweight, daemonless, Docker-like container runtime"
)]
pub struct HuskCli {
    /// Where images, layers and containers are stored
    #[arg(long, global = true, env = "HUSK_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: HuskCommand,
}

#[derive(Debug, Subcommand)]
pub enum HuskCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// List images
    Images(ImagesArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference (busybox, host:port/repo:tag, repo@sha256:...)
    pub image: String,
    /// Print only the image reference
    #[arg(short, long)]
    pub quiet: bool,
    /// os/arch[/variant] to pull from a multi-platform image (default: this host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Use plain HTTP for this registry (loopback registries use it by default)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}
