//! A `Retry-After` header value, bytes as on the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = genesys_notify::fuzzing::retry_after_header(data);
});
