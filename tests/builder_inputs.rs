//! What the builder is handed and what `build()` makes of it: no silent default region, the
//! first bad input is the one reported, typed inputs (a parsed `Proxy`, parsed certificates),
//! and a `ClientCredentials` handed to `token_source` uses the client's network like the built-in
//! grant does. Everything talks to 127.0.0.1 only.
mod util;

use genesys_notify::{Client, ClientCredentials, Error, Proxy, Region, RootCertificate};
use std::time::Duration;
use util::proxy::ConnectProxy;
use util::*;

fn config_error_field(result: Result<Client, Error>) -> &'static str {
    match result {
        Err(Error::Config(e)) => e.field,
        Ok(_) => panic!("build() succeeded; a configuration error was expected"),
        Err(other) => panic!("expected a configuration error, got {other:?}"),
    }
}

/// Without a region or an API base, `build()` used us-east-1: a client of an EU org then saw
/// its credentials refused. Now it fails naming the missing setting.
#[test]
fn build_without_a_region_or_api_base_fails_naming_it() {
    let result = Client::builder().access_token("token").build();
    let Err(Error::Config(e)) = result else {
        panic!("expected a configuration error, got {result:?}");
    };
    assert_eq!(e.field, "region", "{e}");
    assert!(e.reason.contains("api_base"), "{e}");

    let result = Client::builder().client_credentials("id", "secret").build();
    assert_eq!(config_error_field(result), "region");

    // A region, or an API base alone with an access token (no login host needed), is enough.
    let client = Client::builder()
        .access_token("token")
        .region(Region::EuWest1)
        .build()
        .unwrap();
    assert_eq!(client.config().api_base(), "https://api.mypurecloud.ie");
    assert_eq!(client.config().login_base(), "https://login.mypurecloud.ie");
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// An API base of the form `https://api.<domain>` gives the login host `https://login.<domain>`
/// (it used to stay us-east-1's); one that gives no login host fails when the client needs one
/// (client credentials) and names `login_base`.
#[test]
fn the_login_base_follows_the_api_base_or_its_absence_is_named() {
    let client = Client::builder()
        .client_credentials("id", "secret")
        .api_base("https://api.mypurecloud.ie")
        .build()
        .unwrap();
    assert_eq!(client.config().login_base(), "https://login.mypurecloud.ie");
    client.shutdown(Duration::from_secs(5)).unwrap();

    let emu = emulator();
    let result = Client::builder()
        .client_credentials(emu.client_id(), emu.client_secret())
        .api_base(emu.api_base())
        .build();
    assert_eq!(config_error_field(result), "login_base");

    // With an access token, no login host is used at all.
    let client = Client::builder()
        .access_token("token")
        .api_base(emu.api_base())
        .build()
        .unwrap();
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// Each bad input used to overwrite the one before it in a single error slot, so `build()`
/// named the last; it names the first now.
#[test]
fn build_reports_the_first_bad_input() {
    let emu = emulator();
    let cases = [
        (
            builder(&emu)
                .proxy("socks5://127.0.0.1:1080")
                .add_root_certificates_pem("not a certificate"),
            "proxy",
        ),
        (
            builder(&emu)
                .region_name("atlantis-1")
                .proxy("socks5://127.0.0.1:1080"),
            "region",
        ),
        (
            builder(&emu)
                .add_root_certificates_pem("not a certificate")
                .streaming_base("http://gw.example.com"),
            "root_certificates",
        ),
        (
            builder(&emu)
                .streaming_base("http://gw.example.com")
                .region_name("atlantis-1"),
            "streaming_base",
        ),
    ];
    for (builder, field) in cases {
        assert_eq!(config_error_field(builder.build()), field);
    }
}

/// A valid region given after an unknown region name replaces it, whichever came first among the
/// other bad inputs (review finding: the unknown name kept failing the build).
#[test]
fn a_valid_region_replaces_an_unknown_name_given_before() {
    use genesys_notify::Region;
    let replaced = Client::builder()
        .access_token("token")
        .region_name("mars")
        .region(Region::EuWest1)
        .build()
        .unwrap();
    assert_eq!(replaced.config().api_base(), "https://api.mypurecloud.ie");
    // The bad proxy given after the unknown name is still reported once the name is replaced.
    let proxy_after = Client::builder()
        .access_token("token")
        .region_name("mars")
        .proxy("socks5://127.0.0.1:1080")
        .region(Region::EuWest1)
        .build();
    assert_eq!(config_error_field(proxy_after), "proxy");
}

/// A `ClientCredentials` built with its public constructor and handed to `token_source` made
/// its token requests with an agent of its own: straight past the configured proxy. The token
/// host here is `localhost` and the API host `127.0.0.1` (bypassing the proxy), so a tunnel to
/// `localhost` can only be a token request.
#[test]
fn client_credentials_handed_to_token_source_go_through_the_proxy() {
    let emu = emulator();
    let proxy = ConnectProxy::start(None);
    let port = emu.api_base().rsplit(':').next().unwrap().to_owned();
    let login_base = format!("http://localhost:{port}");
    let source = ClientCredentials::new(
        &login_base,
        emu.client_id(),
        emu.client_secret(),
        Duration::from_secs(5),
    );
    let client = Client::builder()
        .api_base(emu.api_base())
        .token_source(source)
        .request_timeout(Duration::from_secs(5))
        .proxy(&proxy.url())
        .proxy_loopback(true)
        .no_proxy("127.0.0.1")
        .build()
        .unwrap();
    client.verify_token().unwrap();
    assert!(emu.token_requests() >= 1);
    let tunnels = proxy.tunnels();
    assert!(
        tunnels.contains(&format!("localhost:{port}")),
        "the token request did not go through the proxy: tunnels {tunnels:?}"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// The same source is held to the client's HTTPS rule: plain `http` only to loopback hosts.
#[test]
fn client_credentials_handed_to_token_source_obey_the_https_rule() {
    let emu = emulator();
    let source = ClientCredentials::new(
        "http://login.example.com",
        emu.client_id(),
        emu.client_secret(),
        Duration::from_secs(5),
    );
    let result = Client::builder()
        .api_base(emu.api_base())
        .token_source(source)
        .build();
    assert_eq!(config_error_field(result), "login_base");
}

/// A proxy parsed by the caller (`Proxy::parse`, or `str::parse`) can be handed to the builder
/// (it took only text, parsed again, and the parsed value had no use).
#[test]
fn a_parsed_proxy_is_accepted_and_used() {
    let emu = emulator();
    let proxy = ConnectProxy::start(None);
    let parsed: Proxy = proxy.url().parse().unwrap();
    assert_eq!(Proxy::parse(&proxy.url()).unwrap(), parsed);
    let client = builder(&emu)
        .proxy(parsed.clone())
        .proxy_loopback(true)
        .build()
        .unwrap();
    assert_eq!(client.config().proxy().proxy(), Some(&parsed));
    client.verify_token().unwrap();
    assert!(
        !proxy.tunnels().is_empty(),
        "nothing went through the proxy"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// Certificates parsed by the caller are added as they are; a bad one is an error where it is
/// read, not at `build()`.
#[test]
fn parsed_root_certificates_are_accepted_and_bad_ones_fail_where_read() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();

    let from_pem = RootCertificate::parse_pem(ca.pem()).unwrap();
    assert_eq!(from_pem.len(), 1);
    let from_der = RootCertificate::from_der(ca.der().to_vec()).unwrap();
    assert_eq!(from_pem[0], from_der);
    assert_eq!(from_der.der(), ca.der().as_ref());
    for error in [
        RootCertificate::from_der(b"not DER".to_vec()).unwrap_err(),
        RootCertificate::parse_pem("no certificate here").unwrap_err(),
    ] {
        assert_eq!(error.field, "root_certificates", "{error}");
    }

    let emu = emulator();
    let client = builder(&emu)
        .add_root_certificates(from_pem)
        .add_root_certificates([from_der])
        .build()
        .unwrap();
    assert_eq!(client.config().extra_root_certificates(), 2);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// The same source trusts the roots added to the client: its own agent knew only the bundled
/// Mozilla roots, so a login host behind a corporate CA failed with "unknown issuer".
#[test]
fn client_credentials_handed_to_token_source_trust_the_clients_roots() {
    let emu = emulator();
    let upstream = emu.api_base().trim_start_matches("http://").to_owned();
    let (port, ca_pem) = util::tls::tls_terminator(upstream);
    let source = ClientCredentials::new(
        &format!("https://localhost:{port}"),
        emu.client_id(),
        emu.client_secret(),
        Duration::from_secs(5),
    );
    let client = Client::builder()
        .api_base(emu.api_base())
        .token_source(source)
        .add_root_certificates(RootCertificate::parse_pem(&ca_pem).unwrap())
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.verify_token().unwrap();
    assert!(emu.token_requests() >= 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// Review finding: `api_base("")` was reported as a missing region. Every bad base URL is a
/// configuration error naming the setting given and what is wrong with it.
#[test]
fn bad_base_urls_are_errors_naming_the_setting() {
    let config_error = |result: Result<Client, Error>| match result {
        Err(Error::Config(e)) => e,
        Ok(_) => panic!("build() succeeded; a configuration error was expected"),
        Err(other) => panic!("expected a configuration error, got {other:?}"),
    };
    let token = || Client::builder().access_token("token");
    let e = config_error(token().api_base("").build());
    assert_eq!(e.field, "api_base", "{e}");
    assert!(e.reason.contains("empty"), "{e}");
    let e = config_error(token().region(Region::EuWest1).api_base("  ").build());
    assert_eq!(e.field, "api_base", "{e}");
    let e = config_error(
        Client::builder()
            .client_credentials("id", "secret")
            .region(Region::EuWest1)
            .login_base("")
            .build(),
    );
    assert_eq!(e.field, "login_base", "{e}");
    assert!(e.reason.contains("empty"), "{e}");
    for (url, says) in [
        ("https://api.mypurecloud.ie?x=1", "query"),
        ("https://api.mypurecloud.ie/#x", "fragment"),
        ("https://u:pw@api.mypurecloud.ie", "user info"),
        ("ftp://api.mypurecloud.ie", "scheme"),
        ("wss://api.mypurecloud.ie", "scheme"),
        ("http://api.mypurecloud.ie", "loopback"),
        ("https://api.mypurecloud.ie/api/v2", "/api/v2"),
        ("https://api.mypurecloud.ie:0", "port"),
        ("api.mypurecloud.ie", "absolute"),
    ] {
        let e = config_error(token().api_base(url).build());
        assert_eq!(e.field, "api_base", "{url}: {e}");
        assert!(e.reason.contains(says), "{url}: {e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
        let e = config_error(
            Client::builder()
                .client_credentials("id", "secret")
                .api_base("https://api.mypurecloud.ie")
                .login_base(url.replace("api.", "login."))
                .build(),
        );
        assert_eq!(e.field, "login_base", "{url}: {e}");
    }
}

/// Review finding: `region()` after `login_base()` overwrote the login base. An explicit base
/// wins over the region's, in either order; the region fills in the other.
#[test]
fn explicit_bases_win_over_the_region_in_either_order() {
    let emu = emulator();
    for region_first in [true, false] {
        let mut b = Client::builder().client_credentials("id", "secret");
        if region_first {
            b = b.region(Region::EuWest1);
        }
        b = b.login_base(emu.login_base());
        if !region_first {
            b = b.region(Region::EuWest1);
        }
        let client = b.build().unwrap();
        assert_eq!(client.config().login_base(), emu.login_base());
        assert_eq!(client.config().api_base(), "https://api.mypurecloud.ie");
        client.shutdown(Duration::from_secs(5)).unwrap();

        let mut b = Client::builder().access_token("token");
        if region_first {
            b = b.region_name("eu-west-1");
        }
        b = b.api_base(emu.api_base());
        if !region_first {
            b = b.region_name("eu-west-1");
        }
        let client = b.build().unwrap();
        assert_eq!(client.config().api_base(), emu.api_base());
        assert_eq!(client.config().login_base(), "https://login.mypurecloud.ie");
        client.shutdown(Duration::from_secs(5)).unwrap();

        // An explicit api.<domain> base brings its login host, over the region's.
        let mut b = Client::builder().client_credentials("id", "secret");
        if region_first {
            b = b.region(Region::UsEast1);
        }
        b = b.api_base("https://api.mypurecloud.de");
        if !region_first {
            b = b.region(Region::UsEast1);
        }
        let client = b.build().unwrap();
        assert_eq!(client.config().api_base(), "https://api.mypurecloud.de");
        assert_eq!(client.config().login_base(), "https://login.mypurecloud.de");
        client.shutdown(Duration::from_secs(5)).unwrap();
    }
}
