//! cli.rs owns the command-line flags and environment variables that `genesys-tail` and
//! `genesys-bridge` share (where to connect, how to authenticate, proxy and TLS) and turns them
//! into [`ClientBuilder`] settings; it never prints, never exits and reads no file but
//! `--ca-file`.
//!
//! Feature `cli`. A program flattens [`CredentialArgs`] and [`NetworkArgs`] into its own clap
//! parser, reads the credential flags and their environment variables with
//! [`CredentialArgs::settings`], may add values of its own (a configuration file) as
//! [`Origin::Fallback`], and calls [`Settings::resolve`]:
//!
//! - a flag wins over its environment variable; an empty variable counts as unset, an empty
//!   flag is an error ([`SettingsError`] naming the flag as typed);
//! - across settings too: a region wins over base URLs given at a lower level (a `--region`
//!   flag over `GENESYS_API_BASE` and `GENESYS_LOGIN_BASE` from the environment, while the
//!   `--api-base` and `--login-base` flags still win over the region), and client credentials
//!   given both at a higher level win over an access token (`--client-id` with
//!   `--client-secret` over a stale `GENESYS_ACCESS_TOKEN`); each value set aside gives a
//!   warning naming it and what won;
//! - errors name the flag and the variable as the user typed them, and an unknown region says
//!   where it came from.
//!
//! ```
//! use clap::Parser;
//! use genesys_notify::cli::{CredentialArgs, NetworkArgs};
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     credentials: CredentialArgs,
//!     #[command(flatten)]
//!     network: NetworkArgs,
//! }
//!
//! # fn main() -> Result<(), genesys_notify::cli::SettingsError> {
//! let args = Args::parse_from(["my-tool", "--region", "eu-west-1", "--access-token", "t"]);
//! let (settings, warnings) = args.credentials.settings()?.resolve();
//! for warning in &warnings {
//!     eprintln!("warning: {warning}");
//! }
//! let credential = settings.credential(None)?;
//! let builder = settings.endpoints(genesys_notify::Client::builder(), credential.needs_login())?;
//! let builder = args.network.apply(credential.apply(builder))?;
//! # drop(builder);
//! # Ok(())
//! # }
//! ```

use crate::client::ClientBuilder;
use crate::config::Region;
use crate::redact::Redacted;
use crate::tls::TlsRoots;
use std::fmt;
use std::path::PathBuf;

/// Where to connect and how to authenticate: `--region`, `--api-base`, `--login-base`,
/// `--client-id`, `--client-secret`, `--access-token`, each also read from its environment
/// variable by [`CredentialArgs::settings`] (`GENESYS_REGION`, ...). `#[command(flatten)]` it.
#[derive(clap::Args, Clone, Default)]
pub struct CredentialArgs {
    /// Region, e.g. `eu-west-1` or `mypurecloud.ie` [env: GENESYS_REGION].
    #[arg(long)]
    pub region: Option<String>,

    /// REST base URL, overrides the region's `https://api.<domain>` [env: GENESYS_API_BASE].
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,

    /// OAuth base URL, overrides the region's `https://login.<domain>`; not needed with an
    /// access token [env: GENESYS_LOGIN_BASE].
    #[arg(long, value_name = "URL")]
    pub login_base: Option<String>,

    /// OAuth client id [env: GENESYS_CLIENT_ID].
    #[arg(long)]
    pub client_id: Option<String>,

    /// OAuth client secret [env: GENESYS_CLIENT_SECRET]. Prefer the environment variable: command
    /// lines are visible to other users of the machine.
    #[arg(long)]
    pub client_secret: Option<String>,

    /// An access token to use instead of client credentials; it is not refreshed
    /// [env: GENESYS_ACCESS_TOKEN].
    #[arg(long)]
    pub access_token: Option<String>,
}

