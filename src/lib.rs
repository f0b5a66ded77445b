//! # genesys-notify
//!
//! A synchronous, thread-based client for Genesys Cloud real-time notifications, for programs
//! with no async runtime: blocking services, command-line and batch tools, embedded and legacy
//! hosts. It subscribes topics over WebSocket notification channels, keeps them alive through
//! network faults, server maintenance and token expiry, and hands every event to the callbacks
//! you registered — and it tells you whenever it could not.
//!
//! These crate docs are the manual: a quick start, then one section per topic, then the
//! [guarantees](#guarantees) the rest of the crate is held to. The facts about the service it
//! relies on are in the repository's `docs/protocol.md`, cited by section.
//!
//! ## Quick start
//! ```no_run
//! use genesys_notify::{Client, Event, Lifecycle, Region};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), genesys_notify::Error> {
//! let client = Client::builder()
//!     .region(Region::EuWest1)
//!     .client_credentials("my-client-id", "my-client-secret")
//!     .build()?;
//!
//! // Listeners: keep the guards; dropping one unregisters its callback.
//! let _presence = client.on("v2.users.*.presence", |event: &Event| {
//!     println!("{} -> {}", event.topic(), event.body_json());
//! })?;
//! let _lifecycle = client.on_lifecycle(|event: &Lifecycle| eprintln!("{event:?}"))?;
//!
//! let report = client.subscribe([
//!     "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence",
//!     "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f?routingStatus&conversationsummary",
//! ])?;
//! for rejected in &report.rejected {
//!     eprintln!("{} rejected: {:?} {:?}", rejected.topic, rejected.rejection_reason,
//!               rejected.missing_permissions);
//! }
//!
//! std::thread::sleep(Duration::from_secs(60));
//! client.shutdown(Duration::from_secs(5))?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Authentication
//! [`ClientBuilder::client_credentials`] runs the OAuth client-credentials grant
//! ([`ClientCredentials`], `POST {login_base}/oauth/token`); [`ClientBuilder::access_token`]
//! uses a token obtained elsewhere ([`StaticToken`], never refreshed); and
//! [`ClientBuilder::token_source`] takes any [`TokenSource`], including a closure:
//! ```no_run
//! use genesys_notify::{AccessToken, Client, Region, TokenError};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), genesys_notify::Error> {
//! let client = Client::builder()
//!     .region(Region::UsEast1)
//!     .token_source(|| -> Result<AccessToken, TokenError> {
//!         // Ask your own token service; say how long the token lives if you know it.
//!         Ok(AccessToken::new("token-from-elsewhere", Some(Duration::from_secs(3600))))
//!     })
//!     .build()?;
//! client.verify_token()?; // GET /api/v2/tokens/me: fail fast on bad credentials
//! # Ok(())
//! # }
//! ```
//! A [`ClientCredentials`] handed to [`ClientBuilder::token_source`] as it is makes its token
//! requests like the built-in grant, through the client's proxy and trust roots, and its login
//! base is held to the HTTPS rule (see [Corporate networks](#corporate-networks-proxies-trust-roots-gateways));
//! a source of your own makes its own requests.
//!
//! Tokens with a known `expires_in` are refreshed ahead of expiry (guarantee 5); sockets do not
//! use the token, so a refresh touches none. A token source failing is reported as
//! [`Lifecycle::TokenRefreshFailed`]; a permanent failure (bad credentials) makes the calls that
//! need a token fail with [`Error::Token`].
//!
//! ## Where to connect
//! [`ClientBuilder::region`] (a [`Region`], which also parses from `"eu-west-1"` or
//! `"mypurecloud.ie"`) or [`ClientBuilder::region_name`] picks `api.<domain>` and
//! `login.<domain>` (docs/protocol.md "Hosts and regions"); [`ClientBuilder::api_base`] and
//! [`ClientBuilder::login_base`] set them explicitly (test servers, new regions). There is no
//! default region: a client of an org in another region would see its credentials refused, so
//! [`ClientBuilder::build`] fails with [`Error::Config`] naming `region` when neither a region
//! nor an API base is given. An API base `https://api.<domain>` alone gives the login host
//! `https://login.<domain>`; any other (an emulator, a gateway) gives none, and the
//! client-credentials grant then needs [`ClientBuilder::login_base`] (`build` names
//! `login_base`; an access token needs no login host). Plain `http` is accepted only for
//! loopback hosts; everything else is TLS with verified certificates (rustls and the webpki
//! roots).
//!
//! ## Corporate networks: proxies, trust roots, gateways
//! One HTTP `CONNECT` proxy carries the token request, the REST calls and the notification
//! sockets — including a [`ClientCredentials`] handed to [`ClientBuilder::token_source`]:
//! [`ClientBuilder::proxy`] (a URL, or a [`Proxy`] parsed with [`Proxy::parse`]), else `https_proxy`/`HTTPS_PROXY`/`all_proxy`/`ALL_PROXY`
//! from the environment ([`ClientBuilder::proxy_from_env`] turns that off), with
//! [`ClientBuilder::no_proxy`] or `NO_PROXY` naming hosts that go direct (curl's syntax: host
//! names cover their subdomains; `.domain`, IP, CIDR and `:port` forms; an entry that is none
//! of these fails [`ClientBuilder::build`] naming it). Loopback goes direct
//! unless [`ClientBuilder::proxy_loopback`]. A proxy's failure is a typed [`ProxyError`]: one
//! asking for credentials stops at once, the others are retried with backoff. Servers are
//! verified against the bundled Mozilla roots, or the system store with
//! [`ClientBuilder::tls_roots`], plus certificates from [`ClientBuilder::add_root_certificates`]
//! ([`RootCertificate`]s parsed and checked where you read them) or
//! [`ClientBuilder::add_root_certificates_pem`] (PEM text, checked at `build`). [`ClientBuilder::streaming_base`] and
//! [`ClientBuilder::map_connect_uri`] send the sockets to a gateway, keeping the `connectUri`'s
//! path and query.
//!
//! ## Topics and channels
//! Topic names are validated and lower-cased ([`Topic`]; at most [`MAX_TOPIC_LEN`] characters,
//! at least two dot-separated segments, none empty; nothing is trimmed: white space anywhere is
//! an error, as are control characters).
//! A combined topic such as `v2.users.<id>?presence&routingStatus` counts as one subscription,
//! but its events arrive under the individual names (`v2.users.<id>.presence`, ...).
//!
//! [`Client::subscribe`] packs topics into as few notification channels as the service's limits
//! allow (1 000 topics per channel, 20 channels per user and OAuth client; docs/protocol.md
//! "Channels"), filling existing channels first. Going beyond is [`Error::TooManyTopics`] (or
//! [`Error::TooManyChannels`]), never a silent eviction of one of our own channels.
//! [`Client::subscribe_isolated`] puts a group of topics on a channel of its own;
//! [`Client::unsubscribe`] removes topics and [`Client::topics`] lists them. Each call returns a
//! [`SubscribeReport`]: topics permitted, topics rejected by the service (with the reason and the
//! missing permissions, [`TopicResult`]) and duplicates that needed nothing (a topic already
//! subscribed, or named again in the same call in any spelling:
//! `v2.users.<id>?presence&routingStatus` and `v2.users.<id>?routingStatus&presence` are one
//! topic).
//!
//! Each channel runs on an OS thread of its own: it creates the channel, connects its socket
//! (tungstenite over rustls), subscribes the topics with `ignoreErrors=true`, reads frames,
//! sends the application ping `{"message":"ping"}` when the socket is idle, and replaces a
//! silent socket within the liveness bound (guarantee 3).
//!
//! Memory: a connected channel costs about 160 KiB at most (measured 130–139 KiB over `ws`:
//! its thread's stack and allocator pages, a 32 KiB socket read buffer, its state; rustls adds
//! about 17 KiB over `wss`; `benches/load.rs` checks the figure), besides the events waiting in
//! the dispatcher queues, which [`Config::queue_capacity_bytes`] bounds per dispatcher thread
//! (the queues take memory only for the events they hold). A client with one channel of one
//! topic costs about 180 KiB more than none, most of it its threads' touched stacks (README,
//! "Performance").
//!
//! ## Listeners and events
//! [`Client::on`] registers a callback for a [`Pattern`]: `*` stands for exactly one
//! dot-separated segment (`v2.users.*.presence`) and matching ignores case. It returns a
//! [`ListenerGuard`]; dropping the guard unregisters the callback (guarantee 6), and
//! [`ListenerGuard::forget`] keeps it for the client's life. An [`Event`] gives the topic, the
//! `CorrelationId`, the [`ChannelId`] (shown shortened), the time it was received, and the
//! `eventBody`: raw ([`Event::body_json`]), as a `serde_json::Value` ([`Event::body_value`]) or
//! as your own type ([`Event::body`], which may borrow from the frame).
//!
//! Callbacks run on the dispatcher threads ([`ClientBuilder::dispatcher_threads`]). Events are
//! sharded by topic, so each listener sees one topic's events in the order they were received
//! (guarantee 2) while different topics run in parallel. Each channel's socket thread only
//! reads: a notification is queued as soon as its first key, `topicName`, is read (the service
//! writes it first), and the rest of its envelope is parsed by the dispatcher thread that
//! delivers it, so that parsing never slows the reading of the socket. A notification found
//! malformed there is reported like any bad frame ([`Lifecycle::MalformedMessage`], counted in
//! [`ChannelHealth::malformed`], not in `received`).
//!
//! [`Client::on_lifecycle`] registers a callback for [`Lifecycle`] events, which say what
//! happened to the client: channels created or replaced, sockets connected and disconnected (with
//! a [`DisconnectCause`]), reconnection attempts, gaps, per-topic subscription results, token
//! refreshes, failed REST calls, malformed and unrouted messages, dropped events, panicking
//! listeners, bodies that did not fit a typed listener, dispatch lag and `v2.system.*` messages
//! ([`SystemMessage`]). They run on one lifecycle thread, in the order they happened.
//!
//! ## Typed bodies and topic names
//! [`models`] has serde types for the bodies of the topics used most, each following the
//! Genesys notification schema it names: [`models::UserPresence`],
//! [`models::UserRoutingStatus`], [`models::UserConversationSummary`],
//! [`models::ConversationEvent`], [`models::QueueMember`], [`models::QueueObservation`] and
//! [`models::UserStations`] (every field optional, unknown fields ignored, unknown enumeration
//! values kept as `Other`; each type's docs have an example). [`models::topics`] builds their
//! topic names from ids (`topics::user_presence(id)`, `topics::queue_observations(id)`, the
//! combined user topic, ...), each a validated [`Topic`] with the [`Pattern`]s that match its
//! events. [`Client::on_typed`] registers a listener that gets the body parsed, on the
//! dispatcher thread ([`Client::on_topic`] takes the type from a built topic); a body that does
//! not fit skips it and is reported once per topic ([`Lifecycle::BodyMismatch`], counted in
//! [`Health::body_mismatches`]) while every other listener still gets the event. Presence and
//! routing-status snapshots parse into the same types.
//! ```no_run
//! use genesys_notify::models::{topics, UserPresence};
//! use genesys_notify::{Client, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let client = Client::builder()
//! #     .region(genesys_notify::Region::UsEast1)
//! #     .access_token("token")
//! #     .build()?;
//! let presence = topics::user_presence("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")?;
//! let _guard = client.on_typed(presence.pattern_any(), |event: &Event, body: &UserPresence| {
//!     println!("{} is {:?}", event.topic(), body.system_presence());
//! })?;
//! let _report = client.subscribe([&presence])?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Backpressure
//! Each dispatcher thread has a bounded queue ([`ClientBuilder::queue_capacity`] events). When
//! the queue an event belongs to is full, the [`Backpressure`] policy decides:
//! [`Backpressure::Block`] (the default: the socket thread waits, TCP pushes back on the server,
//! nothing is lost by the client, and the wait does not count as server silence),
//! [`Backpressure::DropNewest`] or [`Backpressure::DropOldest`]. Every drop is counted
//! ([`Health::dropped`]) and reported as [`Lifecycle::Dropped`], coalesced to about one report
//! every 100 ms. A snapshot is never dropped for lack of room when it is queued; under
//! `DropOldest` it can be dropped later as the oldest queued event, and is then also counted in
//! [`ResyncHealth::snapshots_dropped`].
//!
//! ## Many clients in one process
//! A program serving many organisations runs one [`Client`] per organisation (per OAuth
//! client). On its own, each client starts its dispatcher threads, a lifecycle thread, a token
//! refresher thread and, with snapshots on, a resync thread, besides one thread per
//! notification channel. Build them with one shared [`ThreadPool`] instead
//! ([`ClientBuilder::thread_pool`]) and each adds only its channel threads (and a resync thread
//! if it ever resynchronises): the pool's workers run every pooled client's callbacks, event
//! and lifecycle, and its timer thread schedules their token refreshes, whose fetch runs on a
//! worker.
//! ```no_run
//! use genesys_notify::{Client, Event, Region, ThreadPool};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), genesys_notify::Error> {
//! let pool = ThreadPool::new(4)?; // 4 workers and a timer thread, for every client below
//! let mut tenants = Vec::new();
//! for (org, id, secret) in [("acme", "id-1", "secret-1"), ("globex", "id-2", "secret-2")] {
//!     let client = Client::builder()
//!         .region(Region::EuWest1)
//!         .client_credentials(id, secret)
//!         .thread_pool(&pool)
//!         .build()?;
//!     let guard = client.on("v2.users.*.presence", move |event: &Event| {
//!         println!("{org}: {}", event.topic());
//!     })?;
//!     tenants.push((client, guard));
//! }
//! # for (client, _) in &tenants { client.shutdown(Duration::from_secs(5))?; }
//! # Ok(())
//! # }
//! ```
//! What each client keeps: its queues (capacity in events and bytes, backpressure policy) and
//! their order: a client's queue is served by one pool thread at a time, a worker takes at
//! most 64 events from it and then puts it back behind the other clients' queues, so one busy
//! client cannot starve the others. A panicking callback is caught and reported, as without a
//! pool. Its lifecycle events arrive in order. Its [`Client::shutdown`] delivers what its
//! queues hold and ends only its own work; the pool and the other clients go on. Guards keep
//! their promise, and a callback may drop its own guard or shut down its own client (called on
//! a pool thread, a shutdown does not wait for the client's queues to drain: what they still
//! hold is counted as dropped).
//!
//! What it gives up: isolation between clients beyond the pool's thread count. A callback that
//! blocks holds one pool thread for as long as it blocks; while every pool thread is held (by
//! callbacks of any clients) no pooled client's callbacks run, their events wait in their
//! queues and then their backpressure policy applies, and a [`Client::shutdown`] from outside
//! the pool, which delivers what its queues hold first, waits for a thread too (at most its
//! timeout, then [`Error::Timeout`]). Size the pool for the callbacks that may
//! block at once, or hand slow work to threads of your own. A token endpoint that hangs holds
//! one pool thread for that client's fetch, at most the request timeout. Each client uses at
//! most [`Config::dispatcher_threads`] (and at most the pool's thread count) of the pool's
//! threads at once for its events.
//!
//! The pool ends when its last handle and the last client built with it are gone: its threads
//! end on their own and are never waited for (dropping a handle never blocks, and a pool never
//! holds a process at exit). [`ThreadPool::shutdown`] ends it now and joins its threads within
//! a timeout (a batch of callbacks under way stops after the callback running); its clients'
//! later calls then fail with [`Error::Shutdown`], and their shutdown counts the events left
//! in their queues, never delivered, as dropped.
//!
//! ## Recovery
//! Any close or error you did not ask for leads to reconnection with exponential backoff and
//! full jitter ([`Backoff`]), honouring `Retry-After`, within the retry budget
//! ([`Backoff::max_retries`]; when spent, [`Lifecycle::RetryBudgetExhausted`]). A channel that
//! no longer exists is replaced by a new one with the same topics
//! ([`Lifecycle::ChannelReplaced`]). Every period without a socket is reported as a
//! [`Lifecycle::Gap`] with the topics affected: events are not durable on the service, so
//! resynchronise those topics over REST. Before maintenance the service sends
//! `v2.system.socket_closing`; the client then connects a second socket to the same channel and
//! switches over without a gap (guarantee 4).
//!
//! ## Resynchronising after gaps (snapshots)
//! After every gap (once the socket is back and its topics are subscribed, on the same or a
//! replacement channel) the client reads the current state of the gap's topics over REST and
//! hands it to the topic's listeners as an [`Event`] with [`Event::is_snapshot`]: same topic
//! name, body in the topic's event shape (so one `body::<Presence>()` serves live events and
//! snapshots), a frame with `"snapshot": true`. [`ClientBuilder::snapshots`] says when
//! ([`Snapshots::AfterGaps`], the default; [`Snapshots::AfterGapsAndSubscribe`], so a dashboard
//! starts complete; [`Snapshots::Off`], no state request at all).
//! - Built in: `v2.users.{id}.presence` (presence bulk read, 50 users per request) and
//!   `v2.users.{id}.routingStatus` (users pages with `expand=routingStatus`, 100 per request),
//!   also through `v2.users.{id}?presence&routingStatus`; snapshots carry `systemPresence` in
//!   the event form (`ON_QUEUE`), and [`same_system_presence`] compares either form. Other
//!   topics: a [`StateResource`] of yours ([`ClientBuilder::state_resource`]). Topics without a
//!   resource keep the [`Lifecycle::Gap`] as their only signal.
//! - Order and freshness (see [`Snapshots`]): live events are never held back or reordered; a
//!   snapshot is skipped if a live event of its topic was read after its fetch began, else it is
//!   delivered before every live event read after the answer. No snapshot follows a newer live
//!   event, and each listener ends with the server's state.
//! - Polite and bounded: bulk requests only, at most [`ClientBuilder::resync_concurrency`] in
//!   flight (default 2) and only one until the API has answered, `Retry-After` honoured by every
//!   worker, exponential backoff with full jitter ([`ClientBuilder::resync_backoff`]), a 403
//!   reported once per topic with the permission named ([`ResyncError::Forbidden`]) and not
//!   retried until the topic is subscribed again, every wait cut short by
//!   [`Client::shutdown`]. docs/protocol.md ("State resources") gives the paths, shapes, limits,
//!   sources and the request bound of a resync.
//! - Reported as [`Lifecycle::Resynced`] (per channel: topics, snapshots queued, failures) and
//!   [`Lifecycle::ResyncFailed`] (per topic, a [`ResyncError`]); counted in
//!   [`Health::resync`] ([`ResyncHealth`]).
//!
//! ## Health
//! [`Client::health`] returns a [`Health`] snapshot: per channel ([`ChannelHealth`]) its state,
//! topics, counters (received, delivered, dropped, unrouted, malformed, heartbeats,
//! reconnects, typed-body mismatches), time without a socket, last frame time and ping round
//! trip; the dispatcher queue depths and recent queue waits ([`DispatchWait`]); listeners per
//! pattern; panic and drop totals. The totals ([`Health::received`],
//! [`Health::without_socket`], ...) cover every channel since the client started, forgotten
//! ones included: they never go down.
//!
//! ## Configuration
//! Every setting has a setter of the same name on [`ClientBuilder`], in the unit its docs name
//! (durations as [`Duration`](std::time::Duration)), and a getter on [`Config`]
//! ([`Client::config`] reads them back). [`ClientBuilder::build`] checks them all and names the
//! first one out of range in [`Error::Config`]; a setter that parses text (a region name, a
//! proxy URL, PEM, a streaming base) keeps its error for `build`, and the first bad input is
//! the one reported. To handle such an error where the text is read, parse it yourself
//! (`str::parse::<Region>`, [`Proxy::parse`], [`RootCertificate::parse_pem`]) and hand the typed
//! value to [`ClientBuilder::region`], [`ClientBuilder::proxy`] or
//! [`ClientBuilder::add_root_certificates`]. The region has no default (see
//! [Where to connect](#where-to-connect)). The other defaults follow the service: 30 s ping
//! interval (the heartbeat period), 15 s pong timeout, 60 s liveness timeout, 20 s connect and
//! 30 s request timeouts, 20 channels of 1 000 topics, dispatcher threads with queues of 512
//! events and 1 MiB (one thread per core but one, 1 to 4; [`Config::queue_capacity_bytes`] says
//! why), 4 MiB messages; snapshots after gaps with at most 2 state
//! requests in flight and 5 retries each. [`Backoff`] is changed with chainable setters:
//! ```
//! use genesys_notify::{Backoff, Backpressure, Client, Region};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), genesys_notify::Error> {
//! let client = Client::builder()
//!     .region("eu-west-1".parse::<Region>()?)
//!     .access_token("token")
//!     .dispatcher_threads(4)
//!     .backpressure(Backpressure::DropOldest)
//!     .liveness_timeout(Duration::from_secs(45))
//!     .backoff(Backoff::default().cap(Duration::from_secs(30)).max_retries(Some(20)))
//!     .build()?;
//! assert_eq!(client.config().dispatcher_threads(), 4);
//! # Ok(())
//! # }
//! ```
//!
//! ## Errors
//! Methods return [`Error`]: [`Error::Config`] (a setting out of range or unparsable — the first
//! bad one, no region or API base, no login host for the client-credentials grant, no token
//! source; [`ConfigError::field`] names it),
//! [`Error::Topic`] (an invalid topic or pattern), [`Error::TooManyTopics`] and
//! [`Error::TooManyChannels`] (the service's limits), [`Error::Api`] (a REST call failed,
//! [`ApiError`]), [`Error::Token`] (the token source failed, [`TokenError`]),
//! [`Error::Timeout`], [`Error::ChannelStopped`] (with its typed [`StopReason`]),
//! [`Error::Spawn`] (the system refused a thread) and [`Error::Shutdown`]. Each method's docs
//! say which it returns and when.
//!
//! Every error prints its whole story on one line (its `Display` includes the errors it
//! holds), so `eprintln!("{error}")` is enough; none returns a cause it printed from
//! `source()`, so a reporter that walks the chain never repeats a line. The held errors are
//! the variants' fields; the failures underneath (I/O, HTTP, JSON, your token source's own
//! error) are a [`Cause`], whose [`Cause::io_kind`], [`Cause::is_timeout`] and
//! [`Cause::downcast_ref`] give the typed error. [`Error::status`] (the HTTP status behind a
//! REST or token failure) and [`Error::is_timeout`] answer the usual questions without a match.
//! A [`TokenSource`] of yours fails with [`TokenError::other`]`(your_error)`.
//!
//! [`Client::subscribe`] and [`Client::unsubscribe`] can fail part-way, so they return the
//! [`Error`] together with what they did, as a [`SubscribeError`] or an [`UnsubscribeError`]
//! (`error()` is the [`Error`]); both convert into [`Error`], so `?` works as for the other
//! methods. After a failed `subscribe`, every topic given is in one list: `report().permitted`
//! (subscribed; they stay), `report().rejected`, `report().duplicates`, `pending()` (on a new
//! channel whose thread keeps trying after the deadline: still wanted, do not subscribe them
//! again) or `not_subscribed()` (nothing in place: subscribe them again once the cause is
//! dealt with). After a failed `unsubscribe`, `removed()` lists the topics removed here and on
//! the service, `pending()` those removed here whose channel's thread keeps sending the new set
//! until the service takes it: nothing is left to retry.
//!
//! ```no_run
//! # fn demo(client: &genesys_notify::Client, topics: &[&str]) {
//! match client.subscribe(topics) {
//!     Ok(report) => println!("{} subscribed", report.permitted.len()),
//!     Err(failed) => {
//!         eprintln!("subscribe failed: {}", failed.error());
//!         // Subscribe these again later; those permitted or pending are in place.
//!         let retry_later = failed.not_subscribed().to_vec();
//!         # let _ = retry_later;
//!     }
//! }
//! # }
//! # let _ = demo;
//! ```
//!
//! ## Guarantees
//! The one list of what the crate promises; tests cite these numbers.
//! 1. **No silent loss.** Every notification read from a socket is delivered to every matching
//!    listener, or counted as dropped (backpressure policy) or unrouted (no listener), visible
//!    in [`Client::health`] and in lifecycle events. Every period without a socket is a
//!    [`Lifecycle::Gap`] with its start (the last frame received), end (a new socket connected
//!    with every topic, or the channel stopped for good) and topics.
//! 2. **Order.** Each listener receives a topic's events in the order they were read; different
//!    topics run in parallel on the dispatcher threads.
//! 3. **Liveness is bounded.** An idle socket is pinged after `ping_interval`; a socket that
//!    answers nothing within `pong_timeout`, or stays silent for `liveness_timeout`, is dropped
//!    and replaced at `min(liveness_timeout, ping_interval + pong_timeout)` after its last
//!    frame, plus at most a quarter of the shortest of those settings (by default 45 s, at most
//!    48.75 s).
//! 4. **Recovery is automatic.** Any close or error you did not ask for leads to reconnection
//!    with exponential backoff and full jitter, honouring `Retry-After` (on 429 and 503), within
//!    the retry budget. The backoff grows only with failures in a row: a socket that was
//!    subscribed and read for at least a second, then closed by the server with a close frame
//!    (1000, 1001, takeover, maintenance, channel removed), is followed by an attempt within
//!    250 ms that does not grow the retry count; a server that accepts and closes at once still
//!    meets a growing backoff. A channel that no longer exists (404, evicted, expired) is
//!    replaced by a new one with the same topics. On `v2.system.socket_closing` a new socket to
//!    the same channel is opened within 250 ms of the warning (a uniform jitter) plus the
//!    connection time, and takes over after what still arrives on the old one is delivered: no
//!    gap. The old socket is read during that wait: if the server closes it first, that is an
//!    ordinary end of the socket, and its [`Lifecycle::Gap`] is reported. A wrong `api_base`
//!    (404 on the very first channel creation) fails the first `subscribe` at once with
//!    [`Error::ChannelStopped`] naming the URL.
//! 5. **Tokens are refreshed ahead of expiry**, from `expires_in` (at about 80 % of it), without
//!    touching any socket. A 401 forces one refresh. Bad credentials are a clear error
//!    ([`Error::Token`]), retried by the refresher only every few minutes, never in a hot loop.
//! 6. **Listeners.** Once dropping a [`ListenerGuard`] returns, its callback is not running and
//!    never runs again (dropping a guard inside its own callback is allowed; so is dropping
//!    each other's guards inside two callbacks at once, which cannot wait for each other and
//!    does not deadlock: see [`ListenerGuard`]). A panicking callback is caught and reported;
//!    the dispatcher thread lives on.
//! 7. **Bad input gets a clear error and loses nothing else.** Malformed JSON, binary or oversize
//!    frames and unknown system messages are reported and the stream goes on. Invalid topic
//!    names are refused before anything is sent; topics beyond the limits are an error, never a
//!    silent eviction.
//! 8. **Shutdown is prompt and clean.** [`Client::shutdown`] (and `Drop`, within
//!    `drop_timeout`) sends every socket a close frame, removes the server-side subscriptions,
//!    delivers the events already queued and joins every thread within its timeout (else
//!    [`Error::Timeout`]).
//! 9. **Secrets stay secret.** The client secret and access tokens never appear in `Debug`
//!    output or logs; channel ids and `connectUri` (either lets anyone take the channel over)
//!    appear only shortened, and no public type holds them in full except
//!    [`ChannelId::as_str`], which you call on purpose. Plain `http`/`ws` is accepted only for
//!    loopback hosts. This holds for this crate's own log lines at every level; the `ureq` and
//!    `tungstenite` crates underneath log request paths, which hold the channel id, at `trace`
//!    level, and `tungstenite` logs a received close frame (whose reason the server may write
//!    the channel id into) at `debug`: keep those two at `info` or above in production.
//!
//! ## Testing without Genesys Cloud
//! The `emulator` feature adds [`emulator::Emulator`], a fake Genesys Cloud on 127.0.0.1 with
//! the token endpoint, channels, subscriptions and the WebSocket, event publishing and fault
//! injection. The quickstart example runs against it; your tests can too:
//! ```
//! # #[cfg(feature = "emulator")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use genesys_notify::emulator::Emulator;
//! use genesys_notify::{Client, Event};
//! use std::time::Duration;
//!
//! let emu = Emulator::start()?;
//! let client = Client::builder()
//!     .api_base(emu.api_base())
//!     .login_base(emu.login_base())
//!     .client_credentials(emu.client_id(), emu.client_secret())
//!     .build()?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! let _guard = client.on("v2.users.*.presence", move |event: &Event| {
//!     let _ = tx.send(event.body_json().to_owned());
//! })?;
//! let report = client.subscribe(["v2.users.u1.presence"])?;
//! assert_eq!(report.permitted.len(), 1);
//! emu.publish("v2.users.u1.presence", serde_json::json!({"systemPresence": "BUSY"}));
//! assert!(rx.recv_timeout(Duration::from_secs(10))?.contains("BUSY"));
//! client.shutdown(Duration::from_secs(5))?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "emulator"))]
//! # fn main() {}
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod api;
mod auth;
mod backoff;
mod channel;
mod channel_id;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod config;
mod dispatch;
#[cfg(feature = "emulator")]
pub mod emulator;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod health;
mod http;
mod lag;
mod listener;
mod message;
pub mod models;
mod network;
mod plan;
mod pool;
mod proxy;
mod redact;
mod resync;
mod snapshot_gate;
mod threads;
mod tls;
mod topic;
mod trust;
mod tunnel;
mod url;

