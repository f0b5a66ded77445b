//! The emulator's state resources: each user's current presence and routing status (from what
//! tests publish on `v2.users.{id}.presence` / `.routingStatus`, or set directly) and the REST
//! endpoints that read them, with the API's limits (docs/protocol.md, "State resources").
//!
//! Served (GET only):
//! - `/api/v2/users/presences/purecloud/bulk?id=..&id=..` (or `id=a,b`): at most
//!   [`PRESENCE_BULK_LIMIT`] ids, else 400; unknown users are left out of the list;
//! - `/api/v2/users/{id}/presences/purecloud`: 404 for an unknown user;
//! - `/api/v2/users?id=..&expand=presence,routingStatus&pageSize=..&pageNumber=..`: at most
//!   [`USERS_ID_LIMIT`] ids and a page size of at most [`USERS_PAGE_SIZE_MAX`] (default 25),
//!   else 400; unknown users are left out; `state` (`active` by default, as the real API;
//!   `deleted`, `any`) filters the users listed, so a deleted user is no longer listed;
//! - `/api/v2/users/{id}/routingstatus`: `OFF_QUEUE` for a user without one, as the real API.
//!
//! Presence answers carry `systemPresence` in the display form (`"On Queue"`), as REST samples
//! do, while events carry the upper-case form (`"ON_QUEUE"`).

use super::fault::Endpoint;
use super::Emulator;
use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Most ids in one presence bulk read (the API's documented limit).
pub const PRESENCE_BULK_LIMIT: usize = 50;
/// Most ids in one `GET /api/v2/users` (the emulator's limit; the API documents none, keep
/// requests small).
pub const USERS_ID_LIMIT: usize = 100;
/// Largest `pageSize` of `GET /api/v2/users` the emulator accepts.
pub const USERS_PAGE_SIZE_MAX: usize = 500;

/// A user's presence as the emulator keeps it (event form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPresence {
    /// `presenceDefinition.systemPresence`, upper-case event form (`AVAILABLE`, `ON_QUEUE`).
    pub system_presence: String,
    /// `presenceDefinition.id`.
    pub presence_id: String,
    /// `message`.
    pub message: String,
    /// `modifiedDate` (RFC 3339).
    pub modified_date: String,
}

/// A user's routing status as the emulator keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRoutingStatus {
    /// `status` (`IDLE`, `INTERACTING`, `OFF_QUEUE`, ...).
    pub status: String,
    /// `startTime` (RFC 3339).
    pub start_time: String,
}

#[derive(Default)]
struct User {
    presence: Option<UserPresence>,
    routing: Option<UserRoutingStatus>,
    /// Deleted by [`Emulator::delete_user`]: `GET /api/v2/users` lists it only when asked for
    /// `state=deleted` (or `any`).
    deleted: bool,
}

impl User {
    /// The user's `state` as the users API gives it.
    fn state(&self) -> &'static str {
        if self.deleted {
            "deleted"
        } else {
            "active"
        }
    }
}

/// The state resources' part of the emulator state (under the state lock).
#[derive(Default)]
pub(crate) struct Resources {
    /// Lower-cased user id → state. Ordered, so unfiltered listings are stable.
    users: BTreeMap<String, User>,
    /// Endpoint → the permissions a request to it lacks (answered 403).
    denied: HashMap<Endpoint, Vec<String>>,
    hold: Option<Arc<HoldGate>>,
}

/// Holds state responses until released.
pub(crate) struct HoldGate {
    released: Mutex<bool>,
    changed: Condvar,
    waiting: Mutex<usize>,
}

impl HoldGate {
    /// Waits until released or `shutdown()` says so.
    pub(crate) fn wait(&self, shutdown: impl Fn() -> bool) {
        *self.waiting.lock() += 1;
        let mut released = self.released.lock();
        while !*released && !shutdown() {
            self.changed
                .wait_for(&mut released, Duration::from_millis(50));
        }
        drop(released);
        *self.waiting.lock() -= 1;
    }

    fn release(&self) {
        *self.released.lock() = true;
        self.changed.notify_all();
    }
}

/// Holds every answer of the state resources (computed when the request arrives, so it shows
/// the state of that moment) until [`StateHold::release`] or drop: lets a test publish changes
/// while a client's state request is in flight. Other endpoints are not held.
pub struct StateHold {
    gate: Arc<HoldGate>,
    shared: Arc<super::state::Shared>,
}

