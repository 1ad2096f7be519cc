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
    /// Run a command in a new container (foreground, --rm)
    Run(Box<RunArgs>),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove images (and the layers no other image uses)
    Rmi(RmiArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Write images to a tar archive (docker-archive or OCI layout)
    Save(SaveArgs),
    /// Read images from a tar archive made by save, docker save, podman save or skopeo
    Load(LoadArgs),
    /// Store credentials for a registry (docker's config.json)
    Login(LoginArgs),
    /// Forget the credentials of a registry
    Logout(LogoutArgs),
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images (references or ID prefixes)
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    Ls(ImagesArgs),
    /// Remove images
    Rm(RmiArgs),
    /// Remove blobs and layers no image uses
    Prune,
    /// Print an image's record and config as JSON
    Inspect(ImageRef),
    /// Mount an image read-only and print where
    Mount(ImageRef),
    /// Unmount an image mounted with `image mount`
    Unmount(ImageRef),
    /// Write images to a tar archive
    Save(SaveArgs),
    /// Read images from a tar archive
    Load(LoadArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// docker's manifest.json beside an OCI layout (what docker save writes since 25.0)
    DockerArchive,
    /// An OCI image layout
    OciArchive,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ArchiveFormat::DockerArchive)]
    pub format: ArchiveFormat,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of stdin
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print only the loaded image names
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImageRef {
    pub image: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host[:port]; docker.io when omitted
    pub server: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Use plain HTTP for this registry
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    None,
    Host,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits (required for now: container records are not built yet)
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to copy it from husk's environment)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User as UID[:GID] or a name from the image's /etc/passwd
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network mode
    #[arg(long, value_enum, default_value_t = NetworkMode::None)]
    pub network: NetworkMode,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (bytes, or with a k, m or g suffix)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs (fractions allowed)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open
    #[arg(short, long)]
    pub interactive: bool,
    /// Bind mount a volume (HOST:CONTAINER[:ro])
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// When to pull the image
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// os/arch[/variant] of the image to pull
    #[arg(long)]
    pub platform: Option<String>,
    /// Image to run
    pub image: String,
    /// Command and arguments (instead of the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
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
