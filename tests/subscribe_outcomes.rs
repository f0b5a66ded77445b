//! What `subscribe` and `unsubscribe` report is what happened (issue 17 point 7): a topic the
//! channel's own re-application rejected is reported rejected.
mod util;

use genesys_notify::emulator::{Endpoint, Fault};
use genesys_notify::{Backoff, Lifecycle, Topic};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

fn topics(names: &[String]) -> Vec<Topic> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

/// Issue 17 point 7: the call reserves its topic on a channel whose thread is backing off; its
/// `POST` finds the channel gone (404) and wakes the thread, whose `PUT` of the whole set
/// (the reserved topic included) is rejected for that topic, which leaves the set and so the
/// `POST` sent again. The call reported it `permitted` (failed before the fix).
#[test]
fn a_topic_rejected_by_the_channels_own_put_is_reported_rejected() {
    let emu = emulator();
    // A backoff long enough that the thread is still waiting to replace its channel when the
    // call comes (fixed seed: the draw is checked below), and ending before the call's 60 s
    // deadline, so the call waits for it; the call's nudge cuts that wait short.
    let client = builder(&emu)
        .connect_timeout(Duration::from_secs(20))
        .request_timeout(Duration::from_secs(20))
        .backoff(
            Backoff::default()
                .base(Duration::from_secs(20))
                .cap(Duration::from_secs(40))
                .seed(Some(7)),
        )
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&client);
    let names = presence_topics(2);
    let _ = client.subscribe(&names[..1]).unwrap();
    let first = emu.channels()[0].id.clone();
    emu.deny_topic(&names[1], &["presence:userPresence:view"]);

    // The channel expires; its thread's first attempt to create another gets a 503 and backs
    // off for long.
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 503,
        retry_after: None,
        times: 1,
    });
    emu.inject(Fault::ExpireChannel {
        channel_id: first.clone(),
    });
    assert!(
        lifecycle.wait(WAIT, |e| matches!(
            e,
            Lifecycle::Reconnecting { delay, error, .. }
                if error.contains("503") && *delay > Duration::from_secs(2)
        )),
        "{:?}",
        lifecycle.snapshot()
    );

    let report = client.subscribe(&names[1..]).unwrap();
    assert!(report.permitted.is_empty(), "{report:?}");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    let rejected = &report.rejected[0];
    assert_eq!(rejected.topic, topics(&names[1..])[0].as_str());
    assert_eq!(
        rejected.missing_permissions,
        ["presence:userPresence:view"],
        "{rejected:?}"
    );
    // The channel was replaced, and carries only the first topic.
    let channels = emu.channels();
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_ne!(channels[0].id, first);
    assert_eq!(client.topics(), topics(&names[..1]));
    client.shutdown(Duration::from_secs(5)).unwrap();
}