impl StateHold {
    /// Answers waiting now.
    pub fn held(&self) -> usize {
        *self.gate.waiting.lock()
    }

    /// Waits until at least `n` answers are held (→ true) or `timeout` passes (→ false).
    pub fn wait_held(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.held() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Sends the held answers and stops holding.
    pub fn release(self) {}
}

impl Drop for StateHold {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        if st
            .resources
            .hold
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
        {
            st.resources.hold = None;
        }
        drop(st);
        self.gate.release();
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `ON_QUEUE` → `On Queue`, the display form REST answers carry.
fn display_form(system_presence: &str) -> String {
    system_presence
        .split(['_', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn event_form(system_presence: &str) -> String {
    system_presence
        .trim()
        .replace([' ', '-'], "_")
        .to_ascii_uppercase()
}

/// A stable presence definition id per system presence.
fn definition_id(system_presence: &str) -> String {
    match system_presence {
        "AVAILABLE" => "6a3af858-942f-489d-9700-5f9bcdcdae9b".to_owned(),
        other => {
            let sum: u64 = other
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            format!("00000000-0000-4000-8000-{:012x}", sum & 0xffff_ffff_ffff)
        }
    }
}

/// `v2.users.{id}.{suffix}` (any case) → lower-cased id.
fn user_of(topic: &str, suffix: &str) -> Option<String> {
    let lower = topic.to_ascii_lowercase();
    let rest = lower.strip_prefix("v2.users.")?;
    let id = rest.strip_suffix(suffix)?.strip_suffix('.')?;
    (!id.is_empty() && !id.contains('.')).then(|| id.to_owned())
}

impl Resources {
    /// Keeps the state a published notification carries (`text` is the whole message).
    pub(crate) fn observe(&mut self, topic: &str, text: &str) {
        let presence_user = user_of(topic, "presence");
        let routing_user = user_of(topic, "routingstatus");
        if presence_user.is_none() && routing_user.is_none() {
            return;
        }
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Some(body) = message.get("eventBody") else {
            return;
        };
        if let Some(user) = presence_user {
            let definition = body.get("presenceDefinition");
            let Some(system) = definition
                .and_then(|d| d.get("systemPresence"))
                .and_then(Value::as_str)
            else {
                return;
            };
            let system = event_form(system);
            let presence = UserPresence {
                presence_id: definition
                    .and_then(|d| d.get("id"))
                    .and_then(Value::as_str)
                    .map_or_else(|| definition_id(&system), str::to_owned),
                message: body
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                modified_date: body
                    .get("modifiedDate")
                    .and_then(Value::as_str)
                    .map_or_else(now_rfc3339, str::to_owned),
                system_presence: system,
            };
            self.users.entry(user).or_default().presence = Some(presence);
        } else if let Some(user) = routing_user {
            let routing = body.get("routingStatus");
            let Some(status) = routing
                .and_then(|r| r.get("status"))
                .and_then(Value::as_str)
            else {
                return;
            };
            let state = UserRoutingStatus {
                status: status.to_ascii_uppercase(),
                start_time: routing
                    .and_then(|r| r.get("startTime"))
                    .and_then(Value::as_str)
                    .map_or_else(now_rfc3339, str::to_owned),
            };
            self.users.entry(user).or_default().routing = Some(state);
        }
    }

    /// The hold to wait on for an answer to this path, if the path is a state resource.
    pub(crate) fn hold_for(&self, method: &str, segments: &[&str]) -> Option<Arc<HoldGate>> {
        classify(method, segments)?;
        self.hold.clone()
    }

    fn presence_rest(user: &str, p: &UserPresence) -> Value {
        json!({
            "id": format!("{user}-purecloud"),
            "userId": user,
            "source": "PURECLOUD",
            "sourceId": "purecloud",
            "primary": true,
            "presenceDefinition": {
                "id": p.presence_id,
                "systemPresence": display_form(&p.system_presence),
                "selfUri": format!("/api/v2/presencedefinitions/{}", p.presence_id),
            },
            "message": p.message,
            "modifiedDate": p.modified_date,
            "selfUri": format!("/api/v2/users/{user}/presences/purecloud"),
        })
    }

    fn routing_rest(user: &str, r: Option<&UserRoutingStatus>) -> Value {
        match r {
            Some(r) => json!({"userId": user, "status": r.status, "startTime": r.start_time}),
            None => json!({"userId": user, "status": "OFF_QUEUE"}),
        }
    }

    /// Answers a state resource request (`segments` after `api/v2`), or `None` when the path
    /// is not one. `Err` carries an error `(status, code, message)`.
    pub(crate) fn route(
        &self,
        method: &str,
        segments: &[&str],
        query: &str,
    ) -> Option<Result<Value, (u16, &'static str, String)>> {
        let endpoint = classify(method, &[&["api", "v2"][..], segments].concat())?;
        if let Some(missing) = self.denied.get(&endpoint) {
            return Some(Err((
                403,
                "missing.permissions",
                format!(
                    "Unable to perform the requested action. You are missing the following \
                     permission(s): [{}]",
                    missing.join(", ")
                ),
            )));
        }
        let params = parse_query(query);
        let ids: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "id")
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .filter(|s| !s.is_empty())
            .collect();
        Some(match (endpoint, segments) {
            (Endpoint::PresenceBulk, _) => {
                if ids.is_empty() {
                    return Some(Err((400, "bad.request", "id is required".into())));
                }
                if ids.len() > PRESENCE_BULK_LIMIT {
                    return Some(Err((
                        400,
                        "bad.request",
                        format!("At most {PRESENCE_BULK_LIMIT} ids are allowed"),
                    )));
                }
                let list: Vec<Value> = ids
                    .iter()
                    .filter_map(|id| {
                        let p = self.users.get(id)?.presence.as_ref()?;
                        Some(Self::presence_rest(id, p))
                    })
                    .collect();
                Ok(Value::Array(list))
            }
            (Endpoint::UserPresence, [_, id, ..]) => {
                let id = id.to_ascii_lowercase();
                match self.users.get(&id).and_then(|u| u.presence.as_ref()) {
                    Some(p) => Ok(Self::presence_rest(&id, p)),
                    None => Err((404, "not.found", format!("User {id} not found"))),
                }
            }
            (Endpoint::UserRoutingStatus, [_, id, ..]) => {
                let id = id.to_ascii_lowercase();
                Ok(Self::routing_rest(
                    &id,
                    self.users.get(&id).and_then(|u| u.routing.as_ref()),
                ))
            }
            (Endpoint::Users, _) => {
                if ids.len() > USERS_ID_LIMIT {
                    return Some(Err((
                        400,
                        "bad.request",
                        format!("At most {USERS_ID_LIMIT} ids are allowed"),
                    )));
                }
                let number = |key: &str, default: usize| {
                    params
                        .iter()
                        .find(|(k, _)| k == key)
                        .map_or(Some(default), |(_, v)| v.parse::<usize>().ok())
                };
                let (Some(page_size), Some(page_number)) =
                    (number("pageSize", 25), number("pageNumber", 1))
                else {
                    return Some(Err((400, "bad.request", "bad page parameters".into())));
                };
                if page_size == 0 || page_size > USERS_PAGE_SIZE_MAX || page_number == 0 {
                    return Some(Err((
                        400,
                        "bad.request",
                        format!("pageSize must be 1..={USERS_PAGE_SIZE_MAX}, pageNumber >= 1"),
                    )));
                }
                let expand: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| k == "expand")
                    .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
                    .collect();
                // The API lists active users unless `state` says otherwise (`inactive`, `deleted`,
                // `any`); the emulator's users are active until deleted.
                let state = params
                    .iter()
                    .find(|(k, _)| k == "state")
                    .map_or("active", |(_, v)| v.as_str());
                let listed = |id: &String| {
                    self.users
                        .get(id)
                        .is_some_and(|u| state.eq_ignore_ascii_case("any") || u.state() == state)
                };
                let selected: Vec<&String> = if ids.is_empty() {
                    self.users.keys().filter(|id| listed(id)).collect()
                } else {
                    ids.iter().filter(|id| listed(id)).collect()
                };
                let total = selected.len();
                let entities: Vec<Value> = selected
                    .into_iter()
                    .skip((page_number - 1) * page_size)
                    .take(page_size)
                    .map(|id| {
                        let user = &self.users[id];
                        let mut entity = json!({
                            "id": id,
                            "name": format!("User {}", &id[..id.len().min(8)]),
                            "state": user.state(),
                            "selfUri": format!("/api/v2/users/{id}"),
                        });
                        if expand.iter().any(|e| e == "routingstatus") {
                            entity["routingStatus"] = Self::routing_rest(id, user.routing.as_ref());
                        }
                        if expand.iter().any(|e| e == "presence") {
                            if let Some(p) = &user.presence {
                                entity["presence"] = Self::presence_rest(id, p);
                            }
                        }
                        entity
                    })
                    .collect();
                Ok(json!({
                    "entities": entities,
                    "pageSize": page_size,
                    "pageNumber": page_number,
                    "total": total,
                    "pageCount": total.div_ceil(page_size),
                }))
            }
            _ => return None,
        })
    }
}

/// The state resource a request is for.
pub(crate) fn classify(method: &str, segments: &[&str]) -> Option<Endpoint> {
    if method != "GET" {
        return None;
    }
    match segments {
        ["api", "v2", "users", "presences", "purecloud", "bulk"] => Some(Endpoint::PresenceBulk),
        ["api", "v2", "users", _, "presences", "purecloud"] => Some(Endpoint::UserPresence),
        ["api", "v2", "users", _, "routingstatus"] => Some(Endpoint::UserRoutingStatus),
        ["api", "v2", "users"] => Some(Endpoint::Users),
        _ => None,
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (super::http::url_decode(k), super::http::url_decode(v))
        })
        .collect()
}

impl Emulator {
    /// Sets a user's presence (`system_presence` in either form, e.g. `"ON_QUEUE"` or
    /// `"On Queue"`; `modifiedDate` now) without publishing anything, and returns the matching
    /// `v2.users.{id}.presence` event body, ready for [`Emulator::publish`]. Publishing a
    /// presence event sets the state as well.
    pub fn set_user_presence(&self, user: &str, system_presence: &str) -> Value {
        let system = event_form(system_presence);
        let body = json!({
            "source": "PURECLOUD",
            "presenceDefinition": {"id": definition_id(&system), "systemPresence": system},
            "primary": true,
            "message": "",
            "modifiedDate": now_rfc3339(),
        });
        let text = json!({"eventBody": body}).to_string();
        self.shared
            .state
            .lock()
            .resources
            .observe(&format!("v2.users.{user}.presence"), &text);
        body
    }

