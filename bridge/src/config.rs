//! The configuration file (TOML) of a real deployment: Redis and sharding settings, where
//! Genesys Cloud is, a pool of OAuth clients, topic lists and `all_users` kinds. Parsing and
//! checking only; no I/O beyond reading the file.
//!
//! ```toml
//! redis = "redis://127.0.0.1:6379"
//! shards = 64            # the same in every process
//! lease_secs = 10
//! prefix = "genesys"
//! maxlen = 100000        # entries per stream (MAXLEN ~)
//! buffer_bytes = 67108864
//! http = "127.0.0.1:9187"
//! region = "eu-west-1"   # or api_base and login_base
//!
//! topics = ["v2.routing.queues.<id>.observations"]
//!
//! [[credential]]
//! client_id = "…"
//! client_secret_env = "GENESYS_SECRET_1"   # or client_secret = "…" (keep the file private)
//!
//! [[credential]]
//! client_id = "…"
//! client_secret_env = "GENESYS_SECRET_2"
//!
//! [all_users]
//! kinds = ["presence", "routingStatus"]     # one combined topic per active user
//! refresh_secs = 300                        # new users added, deleted ones dropped
//! page_size = 500
//! ```
//! Every key is optional except that a deployment needs Redis (here or `--redis`), a place
//! (region or bases, here or in flags/environment), credentials (here, or the environment's
//! one) and topics (here, on the command line or through `all_users`). Command-line flags win
//! over the environment, which wins over the file, also across settings (a region wins over
//! base URLs given at a lower level; see `genesys_notify::cli`). Unknown keys are an error.

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The file's contents.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `redis://HOST:PORT[/DB]`, or a Redis Cluster's seed nodes separated by commas.
    pub redis: Option<String>,
    /// `redis` names one seed node of a Redis Cluster.
    pub redis_cluster: Option<bool>,
    /// Shard count.
    pub shards: Option<u32>,
    /// Lease time, in seconds.
    pub lease_secs: Option<u64>,
    /// Key prefix.
    pub prefix: Option<String>,
    /// `MAXLEN ~` per stream, in entries.
    pub maxlen: Option<u64>,
    /// The buffer's budget, in bytes.
    pub buffer_bytes: Option<usize>,
    /// This process's id.
    pub bridge_id: Option<String>,
    /// Address of the HTTP server (`127.0.0.1:PORT`).
    pub http: Option<String>,
    /// Genesys region (`eu-west-1`, `mypurecloud.ie`).
    pub region: Option<String>,
    /// REST base URL.
    pub api_base: Option<String>,
    /// OAuth base URL.
    pub login_base: Option<String>,
    /// Topics to subscribe.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The credential pool.
    #[serde(default, rename = "credential")]
    pub credentials: Vec<Credential>,
    /// Topics for every active user.
    pub all_users: Option<AllUsers>,
}

/// One OAuth client of the pool.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The OAuth client id.
    pub client_id: String,
    /// Its secret, written in the file.
    pub client_secret: Option<String>,
    /// The environment variable holding its secret (preferred).
    pub client_secret_env: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_secret_env", &self.client_secret_env)
            .finish()
    }
}

impl Credential {
    /// The secret: from the file, else from its environment variable.
    ///
    /// # Errors
    /// Neither is set (or the variable is empty), naming the client id and the variable.
    pub fn secret(&self) -> Result<String, String> {
        if let Some(secret) = &self.client_secret {
            return Ok(secret.clone());
        }
        match &self.client_secret_env {
            Some(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!(
                    "credential {}: the environment variable {var} (client_secret_env) is not set",
                    self.client_id
                )
                }),
            None => Err(format!(
                "credential {}: give client_secret_env (or client_secret)",
                self.client_id
            )),
        }
    }
}

/// The `[all_users]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllUsers {
    /// Topic kinds per user, e.g. `["presence", "routingStatus"]`.
    pub kinds: Vec<String>,
    /// How often the users are read again, in seconds (default 300, at least 1).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Users per page (1 to 500, default 500).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

fn default_refresh_secs() -> u64 {
    300
}

fn default_page_size() -> usize {
    500
}

impl AllUsers {
    /// The refresh period.
    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.refresh_secs)
    }
}

impl FileConfig {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML of this shape (the message gives the line
    /// and column), or holds a value out of range; each message starts with the path.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a file's text.
    ///
    /// # Errors
    /// As [`Self::load`], without the path.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        let config: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.shards == Some(0) {
            return Err("shards must be at least 1".into());
        }
        if config.lease_secs == Some(0) {
            return Err("lease_secs must be at least 1".into());
        }
        if config.maxlen == Some(0) {
            return Err("maxlen must be at least 1".into());
        }
        if let Some(all) = &config.all_users {
            if all.kinds.is_empty() {
                return Err(
                    "all_users.kinds is empty (e.g. [\"presence\", \"routingStatus\"])".into(),
                );
            }
            if let Some(kind) = all
                .kinds
                .iter()
                .find(|k| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return Err(format!("all_users.kinds: {kind:?} is not a topic kind (letters and digits, e.g. presence)"));
            }
            if all.refresh_secs == 0 {
                return Err("all_users.refresh_secs must be at least 1".into());
            }
            if !(1..=500).contains(&all.page_size) {
                return Err("all_users.page_size must be 1 to 500".into());
            }
        }
        for (i, c) in config.credentials.iter().enumerate() {
            if c.client_id.is_empty() {
                return Err(format!("credential {i}: client_id is empty"));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + doc[start..].find("//! ```\n").unwrap();
        let text: String = doc[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix("//! ")
                    .or(l.strip_prefix("//!"))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = FileConfig::parse(&text).unwrap();
        assert_eq!(config.shards, Some(64));
        assert_eq!(config.credentials.len(), 2);
        assert_eq!(
            config.credentials[0].client_secret_env.as_deref(),
            Some("GENESYS_SECRET_1")
        );
        let all = config.all_users.unwrap();
        assert_eq!(all.kinds, ["presence", "routingStatus"]);
        assert_eq!(all.refresh(), Duration::from_secs(300));
    }

    #[test]
    fn mistakes_are_named() {
        let err = FileConfig::parse("shard = 3").unwrap_err();
        assert!(
            err.contains("unknown field") && err.contains("shard"),
            "{err}"
        );
        let err = FileConfig::parse("shards = \"x\"").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(FileConfig::parse("shards = 0")
            .unwrap_err()
            .contains("shards"));
        let err = FileConfig::parse("[all_users]\nkinds = [\"presence.x\"]").unwrap_err();
        assert!(err.contains("presence.x"), "{err}");
        let err =
            FileConfig::parse("[all_users]\nkinds = [\"presence\"]\npage_size = 501").unwrap_err();
        assert!(err.contains("page_size"), "{err}");
    }

    #[test]
    fn secrets_come_from_the_file_or_the_named_variable_and_never_show_in_debug() {
        let c = Credential {
            client_id: "id".into(),
            client_secret: Some("s3cret".into()),
            client_secret_env: None,
        };
        assert_eq!(c.secret().unwrap(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = Credential {
            client_id: "id".into(),
            client_secret: None,
            client_secret_env: Some("GENESYS_BRIDGE_TEST_UNSET_VARIABLE".into()),
        };
        assert!(c
            .secret()
            .unwrap_err()
            .contains("GENESYS_BRIDGE_TEST_UNSET_VARIABLE"));
    }
}
