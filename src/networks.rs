//! The network commands and `port`: flags → engine calls, docker's tables and JSON.

use std::io::Write;

use anyhow::{bail, Result};
use husk_cli::husk::{NetworkCommand, PortArgs};
use husk_engine::{options, Engine, NetworkCreateOptions};
use serde_json::json;

use crate::table::table;
use crate::template::{write_items, Output};

/// The network commands: an engine error exits with docker's 125 (bad input, a network in
/// use), in one line.
pub fn network(engine: &Engine, cmd: &NetworkCommand) -> Result<()> {
    if let Err(e) = network_inner(engine, cmd) {
        let code = e
            .downcast_ref::<husk_engine::Error>()
            .map_or(1, husk_engine::Error::exit_code);
        eprintln!("husk: {e:#}");
        std::process::exit(code);
    }
    Ok(())
}

fn network_inner(engine: &Engine, cmd: &NetworkCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        NetworkCommand::Create(a) => {
            if a.driver != "bridge" {
                return Err(husk_engine::Error::Invalid(format!(
                    "network driver {:?} is not supported: husk has bridge",
                    a.driver
                ))
                .into());
            }
            let n = engine.create_network(&NetworkCreateOptions {
                name: a.name.clone(),
                subnet: a.subnet.clone(),
                gateway: a.gateway.clone(),
                internal: a.internal,
                labels: options::parse_labels(&a.label),
            })?;
            writeln!(out, "{}", n.id)?;
        }
        NetworkCommand::Ls(a) => {
            let list = engine.networks()?;
            let id = |n: &husk_engine::Network| {
                if a.no_trunc {
                    n.id.clone()
                } else {
                    n.id[..12].to_string()
                }
            };
            if a.quiet {
                for n in &list {
                    writeln!(out, "{}", id(n))?;
                }
            } else if let output @ (Output::Json | Output::Template { .. }) =
                Output::parse(&a.format)?
            {
                let items: Vec<serde_json::Value> = list
                    .iter()
                    .map(|n| {
                        json!({"ID": id(n), "Name": n.name, "Driver": n.driver, "Scope": "local",
                               "Internal": n.internal, "CreatedAt": n.created, "Labels": n.labels})
                    })
                    .collect();
                let headers = [
                    ("ID", "NETWORK ID"),
                    ("Name", "NAME"),
                    ("Driver", "DRIVER"),
                    ("Scope", "SCOPE"),
                    ("Internal", "INTERNAL"),
                    ("CreatedAt", "CREATED AT"),
                ];
                write_items(&mut out, &output, &items, &headers)?;
            } else {
                let rows: Vec<[String; 4]> = list
                    .iter()
                    .map(|n| [id(n), n.name.clone(), n.driver.clone(), "local".into()])
                    .collect();
                table(&mut out, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)?;
            }
        }
        NetworkCommand::Rm(a) => {
            drop(out);
            let mut failed = None;
            for n in &a.networks {
                match engine.remove_network(n) {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("husk: {e}");
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                std::process::exit(e.exit_code());
            }
        }
        NetworkCommand::Inspect(a) => {
            let list = a
                .networks
                .iter()
                .map(|n| engine.inspect_network(n))
                .collect::<husk_engine::Result<Vec<_>>>()?;
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        NetworkCommand::Connect(a) => engine.connect(&a.network, &a.container)?,
        NetworkCommand::Disconnect(a) => engine.disconnect(&a.network, &a.container)?,
        NetworkCommand::Prune(_) => {
            let removed = engine.prune_networks()?;
            if !removed.is_empty() {
                writeln!(out, "Deleted Networks:")?;
                for n in removed {
                    writeln!(out, "{n}")?;
                }
            }
        }
    }
    Ok(())
}

/// `port CONTAINER [PORT[/PROTO]]`: docker's `80/tcp -> 0.0.0.0:8080` lines, or the host
/// address of one port.
pub fn port(engine: &Engine, a: &PortArgs) -> Result<()> {
    let ports = engine.ports(&a.container)?;
    let wanted = match &a.port {
        None => None,
        Some(p) => {
            let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let Ok(num) = num.parse::<u16>() else {
                bail!("invalid port {p:?}: use PORT[/tcp|/udp]");
            };
            Some((num, proto.to_string()))
        }
    };
    let mut out = std::io::stdout().lock();
    let mut found = false;
    for m in &ports {
        let host = format!(
            "{}:{}",
            m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            m.host_port.unwrap_or(0)
        );
        match &wanted {
            None => writeln!(
                out,
                "{}/{} -> {host}",
                m.container_port,
                m.protocol.as_str()
            )?,
            Some((num, proto)) if *num == m.container_port && proto == m.protocol.as_str() => {
                writeln!(out, "{host}")?
            }
            Some(_) => continue,
        }
        found = true;
    }
    if let (Some(p), false) = (&a.port, found) {
        bail!("no public port '{p}' published for {}", a.container);
    }
    Ok(())
}
