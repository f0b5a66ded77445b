//! Topic names (`Topic::parse`) and listener patterns (`Pattern::parse`): what users and the
//! service's frames hand the client.
#![no_main]

use genesys_notify::{Pattern, Topic, MAX_TOPIC_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(topic) = Topic::parse(text) {
        // Normalised, bounded, and stable when parsed again.
        assert!(topic.as_str().chars().count() <= MAX_TOPIC_LEN);
        assert_eq!(Topic::parse(topic.as_str()).as_ref(), Ok(&topic));
        let expanded = topic.expand();
        assert!(!expanded.is_empty());
        for name in &expanded {
            assert!(!name.is_empty());
        }
    }
    if let Ok(pattern) = Pattern::parse(text) {
        assert_eq!(Pattern::parse(pattern.as_str()).as_ref(), Ok(&pattern));
        if !pattern.is_wildcard() {
            assert!(pattern.matches(pattern.as_str()));
            assert!(pattern.matches(&pattern.as_str().to_ascii_uppercase()));
        }
    }
    // Any inbound topic name against a fixed wildcard pattern.
    let any = Pattern::parse("v2.users.*.presence").unwrap();
    let _ = any.matches(text);
});
