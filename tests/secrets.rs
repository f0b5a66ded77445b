//! Secrets stay secret (crate guarantee 9): the client secret and access tokens never
//! appear in `Debug` output (builder, client, config, health, lifecycle events, errors) or in
//! log output, and channel ids and `connectUri`s appear only shortened (`stre…abcd`).
//!
//! A capturing `log` logger at `Trace` records every log line of the process. Lines written by
//! the emulator (threads `emu-*`, targets `genesys_notify::emulator*`) are left out: the
//! emulator is the server, not the client. Everything else — the client's own lines and those
//! of the crates it uses (ureq, tungstenite, rustls) on the client's threads — is checked.
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig, Fault, Frame, Target};
use genesys_notify::{AccessToken, Client, ClientCredentials, Event, Lifecycle, TokenError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "SECRET-MARKER-5b1d0c9e-client-secret";

// ---------------------------------------------------------------------------------------------
// Capturing logger
// ---------------------------------------------------------------------------------------------

struct Capture {
    lines: Mutex<Vec<String>>,
}

impl log::Log for Capture {
    /// Everything of this crate; Debug and above of the crates it uses. At Trace, ureq and
    /// tungstenite print whole request lines (and so channel ids) by design; that is their
    /// documented behaviour, not the client's output.
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug || metadata.target().starts_with("genesys_notify")
    }

    fn log(&self, record: &log::Record<'_>) {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("?");
        if !self.enabled(record.metadata())
            || thread.starts_with("emu-")
            || record.target().starts_with("genesys_notify::emulator")
        {
            return;
        }
        self.lines.lock().push(format!(
            "{} {} [{thread}] {}",
            record.level(),
            record.target(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

/// Installs the capturing logger once for the whole test binary.
fn capture() -> &'static Capture {
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    })
}

fn log_lines() -> Vec<String> {
    capture().lines.lock().clone()
}

// ---------------------------------------------------------------------------------------------
// What must not appear, and what should appear instead
// ---------------------------------------------------------------------------------------------

/// What a run must never show.
struct Secrets {
    /// The client secret, access tokens.
    plain: Vec<String>,
    /// Channel ids.
    channels: Vec<String>,
    /// connectUris.
    uris: Vec<String>,
}

impl Secrets {
    fn of(emu: &Emulator, plain: Vec<String>) -> Secrets {
        let mut all = emu.channels();
        all.extend(emu.removed_channels());
        assert!(!all.is_empty());
        Secrets {
            plain,
            channels: all.iter().map(|c| c.id.clone()).collect(),
            uris: all.iter().map(|c| c.connect_uri.clone()).collect(),
        }
    }

    /// Panics with the offending text when `text` shows a secret, a channel id or a connectUri
    /// (whole or any 10 consecutive characters of the id's random part).
    fn check(&self, what: &str, text: &str) {
        for secret in &self.plain {
            assert!(!secret.is_empty());
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a secret {secret:?}:\n{}",
                excerpt(text, secret)
            );
        }
        for uri in &self.uris {
            assert!(
                !text.contains(uri.as_str()),
                "{what} shows a whole connectUri:\n{}",
                excerpt(text, uri)
            );
        }
        for id in &self.channels {
            let random: Vec<char> = id.trim_start_matches("streaming-0-").chars().collect();
            assert!(random.len() >= 20, "{id}");
            for window in random.windows(10) {
                let part: String = window.iter().collect();
                assert!(
                    !text.contains(&part),
                    "{what} shows (part of) channel id {id}:\n{}",
                    excerpt(text, &part)
                );
            }
        }
    }

    /// The shortened forms of the channel ids (as `redact::short_id` makes them).
    fn short_ids(&self) -> Vec<String> {
        self.channels.iter().map(|id| short_id(id)).collect()
    }
}

fn short_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The lines of `text` around `needle`.
fn excerpt(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Any run of 32 or more hex digits: emulator tokens are 64 hex digits; nothing else the client
/// shows legitimately is that long (UUIDs have dashes, channel ids are checked separately).
fn long_hex_run(text: &str) -> Option<String> {
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            if run.len() >= 32 {
                return Some(run);
            }
            run.clear();
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// A run that goes through every path that names a channel or uses a token
// ---------------------------------------------------------------------------------------------

/// Everything the run produced that a user could print.
struct Run {
    /// The ids of the two channels first created (named in the early Debug output).
    originals: Vec<String>,
    debug: Vec<(String, String)>,
    lifecycle: Vec<Lifecycle>,
}

/// Two channels; events, a bad frame and an unrouted event; a forced token refresh after 401;
/// a socket closed by the server; `socket_closing`; an expired (replaced) channel; unsubscribe;
/// shutdown. Returns the Debug output of every public object along the way.
fn exercise(emu: &Emulator, client: Client) -> Run {
    let mut debug = Vec::new();
    let lifecycle = Recorder::new(&client);
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let _guard = client
        .on("v2.users.*.presence", move |e: &Event| {
            // Events name their channel: Debug must shorten it.
            let _ = format!("{e:?} {}", e.channel_id());
            g.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let topics = presence_topics(2);
    let _ = client.subscribe(&topics).unwrap();
    let _ = client
        .subscribe([format!("v2.users.{}.routingstatus", user_id(0))])
        .unwrap();
    wait_sockets(emu, 2);
    let channels = emu.channels();
    assert_eq!(channels.len(), 2);
    let first = channels[0].id.clone();
    let second = channels[1].id.clone();

    let mut published = 0;
    let mut publish = |n: u64| {
        for _ in 0..n {
            published += 1;
            for t in &topics {
                emu.publish(t, presence_body(published));
            }
        }
        published * topics.len() as u64
    };
    let expect = publish(3);
    assert!(wait_until(WAIT, || got.load(Ordering::SeqCst) == expect));
    emu.publish(
        &format!("v2.users.{}.routingstatus", user_id(0)),
        presence_body(0),
    );
    emu.inject(Fault::MalformedJson {
        target: Target::channel(&first),
    });
    let text = format!(r#"{{"topicName":"v2.users.x.presence","channel":"{first}"}}"#);
    emu.send_frame(&first, Frame::Text(text));
    debug.push(("Health".into(), format!("{:?}", client.health())));
    debug.push(("Health (pretty)".into(), format!("{:#?}", client.health())));
    debug.push(("Client".into(), format!("{client:?}")));
    debug.push(("Config".into(), format!("{:?}", client.config())));

    // 401 on the next REST call: the token is refreshed once.
    emu.inject(Fault::ExpireTokens);
    client.verify_token().unwrap();
    // The server closes a socket; the channel thread reconnects.
    emu.inject(Fault::CloseSocket {
        target: Target::channel(&first),
        code: 1011,
        reason: "internal error".into(),
    });
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::Gap { .. })));
    // socket_closing (its body carries the channel id): the thread switches sockets.
    emu.inject(Fault::SocketClosing {
        target: Target::channel(&second),
        close_after: Some(Duration::from_secs(5)),
    });
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::SystemMessage { .. })));
    assert!(emu.wait_for(WAIT, |emu| emu
        .channel(&second)
        .is_some_and(|c| c.connections == 2)));
    // The channel expires: the thread makes a new one with the same topics.
    emu.inject(Fault::ExpireChannel {
        channel_id: first.clone(),
    });
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::ChannelReplaced { .. })));
    let replacement = lifecycle
        .snapshot()
        .into_iter()
        .find_map(|e| match e {
            Lifecycle::ChannelReplaced { new, .. } => Some(new),
            _ => None,
        })
        .unwrap();
    // Its topics are subscribed again once the gap is reported.
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::Gap { channel, .. } if *channel == replacement
    )));
    // A failing subscription request.
    emu.inject(Fault::HttpStatus {
        endpoint: genesys_notify::emulator::Endpoint::Subscriptions,
        status: 500,
        retry_after: None,
        times: 1,
    });
    let _ = client
        .subscribe([format!("v2.users.{}.presence", user_id(9))])
        .unwrap();
    let error = client.subscribe(["not a topic"]).unwrap_err().into_error();
    debug.push(("Error".into(), format!("{error:?} / {error}")));

    let before = got.load(Ordering::SeqCst);
    let sent: usize = topics
        .iter()
        .map(|t| emu.publish(t, presence_body(1000)))
        .sum();
    assert!(
        wait_until(WAIT, || got.load(Ordering::SeqCst) >= before + topics.len() as u64),
        "events after the faults not delivered ({} of {}; sent to {sent} sockets): {:#?}\n{:#?}\n{:#?}",
        got.load(Ordering::SeqCst) - before,
        topics.len(),
        client.health(),
        emu.channels()
            .iter()
            .map(|c| (c.id.clone(), c.topics.clone(), c.connected, c.connections))
            .collect::<Vec<_>>(),
        lifecycle.snapshot()
    );
    client.unsubscribe(&topics[..1]).unwrap();

    debug.push((
        "Health at the end".into(),
        format!("{:#?}", client.health()),
    ));
    debug.push(("Client at the end".into(), format!("{client:#?}")));
    client.shutdown(Duration::from_secs(2)).unwrap();
    debug.push(("Client after shutdown".into(), format!("{client:?}")));
    // Give the lifecycle thread's last events time to arrive before reading them.
    std::thread::sleep(Duration::from_millis(50));
    Run {
        originals: vec![first, second],
        debug,
        lifecycle: lifecycle.snapshot(),
    }
}