/// The corporate-network flags: proxy (`--proxy`, `--no-proxy`, `--no-proxy-env`,
/// `--proxy-loopback`), trust (`--ca-file`, `--platform-roots`) and `--streaming-base`.
/// `#[command(flatten)]` it; [`NetworkArgs::apply`] hands them to a [`ClientBuilder`] (the proxy
/// environment variables are read by the client itself, see [`ClientBuilder::proxy_from_env`]).
#[derive(clap::Args, Clone, Default)]
pub struct NetworkArgs {
    /// HTTP CONNECT proxy for every connection (token, REST, sockets):
    /// `http://[user:password@]host[:port]`. Default: the environment (see below).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    /// Hosts that bypass the proxy, comma-separated, curl's NO_PROXY syntax
    /// (overrides NO_PROXY).
    #[arg(long, value_name = "HOSTS")]
    pub no_proxy: Option<String>,

    /// Ignore the proxy settings of the environment (https_proxy, HTTPS_PROXY, all_proxy,
    /// ALL_PROXY, no_proxy, NO_PROXY).
    #[arg(long)]
    pub no_proxy_env: bool,

    /// Send loopback hosts (localhost, 127.0.0.0/8, ::1) through the proxy too.
    #[arg(long)]
    pub proxy_loopback: bool,

    /// Trust the CA certificates in this PEM file too (e.g. a corporate CA that inspects TLS).
    /// Repeatable.
    #[arg(long, value_name = "PEM_FILE")]
    pub ca_file: Vec<PathBuf>,

    /// Trust the operating system's certificate store instead of the bundled Mozilla roots.
    #[arg(long)]
    pub platform_roots: bool,

    /// Connect the notification sockets to this gateway (`https://host[:port]`) instead of the
    /// host in the service's connectUri; the connectUri's path and query are kept.
    #[arg(long, value_name = "URL")]
    pub streaming_base: Option<String>,
}

/// A secret in debug output: whether it is there, never what it is (guarantee 8).
fn hidden<T>(secret: &Option<T>) -> Option<Redacted> {
    secret.as_ref().map(|_| Redacted)
}

/// A URL in debug output without its `user:password@` part.
fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| start + at);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}<redacted>@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_owned(),
    }
}

impl fmt::Debug for CredentialArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialArgs")
            .field("region", &self.region)
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("client_id", &self.client_id)
            .field("client_secret", &hidden(&self.client_secret))
            .field("access_token", &hidden(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for NetworkArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkArgs")
            .field("proxy", &self.proxy.as_deref().map(without_userinfo))
            .field("no_proxy", &self.no_proxy)
            .field("no_proxy_env", &self.no_proxy_env)
            .field("proxy_loopback", &self.proxy_loopback)
            .field("ca_file", &self.ca_file)
            .field("platform_roots", &self.platform_roots)
            .field("streaming_base", &self.streaming_base)
            .finish()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = |given: &Option<Given>| given.as_ref().map(|g| (Redacted, g.origin.clone()));
        f.debug_struct("Settings")
            .field("region", &self.region)
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("access_token", &origin(&self.access_token))
            .field("client_id", &self.client_id)
            .field("client_secret", &origin(&self.client_secret))
            .finish()
    }
}

/// A settings problem the user must fix, worded for them: it names the flag and the
/// environment variable as typed (`--api-base is empty; give a value or leave it out`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    message: String,
}

