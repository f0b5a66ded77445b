//! Texts from outside (a topic name or a system message's reason sent by the server, an error
//! message in a REST or token answer) never break a lifecycle report or an error onto several
//! lines, nor carry terminal escape sequences: `genesys-tail` prints one line per lifecycle
//! event, and log lines cannot be forged by whoever controls the answers. Control characters are
//! shown escaped.
mod util;

use genesys_notify::emulator::Frame;
use genesys_notify::{Client, Lifecycle};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

fn assert_one_line(what: &str, text: &str) {
    assert!(
        !text.contains(char::is_control),
        "{what} holds control characters: {text:?}"
    );
}

#[test]
fn lifecycle_reports_of_server_texts_stay_on_one_line() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let _ = client.subscribe(presence_topics(1)).unwrap();
    wait_sockets(&emu, 1);
    let channel = emu.channels()[0].id.clone();
    let frames = [
        // A system message whose reason and type hold a line break and an escape sequence.
        r#"{"topicName":"v2.system.something_new","eventBody":{"systemTopicType":"a\nb","reason":"forged\n2026-12-01T00:00:00Z - connected\u001b[2J","message":"m\r\n"}}"#,
        // A notification for a topic nobody listens to, its name holding a line break.
        r#"{"topicName":"v2.users.nobody.presence\nforged line","eventBody":{}}"#,
    ];
    for frame in frames {
        assert!(emu.send_frame(&channel, Frame::Text(frame.to_owned())));
    }
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::SystemMessage { .. })));
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::UnroutedMessage { .. })));
    for event in lifecycle.snapshot() {
        assert_one_line(event.name(), &event.to_string());
    }
    let system = lifecycle
        .snapshot()
        .into_iter()
        .find(|e| matches!(e, Lifecycle::SystemMessage { .. }))
        .unwrap();
    // Escaped, not removed: the text is still there to read.
    assert!(system.to_string().contains(r"forged\n2026"), "{system}");
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn errors_quoting_a_server_message_stay_on_one_line() {
    let mut server = mockito::Server::new();
    let _token = server
        .mock("POST", "/oauth/token")
        .with_status(401)
        .with_header("content-type", "application/json")
        .with_body(
            r#"{"error":"invalid_client","description":"no such client\nERROR forged line\u001b[31m"}"#,
        )
        .create();
    let client = Client::builder()
        .api_base(server.url())
        .login_base(server.url())
        .client_credentials("id", "secret")
        .build()
        .unwrap();
    let error = client.verify_token().unwrap_err();
    let text = error.to_string();
    assert_one_line("the error", &text);
    assert!(text.contains(r"no such client\nERROR"), "{text}");
    let error = client.subscribe(presence_topics(1)).unwrap_err();
    assert_one_line("the error", &error.to_string());
}
