//! `husk`: the docker-like command line. Built so far: `pull`, `images` and a foreground
//! `run --rm`.

mod run;

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use husk_cli::husk::{Format, HuskCli, HuskCommand, ImagesArgs, PullArgs};
use husk_image::manifest::Platform;
use husk_image::registry::Options;
use husk_image::Reference;

fn main() {
    let cli = HuskCli::parse();
    let result = match &cli.command {
        HuskCommand::Pull(a) => pull(&cli, a),
        HuskCommand::Images(a) => images(&cli, a),
        // run exits with the container's code, or docker's 125/126/127 when husk fails.
        HuskCommand::Run(a) => match run::run(&cli.root, a) {
            run::Outcome::Exited(code) => std::process::exit(code),
            run::Outcome::Failed(code, e) => {
                eprintln!("husk: {e:#}");
                std::process::exit(code)
            }
        },
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
    let pulled = husk_image::pull::pull(&cli.root, &reference, &platform, &opts)
        .with_context(|| format!("pull {reference}"))?;
    let new = husk_image::images::record(&cli.root, &reference, &pulled)?;
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

/// "3 days ago", as docker prints CREATED.
fn ago(rfc3339: &str) -> String {
    let parse = || -> Option<i64> {
        let (date, time) = rfc3339.split_once('T')?;
        let d: Vec<i64> = date
            .split('-')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let t: Vec<i64> = time
            .get(..8)?
            .split(':')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some((era * 146_097 + doe - 719_468) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
    };
    let Some(then) = parse() else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let s = (now - then).max(0);
    match s {
        0..=59 => "Less than a minute ago".into(),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86_399 => format!("{} hours ago", s / 3600),
        86_400..=1_209_599 => format!("{} days ago", s / 86_400),
        1_209_600..=5_183_999 => format!("{} weeks ago", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months ago", s / 2_592_000),
        _ => format!("{} years ago", s / 31_536_000),
    }
}

fn human_size(b: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
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
                    .map(ago)
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
