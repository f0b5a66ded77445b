//! The answer of `POST /oauth/token`: two bytes of status, one byte giving the length of the
//! `Retry-After` value, that value, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((status, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = 100 + u16::from_be_bytes(*status) % 900;
    let Some((&len, rest)) = rest.split_first() else {
        return;
    };
    let len = usize::from(len).min(rest.len());
    let (retry_after, body) = rest.split_at(len);
    if let Ok(body) = std::str::from_utf8(body) {
        genesys_notify::fuzzing::token_response(status, retry_after, body);
    }
});
