//! Manifests, indexes and image configs of any shape, as a registry or an archive may send.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    husk_image::manifest::check_untrusted(data);
});
