//! Tests of the emulator over real loopback sockets: ureq for REST, tungstenite for WebSockets.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Status, body and `Retry-After` of one REST call.
struct Answer {
    status: u16,
    body: String,
    retry_after: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn call(
    emu: &Emulator,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let agent = agent();
    let url = format!("{}{path}", emu.api_base());
    let auth = token.map(|t| format!("Bearer {t}"));
    macro_rules! with_auth {
        ($req:expr) => {{
            let req = $req;
            match &auth {
                Some(a) => req.header("Authorization", a),
                None => req,
            }
        }};
    }
    let result = match method {
        "GET" => with_auth!(agent.get(&url)).call(),
        "HEAD" => with_auth!(agent.head(&url)).call(),
        "DELETE" => with_auth!(agent.delete(&url)).call(),
        "POST" => match body {
            Some(b) => with_auth!(agent.post(&url))
                .header("Content-Type", "application/json")
                .send(b),
            None => with_auth!(agent.post(&url)).send_empty(),
        },
        "PUT" => with_auth!(agent.put(&url))
            .header("Content-Type", "application/json")
            .send(body.unwrap_or("[]")),
        other => panic!("method {other}"),
    };
    let mut resp = result.expect("HTTP call");
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        body,
        retry_after,
    }
}

fn token_call(emu: &Emulator, id: &str, secret: &str, grant: &str) -> Answer {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut resp = agent()
        .post(format!("{}/oauth/token", emu.login_base()))
        .header("Authorization", format!("Basic {basic}"))
        .send_form([("grant_type", grant)])
        .expect("token call");
    Answer {
        status: resp.status().as_u16(),
        body: resp.body_mut().read_to_string().unwrap_or_default(),
        retry_after: None,
    }
}

fn create_channel(emu: &Emulator, token: &str) -> (String, String) {
    let a = call(
        emu,
        "POST",
        "/api/v2/notifications/channels",
        Some(token),
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["connectUri"].as_str().unwrap().to_owned(),
    )
}

fn topics_body(topics: &[&str]) -> String {
    let list: Vec<Value> = topics.iter().map(|t| json!({ "id": t })).collect();
    Value::Array(list).to_string()
}

fn subscribe(emu: &Emulator, token: &str, id: &str, topics: &[&str]) -> Answer {
    call(
        emu,
        "PUT",
        &format!("/api/v2/notifications/channels/{id}/subscriptions"),
        Some(token),
        Some(&topics_body(topics)),
    )
}

type Ws = WebSocket<TcpStream>;

fn connect_with(uri: &str, config: Option<WebSocketConfig>) -> Result<Ws, tungstenite::Error> {
    let addr = uri
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    tungstenite::client::client_with_config(uri, stream, config)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("interrupted handshake"),
        })
}

fn connect(uri: &str) -> Ws {
    connect_with(uri, None).expect("WebSocket connect")
}

/// Next text message that is not a heartbeat, as JSON.
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["eventBody"]["message"] != "WebSocket Heartbeat" {
                    return v;
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until a close frame; returns its code. Panics on anything unexpected.
fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

/// A started emulator, a token and a connected, subscribed channel.
fn setup(config: EmulatorConfig, topics: &[&str]) -> (Emulator, String, String, Ws) {
    let emu = Emulator::start_with(config).unwrap();
    let token = emu.issue_token();
    let (id, uri) = create_channel(&emu, &token);
    assert_eq!(subscribe(&emu, &token, &id, topics).status, 200);
    let ws = connect(&uri);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connected));
    (emu, token, id, ws)
}

fn kinds(emu: &Emulator, channel: &str) -> Vec<SocketEventKind> {
    emu.socket_log()
        .into_iter()
        .filter(|r| r.channel_id == channel)
        .map(|r| r.kind)
        .collect()
}