pub use auth::{AccessToken, ClientCredentials, StaticToken, TokenSource};
pub use backoff::Backoff;
pub use channel_id::ChannelId;
pub use client::{Client, ClientBuilder, SubscribeError, SubscribeReport, UnsubscribeError};
pub use config::{Backpressure, Config, Region, Snapshots};
pub use error::{
    ApiError, Cause, ChannelError, ConfigError, DisconnectCause, Error, ProxyError, ResyncError,
    StopReason, TokenError,
};
pub use event::{Event, Lifecycle};
pub use health::{ChannelHealth, ChannelState, Health, ResyncHealth};
pub use lag::DispatchWait;
pub use listener::ListenerGuard;
pub use message::SystemMessage;
pub use pool::{ThreadPool, MAX_POOL_THREADS};
pub use proxy::{IntoProxy, Proxy, ProxyConfig};
pub use resync::{same_system_presence, StateResource, StateSnapshot};
pub use tls::{RootCertificate, TlsRoots};
pub use topic::{Pattern, Topic, TopicError, TopicResult, TopicState, MAX_TOPIC_LEN};

// Compile-time proof of the thread-safety the docs promise: a `Client` is shared between
// threads, a `ListenerGuard` may be dropped on any thread, and an `Error` can travel in
// `Box<dyn std::error::Error + Send + Sync>`. Losing one of these fails the build here.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<ListenerGuard>();
    send_sync::<Error>();
    send_sync::<Event>();
    send_sync::<Lifecycle>();
    send_sync::<Health>();
    send_sync::<ThreadPool>();
};