    /// Deletes a user, as an administrator deleting it in Genesys Cloud: `GET /api/v2/users`
    /// no longer lists it (the API lists `state=active` users by default), except with
    /// `state=deleted` or `state=any`. Its presence and routing status stay readable by id, and
    /// publishing on its topics still works: the emulator does not unsubscribe anyone. Returns
    /// false when the emulator knows no such user (none was given a state).
    pub fn delete_user(&self, user: &str) -> bool {
        let mut st = self.shared.state.lock();
        match st.resources.users.get_mut(&user.to_ascii_lowercase()) {
            Some(u) => {
                u.deleted = true;
                true
            }
            None => false,
        }
    }

    /// Sets a user's routing status (`startTime` now) without publishing anything, and returns
    /// the matching `v2.users.{id}.routingStatus` event body. Publishing a routing-status
    /// event sets the state as well.
    pub fn set_user_routing_status(&self, user: &str, status: &str) -> Value {
        let body = json!({
            "id": user.to_ascii_lowercase(),
            "routingStatus": {"status": status.to_ascii_uppercase(), "startTime": now_rfc3339()},
        });
        let text = json!({"eventBody": body}).to_string();
        self.shared
            .state
            .lock()
            .resources
            .observe(&format!("v2.users.{user}.routingStatus"), &text);
        body
    }

