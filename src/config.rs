//! The configuration: a TOML file, overridden by environment variables and `--set` flags, then validated.
//!
//! Every key can come from three places, last wins: the file (`[server] address = …`), the environment
//! (`AVATAR_GATEWAY_SERVER_ADDRESS=…`), and the command line (`--set server.address=…`). Errors name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::cache::CacheLimits;
use crate::engine::rates::RateLimits;
use crate::engine::{EngineConfig, ServerConverts};
use crate::image::ImageLimits;
use crate::link::LinkConfig;
use crate::link::limits::StanzaLimits;
use crate::wire::xep0084::AccessModel;

/// Environment variable prefix for every key.
pub const ENV_PREFIX: &str = "AVATAR_GATEWAY_";

/// The file as written (every key documented in README.md and `avatar-gateway.example.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    server: RawServer,
    gateway: RawGateway,
    limits: ImageLimits,
    cache: CacheLimits,
    rates: RateLimits,
    ops: RawOps,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    address: Option<String>,
    component: Option<String>,
    hosts: Option<Vec<String>>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    keepalive_secs: u64,
    max_backoff_secs: u64,
    max_stanza_depth: usize,
    max_stanza_bytes: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            address: None,
            component: None,
            hosts: None,
            secret: None,
            secret_file: None,
            keepalive_secs: 60,
            max_backoff_secs: 30,
            max_stanza_depth: StanzaLimits::DEFAULT.max_depth,
            max_stanza_bytes: StanzaLimits::DEFAULT.max_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawOps {
    listen: Option<String>,
    drain_secs: u64,
}

