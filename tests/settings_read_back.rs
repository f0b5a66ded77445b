//! Every setting can be read back (issue 17, point 14): the backoff policies, the proxy settings
//! and the socket address override had setters but no getters.

use genesys_notify::{Backoff, Client};
use std::time::Duration;

#[test]
fn backoff_proxy_and_streaming_settings_read_back_as_set() {
    let backoff = Backoff::default()
        .base(Duration::from_millis(250))
        .cap(Duration::from_secs(20))
        .retry_after_cap(Duration::from_secs(90))
        .max_retries(Some(7))
        .reset_after(Duration::from_secs(3))
        .seed(Some(42));
    let client = Client::builder()
        .access_token("token")
        .api_base("http://127.0.0.1:9")
        .login_base("http://127.0.0.1:9")
        .backoff(backoff.clone())
        .proxy("http://user:pw@proxy.example.com:3128")
        .no_proxy("internal.example.com,10.0.0.0/8")
        .proxy_from_env(false)
        .proxy_loopback(true)
        .streaming_base("https://gateway.example.com:8443")
        .build()
        .unwrap();
    let config = client.config();
    let b = config.backoff();
    assert_eq!(b, &backoff);
    assert_eq!(b.get_base(), Duration::from_millis(250));
    assert_eq!(b.get_cap(), Duration::from_secs(20));
    assert_eq!(b.get_retry_after_cap(), Duration::from_secs(90));
    assert_eq!(b.get_max_retries(), Some(7));
    assert_eq!(b.get_reset_after(), Duration::from_secs(3));
    assert_eq!(b.get_seed(), Some(42));

    let proxy = config.proxy();
    let p = proxy.proxy().expect("the proxy set");
    assert_eq!((p.host(), p.port()), ("proxy.example.com", 3128));
    assert!(p.has_credentials());
    assert_eq!(proxy.no_proxy(), Some("internal.example.com,10.0.0.0/8"));
    assert!(!proxy.from_env());
    assert!(proxy.proxy_loopback());

    assert_eq!(
        config.streaming_base().as_deref(),
        Some("wss://gateway.example.com:8443")
    );
    assert!(!config.maps_connect_uri());

    let mapped = Client::builder()
        .access_token("token")
        .api_base("http://127.0.0.1:9")
        .map_connect_uri(|uri| uri.to_owned())
        .build()
        .unwrap();
    assert!(mapped.config().maps_connect_uri());
    assert_eq!(mapped.config().streaming_base(), None);
    assert!(
        mapped.config().proxy().from_env(),
        "the default reads the environment"
    );
}
