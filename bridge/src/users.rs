//! The `all_users` expansion: every active user of the organisation, read from the paged users
//! API, turned into one combined topic per user (`v2.users.<id>?presence&routingStatus`).
//! The reading does I/O (blocking, through the library client of the credential, so with its
//! token, proxy, trusted roots and request timeout); the page parsing and topic building are
//! pure.
//!
//! `GET {api_base}/api/v2/users?pageSize=<n>&pageNumber=<p>&state=active` with a bearer token,
//! pages numbered from 1, until `pageNumber >= pageCount` or a page comes back empty. A user
//! deleted (or made inactive) is no longer listed, so the next expansion drops its topic. The
//! emulator serves the same endpoint (its users are those tests gave a state, active until
//! `Emulator::delete_user`).

use genesys_notify::{AccessToken, Client, TokenError, TokenSource};
use std::time::Duration;

/// Most pages read in one expansion (a guard against an API that never ends its paging).
pub const MAX_PAGES: usize = 10_000;

/// Why the users could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum UsersError {
    /// The token source failed.
    Token(TokenError),
    /// The API answered this status on this page, with the start of its body.
    Status {
        /// HTTP status.
        status: u16,
        /// Page number (from 1).
        page: usize,
        /// The first 200 characters of the body.
        body: String,
    },
    /// The request failed (connection, timeout, TLS), on this page.
    Request {
        /// Page number (from 1).
        page: usize,
        /// What failed.
        error: String,
    },
    /// The library client's request failed on this page: a status other than 2xx, the proxy,
    /// the connection or TLS, the timeout, the token, a body that is not JSON.
    Api {
        /// Page number (from 1).
        page: usize,
        /// The client's error.
        error: genesys_notify::Error,
    },
    /// A page was not the JSON expected (`entities` with `id`s).
    Malformed {
        /// Page number (from 1).
        page: usize,
        /// What was wrong.
        error: String,
    },
}

impl std::fmt::Display for UsersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsersError::Token(e) => write!(f, "users API: no token: {e}"),
            UsersError::Status { status, page, body } => {
                write!(f, "users API: page {page} answered {status}: {body}")
            }
            UsersError::Request { page, error } => write!(f, "users API: page {page}: {error}"),
            UsersError::Api { page, error } => write!(f, "users API: page {page}: {error}"),
            UsersError::Malformed { page, error } => {
                write!(f, "users API: page {page} is not a users page: {error}")
            }
        }
    }
}

impl std::error::Error for UsersError {}

/// The path and query of one page of active users.
fn page_path(page_size: usize, page: usize) -> String {
    format!("/api/v2/users?pageSize={page_size}&pageNumber={page}&state=active")
}

/// Reads pages from 1 with `read` (page number → its JSON) until the last one, and returns
/// the ids listed.
fn read_pages(
    mut read: impl FnMut(usize) -> Result<serde_json::Value, UsersError>,
) -> Result<Vec<String>, UsersError> {
    let mut ids = Vec::new();
    for page in 1..=MAX_PAGES {
        let (page_ids, page_count) =
            page_of(&read(page)?).map_err(|error| UsersError::Malformed { page, error })?;
        let empty = page_ids.is_empty();
        ids.extend(page_ids);
        if empty || page_count.is_none_or(|count| page >= count) {
            break;
        }
    }
    Ok(ids)
}

/// Reads the ids of every active user through `client` (its access token, proxy, trusted
/// roots and request timeout: [`Client::get_json`]), `page_size` per request (1 to 500).
///
/// # Errors
/// [`UsersError::Api`] for a failed request (naming the page: a status other than 2xx, the
/// proxy, the connection, the timeout, the token); [`UsersError::Malformed`] for a page
/// without `entities` and their `id`s.
pub fn active_users_of(client: &Client, page_size: usize) -> Result<Vec<String>, UsersError> {
    read_pages(|page| {
        client
            .get_json(&page_path(page_size, page))
            .map_err(|error| UsersError::Api { page, error })
    })
}

