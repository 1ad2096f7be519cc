//! Project hygiene: CI runs exactly the test command the README gives a new user.

use std::fs;

fn readme_block_after(heading: &str) -> String {
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme.split(heading).nth(1).expect("README section");
    let block = section.split("```sh").nth(1).expect("a sh code block");
    block
        .split("```")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn ci_runs_the_readme_test_command() {
    let block = readme_block_after("## Test");
    let ci = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    // Each line of the README's block is a command .ci/run runs (its output piped onwards).
    for test_cmd in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            ci.lines()
                .any(|l| l.trim() == test_cmd || l.trim().starts_with(&format!("{test_cmd} "))),
            ".ci/run must run the README's test command `{test_cmd}`"
        );
    }
}

#[test]
fn ci_installs_what_the_tests_use() {
    let ci = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    assert!(
        ci.contains("busybox-static"),
        "the integration tests build bundles from busybox-static"
    );
}

/// The workspace's crates, bottom first: each may depend only on crates before it.
const LAYERS: [(&str, &str); 6] = [
    ("sys", "husk-sys"),
    ("cli", "husk-cli"),
    ("image", "husk-image"),
    ("runtime", "husk-runtime"),
    ("engine", "husk-engine"),
    (".", "husk"),
];

/// The husk crates a crate's manifest names under `[dependencies]` (not dev-dependencies:
/// tests may reach anywhere).
fn husk_dependencies(dir: &str) -> Vec<String> {
    let manifest = fs::read_to_string(format!("{}/{dir}/Cargo.toml", env!("CARGO_MANIFEST_DIR")))
        .expect("manifest");
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[dependencies]" && line.starts_with("husk-") {
            out.push(line.split([' ', '=']).next().unwrap_or("").to_string());
        }
    }
    out
}

#[test]
fn no_crate_depends_on_one_above_it() {
    for (i, (dir, name)) in LAYERS.iter().enumerate() {
        let below: Vec<&str> = LAYERS[..i].iter().map(|l| l.1).collect();
        for dep in husk_dependencies(dir) {
            assert!(
                below.contains(&dep.as_str()),
                "{name} depends on {dep}, which is not below it"
            );
        }
    }
    // The command line goes through the engine, not around it.
    assert_eq!(husk_dependencies("."), ["husk-engine", "husk-cli"]);
}

/// Each module of a crate's `src/` and the sibling modules it names (`crate::x`,
/// `crate::{x, y}`, `super::x` in a submodule), outside its tests.
fn module_graph(dir: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let name_of = |p: &std::path::Path| {
        let rel = p.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        parts.join("::")
    };
    let names: Vec<String> = files.iter().map(|p| name_of(p)).collect();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut graph = std::collections::BTreeMap::new();
    for (p, me) in files.iter().zip(&names) {
        let text = fs::read_to_string(p).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut deps = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(0)];
                deps.extend(inner.split(',').map(|x| ident(x.trim())));
            } else {
                deps.push(ident(rest));
            }
        }
        if let Some((parent, _)) = me.rsplit_once("::") {
            for (i, _) in code.match_indices("super::") {
                deps.push(format!("{parent}::{}", ident(&code[i + 7..])));
            }
        }
        deps.retain(|d| d != me && names.contains(d));
        deps.sort();
        deps.dedup();
        graph.insert(me.clone(), deps);
    }
    graph
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    for (dir, name) in LAYERS {
        let graph = module_graph(dir);
        // Depth-first search for a cycle; the path to it names the circle.
        fn visit(
            m: &str,
            graph: &std::collections::BTreeMap<String, Vec<String>>,
            path: &mut Vec<String>,
            done: &mut std::collections::BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == m) {
                let mut circle = path[at..].to_vec();
                circle.push(m.to_string());
                return Some(circle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_string());
            for d in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(d, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_string());
            None
        }
        let mut done = std::collections::BTreeSet::new();
        for m in graph.keys() {
            if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
                panic!("{name} has an import circle: {}", circle.join(" -> "));
            }
        }
    }
}

fn husk_plain(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_husk"))
        .args(args)
        .output()
        .expect("husk runs")
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    for (shell, marker) in [
        ("bash", "_husk()"),
        ("zsh", "#compdef husk"),
        ("fish", "complete -c husk"),
    ] {
        let out = husk_plain(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: no {marker}");
        assert!(
            text.contains("die-with-parent"),
            "{shell}: run's flags are in it"
        );
    }
    let out = husk_plain(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(125));
    let dir = tempfile::tempdir().unwrap();
    let out = husk_plain(&["man-pages", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = fs::read_to_string(dir.path().join("husk-run.1")).expect("husk-run.1");
    assert!(
        run.starts_with(".ie") || run.contains(".TH"),
        "roff: {}",
        &run[..80.min(run.len())]
    );
    assert!(
        run.contains("die\\-with\\-parent"),
        "run's page has its flags"
    );
    for page in ["husk.1", "husk-network-create.1", "husk-image-prune.1"] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
    assert!(
        !dir.path().join("husk-reap-layer-mounts.1").exists(),
        "internal commands have none"
    );
}