impl Default for RawOps {
    fn default() -> Self {
        Self { listen: None, drain_secs: 10 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawGateway {
    store: Option<PathBuf>,
    blob_budget_bytes: u64,
    iq_timeout_secs: u64,
    max_in_flight: usize,
    transcode_backlog_bytes: usize,
    refusal_retry_secs: u64,
    report_delay_secs: u64,
    server_converts: ServerConverts,
    pep_access_model: Option<AccessModel>,
    stamp_presence: bool,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            store: None,
            blob_budget_bytes: 64 << 20,
            iq_timeout_secs: 15,
            // Enough to keep a server on a LAN busy (answers take well under a millisecond each), few enough that
            // a burst of accounts never waits in the server's queue long enough to time out.
            max_in_flight: 256,
            // A few seconds of the workers' work at worst (128 full-size images): enough to keep them busy.
            transcode_backlog_bytes: 64 << 20,
            refusal_retry_secs: 300,
            report_delay_secs: 2,
            server_converts: ServerConverts::Auto,
            pep_access_model: None,
            stamp_presence: true,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The component link.
    pub link: LinkConfig,
    /// The engine.
    pub engine: EngineConfig,
    /// Where the durable store lives (`None`: in memory, for trials only).
    pub store: Option<PathBuf>,
    /// Byte budget of cached image blobs in the store (pinned blobs excluded: accounts' current renditions and
    /// owners' `storage:client:avatar` data).
    pub blob_budget_bytes: u64,
    /// Where `/metrics` and `/health` are served (`None`: nowhere).
    pub ops_listen: Option<SocketAddr>,
}

/// A configuration error, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type (the message names the key and position).
    #[error("{0}")]
    Parse(String),
    /// An override not of the form `section.key=value`.
    #[error("override {0:?} is not section.key=value")]
    BadOverride(String),
    /// A key that must be set.
    #[error("{key} is required: {hint}")]
    Missing {
        /// The key.
        key: &'static str,
        /// How to set it.
        hint: &'static str,
    },
    /// A value out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Loads `file` (if any), applies `AVATAR_GATEWAY_*` variables from `env` and then `overrides`
    /// (`section.key=value`), and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let Some((section, key)) =
                rest.to_ascii_lowercase().split_once('_').map(|(s, k)| (s.to_owned(), k.to_owned()))
            else {
                continue;
            };
            set(&mut table, &section, &key, &value);
        }
        for o in overrides {
            let (path, value) = o.split_once('=').ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            let (section, key) = path.trim().split_once('.').ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            set(&mut table, section, key, value.trim());
        }
        // Re-parse from text so serde's errors point at `key` with a line and column.
        let raw: Raw = toml::from_str(&table.to_string()).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Self, ConfigError> {
        let address = raw.server.address.ok_or(ConfigError::Missing {
            key: "server.address",
            hint: "host:port of the server's component listener, e.g. \"127.0.0.1:5347\"",
        })?;
        let component = raw.server.component.ok_or(ConfigError::Missing {
            key: "server.component",
            hint: "the Component name from the server config, e.g. \"avatars.example.org\"",
        })?;
        let secret = match (raw.server.secret, raw.server.secret_file) {
            (Some(s), _) => s,
            (None, Some(path)) => {
                std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?.trim().to_owned()
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    key: "server.secret_file",
                    hint: "a file holding component_secret, or AVATAR_GATEWAY_SERVER_SECRET in the environment",
                });
            }
        };
        let hosts = served_hosts(raw.server.hosts, &component)?;
        if raw.gateway.iq_timeout_secs == 0 {
            return Err(ConfigError::Invalid { key: "gateway.iq_timeout_secs", reason: "must be at least 1".into() });
        }
        // Real payloads nest fewer than 16 levels, and avatar stanzas need far more than 64 KiB; the upper bound
        // keeps the depth far below the ~13 700 levels at which building the element overflows the main stack.
        if !(16..=1024).contains(&raw.server.max_stanza_depth) {
            return Err(ConfigError::Invalid {
                key: "server.max_stanza_depth",
                reason: "must be between 16 and 1024".into(),
            });
        }
        if raw.server.max_stanza_bytes < 64 << 10 {
            return Err(ConfigError::Invalid {
                key: "server.max_stanza_bytes",
                reason: "must be at least 65536".into(),
            });
        }
        if raw.limits.legacy_max_side == 0 || raw.limits.pep_max_side == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.legacy_max_side / limits.pep_max_side",
                reason: "must be at least 1".into(),
            });
        }
        let ops_listen = match raw.ops.listen {
            None => None,
            Some(address) => Some(address.parse::<SocketAddr>().map_err(|e| ConfigError::Invalid {
                key: "ops.listen",
                reason: format!("{address:?} is not an ip:port address ({e})"),
            })?),
        };
        Ok(Self {
            link: LinkConfig {
                address,
                component: component.clone(),
                secret,
                keepalive: Duration::from_secs(raw.server.keepalive_secs.max(1)),
                max_backoff: Duration::from_secs(raw.server.max_backoff_secs.max(1)),
                stanza_limits: StanzaLimits {
                    max_depth: raw.server.max_stanza_depth,
                    max_bytes: raw.server.max_stanza_bytes,
                },
                drain_timeout: Duration::from_secs(raw.ops.drain_secs),
            },
            engine: EngineConfig {
                component,
                hosts,
                limits: raw.limits,
                cache: raw.cache,
                iq_timeout: Duration::from_secs(raw.gateway.iq_timeout_secs),
                max_in_flight: raw.gateway.max_in_flight.max(1),
                rates: raw.rates,
                transcode_backlog_bytes: raw.gateway.transcode_backlog_bytes,
                refusal_retry: Duration::from_secs(raw.gateway.refusal_retry_secs),
                report_delay: Duration::from_secs(raw.gateway.report_delay_secs),
                pep_access_model: raw.gateway.pep_access_model,
                dry_run: false,
                server_converts: raw.gateway.server_converts,
                stamp_presence: raw.gateway.stamp_presence,
            },
            store: raw.gateway.store,
            blob_budget_bytes: raw.gateway.blob_budget_bytes,
            ops_listen,
        })
    }
}

/// The virtual hosts served: `server.hosts`, or by default the component's parent domain (`avatars.example.org`
/// serves `example.org`). Each must be a bare domain: its domain JID is the one sender the gateway trusts.
fn served_hosts(hosts: Option<Vec<String>>, component: &str) -> Result<Vec<BareJid>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { key: "server.hosts", reason };
    let names = match hosts {
        Some(names) if names.is_empty() => return Err(invalid("lists no host".into())),
        Some(names) => names,
        None => match component.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => vec![parent.to_owned()],
            _ => return Err(invalid(format!("cannot be derived from the component name {component:?}; set it"))),
        },
    };
    names
        .into_iter()
        .map(|name| match BareJid::new(&name) {
            Ok(jid) if jid.node().is_none() => Ok(jid),
            _ => Err(invalid(format!("{name:?} is not a domain"))),
        })
        .collect()
}