#[test]
fn token_issue_errors_and_expiry() {
    let emu = Emulator::start_with(
        EmulatorConfig::default()
            .client_id("cid")
            .client_secret("sec")
            .token_lifetime(Duration::from_millis(400)),
    )
    .unwrap();
    assert_eq!(emu.client_id(), "cid");
    let ok = token_call(&emu, "cid", "sec", "client_credentials");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v = ok.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 1);
    let token = v["access_token"].as_str().unwrap().to_owned();

    let bad = token_call(&emu, "cid", "wrong", "client_credentials");
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid_client");
    assert!(bad.json()["error_description"].is_string());
    let grant = token_call(&emu, "cid", "sec", "password");
    assert_eq!(grant.status, 400);
    assert_eq!(emu.token_requests(), 3);

    assert_eq!(
        call(&emu, "GET", "/api/v2/tokens/me", Some(&token), None).status,
        200
    );
    assert_eq!(
        call(&emu, "HEAD", "/api/v2/tokens/me", Some(&token), None).status,
        200
    );
    let missing = call(&emu, "GET", "/api/v2/tokens/me", None, None);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], "authentication.required");
    assert!(missing.json()["contextId"].is_string());
    let unknown = call(&emu, "GET", "/api/v2/tokens/me", Some("nope"), None);
    assert_eq!(unknown.json()["code"], "bad.credentials");

    std::thread::sleep(Duration::from_millis(450));
    let expired = call(
        &emu,
        "POST",
        "/api/v2/notifications/channels",
        Some(&token),
        None,
    );
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["code"], "bad.credentials");

    // A static token from issue_token works, until ExpireTokens.
    let static_token = emu.issue_token();
    assert_eq!(
        call(&emu, "GET", "/api/v2/tokens/me", Some(&static_token), None).status,
        200
    );
    emu.inject(Fault::ExpireTokens);
    assert_eq!(
        call(&emu, "GET", "/api/v2/tokens/me", Some(&static_token), None).status,
        401
    );

    let reqs = emu.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/oauth/token");
    assert!(reqs[0].authorization_ok);
    assert!(!reqs[1].authorization_ok);
    let me: Vec<_> = reqs
        .iter()
        .filter(|r| r.path == "/api/v2/tokens/me")
        .collect();
    assert!(me[0].authorization_ok && !me[2].authorization_ok);
}

#[test]
fn channels_and_subscriptions() {
    let emu = Emulator::start().unwrap();
    let token = emu.issue_token();
    emu.deny_topic("v2.users.denied.presence", &["presence:userPresence:view"]);
    let (id, uri) = create_channel(&emu, &token);
    assert!(uri.starts_with("ws://127.0.0.1:"));
    assert!(uri.ends_with(&format!("/channels/{id}")));
    let path = format!("/api/v2/notifications/channels/{id}");
    let subs = format!("{path}/subscriptions");
    assert_eq!(call(&emu, "HEAD", &path, Some(&token), None).status, 200);
    assert_eq!(
        call(
            &emu,
            "HEAD",
            "/api/v2/notifications/channels/x",
            Some(&token),
            None
        )
        .status,
        404
    );

    // Without ignoreErrors, one denied topic fails everything.
    let body = topics_body(&["v2.users.a.presence", "v2.users.DENIED.presence"]);
    let a = call(&emu, "PUT", &subs, Some(&token), Some(&body));
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["code"], "notification.unauthorized.topic");
    assert_eq!(a.json()["status"], 403);
    assert!(emu.channels()[0].topics.is_empty());

    // With ignoreErrors, per-topic results.
    let expires_before = emu.channels()[0].expires;
    std::thread::sleep(Duration::from_millis(20));
    let a = call(
        &emu,
        "PUT",
        &format!("{subs}?ignoreErrors=true"),
        Some(&token),
        Some(&body),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let entities = a.json()["entities"].as_array().unwrap().clone();
    assert_eq!(entities.len(), 2);
    assert_eq!(entities[0]["id"], "v2.users.a.presence");
    assert_eq!(entities[0]["state"], "Permitted");
    assert_eq!(entities[1]["id"], "v2.users.DENIED.presence");
    assert_eq!(entities[1]["state"], "Rejected");
    assert_eq!(
        entities[1]["missingPermissions"],
        json!(["presence:userPresence:view"])
    );
    let ch = &emu.channels()[0];
    assert_eq!(ch.topics, vec!["v2.users.a.presence".to_owned()]);
    assert!(
        ch.expires > expires_before,
        "re-subscribing extends the channel"
    );

    // POST adds, GET lists, combined topics that contain a denied one are denied.
    let a = call(
        &emu,
        "POST",
        &subs,
        Some(&token),
        Some(&topics_body(&["v2.users.b?presence&routingStatus"])),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        &emu,
        "POST",
        &subs,
        Some(&token),
        Some(&topics_body(&["v2.users.denied?presence"])),
    );
    assert_eq!(a.status, 403);
    let listed = call(&emu, "GET", &subs, Some(&token), None).json();
    let ids: Vec<&str> = listed["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["v2.users.a.presence", "v2.users.b?presence&routingStatus"]
    );

    // Forbidden and malformed topics are a 400.
    for bad in [
        "channel.metadata",
        "v2.system.socket_closing",
        "",
        "a b",
        &"x".repeat(201),
    ] {
        let a = call(&emu, "PUT", &subs, Some(&token), Some(&topics_body(&[bad])));
        assert_eq!(a.status, 400, "topic {bad:?}");
    }
    assert_eq!(
        call(&emu, "PUT", &subs, Some(&token), Some("{")).status,
        400
    );

    // DELETE removes all; unknown channel is a 404.
    assert_eq!(call(&emu, "DELETE", &subs, Some(&token), None).status, 200);
    assert!(emu.channels()[0].topics.is_empty());
    let unknown = "/api/v2/notifications/channels/nope/subscriptions";
    assert_eq!(call(&emu, "GET", unknown, Some(&token), None).status, 404);
    assert_eq!(
        call(
            &emu,
            "GET",
            "/api/v2/notifications/availabletopics",
            Some(&token),
            None
        )
        .status,
        200
    );
    assert!(emu
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path == subs && r.status == 200));
}