    /// A user's current presence, if the emulator knows one.
    pub fn user_presence(&self, user: &str) -> Option<UserPresence> {
        let st = self.shared.state.lock();
        st.resources
            .users
            .get(&user.to_ascii_lowercase())?
            .presence
            .clone()
    }

    /// A user's current routing status, if the emulator knows one.
    pub fn user_routing_status(&self, user: &str) -> Option<UserRoutingStatus> {
        let st = self.shared.state.lock();
        st.resources
            .users
            .get(&user.to_ascii_lowercase())?
            .routing
            .clone()
    }

    /// Makes a state resource answer 403 `missing.permissions`, naming these permissions, until
    /// [`Emulator::allow_state_resource`]. `endpoint` is one of [`Endpoint::PresenceBulk`],
    /// [`Endpoint::UserPresence`], [`Endpoint::Users`], [`Endpoint::UserRoutingStatus`].
    pub fn deny_state_resource(&self, endpoint: Endpoint, missing_permissions: &[&str]) {
        self.shared.state.lock().resources.denied.insert(
            endpoint,
            missing_permissions
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        );
    }

    /// Undoes [`Emulator::deny_state_resource`].
    pub fn allow_state_resource(&self, endpoint: Endpoint) {
        self.shared.state.lock().resources.denied.remove(&endpoint);
    }