impl SettingsError {
    /// An error with this message (for a program's own settings checks).
    pub fn new(message: impl Into<String>) -> SettingsError {
        SettingsError {
            message: message.into(),
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingsError {}

/// Where a setting's value came from, highest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The command line.
    Flag,
    /// The setting's environment variable.
    Environment,
    /// A program's own lower source, e.g. its configuration file; the text names it in
    /// messages (`region in --config`).
    Fallback(String),
}

impl Origin {
    /// Higher wins.
    fn rank(&self) -> u8 {
        match self {
            Origin::Flag => 2,
            Origin::Environment => 1,
            Origin::Fallback(_) => 0,
        }
    }
}

/// One setting's value (trimmed, never empty) and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given {
    /// The value.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

impl Given {
    /// A value from a program's own lower source, named `source` in messages
    /// (`"region in --config"`); `None` for an absent or blank value.
    pub fn fallback(value: Option<&str>, source: &str) -> Option<Given> {
        let value = value?.trim();
        (!value.is_empty()).then(|| Given {
            value: value.to_owned(),
            origin: Origin::Fallback(source.to_owned()),
        })
    }
}

/// The flag and the environment variable of each credential setting, as typed.
const REGION: (&str, &str) = ("--region", "GENESYS_REGION");
const API_BASE: (&str, &str) = ("--api-base", "GENESYS_API_BASE");
const LOGIN_BASE: (&str, &str) = ("--login-base", "GENESYS_LOGIN_BASE");
const ACCESS_TOKEN: (&str, &str) = ("--access-token", "GENESYS_ACCESS_TOKEN");
const CLIENT_ID: (&str, &str) = ("--client-id", "GENESYS_CLIENT_ID");
const CLIENT_SECRET: (&str, &str) = ("--client-secret", "GENESYS_CLIENT_SECRET");

/// How a value of the setting named `names` is called in messages: the flag, the variable or
/// the fallback's own name.
fn source_name(given: &Given, (flag, var): (&str, &str)) -> String {
    match &given.origin {
        Origin::Flag => flag.to_owned(),
        Origin::Environment => var.to_owned(),
        Origin::Fallback(source) => source.clone(),
    }
}

/// Where to connect and how to authenticate, each setting with its origin. Built by
/// [`CredentialArgs::settings`]; a program may fill what is still `None` from a source of its
/// own ([`Given::fallback`]) before [`Settings::resolve`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `--region` / `GENESYS_REGION`.
    pub region: Option<Given>,
    /// `--api-base` / `GENESYS_API_BASE`.
    pub api_base: Option<Given>,
    /// `--login-base` / `GENESYS_LOGIN_BASE`.
    pub login_base: Option<Given>,
    /// `--access-token` / `GENESYS_ACCESS_TOKEN`.
    pub access_token: Option<Given>,
    /// `--client-id` / `GENESYS_CLIENT_ID`.
    pub client_id: Option<Given>,
    /// `--client-secret` / `GENESYS_CLIENT_SECRET`.
    pub client_secret: Option<Given>,
}

impl CredentialArgs {
    /// Each flag, else its environment variable (see [`flag_or_env`]), with its origin. Nothing
    /// is resolved across settings yet: see [`Settings::resolve`].
    ///
    /// # Errors
    /// A flag given empty, or a variable that is not valid UTF-8, named as typed.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let given = |flag: &Option<String>, (name, var): (&str, &str)| {
            let origin = if flag.is_some() {
                Origin::Flag
            } else {
                Origin::Environment
            };
            Ok::<_, SettingsError>(
                flag_or_env(flag.clone(), name, var)?.map(|value| Given { value, origin }),
            )
        };
        Ok(Settings {
            region: given(&self.region, REGION)?,
            api_base: given(&self.api_base, API_BASE)?,
            login_base: given(&self.login_base, LOGIN_BASE)?,
            access_token: given(&self.access_token, ACCESS_TOKEN)?,
            client_id: given(&self.client_id, CLIENT_ID)?,
            client_secret: given(&self.client_secret, CLIENT_SECRET)?,
        })
    }
}

/// The flag's value, else the environment variable's (an empty variable counts as unset, as
/// shells leave them), trimmed.
///
/// # Errors
/// A flag given empty (`--api-base ""`): the user asked for something and gave nothing; and
/// a variable that is not valid UTF-8. `name` is the flag as typed, `var` the variable.
pub fn flag_or_env(
    flag: Option<String>,
    name: &str,
    var: &str,
) -> Result<Option<String>, SettingsError> {
    if let Some(value) = flag {
        let value = value.trim();
        if value.is_empty() {
            return Err(SettingsError::new(format!(
                "{name} is empty; give a value or leave it out"
            )));
        }
        return Ok(Some(value.to_owned()));
    }
    match std::env::var(var) {
        Ok(value) => Ok(Some(value.trim().to_owned()).filter(|v| !v.is_empty())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(SettingsError::new(format!(
            "{var} is not valid UTF-8; set it to a valid value or unset it"
        ))),
    }
}

/// How one client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A token obtained elsewhere, not refreshed.
    AccessToken(String),
    /// The OAuth client credentials grant.
    ClientCredentials {
        /// The OAuth client id.
        id: String,
        /// The OAuth client secret.
        secret: String,
    },
}

