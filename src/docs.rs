//! `husk completion SHELL` (clap_complete) and `husk man-pages DIR` (clap_mangen): both from
//! the one clap command tree, so they cannot drift from the flags.

use std::path::Path;

use clap::CommandFactory;
use husk_cli::husk::{CompletionShell, HuskCli};

/// Print the completion script for `shell`; the exit code.
pub fn completion(shell: CompletionShell) -> i32 {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = HuskCli::command();
    clap_complete::generate(shell, &mut cmd, "husk", &mut std::io::stdout());
    0
}

/// Write `husk.1` and a page per command (`husk-run.1`, `husk-network-create.1`, …) into
/// `dir`; the exit code.
pub fn man_pages(dir: &Path) -> i32 {
    match write_pages(dir) {
        Ok(n) => {
            println!("{n} man pages written to {}", dir.display());
            0
        }
        Err(e) => {
            eprintln!("husk: cannot write the man pages to {}: {e}", dir.display());
            125
        }
    }
}

fn write_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = HuskCli::command();
    cmd.build();
    let mut n = 0;
    let mut stack = vec![("husk".to_string(), cmd)];
    while let Some((name, c)) = stack.pop() {
        if c.is_hide_set() {
            continue;
        }
        for sub in c.get_subcommands() {
            stack.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let page = c
            .clone()
            .name(name.clone())
            .bin_name(name.replace('-', " "));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
        n += 1;
    }
    Ok(n)
}