    /// Holds the answers of the state resources until the returned [`StateHold`] is released
    /// or dropped.
    pub fn hold_state_responses(&self) -> StateHold {
        let gate = Arc::new(HoldGate {
            released: Mutex::new(false),
            changed: Condvar::new(),
            waiting: Mutex::new(0),
        });
        self.shared.state.lock().resources.hold = Some(gate.clone());
        StateHold {
            gate,
            shared: self.shared.clone(),
        }
    }

    /// The state resource requests served so far (any status), in order.
    pub fn state_requests(&self) -> Vec<super::RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| {
                let path = r.path.split('?').next().unwrap_or_default();
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                classify(&r.method, &segments).is_some()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f";

    #[test]
    fn published_presence_and_routing_become_the_state_rest_serves() {
        let mut r = Resources::default();
        r.observe(
            &format!("v2.users.{U}.presence"),
            &json!({"eventBody": {"presenceDefinition": {"id": "d", "systemPresence": "ON_QUEUE"},
                    "modifiedDate": "2026-12-01T10:00:00Z"}})
            .to_string(),
        );
        r.observe(
            &format!("v2.users.{U}.routingStatus"),
            &json!({"eventBody": {"id": U, "routingStatus": {"status": "IDLE", "startTime": "t"}}})
                .to_string(),
        );
        let bulk = r
            .route(
                "GET",
                &["users", "presences", "purecloud", "bulk"],
                &format!("id={U}&id=x"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(bulk.as_array().unwrap().len(), 1);
        assert_eq!(bulk[0]["presenceDefinition"]["systemPresence"], "On Queue");
        assert_eq!(bulk[0]["userId"], U);
        let users = r
            .route(
                "GET",
                &["users"],
                &format!("id={U}&expand=routingStatus&pageSize=100"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(users["entities"][0]["routingStatus"]["status"], "IDLE");
        assert!(users["entities"][0].get("presence").is_none());
        let single = r
            .route("GET", &["users", "someone", "routingstatus"], "")
            .unwrap()
            .unwrap();
        assert_eq!(single["status"], "OFF_QUEUE");
    }

    #[test]
    fn limits_and_denials_are_enforced() {
        let mut r = Resources::default();
        let ids: Vec<String> = (0..51).map(|i| format!("id=u{i}")).collect();
        let err = r
            .route(
                "GET",
                &["users", "presences", "purecloud", "bulk"],
                &ids.join("&"),
            )
            .unwrap()
            .unwrap_err();
        assert_eq!(err.0, 400);
        let err = r
            .route("GET", &["users"], "pageSize=501")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.0, 400);
        r.denied
            .insert(Endpoint::Users, vec!["routing:agent:view".into()]);
        let err = r.route("GET", &["users"], "").unwrap().unwrap_err();
        assert_eq!(err.0, 403);
        assert!(err.2.contains("[routing:agent:view]"), "{}", err.2);
        assert!(r.route("GET", &["tokens", "me"], "").is_none());
        assert!(r.route("PUT", &["users"], "").is_none());
    }

    #[test]
    fn presence_forms_convert_both_ways() {
        assert_eq!(display_form("ON_QUEUE"), "On Queue");
        assert_eq!(display_form("AVAILABLE"), "Available");
        assert_eq!(event_form("On Queue"), "ON_QUEUE");
    }
}
