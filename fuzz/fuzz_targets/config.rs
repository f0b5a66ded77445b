//! Configuration values given as strings: region names and base URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        genesys_notify::fuzzing::config_text(text);
    }
});