impl fmt::Debug for Credential {
    // Secrets stay out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::AccessToken(_) => f.write_str("AccessToken(..)"),
            Credential::ClientCredentials { id, .. } => f
                .debug_struct("ClientCredentials")
                .field("id", id)
                .finish_non_exhaustive(),
        }
    }
}

impl Credential {
    /// Whether the OAuth host (`login_base`) is needed: only to get tokens.
    pub fn needs_login(&self) -> bool {
        matches!(self, Credential::ClientCredentials { .. })
    }

    /// `builder` with this credential.
    pub fn apply(&self, builder: ClientBuilder) -> ClientBuilder {
        match self {
            Credential::AccessToken(token) => builder.access_token(token.clone()),
            Credential::ClientCredentials { id, secret } => {
                builder.client_credentials(id.clone(), secret.clone())
            }
        }
    }
}

impl Settings {
    /// Flags win over the environment (and both over fallbacks), also across settings: a
    /// region sets both hosts, so base URLs given at a lower level give way to it (the
    /// `--api-base` and `--login-base` flags still override it), and client credentials both
    /// given at a higher level than an access token win over it. An access token given as a
    /// flag wins over client credentials, with a warning naming what is ignored. Returns the
    /// settings to use and the warnings.
    pub fn resolve(mut self) -> (Settings, Vec<String>) {
        let mut warnings = Vec::new();
        if let Some(region) = &self.region {
            let region_name = source_name(region, REGION);
            for (base, names) in [
                (&mut self.api_base, API_BASE),
                (&mut self.login_base, LOGIN_BASE),
            ] {
                if let Some(lower) = base
                    .as_ref()
                    .filter(|b| b.origin.rank() < region.origin.rank())
                {
                    let ignored = source_name(lower, names);
                    warnings.push(format!("{ignored} ignored: {region_name} was given"));
                    *base = None;
                }
            }
        }
        let flag = |g: &Option<Given>| g.as_ref().is_some_and(|g| g.origin == Origin::Flag);
        if let (Some(token), Some(id), Some(secret)) =
            (&self.access_token, &self.client_id, &self.client_secret)
        {
            if token.origin.rank() < id.origin.rank().min(secret.origin.rank()) {
                warnings.push(format!(
                    "{} ignored: {} and {} were given",
                    source_name(token, ACCESS_TOKEN),
                    source_name(id, CLIENT_ID),
                    source_name(secret, CLIENT_SECRET)
                ));
                self.access_token = None;
            }
        }
        if flag(&self.access_token) && (flag(&self.client_id) || flag(&self.client_secret)) {
            warnings
                .push("--client-id and --client-secret ignored: --access-token was given".into());
        }
        (self, warnings)
    }

    /// The credential to use: the access token, else the client id and secret.
    ///
    /// # Errors
    /// Neither is complete: the message names the variables and flags missing, and ends with
    /// `other_ways` (`", or [[credential]] tables in --config"`) when given.
    pub fn credential(&self, other_ways: Option<&str>) -> Result<Credential, SettingsError> {
        let value = |g: &Option<Given>| g.as_ref().map(|g| g.value.clone());
        match (
            value(&self.access_token),
            value(&self.client_id),
            value(&self.client_secret),
        ) {
            (Some(token), _, _) => Ok(Credential::AccessToken(token)),
            (None, Some(id), Some(secret)) => Ok(Credential::ClientCredentials { id, secret }),
            (None, id, secret) => {
                let mut missing = Vec::new();
                if id.is_none() {
                    missing.push("GENESYS_CLIENT_ID (--client-id)");
                }
                if secret.is_none() {
                    missing.push("GENESYS_CLIENT_SECRET (--client-secret)");
                }
                Err(SettingsError::new(format!(
                    "missing credentials: set {}, or give an access token with \
                     GENESYS_ACCESS_TOKEN (--access-token){}",
                    missing.join(" and "),
                    other_ways.unwrap_or_default()
                )))
            }
        }
    }

