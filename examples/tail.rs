//! `tail`: follow Genesys Cloud notification topics from the command line.
//!
//! Each notification is printed on stdout as one line of JSON: the frame exactly as received,
//! with `topicName`, `eventBody` and `metadata` (pipe it into `jq`). Lifecycle events (connected,
//! gaps, reconnections, rejected topics, ...) go to stderr, one readable line each, or one JSON
//! object each with `--lifecycle-format json` (`time`, `event`, `channel`, `message`, and
//! details for some events; tail's own lines too). Ctrl-C (and SIGTERM or SIGHUP) shuts down
//! cleanly, also while the first subscribe still waits for the service: the sockets are closed
//! and the server-side subscriptions removed.
//!
//! After a gap, the current state of presence and routing-status topics is read over REST and
//! printed as snapshot lines: frames with `"snapshot": true` whose `eventBody` has the event
//! shape. `--no-snapshots` turns that off; `--snapshots-at-subscribe` also prints the state
//! right after subscribing.
//!
//! ```text
//! export GENESYS_REGION=eu-west-1 GENESYS_CLIENT_ID=... GENESYS_CLIENT_SECRET=...
//! cargo run --example tail --features cli -- 'v2.users.<user-id>?presence&routingStatus' 'v2.routing.queues.<queue-id>.users'
//! # or installed: cargo install --path . --features cli, then
//! genesys-tail 'v2.users.<user-id>?presence&routingStatus'
//! ```
//!
//! Authentication: `--access-token` / `GENESYS_ACCESS_TOKEN` (a token obtained elsewhere, not
//! refreshed), else `--client-id` / `GENESYS_CLIENT_ID` and `--client-secret` /
//! `GENESYS_CLIENT_SECRET` (OAuth client credentials grant). Where: `--region` /
//! `GENESYS_REGION`, or explicit base URLs `--api-base` / `GENESYS_API_BASE` and
//! `--login-base` / `GENESYS_LOGIN_BASE`, which override the region's hosts.
//!
//! Exit codes: 0 after Ctrl-C, SIGTERM or SIGHUP, or once nobody reads stdout (`| head -1`), 2
//! for input to fix (missing or wrong credentials, bad topic names, topics all rejected, bad
//! settings, a proxy asking for credentials), 3 when the service cannot be reached, 4 for a
//! permission missing (403), 5 for rate limiting (429), 6 for a failing service (5xx), 1 for
//! other failures (stdout not writable included), 130 for a second Ctrl-C.
//!
//! The source is shared with the installed `genesys-tail` binary (feature `cli`); `--help`
//! lists every flag, the output formats, the exit codes and examples.

include!("../src/bin/genesys-tail.rs");
