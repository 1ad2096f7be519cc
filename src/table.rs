//! docker's output shapes: aligned tables and human sizes.

use std::io::Write;

use anyhow::Result;

/// Columns padded to their widest cell plus three spaces, as docker's tabwriter does.
pub fn table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> Result<()> {
    let rows: Vec<&[String]> = rows.iter().map(|r| r.as_slice()).collect();
    table_of(out, &header, &rows)
}

/// `table` with as many columns as the header has.
pub fn table_of(out: &mut impl Write, header: &[&str], rows: &[&[String]]) -> Result<()> {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                let width = w.get(i).copied().unwrap_or(0);
                s.push_str(&" ".repeat(width.saturating_sub(c.chars().count()) + 3));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Sizes as docker prints them: decimal with up to three decimals (`images`: "1.5MB"), or
/// binary with two (`stats`: "1.50MiB").
pub fn human_bytes(b: u64, binary: bool) -> String {
    let (base, units) = if binary {
        (1024.0, ["B", "KiB", "MiB", "GiB", "TiB"])
    } else {
        (1000.0, ["B", "kB", "MB", "GB", "TB"])
    };
    let mut v = b as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else if binary {
        format!("{v:.2}{}", units[i])
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

pub fn human_size(b: u64) -> String {
    human_bytes(b, false)
}