    /// `builder` with the region and the base URLs. `login_needed`: the credential gets tokens
    /// from the OAuth host ([`Credential::needs_login`]); an access token needs the API base
    /// alone, and an API base `https://api.<domain>` gives its login host
    /// `https://login.<domain>`.
    ///
    /// # Errors
    /// An unknown region (saying where it came from, listing the known ones), or neither a
    /// region nor the base URLs needed.
    pub fn endpoints(
        &self,
        mut builder: ClientBuilder,
        login_needed: bool,
    ) -> Result<ClientBuilder, SettingsError> {
        let api_base = self.api_base.as_ref().map(|g| g.value.as_str());
        let login_base = self.login_base.as_ref().map(|g| g.value.as_str());
        match &self.region {
            Some(given) => {
                let region = Region::from_name(&given.value).ok_or_else(|| {
                    let known: Vec<&str> = Region::all().map(Region::name).collect();
                    SettingsError::new(format!(
                        "unknown region {:?} (from {}); known regions: {}",
                        given.value,
                        source_name(given, REGION),
                        known.join(", ")
                    ))
                })?;
                builder = builder.region(region);
            }
            None if api_base.is_none()
                || (login_needed
                    && login_base.is_none()
                    && !api_base.is_some_and(|url| {
                        url.split_once("://")
                            .is_some_and(|(_, rest)| rest.to_ascii_lowercase().starts_with("api."))
                    })) =>
            {
                return Err(SettingsError::new(
                    "no region: set GENESYS_REGION (or --region), e.g. eu-west-1, or give both \
                     GENESYS_API_BASE and GENESYS_LOGIN_BASE (or --api-base and --login-base; \
                     with an access token, or an API base https://api.<domain>, the API base \
                     alone)",
                ))
            }
            None => {}
        }
        if let Some(url) = api_base {
            builder = builder.api_base(url);
        }
        if let Some(url) = login_base {
            builder = builder.login_base(url);
        }
        Ok(builder)
    }
}

impl NetworkArgs {
    /// `builder` with the proxy, trust and gateway flags. Values are checked by
    /// [`ClientBuilder::build`], whose [`crate::ConfigError`] names the library's setting:
    /// [`setting_flag`] gives its flag.
    ///
    /// # Errors
    /// A `--ca-file` that cannot be read, naming the file.
    pub fn apply(&self, mut builder: ClientBuilder) -> Result<ClientBuilder, SettingsError> {
        if let Some(url) = &self.proxy {
            builder = builder.proxy(url);
        }
        if let Some(list) = &self.no_proxy {
            builder = builder.no_proxy(list);
        }
        if self.no_proxy_env {
            builder = builder.proxy_from_env(false);
        }
        if self.proxy_loopback {
            builder = builder.proxy_loopback(true);
        }
        if self.platform_roots {
            builder = builder.tls_roots(TlsRoots::Platform);
        }
        for path in &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                SettingsError::new(format!("cannot read --ca-file {}: {e}", path.display()))
            })?;
            builder = builder.add_root_certificates_pem(pem);
        }
        if let Some(url) = &self.streaming_base {
            builder = builder.streaming_base(url);
        }
        Ok(builder)
    }
}