#[test]
fn topic_limit_is_enforced() {
    let emu = Emulator::start().unwrap();
    let token = emu.issue_token();
    let (id, _) = create_channel(&emu, &token);
    let topics: Vec<String> = (0..1000)
        .map(|i| format!("v2.users.u{i}.presence"))
        .collect();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let a = subscribe(&emu, &token, &id, &refs);
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["entities"].as_array().unwrap().len(), 1000);
    let subs = format!("/api/v2/notifications/channels/{id}/subscriptions");
    // Re-adding an existing topic (other case) is not one more.
    let a = call(
        &emu,
        "POST",
        &subs,
        Some(&token),
        Some(&topics_body(&["V2.USERS.U0.PRESENCE"])),
    );
    assert_eq!(a.status, 200);
    let a = call(
        &emu,
        "POST",
        &subs,
        Some(&token),
        Some(&topics_body(&["v2.users.more.presence"])),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let mut too_many = refs.clone();
    too_many.push("v2.users.more.presence");
    assert_eq!(subscribe(&emu, &token, &id, &too_many).status, 400);
    assert_eq!(emu.channels()[0].topics.len(), 1000);
}

#[test]
fn twenty_first_channel_evicts_least_recently_used() {
    let emu = Emulator::start().unwrap();
    let token = emu.issue_token();
    let created: Vec<(String, String)> = (0..20).map(|_| create_channel(&emu, &token)).collect();
    // The oldest is connected, so the oldest unconnected one (#1) goes first.
    let mut ws = connect(&created[0].1);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connected));
    let (new_id, _) = create_channel(&emu, &token);
    let live: Vec<String> = emu.channels().into_iter().map(|c| c.id).collect();
    assert_eq!(live.len(), 20);
    assert!(live.contains(&new_id) && live.contains(&created[0].0));
    assert!(!live.contains(&created[1].0));
    let head = format!("/api/v2/notifications/channels/{}", created[1].0);
    assert_eq!(call(&emu, "HEAD", &head, Some(&token), None).status, 404);
    assert_eq!(
        emu.removed_channels()[0].removed,
        Some(ChannelRemoval::Evicted)
    );
    assert!(
        connect_with(&created[1].1, None).is_err(),
        "evicted id refuses sockets"
    );

    // Evicting a connected channel closes its socket.
    emu.inject(Fault::EvictChannel {
        channel_id: created[0].0.clone(),
    });
    assert_eq!(expect_close(&mut ws).0, CLOSE_CHANNEL_EVICTED);
    let head = format!("/api/v2/notifications/channels/{}", created[0].0);
    assert_eq!(call(&emu, "HEAD", &head, Some(&token), None).status, 404);
}

