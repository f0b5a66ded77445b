//! url.rs reads the parts of a base URL or `connectUri` the client decides on (scheme, host,
//! loopback or not); it never resolves, connects or logs.

/// Checks a base URL: `https://` (or `wss://`) anywhere, plain `http://` (or `ws://`) only to a
/// loopback host.
///
/// # Errors
/// Why the URL is refused, as text naming the URL: not absolute, no host, an unsupported scheme,
/// or a plain scheme to a host that is not loopback.
pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{:?} is not an absolute URL", redacted(url)))?;
    if authority_of(rest).contains('@') {
        // The client authenticates with OAuth tokens; a password in a base URL would be sent
        // nowhere useful and would show wherever the URL is printed.
        return Err(format!(
            "{:?} holds user info (user:password@): not supported, and never shown",
            redacted(url)
        ));
    }
    let host = host_of(rest);
    if host.is_empty() {
        return Err(format!("{:?} has no host", redacted(url)));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => Ok(()),
        "http" | "ws" if is_loopback(host) => Ok(()),
        "http" | "ws" => Err(format!(
            "plain {scheme} is allowed only to loopback hosts, not {host:?}; use https"
        )),
        _ => Err(format!("unsupported scheme {scheme:?}")),
    }
}

/// Checks a REST or OAuth base URL (`api_base`, `login_base`): what [`check_base_url`] checks,
/// and also that it is not empty, holds no white space or control character, uses `https`
/// (or `http` to a loopback host) and not a WebSocket scheme, has no query (`?`) or fragment
/// (`#`), and does not end in `/api` or `/api/v2` (request paths start with `/api/v2/`, so such
/// a base would double them). Any other path is kept as a prefix of every request path (a
/// gateway); a wrong one fails the first request with a message naming the URL.
///
/// # Errors
/// Why the URL is refused, as text naming the URL (user info redacted) and what to give
/// instead.
pub(crate) fn check_rest_base(url: &str) -> Result<(), String> {
    const EXAMPLE: &str = "give the scheme and host, like https://api.mypurecloud.com";
    if url.trim().is_empty() {
        return Err(format!("is empty: {EXAMPLE}"));
    }
    if let Some((position, character)) = url
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{:?} holds {character:?} at position {position}: URLs hold no white space or \
             control characters",
            redacted(url)
        ));
    }
    check_base_url(url)?;
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if !matches!(scheme.to_ascii_lowercase().as_str(), "https" | "http") {
        return Err(format!(
            "{:?}: unsupported scheme {scheme:?} for a REST or OAuth base; {EXAMPLE}",
            redacted(url)
        ));
    }
    let after = &rest[authority_of(rest).len()..];
    if after.contains(['?', '#']) {
        return Err(format!(
            "{:?} has a query or fragment: {EXAMPLE}",
            redacted(url)
        ));
    }
    let path = after.trim_end_matches('/').to_ascii_lowercase();
    if path.ends_with("/api") || path.ends_with("/api/v2") {
        return Err(format!(
            "{:?} ends in {path:?}, which every request path starts with: {EXAMPLE}",
            redacted(url)
        ));
    }
    let authority = authority_of(rest);
    let port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').and_then(|(_, p)| p.strip_prefix(':')),
        None => authority.split_once(':').map(|(_, p)| p),
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(format!(
            "{:?} has an invalid port (1 to 65535)",
            redacted(url)
        ));
    }
    Ok(())
}

/// The authority of `[user@]host[:port][/path]`: everything before the path, query or fragment.
fn authority_of(rest: &str) -> &str {
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// `url` with any user info (`user:password@`) replaced by `<redacted>@`, for messages that
/// quote a URL the user gave: a password must never reach an error's text.
pub(crate) fn redacted(url: &str) -> std::borrow::Cow<'_, str> {
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.len() + 3, rest),
        None => (0, url),
    };
    match authority_of(rest).rfind('@') {
        None => std::borrow::Cow::Borrowed(url),
        Some(at) => std::borrow::Cow::Owned(format!("{}<redacted>{}", &url[..prefix], &rest[at..])),
    }
}

/// The host part of `host[:port][/path]`, without brackets for IPv6.
pub(crate) fn host_of(rest: &str) -> &str {
    let authority = authority_of(rest);
    let authority = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether `host` is `localhost`, 127.0.0.0/8 or ::1.
pub(crate) fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://localhost").is_ok());
        assert!(check_base_url("http://[::1]:80/x").is_ok());
        assert!(check_base_url("https://api.mypurecloud.com").is_ok());
        let err = check_base_url("http://api.mypurecloud.com").unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(check_base_url("http://10.0.0.1").is_err());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("api.mypurecloud.com").is_err());
    }

    /// Review finding: `api_base("")` was reported as a missing region; queries, fragments,
    /// WebSocket schemes and doubled `/api/v2` prefixes were accepted.
    #[test]
    fn rest_bases_are_origins_or_gateway_prefixes() {
        for ok in [
            "https://api.mypurecloud.com",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "https://gateway.example.com:8443/genesys",
        ] {
            assert_eq!(check_rest_base(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("   ", "empty"),
            (" https://api.mypurecloud.com", "white space"),
            ("https://api.mypurecloud.com\n", "control"),
            ("wss://api.mypurecloud.com", "unsupported scheme"),
            ("ftp://api.mypurecloud.com", "unsupported scheme"),
            ("https://api.mypurecloud.com?x=1", "query"),
            ("https://api.mypurecloud.com/#top", "fragment"),
            ("https://api.mypurecloud.com/api/v2", "/api/v2"),
            ("https://api.mypurecloud.com/API/", "/api"),
            ("http://api.mypurecloud.com", "loopback"),
            ("https://u:p@api.mypurecloud.com", "user info"),
            ("https://api.mypurecloud.com:99999", "port"),
            ("https://api.mypurecloud.com:x", "port"),
            ("api.mypurecloud.com", "absolute"),
        ] {
            let error = check_rest_base(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn user_info_is_refused_and_never_quoted() {
        for url in [
            "https://user:s3cr3t@api.example.com",
            "http://user:s3cr3t@127.0.0.1:8080/x",
            "user:s3cr3t@api.example.com",
            "https://user:s3cr3t@",
        ] {
            let err = check_base_url(url).unwrap_err();
            assert!(!err.contains("s3cr3t"), "{err}");
            assert!(err.contains("<redacted>@"), "{err}");
        }
        assert_eq!(
            redacted("https://u:p@h:1/a@b"),
            "https://<redacted>@h:1/a@b"
        );
        assert_eq!(redacted("https://h/a@b"), "https://h/a@b");
    }
}
