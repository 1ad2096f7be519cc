//! `husk generate systemd`: units that bring containers back after a reboot, since husk has no
//! daemon to do it. A container's unit starts and stops it (its monitor keeps it running and
//! applies its restart policy); the `--boot` unit runs `husk start --all`.

use std::path::Path;

use anyhow::{Context, Result};
use husk_cli::husk::GenerateSystemdArgs;
use husk_engine::Engine;

pub fn systemd(engine: &Engine, a: &GenerateSystemdArgs) -> Result<()> {
    let husk = std::env::current_exe().context("cannot find the husk binary")?;
    let husk = husk.display();
    let root = engine.root().display();
    let (file, unit) = match &a.container {
        Some(query) if !a.boot => {
            let c = engine.container(query)?;
            let name = &c.name;
            (
                format!("container-{name}.service"),
                format!(
                    "# container-{name}.service: made by `husk generate systemd {name}`\n\
                     [Unit]\n\
                     Description=husk container {name}\n\
                     Wants=network-online.target\n\
                     After=network-online.target\n\
                     RequiresMountsFor={root}\n\
                     \n\
                     [Service]\n\
                     # husk start returns once the container runs; its monitor stays in this\n\
                     # unit's cgroup, holds its output and applies its restart policy.\n\
                     Type=oneshot\n\
                     RemainAfterExit=yes\n\
                     ExecStart={husk} --root {root} start {name}\n\
                     ExecStop={husk} --root {root} stop -t {timeout} {name}\n\
                     TimeoutStopSec={stop_limit}\n\
                     \n\
                     [Install]\n\
                     WantedBy=multi-user.target\n",
                    timeout = c.stop_timeout,
                    stop_limit = c.stop_timeout.max(0) + 10,
                ),
            )
        }
        _ => (
            "husk-restart.service".to_string(),
            format!(
                "# husk-restart.service: made by `husk generate systemd --boot`\n\
                 [Unit]\n\
                 Description=husk containers whose restart policy runs them\n\
                 Wants=network-online.target\n\
                 After=network-online.target\n\
                 RequiresMountsFor={root}\n\
                 \n\
                 [Service]\n\
                 Type=oneshot\n\
                 RemainAfterExit=yes\n\
                 ExecStart={husk} --root {root} start --all\n\
                 \n\
                 [Install]\n\
                 WantedBy=multi-user.target\n"
            ),
        ),
    };
    match &a.files {
        Some(dir) => {
            let path = Path::new(dir).join(&file);
            std::fs::write(&path, unit)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
        }
        None => print!("{unit}"),
    }
    Ok(())
}
