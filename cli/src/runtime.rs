//! The `husk-runtime` command tree: runc's commands, flags and defaults.
//!
//! containerd's runc shim, podman's conmon and the OCI conformance suites all drive runc through
//! this surface, so names, defaults and argument orders follow runc. Options may come before or
//! after the container id (`create ID --bundle B` and `create --bundle B ID`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "husk-runtime",
    version,
    about = "A runc-compatible OCI runtime",
    propagate_version = true
)]
pub struct RuntimeCli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Directory holding the state of containers
    /// [default: /run/husk-runtime; $XDG_RUNTIME_DIR/husk-runtime for a rootless caller, as runc]
    #[arg(long, global = true, env = "HUSK_RUNTIME_ROOT")]
    pub root: Option<PathBuf>,
    /// runc's: skip a cgroup the kernel refuses (for a config without limits): true, false or
    /// auto (in a user namespace). Before the command, as runc's global flags go: `spec` has a
    /// `--rootless` of its own.
    #[arg(long, value_enum, default_value_t = Rootless::Auto)]
    pub rootless: Rootless,
    /// Write log lines to this file instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of log lines
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug information
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd: cgroupsPath is slice:prefix:name, the cgroup a transient scope
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility: husk-runtime never uses CRIU
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rootless {
    True,
    False,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (its process waits for `start`)
    Create(CreateArgs),
    /// Start the user process of a created container
    Start(IdArg),
    /// Print the state of a container as the OCI runtime spec's JSON
    State(IdArg),
    /// Send a signal to the container's init process
    Kill(KillArgs),
    /// Delete a container and everything it holds
    Delete(DeleteArgs),
    /// Create and start a container
    Run(RunArgs),
    /// Run a new process inside a running container
    Exec(ExecArgs),
    /// List the processes running inside a container
    Ps(PsArgs),
    /// List containers under --root
    List(ListArgs),
    /// Print the features this runtime supports, as the OCI features JSON
    Features,
    /// Write a new config.json
    Spec(SpecArgs),
    /// Change the resources of a running container
    Update(UpdateArgs),
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Print the container's resource usage and OOM kills as JSON events
    Events(EventsArgs),
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Container id
    pub id: String,
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// Container id
    pub id: String,
    /// Path to the bundle (the directory holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's host pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for a rootfs on a ramfs)
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) to the container process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Do not wait for the container: return once it is started
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (runc's --keep)
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Container id
    pub id: String,
    /// Signal, by name (TERM, SIGTERM) or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Send the signal to every process of the container
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Container id
    pub id: String,
    /// Kill the container first if it is running; succeed when it does not exist
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container id
    pub id: String,
    /// Command and arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A process.json (the spec's `process` object) describing what to run
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory inside the container
    #[arg(long)]
    pub cwd: Option<String>,
    /// Set an environment variable (NAME=VALUE)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// User as UID[:GID]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional groups (GID)
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the process's bounding, effective and permitted sets
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Do not wait for the process
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's host pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra fds to the process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Exec in a paused container too: the process is frozen with it, and exec returns once
    /// the container is resumed
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run the process in an existing sub-cgroup of the container: PATH, or
    /// CONTROLLER[,CONTROLLER]:PATH on cgroup v1 (repeatable)
    #[arg(long = "cgroup", value_name = "[CONTROLLERS:]PATH")]
    pub sub_cgroups: Vec<String>,
    /// Accepted for runc compatibility (AppArmor profile)
    #[arg(short, long)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility (SELinux process label)
    #[arg(long)]
    pub process_label: Option<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Container id
    pub id: String,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Options passed to ps(1) for the table format
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Container id
    pub id: String,
    /// Print one stats event and exit
    #[arg(long)]
    pub stats: bool,
    /// Time between stats events (Go duration syntax: 500ms, 5s, 1m)
    #[arg(long, default_value = "5s")]
    pub interval: String,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Where to write config.json
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for a rootless container (user namespace, no cgroup writes)
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Container id
    pub id: String,
    /// A JSON file with the spec's `linux.resources` object, `-` for stdin
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes (-1 for unlimited)
    #[arg(long)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit in bytes
    #[arg(long)]
    pub memory_reservation: Option<i64>,
    /// CPU CFS quota in microseconds
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes in which to allow execution
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RuntimeCli {
        RuntimeCli::try_parse_from(args).expect("arguments parse")
    }

    #[test]
    fn create_accepts_flags_before_and_after_the_id() {
        for args in [
            &["husk-runtime", "create", "c1", "--bundle", "/b"][..],
            &["husk-runtime", "create", "--bundle", "/b", "c1"][..],
        ] {
            match parse(args).command {
                Command::Create(c) => {
                    assert_eq!(c.id, "c1");
                    assert_eq!(c.bundle, PathBuf::from("/b"));
                }
                other => panic!("parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn global_flags_are_accepted_anywhere() {
        let cli = parse(&[
            "husk-runtime",
            "--root",
            "/r",
            "--log-format",
            "json",
            "state",
            "c1",
            "--log",
            "/l",
        ]);
        assert_eq!(cli.global.root, Some(PathBuf::from("/r")));
        assert_eq!(cli.global.log, Some(PathBuf::from("/l")));
        assert_eq!(cli.global.log_format, LogFormat::Json);
    }

    #[test]
    fn exec_keeps_hyphenated_command_arguments() {
        match parse(&["husk-runtime", "exec", "--tty", "c1", "ls", "-la", "/"]).command {
            Command::Exec(e) => {
                assert!(e.tty);
                assert_eq!(e.command, ["ls", "-la", "/"]);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn kill_takes_an_optional_signal() {
        match parse(&["husk-runtime", "kill", "--all", "c1", "KILL"]).command {
            Command::Kill(k) => {
                assert!(k.all);
                assert_eq!(k.signal, "KILL");
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["husk-runtime", "kill", "c1"]).command {
            Command::Kill(k) => assert_eq!(k.signal, "SIGTERM"),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        RuntimeCli::command().debug_assert();
    }
}
