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
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let host = host_of(rest);
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
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

/// The host part of `host[:port][/path]`, without brackets for IPv6.
pub(crate) fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
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
}
