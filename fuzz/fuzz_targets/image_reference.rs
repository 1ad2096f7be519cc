//! Image references as users type them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        husk_image::reference::check_untrusted(s);
    }
});
