//! `wss` connectUris and `https` REST calls go through rustls with verified certificates; plain
//! `ws` is refused for any host but loopback. The TLS peer here is a local server with a
//! self-signed certificate, which a verifying client must refuse unless it was given that
//! certificate as a root.
mod util;

use genesys_notify::emulator::EmulatorConfig;
use genesys_notify::{Error, Lifecycle};
use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use util::*;

/// A TLS server on 127.0.0.1 with a self-signed certificate for `localhost`. Returns its port,
/// a receiver of how each handshake ended on the server side, and its certificate (PEM).
fn self_signed_server() -> (u16, crossbeam_channel::Receiver<String>, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut buf = [0u8; 1024];
            let outcome = match tls.read(&mut buf) {
                Ok(n) => format!("read {n} bytes of application data"),
                Err(e) => format!("handshake failed: {e}"),
            };
            if tx.send(outcome).is_err() {
                return;
            }
        }
    });
    (port, rx, pem)
}

#[test]
fn a_self_signed_certificate_is_refused() {
    let (port, server, _) = self_signed_server();
    let emu = emulator_with(
        EmulatorConfig::default().connect_uri_base(format!("wss://localhost:{port}")),
    );
    let client = builder(&emu)
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&client);
    // The socket never connects, so the subscription is never applied: subscribe gives up at
    // its deadline (connect_timeout + 2 × request_timeout).
    let err = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let outcome = server.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        outcome.starts_with("handshake failed") && !outcome.contains("application data"),
        "{outcome}"
    );
    assert!(
        lifecycle.wait(Duration::from_secs(5), |e| matches!(
            e,
            Lifecycle::Reconnecting { error, .. } if error.contains("certificate")
        )),
        "{:?}",
        lifecycle.snapshot()
    );
    assert_eq!(
        lifecycle.count(|e| matches!(e, Lifecycle::Connected { .. })),
        0
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn plain_ws_to_a_non_loopback_host_is_refused_without_connecting() {
    let emu = emulator_with(
        EmulatorConfig::default().connect_uri_base("ws://notifications.example.invalid"),
    );
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let err = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    match &err {
        Error::ChannelStopped { reason, .. } => {
            assert!(reason.to_string().contains("loopback"), "{reason}");
            // The reason is typed: the channel's permanent failure, an unusable connectUri.
            assert!(
                matches!(
                    reason,
                    genesys_notify::StopReason::PermanentFailure(
                        genesys_notify::ChannelError::UnusableConnectUri { .. }
                    )
                ),
                "{reason:?}"
            );
        }
        other => panic!("expected ChannelStopped, got {other:?}"),
    }
    assert!(lifecycle.wait(Duration::from_secs(5), |e| matches!(
        e,
        Lifecycle::PermanentFailure { error, .. } if error.to_string().contains("loopback")
    )));
    assert_eq!(
        lifecycle.count(|e| matches!(e, Lifecycle::Reconnecting { .. })),
        0
    );
}

#[test]
fn rest_calls_verify_certificates_with_the_clients_roots() {
    let emu = emulator();
    // Default roots: the self-signed certificate is refused before any request is sent.
    let (port, server, _) = self_signed_server();
    let client = builder(&emu)
        .api_base(format!("https://localhost:{port}"))
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = client.subscribe(presence_topics(1)).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let outcome = server.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(outcome.starts_with("handshake failed"), "{outcome}");
    client.shutdown(Duration::from_secs(2)).unwrap();

    // The server's certificate added as a root: the handshake succeeds and the request is sent
    // (the server never answers it, so the subscribe itself still fails).
    let (port, server, pem) = self_signed_server();
    let client = builder(&emu)
        .api_base(format!("https://localhost:{port}"))
        .add_root_certificates_pem(pem)
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let _ = client.subscribe(presence_topics(1));
    let outcome = server.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(outcome.contains("application data"), "{outcome}");
    client.shutdown(Duration::from_secs(2)).unwrap();
}