#[test]
fn heartbeat_ping_pong_and_close_reply() {
    let config = EmulatorConfig::default().heartbeat_interval(Duration::from_millis(50));
    let (emu, _token, id, mut ws) = setup(config, &[]);
    let start = Instant::now();
    let mut beats = 0;
    while beats < 3 {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["topicName"], "channel.metadata");
            assert_eq!(v["eventBody"]["message"], "WebSocket Heartbeat");
            beats += 1;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(2));

    ws.send(Message::text(r#"{"message":"ping"}"#)).unwrap();
    let v = next_json(&mut ws);
    assert_eq!(v["topicName"], "channel.metadata");
    assert_eq!(v["eventBody"]["message"], "pong");

    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close handshake failed: {e}"),
        }
    }
    assert!(emu.wait_for(WAIT, |e| kinds(e, &id)
        .contains(&SocketEventKind::Disconnected)));
    let log = kinds(&emu, &id);
    assert!(log.contains(&SocketEventKind::PingReceived));
    assert!(log.contains(&SocketEventKind::CloseFrameReceived { code: Some(1000) }));
    assert!(log.contains(&SocketEventKind::CloseReplied { code: Some(1000) }));
    assert_eq!(log.last(), Some(&SocketEventKind::Disconnected));
    assert!(!emu.channels()[0].connected);
    assert_eq!(emu.channels()[0].connections, 1);
}

#[test]
fn publish_reaches_subscribed_sockets_with_combined_topics() {
    let (emu, token, _id, mut ws) = setup(
        EmulatorConfig::default(),
        &[
            "v2.users.ABC?presence&routingStatus",
            "v2.routing.queues.q1.conversations",
        ],
    );
    let (_id2, uri2) = create_channel(&emu, &token);
    let _other = connect(&uri2); // connected but subscribed to nothing
    assert!(emu.wait_for(WAIT, |e| e.channels().iter().all(|c| c.connected)));

    assert_eq!(emu.publish("v2.users.abc.presence", json!({"n": 1})), 1);
    assert_eq!(
        emu.publish("v2.users.abc.routingStatus", json!({"n": 2})),
        1
    );
    assert_eq!(
        emu.publish("V2.ROUTING.QUEUES.Q1.CONVERSATIONS", json!({"n": 3})),
        1
    );
    assert_eq!(
        emu.publish("v2.users.abc.conversations", json!({"n": 4})),
        0
    );
    let v = next_json(&mut ws);
    assert_eq!(v["topicName"], "v2.users.abc.presence");
    assert_eq!(v["version"], "2");
    assert_eq!(v["eventBody"], json!({"n": 1}));
    assert_eq!(v["metadata"]["CorrelationId"].as_str().unwrap().len(), 36);
    assert_eq!(
        next_json(&mut ws)["topicName"],
        "v2.users.abc.routingStatus"
    );
    assert_eq!(next_json(&mut ws)["eventBody"]["n"], 3);

    // Raw frames.
    let id = emu.channels()[0].id.clone();
    assert!(emu.send_frame(&id, Frame::Text("hello".into())));
    assert!(matches!(ws.read().unwrap(), Message::Text(t) if t.as_str() == "hello"));
    assert!(!emu.send_frame("nope", Frame::Text("x".into())));
}

#[test]
fn publish_throughput_to_one_socket() {
    let (emu, _token, _id, ws) = setup(EmulatorConfig::default(), &["v2.users.u.presence"]);
    const N: usize = 100_000;
    let reader = std::thread::spawn(move || {
        let mut ws = ws;
        let mut got = 0;
        while got < N {
            match ws.read().unwrap() {
                Message::Text(_) => got += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    });
    let start = Instant::now();
    for i in 0..N {
        assert_eq!(emu.publish("v2.users.u.presence", json!({"i": i})), 1);
    }
    let published = start.elapsed();
    assert_eq!(reader.join().unwrap(), N);
    let total = start.elapsed();
    eprintln!(
        "published {N} events in {published:?} ({:.0}/s), delivered in {total:?} ({:.0}/s)",
        N as f64 / published.as_secs_f64(),
        N as f64 / total.as_secs_f64()
    );
    assert!(total < Duration::from_secs(30));
}

#[test]
fn second_socket_replaces_first() {
    let (emu, _token, id, mut first) = setup(EmulatorConfig::default(), &["v2.users.u.presence"]);
    let uri = emu.channels()[0].connect_uri.clone();
    let mut second = connect(&uri);
    assert_eq!(expect_close(&mut first).0, CLOSE_REPLACED);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connections == 2
        && e.channels()[0].connected));
    assert_eq!(emu.publish("v2.users.u.presence", json!({})), 1);
    assert_eq!(next_json(&mut second)["topicName"], "v2.users.u.presence");
    assert!(kinds(&emu, &id).contains(&SocketEventKind::ClosedByServer {
        code: CLOSE_REPLACED
    }));
}