fn check_run(emu: &Emulator, run: &Run, plain: Vec<String>, logs_before: usize) {
    let secrets = Secrets::of(emu, plain);
    for (what, text) in &run.debug {
        secrets.check(what, text);
        if let Some(hex) = long_hex_run(text) {
            panic!("{what} shows what looks like a token: {hex}");
        }
    }
    let mut lifecycle_text = String::new();
    for event in &run.lifecycle {
        lifecycle_text.push_str(&format!("{event:?}\n{event:#?}\n"));
        if let Lifecycle::Disconnected { cause, .. } = event {
            lifecycle_text.push_str(&format!("{cause}\n"));
        }
        if let Lifecycle::TokenRefreshFailed { error, .. } = event {
            lifecycle_text.push_str(&format!("{error}\n"));
        }
    }
    secrets.check("a Lifecycle event", &lifecycle_text);
    assert!(long_hex_run(&lifecycle_text).is_none());
    // The run did go through the paths that name channels.
    for kind in [
        "ChannelCreated",
        "ChannelReplaced",
        "Connected",
        "Disconnected",
        "Gap",
        "Subscribed",
        "Unsubscribed",
        "SystemMessage",
        "MalformedMessage",
        "UnroutedMessage",
        "TokenRefreshed",
        "RequestFailed",
    ] {
        assert!(
            lifecycle_text.contains(kind),
            "no {kind} event in the run:\n{lifecycle_text}"
        );
    }
    // Where channels are named, the short form is used.
    let short = secrets.short_ids();
    let client_debug = &run.debug.iter().find(|(w, _)| w == "Client").unwrap().1;
    let health_debug = &run.debug.iter().find(|(w, _)| w == "Health").unwrap().1;
    for id in run.originals.iter().map(|id| short_id(id)) {
        assert!(client_debug.contains(&id), "{id} not in {client_debug}");
        assert!(health_debug.contains(&id), "{id} not in {health_debug}");
    }
    for id in &short {
        assert!(
            lifecycle_text.contains(id.as_str()),
            "{id} not in lifecycle events"
        );
    }

    let logs = log_lines()[logs_before..].join("\n");
    assert!(!logs.is_empty());
    secrets.check("the log output", &logs);
    if let Some(hex) = long_hex_run(&logs) {
        panic!(
            "the log output shows what looks like a token: {hex}\n{}",
            excerpt(&logs, &hex)
        );
    }
    assert!(
        short.iter().any(|id| logs.contains(id.as_str())),
        "no shortened channel id in the logs"
    );
    // Lifecycle events are logged as readable lines (name, channel, what happened), not as
    // `Debug` dumps of their fields.
    assert!(
        short
            .iter()
            .any(|id| logs.contains(&format!("connected channel={id}: connected"))),
        "no readable `connected` line in the logs:\n{logs}"
    );
    assert!(
        !logs.contains("Connected {"),
        "a Debug dump in the logs:\n{logs}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests. They share the process-wide logger, so they run one at a time.
// ---------------------------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

fn marked_emulator() -> Emulator {
    emulator_with(
        EmulatorConfig::default()
            .client_secret(SECRET)
            .token_lifetime(Duration::from_secs(3)),
    )
}

#[test]
fn client_credentials_secret_and_tokens_never_show() {
    let _serial = SERIAL.lock();
    let logs_before = capture().lines.lock().len();
    let emu = marked_emulator();
    // The client's own token source, wrapped to learn the tokens it hands out.
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = issued.clone();
    let source = ClientCredentials::new(
        &emu.login_base(),
        emu.client_id(),
        SECRET,
        Duration::from_secs(5),
    );
    let source_debug = format!("{source:?}");
    let source = move || -> Result<AccessToken, TokenError> {
        let token = genesys_notify::TokenSource::fetch_token(&source)?;
        sink.lock().push(token.secret().to_owned());
        let _ = format!("{token:?}");
        Ok(token)
    };
    let builder = builder(&emu)
        .pong_timeout(Duration::from_secs(1))
        .token_source(source)
        .max_topics_per_channel(2);
    let builder_debug = format!("{builder:?}");
    let client = builder.build().unwrap();
    let mut run = exercise(&emu, client);
    run.debug.push(("ClientCredentials".into(), source_debug));
    run.debug.push(("ClientBuilder".into(), builder_debug));
    let mut plain = vec![SECRET.to_owned()];
    plain.extend(issued.lock().iter().cloned());
    // Initial token, the refresh after the 401, and refreshes ahead of expiry.
    assert!(plain.len() >= 3, "{} tokens", plain.len() - 1);
    check_run(&emu, &run, plain, logs_before);
}

#[test]
fn builder_with_client_credentials_never_shows_the_secret() {
    let _serial = SERIAL.lock();
    let logs_before = capture().lines.lock().len();
    let emu = marked_emulator();
    let builder = builder(&emu).client_credentials(emu.client_id(), SECRET);
    let builder_debug = format!("{builder:?} {builder:#?}");
    assert!(builder_debug.contains(emu.client_id()), "{builder_debug}");
    let client = builder
        .pong_timeout(Duration::from_secs(1))
        .max_topics_per_channel(2)
        .build()
        .unwrap();
    let mut run = exercise(&emu, client);
    run.debug.push(("ClientBuilder".into(), builder_debug));
    // The tokens are unknown here: `long_hex_run` catches any of them.
    check_run(&emu, &run, vec![SECRET.to_owned()], logs_before);
    assert!(emu.token_requests() >= 2);
}

#[test]
fn static_access_token_never_shows() {
    let _serial = SERIAL.lock();
    let logs_before = capture().lines.lock().len();
    // A long-lived static token: ExpireTokens would kill it for good, so this run skips the
    // 401 path (the static token cannot be refreshed) and uses its own emulator.
    let emu = emulator_with(EmulatorConfig::default().client_secret(SECRET));
    let token = emu.issue_token();
    let builder = builder(&emu)
        .access_token(token.clone())
        .max_topics_per_channel(2);
    let builder_debug = format!("{builder:?} {builder:#?}");
    let client = builder.build().unwrap();
    let lifecycle = Recorder::new(&client);
    let topics = presence_topics(3);
    let _ = client.subscribe(&topics).unwrap();
    wait_sockets(&emu, 2);
    let first = emu.channels()[0].id.clone();
    emu.inject(Fault::CloseSocket {
        target: Target::channel(&first),
        code: 1011,
        reason: "bye".into(),
    });
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::Gap { .. })));
    let debug = vec![
        ("ClientBuilder".to_owned(), builder_debug),
        ("Client".to_owned(), format!("{client:?}")),
        ("Health".to_owned(), format!("{:?}", client.health())),
        ("Config".to_owned(), format!("{:?}", client.config())),
    ];
    client.shutdown(Duration::from_secs(2)).unwrap();
    let secrets = Secrets::of(&emu, vec![token, SECRET.to_owned()]);
    for (what, text) in &debug {
        secrets.check(what, text);
    }
    let events: String = lifecycle
        .snapshot()
        .iter()
        .map(|e| format!("{e:?}\n"))
        .collect();
    secrets.check("a Lifecycle event", &events);
    let logs = log_lines()[logs_before..].join("\n");
    secrets.check("the log output", &logs);
}

