//! A WebSocket text frame from the service (`message::parse`): notifications, heartbeats,
//! pongs, system messages, and anything else.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (tungstenite refuses others before the parser sees them).
    if let Ok(text) = std::str::from_utf8(data) {
        genesys_notify::fuzzing::frame(text);
    }
});
