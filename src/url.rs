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