/// A password written into a URL setting never shows in the error that refuses the setting,
/// and a base URL with user info is refused at `build()` (the client authenticates with OAuth
/// tokens) rather than kept and printed in `Debug` output of the config.
#[test]
fn passwords_in_url_settings_never_show_in_errors_or_debug_output() {
    const PASSWORD: &str = "pw-marker-5b1f";
    let emu = emulator();
    let with_password = |host: &str| format!("https://user:{PASSWORD}@{host}");
    let loopback = format!("http://user:{PASSWORD}@127.0.0.1:8080");
    let cases: Vec<(&str, genesys_notify::ClientBuilder)> = vec![
        (
            "api_base",
            builder(&emu).api_base(with_password("api.example.com")),
        ),
        ("api_base", builder(&emu).api_base(loopback.clone())),
        (
            "login_base",
            builder(&emu).login_base(with_password("login.example.com")),
        ),
        (
            "api_base",
            builder(&emu).api_base(format!("user:{PASSWORD}@api.example.com")),
        ),
        (
            "streaming_base",
            builder(&emu).streaming_base(&with_password("gw.example.com")),
        ),
        ("streaming_base", builder(&emu).streaming_base(&loopback)),
        // The `@host` part forgotten: the password sits where the port goes.
        (
            "proxy",
            builder(&emu).proxy(&format!("http://user:{PASSWORD}")),
        ),
    ];
    for (field, builder) in cases {
        let error = builder.build().expect_err(field);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(PASSWORD), "{field}: {shown}");
        assert!(shown.contains(field), "{field}: {shown}");
    }
}