/// Reads the ids of every active user, `page_size` per request (1 to 500), over a direct
/// connection verified against the bundled roots: no proxy, no extra CA. The bridge uses
/// [`active_users_of`], which goes through the client's network settings.
///
/// # Errors
/// [`UsersError`]: the token, a status other than 200, a failed request or a malformed page,
/// naming the page.
pub fn active_users(
    api_base: &str,
    token: &dyn TokenSource,
    page_size: usize,
    timeout: Duration,
) -> Result<Vec<String>, UsersError> {
    let token: AccessToken = token.fetch_token().map_err(UsersError::Token)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let base = api_base.trim_end_matches('/');
    read_pages(|page| {
        let mut response = agent
            .get(&format!("{base}{}", page_path(page_size, page)))
            .header("Authorization", &format!("Bearer {}", token.secret()))
            .call()
            .map_err(|e| UsersError::Request {
                page,
                error: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| UsersError::Request {
                page,
                error: e.to_string(),
            })?;
        if status != 200 {
            return Err(UsersError::Status {
                status,
                page,
                body: body.chars().take(200).collect(),
            });
        }
        serde_json::from_str(&body).map_err(|e| UsersError::Malformed {
            page,
            error: e.to_string(),
        })
    })
}

/// One page: the users' ids and `pageCount`.
pub fn parse_page(body: &str) -> Result<(Vec<String>, Option<usize>), String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    page_of(&value)
}

/// One page, parsed: the users' ids and `pageCount`.
fn page_of(value: &serde_json::Value) -> Result<(Vec<String>, Option<usize>), String> {
    let entities = value["entities"]
        .as_array()
        .ok_or("no \"entities\" array")?;
    let ids = entities
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "an entity without \"id\"".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let page_count = value["pageCount"].as_u64().map(|n| n as usize);
    Ok((ids, page_count))
}

/// One topic per user: `v2.users.<id>.<kind>` for one kind, the combined
/// `v2.users.<id>?<kind>&<kind>` for several (one subscription however many kinds).
pub fn user_topics(ids: &[String], kinds: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| match kinds {
            [kind] => format!("v2.users.{id}.{kind}"),
            _ => format!("v2.users.{id}?{}", kinds.join("&")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_give_ids_and_the_page_count() {
        let body = r#"{"entities":[{"id":"a","state":"active"},{"id":"b"}],"pageSize":2,"pageNumber":1,"total":3,"pageCount":2}"#;
        assert_eq!(
            parse_page(body).unwrap(),
            (vec!["a".into(), "b".into()], Some(2))
        );
        assert!(parse_page(r#"{"entities":[{"name":"x"}]}"#)
            .unwrap_err()
            .contains("id"));
        assert!(parse_page("[]").unwrap_err().contains("entities"));
    }

    #[test]
    fn pages_are_read_until_the_page_count_or_an_empty_page() {
        let page = |ids: &[&str], count: usize| serde_json::json!({"entities": ids.iter().map(|id| serde_json::json!({"id": id})).collect::<Vec<_>>(), "pageCount": count});
        let mut asked = Vec::new();
        let ids = read_pages(|n| {
            asked.push(n);
            Ok(match n {
                1 => page(&["a", "b"], 2),
                _ => page(&["c"], 2),
            })
        })
        .unwrap();
        assert_eq!(
            (ids, asked),
            (vec!["a".into(), "b".into(), "c".into()], vec![1, 2])
        );
        let mut asked = 0;
        let ids = read_pages(|n| {
            asked += 1;
            Ok(if n == 1 {
                page(&["a"], 9)
            } else {
                page(&[], 9)
            })
        })
        .unwrap();
        assert_eq!(
            (ids, asked),
            (vec!["a".to_owned()], 2),
            "an empty page ends it"
        );
        let failed = read_pages(|_| Ok(serde_json::json!({"pageCount": 1}))).unwrap_err();
        assert!(
            matches!(failed, UsersError::Malformed { page: 1, .. }),
            "{failed}"
        );
    }

    #[test]
    fn kinds_make_combined_topics() {
        let ids = vec!["u1".to_owned()];
        assert_eq!(
            user_topics(&ids, &["presence".into()]),
            ["v2.users.u1.presence"]
        );
        assert_eq!(
            user_topics(&ids, &["presence".into(), "routingStatus".into()]),
            ["v2.users.u1?presence&routingStatus"]
        );
    }
}
