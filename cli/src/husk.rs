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
    /// Where images, layers and containers are stored [default: /var/lib/husk; for a user
    /// without root, ~/.local/share/husk]
    #[arg(long, global = true, env = "HUSK_ROOT")]
    pub root: Option<PathBuf>,
    /// How layers are stored: auto (EROFS where the kernel mounts EROFS files), overlay
    /// (unpacked directories) or erofs
    #[arg(long, global = true, env = "HUSK_STORAGE_DRIVER")]
    pub storage_driver: Option<String>,
    #[command(subcommand)]
    pub command: HuskCommand,
}

#[derive(Debug, Subcommand)]
pub enum HuskCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to its registry (only the blobs the repository lacks)
    Push(PushArgs),
    /// Make an image of a container's changes
    Commit(CommitArgs),
    /// Build an image from a Dockerfile and a context directory (`-` for a tar on stdin)
    Build(BuildArgs),
    /// List images
    Images(ImagesArgs),
    /// Run a command in a new container
    Run(Box<RunArgs>),
    /// Create a new container without starting it (run's flags; -d is meaningless here)
    Create(Box<RunArgs>),
    /// List containers
    #[command(alias = "ls")]
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Start stopped containers
    Start(StartArgs),
    /// Stop running containers (the stop signal, then SIGKILL after the timeout)
    Stop(StopArgs),
    /// Restart containers
    Restart(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Give a container a new name
    Rename(RenameArgs),
    /// Change the limits of containers (at once when they run)
    Update(UpdateArgs),
    /// Freeze every process of containers
    Pause(ContainersArgs),
    /// Thaw paused containers
    Unpause(ContainersArgs),
    /// Remove containers
    Rm(RmArgs),
    /// Block until containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Low-level information on containers or images, as JSON
    Inspect(InspectArgs),
    /// The processes of a container
    Top(TopArgs),
    /// Resource usage of containers (from their cgroups)
    Stats(StatsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// List a container's published ports, or the host address of one
    Port(PortArgs),
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
    /// How this store works: root, storage driver and why, counts
    Info,
    /// System-wide information
    #[command(subcommand)]
    System(SystemCommand),
    /// husk's version, the kernel's and the cgroup layout
    Version(VersionArgs),
    /// How an image was made, newest step first
    History(HistoryArgs),
    /// Join this terminal to a running container's output (and stdin, with -i); ctrl-p
    /// ctrl-q leaves it running
    Attach(AttachArgs),
    /// The files a container changed in its image: A added, C changed, D deleted
    Diff(ContainerArg),
    /// A container's file system (without its volumes) as a tar archive
    Export(ExportArgs),
    /// Make a one-layer image of a file system tarball (as export writes)
    Import(ImportArgs),
    /// What containers, images, networks and volumes went through, from the store's journal
    /// (new ones as they come, until --until)
    Events(EventsArgs),
    /// Forget the credentials of a registry
    Logout(LogoutArgs),
    /// Copy files between a container and the host: CONTAINER:SRC DEST or SRC CONTAINER:DEST
    /// (`-` for a tar stream on stdin or stdout)
    Cp(CpArgs),
    /// Write systemd units: one that starts a container at boot, or (--boot) one that runs
    /// `start --all`
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Print a shell completion script: bash, zsh or fish
    Completion {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write husk's man pages (husk.1, husk-run.1, …) into a directory
    ManPages {
        /// Where to write them (made if missing), e.g. /usr/local/share/man/man1
        dir: PathBuf,
    },
    /// Internal: unmount these layers' EROFS mounts once they have been idle for the grace
    /// period (started by the last user of a layer)
    #[command(hide = true)]
    ReapLayerMounts {
        /// Layer diff_ids
        layers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// A systemd unit on stdout (or in --files' directory)
    Systemd(GenerateSystemdArgs),
}

#[derive(Debug, Args)]
pub struct GenerateSystemdArgs {
    /// A unit for the whole store: `husk start --all` at boot (every container its restart
    /// policy runs)
    #[arg(long, conflicts_with = "container")]
    pub boot: bool,
    /// Write the unit into this directory (container-NAME.service, or husk-restart.service
    /// with --boot) instead of stdout, e.g. /etc/systemd/system
    #[arg(long, value_name = "DIR")]
    pub files: Option<PathBuf>,
    /// The container the unit starts and stops
    #[arg(required_unless_present = "boot")]
    pub container: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(PsArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Remove containers
    Rm(RmArgs),
    /// Low-level information on containers, as JSON
    Inspect(ContainersArgs),
    /// Run a command in a new container
    Run(Box<RunArgs>),
    /// Create a new container without starting it
    Create(Box<RunArgs>),
    /// Start stopped containers
    Start(StartArgs),
    /// Stop running containers
    Stop(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Block until containers stop, then print their exit codes
    Wait(ContainersArgs),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// How this store works: root, storage driver and why, counts
    Info,
    /// Re-verify every blob and layer of the store against its digest, and list leftovers
    Check(CheckArgs),
    /// Disk used by images, containers and volumes
    Df,
    /// What containers, images, networks and volumes went through (as `husk events`)
    Events(EventsArgs),
    /// Remove stopped containers, unused networks, and with -a unused images, with --volumes
    /// unused anonymous volumes
    Prune(SystemPruneArgs),
    /// Rootless: end the husk-pause process, so the next command maps the user's ranges in
    /// /etc/subuid and /etc/subgid afresh (refused while containers run)
    Migrate,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Every image no container uses, not only what no image references
    #[arg(short, long)]
    pub all: bool,
    /// Unused anonymous volumes too
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask for confirmation (husk never asks; accepted for docker's scripts)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// A Go template (`{{.Client.Version}}`) or json
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Remove what cannot be trusted (the next pull fetches it again), rebuild corrupt layers
    /// from their blobs, and remove leftovers
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Remove volumes
    Rm(VolumeRmArgs),
    /// Print volumes as JSON
    Inspect(VolumesArgs),
    /// Remove volumes no container uses
    Prune(PruneArgs),
}

/// The limits `run` sets and `update` changes.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Memory limit (bytes, or with a k, m or g suffix)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1 for unlimited swap)
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// Number of CPUs (fractions allowed)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: LimitArgs,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network whose containers find each other by name
    Create(NetworkCreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(NetworkLsArgs),
    /// Remove networks
    #[command(alias = "remove")]
    Rm(NetworksArgs),
    /// Print networks as JSON
    Inspect(NetworksArgs),
    /// Connect a container to a network
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(NetworkConnectArgs),
    /// Remove every network no container uses
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    pub name: String,
    /// Subnet in CIDR form (default: a free /24 in 10.78.0.0/16)
    #[arg(long)]
    pub subnet: Option<String>,
    /// The subnet's gateway (default: its first address)
    #[arg(long)]
    pub gateway: Option<String>,
    /// No way out: no default route, no NAT
    #[arg(long)]
    pub internal: bool,
    /// Driver (only bridge)
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Set metadata on the network
    #[arg(long)]
    pub label: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    /// Only network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// table, json, or a Go template (`{{.Names}}`, `table {{.ID}}\t{{.Status}}`)
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct NetworksArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NetworkConnectArgs {
    pub network: String,
    pub container: String,
    /// Disconnect: accepted for docker's scripts
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PORT[/PROTOCOL]: only this one's host address
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Volume name (random when omitted)
    pub name: Option<String>,
    /// Set metadata on the volume
    #[arg(short, long)]
    pub label: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    #[arg(short, long)]
    pub quiet: bool,
    /// table, json, or a Go template (`{{.Names}}`, `table {{.ID}}\t{{.Status}}`)
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Remove volumes even while containers use them
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumesArgs {
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (husk never asks; accepted for docker's scripts)
    #[arg(short, long)]
    pub force: bool,
    /// volume prune: named volumes too, not only anonymous ones; image prune: every image no
    /// container uses
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Only container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: status=, name=, id=, label=KEY[=VALUE], ancestor=, exited=CODE
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// table, json, or a Go template (`{{.Names}}`, `table {{.ID}}\t{{.Status}}`)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Show only the latest container
    #[arg(short, long)]
    pub latest: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines from the end ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show what --log-opt labels= and env= put on each line, before it
    #[arg(long)]
    pub details: bool,
    /// Only lines since this time (RFC 3339, or a duration like 10m, 2h)
    #[arg(long)]
    pub since: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Events since this time (RFC 3339, Unix seconds, or a duration back, like 10m)
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (as --since); without it, new events are shown as they come
    #[arg(long)]
    pub until: Option<String>,
    /// KEY=VALUE: container, event, image, label, network, type, volume
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// A Go template ('{{.Action}}', '{{json .}}') or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub tty: bool,
    /// Run in the background
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User as UID[:GID] or a name from the container's /etc/passwd
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and wait for the container
    #[arg(short, long)]
    pub attach: bool,
    /// With -a: attach stdin too (a container made with -it is joined as `attach` joins it)
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub interactive: bool,
    /// Every stopped container its restart policy would run (always; unless-stopped and
    /// on-failure ones the user did not stop): what to run at boot, as docker's daemon does
    /// when it starts
    #[arg(long, conflicts_with_all = ["attach", "containers"])]
    pub all: bool,
    /// With -ai: the keys that leave the container running
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    #[arg(required_unless_present = "all")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    pub time: Option<i64>,
    /// Signal to send instead of the container's stop signal
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainerArg {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// container or image
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// A Go template for each object (`{{.State.Status}}`, `{{json .Config}}`)
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit (default: a new sample every second)
    #[arg(long)]
    pub no_stream: bool,
    /// All containers (default: running ones)
    #[arg(short, long)]
    pub all: bool,
    /// table, json, or a Go template (`{{.Names}}`, `table {{.ID}}\t{{.Status}}`)
    #[arg(long, default_value = "table")]
    pub format: String,
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove every tag of an image named by id
    #[arg(short, long)]
    pub force: bool,
    /// Accepted for docker's scripts (husk keeps no parent images)
    #[arg(long)]
    pub no_prune: bool,
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
    /// Remove blobs and layers no image uses; with -a, every image no container uses
    Prune(PruneArgs),
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
    /// How an image was made, newest step first
    History(HistoryArgs),
    /// Make a one-layer image of a file system tarball
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only the image's id (on its newest step; `<missing>` on the others)
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not cut long commands or ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Sizes and times in plain numbers, not human ones
    #[arg(short = 'H', long, default_value = "true", action = clap::ArgAction::Set)]
    pub human: bool,
    /// A Go template ('{{.CreatedBy}}') or json
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not forward this terminal's input
    #[arg(long)]
    pub no_stdin: bool,
    /// The keys that leave the container running: ctrl-<a-z@[\\]^_> or single characters,
    /// comma-separated ("" turns them off)
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Forward this process's signals to the container (without a terminal)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set, default_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A Dockerfile instruction for the image's config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR
    #[arg(short, long)]
    pub change: Vec<String>,
    /// A comment for the image's history
    #[arg(short, long, default_value = "")]
    pub message: String,
    /// The tarball (plain, gzip or zstd), or - for stdin
    pub file: String,
    /// The image's name (none: an untagged image, found by its id)
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
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

#[derive(Debug, Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout)
    pub dest: String,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub detach: bool,
    /// Remove the container when it exits
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to copy it from husk's environment)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Read environment variables from a file (NAME=VALUE lines, # comments)
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Set metadata on the container (KEY=VALUE)
    #[arg(short, long)]
    pub label: Vec<String>,
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
    /// Connect to a network: bridge (the default), none, host, a network's name, or
    /// container:NAME
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port on the host: [[IP:]HOST_PORT:]CONTAINER_PORT[/tcp|/udp]
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port
    #[arg(short = 'P', long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub publish_all: bool,
    /// Another name for the container on a user network
    #[arg(long, alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP (IP may be host-gateway)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// DNS servers for /etc/resolv.conf
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domains
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// DNS resolver options
    #[arg(long, alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub read_only: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Resource limits: NAME=SOFT[:HARD], as nofile=1024:2048
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add Linux capabilities (ALL for every one)
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (ALL for every one)
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Give every capability, every device, no seccomp, no masked paths
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub privileged: bool,
    /// Security options: no-new-privileges[:true|false], seccomp=unconfined|PROFILE.json
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Run a tiny init (PID 1) that forwards signals and reaps zombies
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub init: bool,
    /// Signal to stop the container (default: the image's STOPSIGNAL, else SIGTERM)
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10)
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Kill the container (SIGKILL, exit code 137) once it has run this many seconds, as
    /// podman's --timeout; counted again from each start
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// When this husk dies, however it dies, kill and remove the container (bubblewrap's
    /// flag; husk's config file's "die-with-parent" sets the default for attached runs)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub die_with_parent: Option<bool>,
    /// When the container ends, print what it used (wall and CPU time, peak memory, I/O,
    /// peak pids, OOM kills, why it ended) on stderr, as text or json
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true,
          default_missing_value = "text", value_parser = ["text", "json"])]
    pub report: Option<String>,
    /// Write the report to FILE instead of stderr (json unless --report=text)
    #[arg(long, value_name = "FILE")]
    pub report_file: Option<PathBuf>,
    /// Mount a filesystem: type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…]
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Allocate a pseudo-terminal
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub tty: bool,
    /// Keep stdin open
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub interactive: bool,
    /// Bind mount a host path or a named volume (SOURCE:CONTAINER[:ro]), or an anonymous volume (CONTAINER)
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// What to do when it exits: no, on-failure[:N], always, unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Attach only these streams: STDIN, STDOUT, STDERR (all when none is given)
    #[arg(short, long = "attach", value_name = "STREAM")]
    pub attach_streams: Vec<String>,
    /// With -it: the keys that leave the container running (ctrl-<a-z@[\\]^_> or single
    /// characters, comma-separated; "" turns them off)
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Command to run to check health (a shell command, run in the container)
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between checks (ms|s|m|h), 30s by default
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Longest a check may run (ms|s|m|h), 30s by default
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures in a row that make it unhealthy, 3 by default
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start in which failures do not count (ms|s|m|h)
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Disable any healthcheck the image has
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_healthcheck: bool,
    /// Where the output is kept: json-file (default) or none
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options: max-size=SIZE (rotate at), max-file=N (files kept)
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// When to pull the image
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// os/arch[/variant] of the image to pull
    #[arg(long)]
    pub platform: Option<String>,
    /// Size of /dev/shm (default 64m)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Kernel parameters of the container's namespaces: NAME=VALUE
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// A host device in the container: HOST[:CONTAINER][:PERMISSIONS], or a CDI device
    /// (vendor.com/class=name) of the host's CDI specs
    #[arg(long)]
    pub device: Vec<String>,
    /// CPUs the container may run on (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// More groups for the container's process
    #[arg(long)]
    pub group_add: Vec<String>,
    /// IPC namespace: private, shareable, host or container:NAME
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace: host or container:NAME
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace: host
    #[arg(long)]
    pub uts: Option<String>,
    /// Write the container's ID to this file
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Read labels from a file of KEY=VALUE lines
    #[arg(long)]
    pub label_file: Vec<PathBuf>,
    /// Do not let the OOM killer kill the container's processes (cgroup v1)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub oom_kill_disable: bool,
    /// Memory soft limit
    #[arg(long, value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// Block I/O weight, 10 to 1000
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Limit reads from a device: DEVICE:RATE (bytes a second, 1mb)
    #[arg(long)]
    pub device_read_bps: Vec<String>,
    /// Limit writes to a device: DEVICE:RATE (bytes a second, 1mb)
    #[arg(long)]
    pub device_write_bps: Vec<String>,
    /// Limit reads from a device: DEVICE:RATE (operations a second)
    #[arg(long)]
    pub device_read_iops: Vec<String>,
    /// Limit writes to a device: DEVICE:RATE (operations a second)
    #[arg(long)]
    pub device_write_iops: Vec<String>,
    /// Mount the volumes of another container: CONTAINER[:ro|rw]
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// GPUs for the container: all, a count, or device=ID[,ID…] (nvidia.com/gpu devices of
    /// the host's CDI specs in /etc/cdi and /var/run/cdi)
    #[arg(long)]
    pub gpus: Option<String>,
    /// host, or keep-id: files the container's root writes to bind-mounted host directories
    /// belong to the user who ran husk (the sudo caller), through idmapped mounts (Linux 5.12+)
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// Run in a user namespace of the container's own: CONTAINER:HOST:SIZE (podman's; may be
    /// repeated). The image's layers are idmapped to match (Linux 5.19+, root only)
    #[arg(long, value_name = "CONTAINER:HOST:SIZE")]
    pub uidmap: Vec<String>,
    /// The gid map, as --uidmap (default: the uid map)
    #[arg(long, value_name = "CONTAINER:HOST:SIZE")]
    pub gidmap: Vec<String>,
    /// The image is a directory to run as the container's root (podman's --rootfs); the
    /// container writes to a layer of its own above it, never to the directory
    #[arg(long)]
    pub rootfs: bool,
    /// Image to run (with --rootfs: the directory)
    pub image: String,
    /// Command and arguments (instead of the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// NAME[:TAG], as `images` lists it (the registry is the name's)
    pub image: String,
    /// Print only the pushed manifest's digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Use plain HTTP for this registry (loopback registries use it by default)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// NAME[:TAG] for the image (several allowed)
    #[arg(short, long)]
    pub tag: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// KEY=VALUE for an ARG (a bare KEY takes this environment's value)
    #[arg(long)]
    pub build_arg: Vec<String>,
    /// Build up to this stage
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Pull the FROM images even when they are in the store
    #[arg(long)]
    pub pull: bool,
    /// os/arch[/variant] of the FROM images
    #[arg(long)]
    pub platform: Option<String>,
    /// KEY=VALUE label on the image
    #[arg(long)]
    pub label: Vec<String>,
    /// Print only the image's id (RUN output is shown only when a step fails)
    #[arg(short, long)]
    pub quiet: bool,
    /// RUN's network: none, host, bridge or a network's name (husk's default network
    /// otherwise)
    #[arg(long)]
    pub network: Option<String>,
    /// Accepted for docker's scripts: intermediate containers are always removed
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Accepted for docker's scripts: intermediate containers are always removed
    #[arg(long)]
    pub force_rm: bool,
    /// The context: a directory, or `-` for a tar stream on stdin
    pub context: String,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A Dockerfile instruction for the image's config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR
    #[arg(short, long)]
    pub change: Vec<String>,
    /// A comment for the image's history
    #[arg(short, long, default_value = "")]
    pub message: String,
    /// The image's author
    #[arg(short, long, default_value = "")]
    pub author: String,
    /// Pause a running container while its changes are read
    #[arg(short, long, default_value = "true", action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG] for the new image (none: an untagged image, found by its id)
    pub reference: Option<String>,
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

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// table, json, or a Go template (`{{.Names}}`, `table {{.ID}}\t{{.Status}}`)
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run(args: &[&str]) -> RunArgs {
        let full: Vec<&str> = ["husk", "run"].iter().chain(args).copied().collect();
        match HuskCli::try_parse_from(full).expect("parses").command {
            HuskCommand::Run(a) => *a,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn boolean_flags_take_docker_forms() {
        let a = run(&["-dit", "img"]);
        assert!(a.detach && a.interactive && a.tty);
        let a = run(&[
            "--tty=false",
            "-i=true",
            "--rm=false",
            "--privileged=1",
            "img",
        ]);
        assert!(!a.tty && a.interactive && !a.rm && a.privileged);
        let a = run(&["-t=false", "img", "sh"]);
        assert!(!a.tty);
        assert_eq!(
            (a.image.as_str(), a.command.as_slice()),
            ("img", &["sh".to_string()][..])
        );
        // Without `=` a word after the flag is the image, as with docker.
        let a = run(&["-t", "false"]);
        assert!(a.tty);
        assert_eq!(a.image, "false");
        let a = run(&["img"]);
        assert!(!a.tty && !a.detach && !a.rm && !a.read_only && !a.init);
        assert!(HuskCli::try_parse_from(["husk", "run", "--tty=maybe", "img"]).is_err());
    }
}