/// Texts the server writes may name the channel: a close frame's reason and every field of a
/// `v2.system.*` message. The client passes them on with the id shortened, in lifecycle events
/// (`Display` and `Debug`, which `genesys-tail` prints) and in its log lines.
#[test]
fn server_texts_naming_the_channel_show_it_shortened() {
    let _serial = SERIAL.lock();
    let logs_before = capture().lines.lock().len();
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let _ = client.subscribe(presence_topics(1)).unwrap();
    wait_sockets(&emu, 1);
    let id = emu.channels()[0].id.clone();
    let system = format!(
        r#"{{"topicName":"v2.system.{id}","eventBody":{{"reason":"bye {id}","systemTopicType":"kind {id}"}}}}"#
    );
    assert!(emu.send_frame(&id, Frame::Text(system)));
    emu.inject(Fault::CloseSocket {
        target: Target::channel(&id),
        code: 4000,
        reason: format!("channel {id} closed"),
    });
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::Reconnecting { .. })));
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::SystemMessage { .. })));
    client.shutdown(Duration::from_secs(5)).unwrap();
    let shown: Vec<String> = lifecycle
        .snapshot()
        .iter()
        .map(|e| format!("{e} {e:?}"))
        // This crate's own lines: tungstenite logs the close frame it received at `debug`,
        // reason included (the crate docs say so, next to its `trace` lines).
        .chain(log_lines().into_iter().skip(logs_before).filter(|line| {
            line.split(' ')
                .nth(1)
                .is_some_and(|target| target.starts_with("genesys_notify"))
        }))
        .collect();
    assert!(
        shown
            .iter()
            .any(|s| s.contains(&format!("bye {}", short_id(&id)))),
        "{shown:#?}"
    );
    for line in shown {
        assert!(!line.contains(&id), "{line}");
    }
}

