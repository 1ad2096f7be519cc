//! A config.json of any shape: parsed, validated, its seccomp profile compiled. Errors are
//! fine; a panic is a bug.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    husk_runtime::spec::check_untrusted(data);
});
