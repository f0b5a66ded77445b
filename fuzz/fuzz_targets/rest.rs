//! REST answers of the notifications API: the first byte picks the decoder (channel creation,
//! subscription results, error body with a status and a `Retry-After` value), the rest is the
//! body (for errors: two bytes of status, one byte of `Retry-After` length, that value, the body).
#![no_main]

use genesys_notify::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Bodies are read as UTF-8 text (`read_to_string`).
    match selector % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                fuzzing::channel_response(text);
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                fuzzing::subscriptions_response(text);
            }
        }
        _ => {
            let Some((status, rest)) = rest.split_first_chunk::<2>() else {
                return;
            };
            // Statuses as ureq gives them: 100..=999.
            let status = 100 + u16::from_be_bytes(*status) % 900;
            let Some((&len, rest)) = rest.split_first() else {
                return;
            };
            let (retry_after, body) = rest.split_at(usize::from(len).min(rest.len()));
            if let Ok(text) = std::str::from_utf8(body) {
                fuzzing::error_response(status, retry_after, text, "streaming-0-fuzzchannelid");
            }
        }
    }
});