/// The flag (and environment variable) behind a library setting that these flags set, for
/// messages about a [`crate::ConfigError`]: `"api_base"` gives
/// `"--api-base (or GENESYS_API_BASE)"`; `None` for a setting they do not cover.
pub fn setting_flag(field: &str) -> Option<String> {
    let (flag, var) = match field {
        "region" => REGION,
        "api_base" => API_BASE,
        "login_base" => LOGIN_BASE,
        "client_id" => CLIENT_ID,
        "client_secret" => CLIENT_SECRET,
        "access_token" => ACCESS_TOKEN,
        "proxy" => ("--proxy", "https_proxy/HTTPS_PROXY/all_proxy/ALL_PROXY"),
        "no_proxy" => ("--no-proxy", "no_proxy/NO_PROXY"),
        "streaming_base" => return Some("--streaming-base".into()),
        "root_certificates" | "tls_roots" => return Some("--ca-file".into()),
        _ => return None,
    };
    Some(format!("{flag} (or {var})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(v: &str) -> Option<Given> {
        Some(Given {
            value: v.to_owned(),
            origin: Origin::Flag,
        })
    }

    fn env(v: &str) -> Option<Given> {
        Some(Given {
            value: v.to_owned(),
            origin: Origin::Environment,
        })
    }

    /// Hostile pass: a stale GENESYS_ACCESS_TOKEN in the environment beat client credentials
    /// given as flags, and GENESYS_API_BASE in the environment beat a --region flag.
    #[test]
    fn flags_win_over_the_environment_across_settings() {
        let (s, warnings) = Settings {
            region: flag("eu-west-1"),
            api_base: env("https://api.mypurecloud.com"),
            login_base: env("https://login.mypurecloud.com"),
            access_token: env("stale"),
            client_id: flag("id"),
            client_secret: flag("secret"),
        }
        .resolve();
        assert_eq!(s.api_base, None);
        assert_eq!(s.login_base, None);
        assert_eq!(s.access_token, None);
        assert_eq!(s.client_id, flag("id"));
        assert_eq!(
            warnings,
            [
                "GENESYS_API_BASE ignored: --region was given",
                "GENESYS_LOGIN_BASE ignored: --region was given",
                "GENESYS_ACCESS_TOKEN ignored: --client-id and --client-secret were given",
            ]
        );

        // Flags for the bases still override the region flag; the environment alone is kept.
        let (s, warnings) = Settings {
            region: flag("eu-west-1"),
            api_base: flag("https://gw.example.com"),
            access_token: env("token"),
            client_id: env("id"),
            client_secret: env("secret"),
            ..Settings::default()
        }
        .resolve();
        assert_eq!(s.api_base, flag("https://gw.example.com"));
        assert_eq!(s.access_token, env("token"));
        assert!(warnings.is_empty(), "{warnings:?}");

        // An access token flag wins, saying what it ignores.
        let (s, warnings) = Settings {
            access_token: flag("token"),
            client_id: flag("id"),
            ..Settings::default()
        }
        .resolve();
        assert_eq!(s.access_token, flag("token"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    /// A program's own source (the bridge's configuration file) ranks below the environment:
    /// a region from the environment sets base URLs from the file aside, naming them.
    #[test]
    fn fallbacks_rank_below_the_environment() {
        let (s, warnings) = Settings {
            region: env("eu-west-1"),
            api_base: Given::fallback(Some("https://gw.example.com"), "api_base in --config"),
            login_base: env("https://login.example.com"),
            ..Settings::default()
        }
        .resolve();
        assert_eq!(s.api_base, None);
        assert_eq!(s.login_base, env("https://login.example.com"));
        assert_eq!(
            warnings,
            ["api_base in --config ignored: GENESYS_REGION was given"]
        );
        assert_eq!(Given::fallback(Some("  "), "x"), None);
    }

    #[test]
    fn an_unknown_region_says_where_it_came_from() {
        let settings = Settings {
            region: Given::fallback(Some("mars-north-1"), "region in --config"),
            ..Settings::default()
        };
        let error = settings
            .endpoints(crate::client::Client::builder(), false)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("unknown region \"mars-north-1\" (from region in --config)"),
            "{error}"
        );
    }

    #[test]
    fn missing_credentials_name_what_is_missing() {
        let settings = Settings {
            client_id: flag("id"),
            ..Settings::default()
        };
        assert_eq!(
            settings
                .credential(Some(", or a pool"))
                .unwrap_err()
                .to_string(),
            "missing credentials: set GENESYS_CLIENT_SECRET (--client-secret), or give an \
             access token with GENESYS_ACCESS_TOKEN (--access-token), or a pool"
        );
        let settings = Settings {
            client_id: flag("id"),
            client_secret: env("secret"),
            ..Settings::default()
        };
        assert!(settings.credential(None).unwrap().needs_login());
    }

    #[test]
    fn an_empty_flag_is_an_error_naming_it() {
        let error = flag_or_env(Some("  ".into()), "--api-base", "GENESYS_API_BASE").unwrap_err();
        assert_eq!(
            error.to_string(),
            "--api-base is empty; give a value or leave it out"
        );
        assert_eq!(
            setting_flag("api_base").as_deref(),
            Some("--api-base (or GENESYS_API_BASE)")
        );
        assert_eq!(setting_flag("queue_capacity"), None);
    }
}