#[test]
fn fault_close_with_code_and_drop_without_close_frame() {
    let (emu, _token, id, mut ws) = setup(EmulatorConfig::default(), &[]);
    emu.inject(Fault::CloseSocket {
        target: Target::channel(&id),
        code: 4321,
        reason: "test close".into(),
    });
    assert_eq!(expect_close(&mut ws), (4321, "test close".to_owned()));
    // The channel survives: reconnect, then drop TCP.
    let mut ws = connect(&emu.channels()[0].connect_uri);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connected));
    emu.inject(Fault::DropSocket {
        target: Target::AllSockets,
    });
    match ws.read() {
        Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected an abrupt end, got {other:?}"),
    }
    let log = kinds(&emu, &id);
    assert!(log.contains(&SocketEventKind::ClosedByServer { code: 4321 }));
    assert!(log.contains(&SocketEventKind::DroppedByServer));
}

/// A bare close frame: tungstenite refuses 1005 on the wire (RFC 6455 §7.4.1), so reading
/// `Close(None)` proves the payload was empty. The server then closes TCP after the reply.
#[test]
fn fault_close_without_status_sends_an_empty_close_frame() {
    let (emu, _token, id, mut ws) = setup(EmulatorConfig::default(), &[]);
    emu.inject(Fault::CloseWithoutStatus {
        target: Target::channel(&id),
    });
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                assert_eq!(frame, None, "no status code on the wire");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
    // tungstenite answered with its own close; the server ends the connection.
    assert!(emu.wait_for(WAIT, |e| !e.channels()[0].connected));
    let log = kinds(&emu, &id);
    assert!(log.contains(&SocketEventKind::ClosedByServerWithoutStatus));
    assert_eq!(log.last(), Some(&SocketEventKind::Disconnected));
    // The channel survives.
    assert!(emu.channels()[0].removed.is_none());
}

/// A TCP reset (linger 0): the client's read fails with `ConnectionReset`, where the orderly
/// drop of [`Fault::DropSocket`] gives an end of stream without closing handshake.
#[test]
fn fault_reset_socket_sends_rst_and_drop_sends_fin() {
    let (emu, _token, id, mut ws) = setup(EmulatorConfig::default(), &[]);
    emu.inject(Fault::ResetSocket {
        target: Target::channel(&id),
    });
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        other => panic!("expected a connection reset, got {other:?}"),
    }
    assert!(emu.wait_for(WAIT, |e| !e.channels()[0].connected));
    let log = kinds(&emu, &id);
    assert!(log.contains(&SocketEventKind::ResetByServer));
    assert_eq!(log.last(), Some(&SocketEventKind::Disconnected));

    let mut ws = connect(&emu.channels()[0].connect_uri);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connected));
    emu.inject(Fault::DropSocket {
        target: Target::channel(&id),
    });
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => {}
        other => panic!("expected an end of stream without close frame, got {other:?}"),
    }
}