/// Sets `section.key` to `value`, read as a TOML value when it is one (numbers, booleans), else as a string.
fn set(table: &mut toml::Table, section: &str, key: &str, value: &str) {
    let parsed = format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"));
    let value = parsed.unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let entry = table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = entry {
        t.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("agw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{}.toml", toml.len()));
        std::fs::write(&file, toml).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        Config::load(Some(&file), env, &sets)
    }

    #[test]
    fn file_then_environment_then_flags() {
        let c = load(
            "[server]\naddress = \"127.0.0.1:5347\"\ncomponent = \"avatars.localhost\"\nsecret = \"s\"\n[limits]\nlegacy_max_side = 48\n",
            &[("AVATAR_GATEWAY_GATEWAY_IQ_TIMEOUT_SECS", "7"), ("AVATAR_GATEWAY_SERVER_ADDRESS", "127.0.0.1:1")],
            &["server.address=127.0.0.1:2", "gateway.server_converts=no"],
        )
        .unwrap();
        assert_eq!(c.link.address, "127.0.0.1:2");
        assert_eq!(c.engine.iq_timeout, Duration::from_secs(7));
        assert_eq!(c.engine.limits.legacy_max_side, 48);
        assert_eq!(c.engine.server_converts, ServerConverts::No);
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("avatar-gateway.example.toml");
        let c = Config::load(Some(&example), [], &["server.secret=s".into()]).unwrap();
        assert_eq!((c.link.component.as_str(), c.engine.limits.legacy_max_bytes), ("avatars.example.org", 8191));
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[server]\naddress = \"a:1\"\nsecret = \"s\"\n", &[], &[]).unwrap_err();
        assert!(e.to_string().starts_with("server.component is required"), "{e}");
        let e = load(
            "[server]\naddress = \"a:1\"\ncomponent = \"c\"\nsecret = \"s\"\n[limits]\nlegacy_max_sid = 3\n",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("legacy_max_sid"), "{e}");
        let e = load(
            "[server]\naddress = \"a:1\"\ncomponent = \"c\"\nsecret = \"s\"\n[gateway]\niq_timeout_secs = \"x\"\n",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("iq_timeout_secs"), "{e}");
    }

    #[test]
    fn ops_endpoint_is_off_unless_configured() {
        // (A base of its own length: `load` names the file by it, and the tests run in parallel.)
        let base = "[server]\naddress = \"a:1\"\ncomponent = \"gw.localhost\"\nsecret = \"s\"\n";
        let c = load(base, &[], &[]).unwrap();
        assert_eq!((c.ops_listen, c.link.drain_timeout), (None, Duration::from_secs(10)));
        let c = load(base, &[], &["ops.listen=127.0.0.1:9877", "ops.drain_secs=3"]).unwrap();
        assert_eq!(c.ops_listen, Some("127.0.0.1:9877".parse().unwrap()));
        assert_eq!(c.link.drain_timeout, Duration::from_secs(3));
        let e = load(base, &[], &["ops.listen=localhost"]).unwrap_err();
        assert!(e.to_string().starts_with("ops.listen: \"localhost\" is not an ip:port"), "{e}");
    }

    #[test]
    fn stanza_limits_default_and_are_bounded() {
        let base = "[server]\naddress = \"a:1\"\ncomponent = \"avatars.localhost\"\nsecret = \"s\"\n";
        assert_eq!(load(base, &[], &[]).unwrap().link.stanza_limits, StanzaLimits::DEFAULT);
        let c = load(base, &[("AVATAR_GATEWAY_SERVER_MAX_STANZA_DEPTH", "32")], &["server.max_stanza_bytes=65536"])
            .unwrap();
        assert_eq!(c.link.stanza_limits, StanzaLimits { max_depth: 32, max_bytes: 65536 });
        for (set, key) in [
            ("server.max_stanza_depth=15", "server.max_stanza_depth"),
            ("server.max_stanza_depth=1025", "server.max_stanza_depth"),
            ("server.max_stanza_bytes=65535", "server.max_stanza_bytes"),
        ] {
            let e = load(base, &[], &[set]).unwrap_err();
            assert!(e.to_string().starts_with(key), "{set}: {e}");
        }
    }
}
