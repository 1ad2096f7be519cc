//! Pull progress as docker shows it: a bar per layer on a terminal (indicatif), plain
//! "<id>: <status>" lines otherwise, nothing with `-q`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use husk_engine::image::pull::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct PullDisplay {
    mode: Mode,
    /// Short layer ids, by manifest index.
    ids: Mutex<Vec<String>>,
}

enum Mode {
    Quiet,
    Lines { stderr: bool },
    Bars(MultiProgress, Mutex<Vec<ProgressBar>>),
}

impl PullDisplay {
    /// Progress on stdout (`husk pull`) or stderr (`husk run`, whose stdout is the container's).
    pub fn new(quiet: bool, stderr: bool) -> PullDisplay {
        let terminal = if stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let mode = match (quiet, terminal) {
            (true, _) => Mode::Quiet,
            (false, false) => Mode::Lines { stderr },
            (false, true) => {
                let target = if stderr {
                    ProgressDrawTarget::stderr()
                } else {
                    ProgressDrawTarget::stdout()
                };
                Mode::Bars(
                    MultiProgress::with_draw_target(target),
                    Mutex::new(Vec::new()),
                )
            }
        };
        PullDisplay {
            mode,
            ids: Mutex::new(Vec::new()),
        }
    }

    fn line(&self, stderr: bool, index: usize, status: &str) {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let id = ids.get(index).map_or("", String::as_str);
        // A closed stdout is not worth failing a pull over.
        let _ = if stderr {
            writeln!(std::io::stderr(), "{id}: {status}")
        } else {
            writeln!(std::io::stdout(), "{id}: {status}")
        };
    }

    pub fn event(&self, p: Progress) {
        if let Progress::Layers(layers) = &p {
            *self.ids.lock().unwrap_or_else(|e| e.into_inner()) = layers
                .iter()
                .map(|(d, _, _)| d.hex()[..12].to_string())
                .collect();
        }
        match (&self.mode, p) {
            (Mode::Quiet, _) => {}
            (Mode::Lines { stderr }, p) => match p {
                Progress::Layers(layers) => {
                    for (i, (_, _, present)) in layers.iter().enumerate() {
                        let status = if *present {
                            "Already exists"
                        } else {
                            "Pulling fs layer"
                        };
                        self.line(*stderr, i, status);
                    }
                }
                Progress::Downloaded { .. } => {}
                Progress::Extracting { index } => self.line(*stderr, index, "Download complete"),
                Progress::Complete { index } => self.line(*stderr, index, "Pull complete"),
            },
            (Mode::Bars(multi, bars), p) => {
                let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                match p {
                    Progress::Layers(layers) => {
                        let style = ProgressStyle::with_template(
                            "{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                        for (d, size, present) in layers.iter() {
                            let bar = multi.add(ProgressBar::new(*size));
                            bar.set_style(style.clone());
                            bar.set_prefix(d.hex()[..12].to_string());
                            if *present {
                                bar.set_position(*size);
                                bar.finish_with_message("Already exists");
                            } else {
                                bar.set_message("Downloading");
                            }
                            bars.push(bar);
                        }
                    }
                    Progress::Downloaded { index, bytes } => {
                        if let Some(b) = bars.get(index) {
                            b.set_position(bytes);
                        }
                    }
                    Progress::Extracting { index } => {
                        if let Some(b) = bars.get(index) {
                            b.set_message("Extracting");
                        }
                    }
                    Progress::Complete { index } => {
                        if let Some(b) = bars.get(index) {
                            b.finish_with_message("Pull complete");
                        }
                    }
                }
            }
        }
    }
}

/// `push`'s progress on stdout: a bar per blob on a terminal, docker's lines otherwise.
pub struct PushDisplay {
    quiet: bool,
    bars: Option<(MultiProgress, Mutex<Vec<ProgressBar>>)>,
    ids: Mutex<Vec<String>>,
}

impl PushDisplay {
    pub fn new(quiet: bool) -> PushDisplay {
        let bars = (!quiet && std::io::stdout().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                Mutex::new(Vec::new()),
            )
        });
        PushDisplay {
            quiet,
            bars,
            ids: Mutex::new(Vec::new()),
        }
    }

    pub fn event(&self, p: husk_engine::image::push::Progress) {
        use husk_engine::image::push::Progress as P;
        use husk_engine::image::registry::BlobPush;
        if self.quiet {
            return;
        }
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        match p {
            P::Blobs(blobs) => {
                *ids = blobs
                    .iter()
                    .map(|(d, _)| d.hex()[..12].to_string())
                    .collect();
                if let Some((multi, bars)) = &self.bars {
                    let style = ProgressStyle::with_template(
                        "{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                    for (d, size) in &blobs {
                        let bar = multi.add(ProgressBar::new(*size));
                        bar.set_style(style.clone());
                        bar.set_prefix(d.hex()[..12].to_string());
                        bar.set_message("Preparing");
                        bars.push(bar);
                    }
                }
            }
            P::Sent { index, bytes } => {
                if let Some((_, bars)) = &self.bars {
                    if let Some(b) = bars.lock().unwrap_or_else(|e| e.into_inner()).get(index) {
                        b.set_message("Pushing");
                        b.set_position(bytes);
                    }
                }
            }
            P::Done { index, how, from } => {
                let status = match how {
                    BlobPush::Existed => "Layer already exists".to_string(),
                    BlobPush::Mounted => format!("Mounted from {}", from.unwrap_or_default()),
                    BlobPush::Uploaded => "Pushed".to_string(),
                };
                match &self.bars {
                    Some((_, bars)) => {
                        if let Some(b) = bars.lock().unwrap_or_else(|e| e.into_inner()).get(index) {
                            b.set_position(b.length().unwrap_or(0));
                            b.finish_with_message(status);
                        }
                    }
                    None => {
                        let id = ids.get(index).map_or("", String::as_str);
                        let _ = writeln!(std::io::stdout(), "{id}: {status}");
                    }
                }
            }
        }
    }
}