/// A takeover is a real second socket: the first gets 4000, events go to the intruder, and a
/// new socket of the client takes the channel back.
#[test]
fn fault_takeover_connects_a_second_socket() {
    let (emu, _token, id, mut ws) = setup(EmulatorConfig::default(), &["v2.users.u.presence"]);
    emu.inject(Fault::Takeover {
        channel_id: id.clone(),
    });
    assert_eq!(expect_close(&mut ws).0, CLOSE_REPLACED);
    let channel = emu.channels()[0].clone();
    assert_eq!(channel.connections, 2);
    assert!(channel.connected, "the intruder holds the channel");
    assert_eq!(emu.publish("v2.users.u.presence", json!({})), 1);
    let mut back = connect(&channel.connect_uri);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connections == 3));
    assert_eq!(emu.publish("v2.users.u.presence", json!({"n": 2})), 1);
    assert_eq!(next_json(&mut back)["eventBody"]["n"], 2);
    // The writer of the intruder's socket logs its close asynchronously.
    let replaced = |emu: &Emulator| {
        kinds(emu, &id)
            .iter()
            .filter(|k| {
                **k == SocketEventKind::ClosedByServer {
                    code: CLOSE_REPLACED,
                }
            })
            .count()
    };
    assert!(
        emu.wait_for(WAIT, |e| replaced(e) == 2),
        "the client's first socket, then the intruder, got 4000: {}",
        replaced(&emu)
    );
}

#[test]
fn fault_go_silent() {
    let config = EmulatorConfig::default().heartbeat_interval(Duration::from_millis(30));
    let (emu, _token, id, mut ws) = setup(config, &["v2.users.u.presence"]);
    next_heartbeat(&mut ws);
    emu.inject(Fault::GoSilent {
        target: Target::channel(&id),
    });
    ws.send(Message::text(r#"{"message":"ping"}"#)).unwrap();
    emu.publish("v2.users.u.presence", json!({}));
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // Frames queued before the fault may still arrive; after that, nothing.
    let start = Instant::now();
    let mut after = 0;
    loop {
        match ws.read() {
            Ok(_) if start.elapsed() > Duration::from_millis(100) => after += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("socket should stay open: {e}"),
        }
    }
    assert_eq!(after, 0, "no frame after going silent");
    assert!(emu.wait_for(WAIT, |e| kinds(e, &id)
        .contains(&SocketEventKind::PingReceived)));
    assert!(emu.channels()[0].connected);
}

fn next_heartbeat(ws: &mut Ws) {
    loop {
        if let Message::Text(t) = ws.read().unwrap() {
            if t.as_str().contains("WebSocket Heartbeat") {
                return;
            }
        }
    }
}

#[test]
fn fault_socket_closing_then_close() {
    let (emu, _token, id, mut ws) = setup(EmulatorConfig::default(), &[]);
    emu.inject(Fault::SocketClosing {
        target: Target::channel(&id),
        close_after: Some(Duration::from_millis(100)),
    });
    let start = Instant::now();
    let v = next_json(&mut ws);
    assert_eq!(v["topicName"], "v2.system.socket_closing");
    assert_eq!(v["eventBody"]["channelId"], id.as_str());
    assert_eq!(v["eventBody"]["systemTopicType"], "socket_closing");
    assert_eq!(v["eventBody"]["reason"], "maintenance");
    assert_eq!(expect_close(&mut ws).0, CLOSE_GOING_AWAY);
    assert!(start.elapsed() >= Duration::from_millis(90));
}

#[test]
fn fault_http_status_with_retry_after() {
    let emu = Emulator::start().unwrap();
    let token = emu.issue_token();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 429,
        retry_after: Some(3),
        times: 2,
    });
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Token,
        status: 503,
        retry_after: None,
        times: 1,
    });
    for _ in 0..2 {
        let a = call(
            &emu,
            "POST",
            "/api/v2/notifications/channels",
            Some(&token),
            None,
        );
        assert_eq!(a.status, 429);
        assert_eq!(a.retry_after.as_deref(), Some("3"));
        assert_eq!(a.json()["status"], 429);
    }
    create_channel(&emu, &token);
    let t = token_call(
        &emu,
        emu.client_id(),
        emu.client_secret(),
        "client_credentials",
    );
    assert_eq!(t.status, 503);
    assert!(t.json()["error"].is_string());
    let t = token_call(
        &emu,
        emu.client_id(),
        emu.client_secret(),
        "client_credentials",
    );
    assert_eq!(t.status, 200);
    assert_eq!(emu.token_requests(), 2);
}

