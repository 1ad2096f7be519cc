//! Every input the fuzzers kept (fuzz/corpus/<target>/) goes through the same checks on each
//! `cargo test`, so a parser regression on a shape the fuzzer once found shows up here too,
//! without cargo-fuzz or a nightly toolchain. `cargo +nightly fuzz run <target>` grows them.

use std::path::Path;

fn each(target: &str, f: impl Fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory").flatten() {
        let data = std::fs::read(e.path()).unwrap();
        f(&data);
        n += 1;
    }
    n
}

#[test]
fn the_runtime_config_corpus_never_panics() {
    assert!(each("runtime_config", husk_runtime::spec::check_untrusted) > 0);
}

#[test]
fn the_image_manifest_corpus_never_panics() {
    assert!(each("image_manifest", husk_image::manifest::check_untrusted) > 0);
}

#[test]
fn the_image_reference_corpus_never_panics() {
    assert!(
        each("image_reference", |d| {
            if let Ok(s) = std::str::from_utf8(d) {
                husk_image::reference::check_untrusted(s)
            }
        }) > 0
    );
}
