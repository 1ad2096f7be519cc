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