#[test]
fn fault_handshakes_refused_hung_and_rejected() {
    let emu = Emulator::start().unwrap();
    let token = emu.issue_token();
    let (id, uri) = create_channel(&emu, &token);
    assert!(matches!(
        connect_with(&format!("{}/channels/unknown", emu.ws_base()), None),
        Err(tungstenite::Error::Http(r)) if r.status() == 404
    ));

    emu.inject(Fault::RefuseHandshakes { times: 1 });
    assert!(connect_with(&uri, None).is_err());

    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::WebSocketHandshake,
        status: 503,
        retry_after: Some(1),
        times: 1,
    });
    assert!(
        matches!(connect_with(&uri, None), Err(tungstenite::Error::Http(r)) if r.status() == 503)
    );

    emu.inject(Fault::HangHandshakes { times: 1 });
    let addr = uri
        .strip_prefix("ws://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match tungstenite::client::client(uri.as_str(), stream) {
        Err(tungstenite::HandshakeError::Interrupted(_)) => {}
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Io(e))) => {
            assert!(matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ))
        }
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(_) => panic!("expected a timeout"),
    }
    // The next one works.
    let _ws = connect(&uri);
    assert!(emu.wait_for(WAIT, |e| kinds(e, &id)
        .contains(&SocketEventKind::Connected)));
    let log = kinds(&emu, &id);
    assert!(log.contains(&SocketEventKind::HandshakeRefused));
    assert!(log.contains(&SocketEventKind::HandshakeRejected { status: 503 }));
    assert!(log.contains(&SocketEventKind::HandshakeHung));
    assert!(log.contains(&SocketEventKind::Connected));
}

#[test]
fn fault_bad_frames() {
    let (emu, _token, id, _) = setup(EmulatorConfig::default(), &["v2.users.u.presence"]);
    let uri = emu.channels()[0].connect_uri.clone();
    let config = WebSocketConfig::default().max_frame_size(Some(1000));
    let mut ws = connect_with(&uri, Some(config)).unwrap();
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connections == 2
        && e.channels()[0].connected));
    let target = Target::channel(&id);

    emu.inject(Fault::FragmentEvents {
        target: target.clone(),
        events: 1,
        fragment_size: 7,
    });
    emu.publish("v2.users.u.presence", json!({"fragmented": true}));
    let v = next_json(&mut ws);
    assert_eq!(v["eventBody"]["fragmented"], true);

    emu.inject(Fault::MalformedJson {
        target: target.clone(),
    });
    match ws.read().unwrap() {
        Message::Text(t) => assert!(serde_json::from_str::<Value>(t.as_str()).is_err()),
        other => panic!("unexpected {other:?}"),
    }
    emu.inject(Fault::BinaryFrame {
        target: target.clone(),
        data: vec![1, 2, 3],
    });
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3]));
    emu.inject(Fault::OversizeFrame {
        target,
        bytes: 5000,
    });
    assert!(matches!(ws.read(), Err(tungstenite::Error::Capacity(_))));
}