/// Guarantee 8 for `genesys_notify::cli`: a program that prints its parsed flags with `{:?}`
/// (a `#[derive(Debug)]` command line flattening these) shows neither the client secret, nor
/// the access token, nor a proxy's password; it still shows which were given.
#[cfg(feature = "cli")]
#[test]
fn cli_flags_and_settings_keep_secrets_out_of_debug_output() {
    use genesys_notify::cli::{CredentialArgs, NetworkArgs};
    let credentials = CredentialArgs {
        region: Some("eu-west-1".into()),
        client_id: Some("the-client-id".into()),
        client_secret: Some("s3cr3t-client-secret".into()),
        access_token: Some("s3cr3t-access-token".into()),
        ..CredentialArgs::default()
    };
    let network = NetworkArgs {
        proxy: Some("http://proxyuser:s3cr3t-proxy-password@proxy.corp:3128".into()),
        ..NetworkArgs::default()
    };
    let settings = credentials.settings().unwrap();
    let shown = format!("{credentials:?} {credentials:#?} {network:?} {settings:?} {settings:#?}");
    for secret in [
        "s3cr3t-client-secret",
        "s3cr3t-access-token",
        "s3cr3t-proxy-password",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    for shown_part in [
        "the-client-id",
        "eu-west-1",
        "proxy.corp:3128",
        "client_secret",
    ] {
        assert!(
            shown.contains(shown_part),
            "{shown_part} missing from {shown}"
        );
    }
}