// README.md's Rust blocks are doc tests: the Usage example must compile. (Its emulator example
// is a `#[test]` function, which a doc test would drop: tests/readme.rs runs it.)
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

/// The public surface, pinned by doc tests: the REST and token modules are private (what users
/// need is re-exported above), nothing public holds a channel's full id or `connectUri`, and
/// settings are changed only through setters, so adding one breaks no one.
///
/// ```compile_fail,E0603
/// use genesys_notify::api::ApiError; // use genesys_notify::ApiError
/// ```
/// ```compile_fail,E0603
/// use genesys_notify::auth::TokenSource; // use genesys_notify::TokenSource
/// ```
/// ```compile_fail,E0432
/// use genesys_notify::ChannelInfo; // crate-private: it holds the channel id and `connectUri`
/// ```
/// ```compile_fail,E0432
/// use genesys_notify::MalformedFrame; // appears in no public signature
/// ```
/// ```compile_fail,E0451
/// let config = genesys_notify::Config { max_channels: 3, ..Default::default() };
/// ```
/// ```compile_fail,E0451
/// let backoff = genesys_notify::Backoff { max_retries: Some(3), ..Default::default() };
/// ```
/// ```compile_fail,E0639
/// let report = genesys_notify::SubscribeReport {
///     permitted: Vec::new(),
///     rejected: Vec::new(),
///     duplicates: Vec::new(),
/// };
/// ```
/// The same settings through the builder and setters compile:
/// ```
/// let builder = genesys_notify::Client::builder()
///     .max_channels(3)
///     .backoff(genesys_notify::Backoff::default().max_retries(Some(3)));
/// # drop(builder);
/// ```
#[cfg(doctest)]
mod public_surface {}