#[test]
fn oversize_frame_is_exact_json() {
    let (emu, _token, id, mut ws) = setup(EmulatorConfig::default(), &[]);
    emu.inject(Fault::OversizeFrame {
        target: Target::channel(&id),
        bytes: 70_000,
    });
    match ws.read().unwrap() {
        Message::Text(t) => {
            assert_eq!(t.len(), 70_000);
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["topicName"], "v2.emulator.oversize");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The channel's expiry is driven with an injected time (`State::sweep(now)`, the sweep every
/// request and the timer thread run with the real time): no sleep, so a loaded machine cannot
/// make the resubscription late or the check early (review point 9: it slept 2/3 of a
/// 1.2 s lifetime twice).
#[test]
fn channel_expires_unless_resubscribed() {
    // Long enough that the real clock never expires it during the test.
    let lifetime = Duration::from_secs(3600);
    let config = EmulatorConfig::default().channel_lifetime(lifetime);
    let (emu, token, id, mut ws) = setup(config, &["v2.users.u.presence"]);
    let deadline = |emu: &Emulator| emu.shared.state.lock().channel_mut(&id).unwrap().deadline;
    let first = deadline(&emu);
    // Resubscribing extends the channel by its lifetime from now.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        subscribe(&emu, &token, &id, &["v2.users.u.presence"]).status,
        200
    );
    let extended = deadline(&emu);
    assert!(extended > first, "resubscribing did not extend the channel");
    // The first deadline passes: the channel lives on, extended.
    emu.shared.state.lock().sweep(first);
    let head = format!("/api/v2/notifications/channels/{id}");
    assert_eq!(
        call(&emu, "HEAD", &head, Some(&token), None).status,
        200,
        "extended"
    );
    // The extended deadline passes: the channel expires and its socket is closed.
    emu.shared.state.lock().sweep(extended);
    assert_eq!(expect_close(&mut ws).0, CLOSE_CHANNEL_EXPIRED);
    assert_eq!(call(&emu, "HEAD", &head, Some(&token), None).status, 404);
    assert_eq!(
        emu.channel(&id).unwrap().removed,
        Some(ChannelRemoval::Expired)
    );
    assert!(emu.channels().is_empty());

    // ExpireChannel does the same on demand.
    let (id2, uri2) = create_channel(&emu, &token);
    let mut ws2 = connect(&uri2);
    assert!(emu.wait_for(WAIT, |e| e.channels()[0].connected));
    emu.inject(Fault::ExpireChannel { channel_id: id2 });
    assert_eq!(expect_close(&mut ws2).0, CLOSE_CHANNEL_EXPIRED);
}

#[test]
fn drop_is_prompt_and_closes_sockets() {
    let (emu, token, _id, mut ws) = setup(EmulatorConfig::default(), &[]);
    // A hung handshake and a silent socket must not delay the drop.
    emu.inject(Fault::HangHandshakes { times: 1 });
    let ws_addr = emu.ws_base().strip_prefix("ws://").unwrap().to_owned();
    let mut hung = TcpStream::connect(&ws_addr).unwrap();
    std::io::Write::write_all(&mut hung, b"GET /channels/x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let (_, uri2) = create_channel(&emu, &token);
    let _silent = connect(&uri2);
    assert!(emu.wait_for(WAIT, |e| e.channels().iter().all(|c| c.connected)));
    emu.inject(Fault::GoSilent {
        target: Target::channel(emu.channels()[1].id.clone()),
    });
    assert!(emu.wait_for(WAIT, |e| e
        .socket_log()
        .iter()
        .any(|r| r.kind == SocketEventKind::HandshakeHung)));
    let api = emu.api_base();
    let start = Instant::now();
    drop(emu);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "drop took {took:?}");
    assert_eq!(expect_close(&mut ws).0, CLOSE_GOING_AWAY);
    assert!(agent()
        .get(format!("{api}/api/v2/tokens/me"))
        .call()
        .is_err());
}

#[test]
fn emulator_is_send_and_sync_and_hides_the_secret() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Emulator>();
    let config = EmulatorConfig::default().client_secret("s3cr3t-value");
    assert!(!format!("{config:?}").contains("s3cr3t-value"));
}

#[test]
fn deleted_users_leave_the_users_list_unless_asked_for() {
    let emu = Emulator::start().unwrap();
    let token = emu.issue_token();
    for user in ["u1", "u2", "u3"] {
        emu.set_user_presence(user, "AVAILABLE");
    }
    assert!(emu.delete_user("U2"), "ids compare ignoring case");
    assert!(!emu.delete_user("nobody"));
    let listed = |query: &str| -> Vec<(String, String)> {
        let answer = call(
            &emu,
            "GET",
            &format!("/api/v2/users?pageSize=10{query}"),
            Some(&token),
            None,
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        let page = answer.json();
        assert_eq!(
            page["total"].as_u64().unwrap() as usize,
            page["entities"].as_array().unwrap().len()
        );
        page["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |id: &str, state: &str| (id.to_owned(), state.to_owned());
    assert_eq!(
        listed(""),
        [pair("u1", "active"), pair("u3", "active")],
        "active by default"
    );
    assert_eq!(listed("&state=active"), listed(""));
    assert_eq!(listed("&state=deleted"), [pair("u2", "deleted")]);
    assert_eq!(
        listed("&state=any"),
        [
            pair("u1", "active"),
            pair("u2", "deleted"),
            pair("u3", "active")
        ]
    );
    assert!(emu.user_presence("u2").is_some(), "still readable by id");
}
