//! `husk events`: the store's event journal, as docker prints its events.

use std::io::Write;

use anyhow::Result;
use husk_cli::husk::EventsArgs;
use husk_engine::events::{Event, EventFilter};
use husk_engine::Engine;
use serde_json::json;

use crate::template::{render, Output};

pub fn events(engine: &Engine, a: &EventsArgs) -> Result<()> {
    let since = crate::timefmt::time_arg("--since", &a.since)?;
    let until = crate::timefmt::time_arg("--until", &a.until)?;
    let mut filter = EventFilter::default();
    for f in &a.filter {
        filter.add(f)?;
    }
    let format = a.format.as_deref().unwrap_or("");
    // `{{json .}}` is docker's event JSON as it is; other templates see docker's Go names.
    let output = match format.trim() {
        "json" | "{{json .}}" => Output::Json,
        _ => Output::parse(format)?,
    };
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    engine.events(since, until, &filter, &mut |e| {
        let line = match &output {
            Output::Table => Ok(plain(e)),
            Output::Json => serde_json::to_string(e).map_err(anyhow::Error::from),
            Output::Template { template, .. } => render(template, &go_names(e)),
        };
        let written = line.and_then(|l| {
            writeln!(out, "{l}")?;
            out.flush()?;
            Ok(())
        });
        match written {
            Ok(()) => true,
            Err(err) => {
                failed = Some(err);
                false
            }
        }
    })?;
    match failed {
        // A reader that went away (`| head`) ends it, as it ends docker's.
        Some(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// docker's line: `TIME TYPE ACTION ID (key=value, …)`.
fn plain(e: &Event) -> String {
    let time = husk_engine::time::rfc3339_nanos(e.time_nano);
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut line = format!("{time} {} {} {}", e.kind, e.action, e.actor.id);
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

/// The event with the field names of docker's Go type, for `--format` templates.
fn go_names(e: &Event) -> serde_json::Value {
    json!({
        "Status": e.status, "ID": e.id, "From": e.from, "Type": e.kind, "Action": e.action,
        "Actor": {"ID": e.actor.id, "Attributes": e.actor.attributes},
        "Scope": e.scope, "Time": e.time, "TimeNano": e.time_nano,
    })
}
