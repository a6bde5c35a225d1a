//! Configuration: built-in defaults, then an optional `leadline.toml`, then
//! `LEADLINE_*` environment variables (and `PORT`, `DATABASE_URL`). Everything is
//! validated at start; a bad value stops the start with a message naming it.
//!
//! In the file, settings are the environment names without `LEADLINE_`, in lower
//! case (`bind = "0.0.0.0:8080"`, `retry_base_delay = "30s"`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON lines.
    Json,
    /// Human-readable.
    Pretty,
    /// Pretty on a terminal, JSON elsewhere.
    Auto,
}

/// An IP network such as `10.0.0.0/8` (or a bare address: its own network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Parses `addr/len` or a bare address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        t.parse::<ipnet::IpNet>()
            .or_else(|_| t.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(|n| Self(n.trunc()))
            .map_err(|_| format!("{s:?} is not an IP network such as 10.0.0.0/8"))
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub bind: SocketAddr,
    /// SQLite file, mail files, backups, `admin.key`.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: SecretString,
    /// The admin key; generated into `<data_dir>/admin.key` when unset.
    pub admin_key: Option<SecretString>,
    /// Base of links in emails.
    pub public_base_url: String,
    /// SMTP server; unset writes `.eml` files.
    pub smtp_url: Option<SecretString>,
    /// Default sender.
    pub mail_from: String,
    /// Redis for shared rate limits.
    pub redis_url: Option<SecretString>,
    /// Prefix of Leadline's keys in Redis.
    pub redis_key_prefix: String,
    /// The longest a Redis call may take before the instance limits locally.
    pub redis_timeout: Duration,
    /// The longest one email delivery may take (connect, dialogue, send).
    pub smtp_timeout: Duration,
    /// Per-IP requests a minute (every class not set otherwise).
    pub rate_limit_per_minute: u32,
    /// Per-IP requests a minute on public routes.
    pub rate_limit_public_per_minute: u32,
    /// Per-IP requests a minute on `/v1` routes.
    pub rate_limit_tenant_per_minute: u32,
    /// Per-IP requests a minute on `/admin` routes.
    pub rate_limit_admin_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` is honoured.
    pub trusted_proxies: Vec<Cidr>,
    /// Delivery attempts in all.
    pub retry_max_attempts: u32,
    /// First retry delay.
    pub retry_base_delay: Duration,
    /// Cap of one retry delay.
    pub retry_max_delay: Duration,
    /// One webhook attempt.
    pub webhook_timeout: Duration,
    /// Allow `http://` webhooks.
    pub allow_insecure_webhooks: bool,
    /// Allow private-address webhook targets.
    pub allow_private_webhook_targets: bool,
    /// Idempotency keys kept.
    pub idempotency_ttl: Duration,
    /// Audit entries kept.
    pub audit_retention: Duration,
    /// Dead letters kept.
    pub dead_letter_retention: Duration,
    /// Backups kept.
    pub backup_keep: u32,
    /// Log format.
    pub log_format: LogFormat,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How often the outbox dispatcher looks for due messages when not woken.
    pub worker_poll: Duration,
    /// Mail logs, delivery attempts and finished outbox messages kept.
    pub delivery_log_retention: Duration,
    /// How often the janitor runs the cleanups (the backup runs daily).
    pub janitor_interval: Duration,
    /// The SQLite writer's batch size, batch wait and queue capacity.
    pub writer: leadline_store::WriterOptions,
}

/// Every setting: (name in the environment, default). The file uses the name
/// without `LEADLINE_` in lower case.
const SETTINGS: &[(&str, &str)] = &[
    ("LEADLINE_BIND", "127.0.0.1:8080"),
    ("LEADLINE_DATA_DIR", "./data"),
    ("DATABASE_URL", ""),
    ("LEADLINE_ADMIN_KEY", ""),
    ("LEADLINE_PUBLIC_BASE_URL", ""),
    ("LEADLINE_SMTP_URL", ""),
    ("LEADLINE_MAIL_FROM", "Leadline <no-reply@localhost>"),
    ("LEADLINE_SMTP_TIMEOUT", "30s"),
    ("LEADLINE_REDIS_URL", ""),
    ("LEADLINE_REDIS_KEY_PREFIX", "leadline"),
    ("LEADLINE_REDIS_TIMEOUT", "50ms"),
    ("LEADLINE_RATE_LIMIT_PER_MINUTE", "60"),
    ("LEADLINE_RATE_LIMIT_PUBLIC_PER_MINUTE", ""),
    ("LEADLINE_RATE_LIMIT_TENANT_PER_MINUTE", ""),
    ("LEADLINE_RATE_LIMIT_ADMIN_PER_MINUTE", ""),
    ("LEADLINE_TRUSTED_PROXIES", ""),
    ("LEADLINE_RETRY_MAX_ATTEMPTS", "5"),
    ("LEADLINE_RETRY_BASE_DELAY", "30s"),
    ("LEADLINE_RETRY_MAX_DELAY", "6h"),
    ("LEADLINE_WEBHOOK_TIMEOUT", "15s"),
    ("LEADLINE_ALLOW_INSECURE_WEBHOOKS", "false"),
    ("LEADLINE_ALLOW_PRIVATE_WEBHOOK_TARGETS", "false"),
    ("LEADLINE_IDEMPOTENCY_TTL", "24h"),
    ("LEADLINE_AUDIT_RETENTION", "365d"),
    ("LEADLINE_DEAD_LETTER_RETENTION", "7d"),
    ("LEADLINE_BACKUP_KEEP", "7"),
    ("LEADLINE_LOG_FORMAT", "auto"),
    ("LEADLINE_SHUTDOWN_GRACE", "10s"),
    ("LEADLINE_WORKER_POLL", "1s"),
    ("LEADLINE_DELIVERY_LOG_RETENTION", "90d"),
    ("LEADLINE_JANITOR_INTERVAL", "1h"),
    ("LEADLINE_WRITER_MAX_BATCH", "256"),
    ("LEADLINE_WRITER_MAX_WAIT", "0ms"),
    ("LEADLINE_WRITER_QUEUE", "4096"),
];

fn file_key(env: &str) -> String {
    env.strip_prefix("LEADLINE_").unwrap_or(env).to_ascii_lowercase()
}

/// Errors of configuration, each naming its setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads from the file (when `file` is given, or `./leadline.toml` exists) and
    /// the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(file, &env)
    }

    /// Loads from the file and the given environment (tests pass their own).
    pub fn from_sources(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let mut values: BTreeMap<&str, String> = SETTINGS.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let default_file = Path::new("leadline.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Err(e) => errors.push(format!("config file {}: {e}", path.display())),
                Ok(text) => match text.parse::<toml::Table>() {
                    Err(e) => errors.push(format!("config file {}: {e}", path.display())),
                    Ok(table) => {
                        for (k, v) in table {
                            let Some((env_name, _)) = SETTINGS.iter().find(|(e, _)| file_key(e) == k) else {
                                errors.push(format!("config file {}: unknown setting `{k}`", path.display()));
                                continue;
                            };
                            let v = match v {
                                toml::Value::String(s) => s,
                                toml::Value::Integer(i) => i.to_string(),
                                toml::Value::Boolean(b) => b.to_string(),
                                toml::Value::Array(a) => {
                                    a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")
                                }
                                toml::Value::Float(f) => f.to_string(),
                                _ => {
                                    errors.push(format!(
                                        "config file {}: `{k}` must be a string, number or boolean",
                                        path.display()
                                    ));
                                    continue;
                                }
                            };
                            values.insert(env_name, v);
                        }
                    }
                },
            }
        }
        for (k, _) in SETTINGS {
            if let Some(v) = env.get(*k) {
                values.insert(k, v.clone());
            }
        }
        let get = |k: &str| values.get(k).cloned().unwrap_or_default();
        let mut dur = |k: &str| -> Duration {
            let v = get(k);
            match humantime::parse_duration(&v) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    errors.push(format!("{k}: {v:?} is not a duration such as 500ms, 30s, 6h or 7d"));
                    Duration::from_secs(1)
                }
            }
        };
        let retry_base_delay = dur("LEADLINE_RETRY_BASE_DELAY");
        let retry_max_delay = dur("LEADLINE_RETRY_MAX_DELAY");
        let webhook_timeout = dur("LEADLINE_WEBHOOK_TIMEOUT");
        let redis_timeout = dur("LEADLINE_REDIS_TIMEOUT");
        let smtp_timeout = dur("LEADLINE_SMTP_TIMEOUT");
        let idempotency_ttl = dur("LEADLINE_IDEMPOTENCY_TTL");
        let audit_retention = dur("LEADLINE_AUDIT_RETENTION");
        let dead_letter_retention = dur("LEADLINE_DEAD_LETTER_RETENTION");
        let shutdown_grace = dur("LEADLINE_SHUTDOWN_GRACE");
        let worker_poll = dur("LEADLINE_WORKER_POLL");
        let delivery_log_retention = dur("LEADLINE_DELIVERY_LOG_RETENTION");
        let janitor_interval = dur("LEADLINE_JANITOR_INTERVAL");
        if janitor_interval < Duration::from_secs(1) {
            errors.push("LEADLINE_JANITOR_INTERVAL: must be at least 1s".into());
        }
        let writer_max_wait = {
            let v = get("LEADLINE_WRITER_MAX_WAIT");
            match humantime::parse_duration(&v) {
                Ok(d) if d <= Duration::from_secs(1) => d,
                _ => {
                    errors.push(format!(
                        "LEADLINE_WRITER_MAX_WAIT: {v:?} must be a duration from 0ms to 1s, such as 0ms or 2ms"
                    ));
                    Duration::ZERO
                }
            }
        };
        let mut num = |k: &str, min: u32, max: u32| -> u32 {
            let v = get(k);
            match v.trim().parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    errors.push(format!("{k}: {v:?} must be a whole number from {min} to {max}"));
                    min
                }
            }
        };
        let rate_limit_per_minute = num("LEADLINE_RATE_LIMIT_PER_MINUTE", 1, 1_000_000);
        let mut class_limit = |k: &str| {
            if get(k).trim().is_empty() {
                rate_limit_per_minute
            } else {
                num(k, 1, 1_000_000)
            }
        };
        let rate_limit_public_per_minute = class_limit("LEADLINE_RATE_LIMIT_PUBLIC_PER_MINUTE");
        let rate_limit_tenant_per_minute = class_limit("LEADLINE_RATE_LIMIT_TENANT_PER_MINUTE");
        let rate_limit_admin_per_minute = class_limit("LEADLINE_RATE_LIMIT_ADMIN_PER_MINUTE");
        let retry_max_attempts = num("LEADLINE_RETRY_MAX_ATTEMPTS", 1, 100);
        let backup_keep = num("LEADLINE_BACKUP_KEEP", 1, 10_000);
        let writer = leadline_store::WriterOptions {
            max_batch: num("LEADLINE_WRITER_MAX_BATCH", 1, 10_000) as usize,
            max_wait: writer_max_wait,
            queue_capacity: num("LEADLINE_WRITER_QUEUE", 1, 1_000_000) as usize,
        };
        let mut flag = |k: &str| -> bool {
            match get(k).trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" | "" => false,
                v => {
                    errors.push(format!("{k}: {v:?} must be true or false"));
                    false
                }
            }
        };
        let allow_insecure_webhooks = flag("LEADLINE_ALLOW_INSECURE_WEBHOOKS");
        let allow_private_webhook_targets = flag("LEADLINE_ALLOW_PRIVATE_WEBHOOK_TARGETS");

        let bind = match env.get("PORT").filter(|p| !p.trim().is_empty()) {
            Some(port) => match port.trim().parse::<u16>() {
                Ok(p) => SocketAddr::from(([0, 0, 0, 0], p)),
                Err(_) => {
                    errors.push(format!("PORT: {port:?} is not a port number"));
                    SocketAddr::from(([127, 0, 0, 1], 8080))
                }
            },
            None => match get("LEADLINE_BIND").trim().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    errors.push(format!(
                        "LEADLINE_BIND: {:?} is not an address such as 127.0.0.1:8080",
                        get("LEADLINE_BIND")
                    ));
                    SocketAddr::from(([127, 0, 0, 1], 8080))
                }
            },
        };
        let data_dir = PathBuf::from(get("LEADLINE_DATA_DIR"));
        let database_url = match get("DATABASE_URL") {
            u if u.is_empty() => format!("sqlite://{}", data_dir.join("leadline.db").display()),
            u if u.starts_with("sqlite:") || u.starts_with("postgres:") || u.starts_with("postgresql:") => u,
            _ => {
                errors.push("DATABASE_URL: must start with sqlite:// or postgres://".into());
                String::new()
            }
        };
        let nonempty = |k: &str| Some(get(k)).filter(|v| !v.trim().is_empty());
        let admin_key = nonempty("LEADLINE_ADMIN_KEY");
        if let Some(k) = &admin_key
            && k.len() < 16
        {
            errors.push("LEADLINE_ADMIN_KEY: must be at least 16 characters".into());
        }
        let public_base_url = match nonempty("LEADLINE_PUBLIC_BASE_URL") {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => u.trim_end_matches('/').to_owned(),
            Some(u) => {
                errors.push(format!(
                    "LEADLINE_PUBLIC_BASE_URL: {u:?} must start with http:// or https://"
                ));
                u
            }
            None => format!("http://{bind}"),
        };
        let smtp_url = nonempty("LEADLINE_SMTP_URL");
        if let Some(u) = &smtp_url
            && !(u.starts_with("smtp://") || u.starts_with("smtps://"))
        {
            errors.push("LEADLINE_SMTP_URL: must start with smtp:// or smtps://".into());
        }
        let redis_url = nonempty("LEADLINE_REDIS_URL");
        if let Some(u) = &redis_url
            && !(u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            errors.push("LEADLINE_REDIS_URL: must start with redis:// or rediss://".into());
        }
        let mut trusted_proxies = Vec::new();
        for part in get("LEADLINE_TRUSTED_PROXIES")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match Cidr::parse(part) {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => errors.push(format!("LEADLINE_TRUSTED_PROXIES: {e}")),
            }
        }
        let log_format = match get("LEADLINE_LOG_FORMAT").as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            "auto" => LogFormat::Auto,
            v => {
                errors.push(format!("LEADLINE_LOG_FORMAT: {v:?} must be json, pretty or auto"));
                LogFormat::Auto
            }
        };
        if retry_max_delay < retry_base_delay {
            errors.push("LEADLINE_RETRY_MAX_DELAY: must not be shorter than LEADLINE_RETRY_BASE_DELAY".into());
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Self {
            bind,
            data_dir,
            database_url: database_url.into(),
            admin_key: admin_key.map(Into::into),
            public_base_url,
            smtp_url: smtp_url.map(Into::into),
            mail_from: get("LEADLINE_MAIL_FROM"),
            redis_url: redis_url.map(Into::into),
            redis_key_prefix: get("LEADLINE_REDIS_KEY_PREFIX"),
            redis_timeout,
            smtp_timeout,
            rate_limit_per_minute,
            rate_limit_public_per_minute,
            rate_limit_tenant_per_minute,
            rate_limit_admin_per_minute,
            trusted_proxies,
            retry_max_attempts,
            retry_base_delay,
            retry_max_delay,
            webhook_timeout,
            allow_insecure_webhooks,
            allow_private_webhook_targets,
            idempotency_ttl,
            audit_retention,
            dead_letter_retention,
            backup_keep,
            log_format,
            shutdown_grace,
            worker_poll,
            delivery_log_retention,
            janitor_interval,
            writer,
        })
    }

    /// A configuration for tests: the given database, a fixed admin key, port 0,
    /// no practical rate limit; `extra` settings override.
    pub fn for_tests(database_url: &str, data_dir: &Path, admin_key: &str, extra: &[(&str, &str)]) -> Self {
        let dir = data_dir.display().to_string();
        let base = [
            ("DATABASE_URL", database_url),
            ("LEADLINE_ADMIN_KEY", admin_key),
            ("LEADLINE_BIND", "127.0.0.1:0"),
            ("LEADLINE_DATA_DIR", dir.as_str()),
            ("LEADLINE_LOG_FORMAT", "json"),
            ("LEADLINE_RATE_LIMIT_PER_MINUTE", "1000000"),
            ("LEADLINE_ALLOW_INSECURE_WEBHOOKS", "true"),
            ("LEADLINE_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("LEADLINE_WORKER_POLL", "50ms"),
            ("LEADLINE_SHUTDOWN_GRACE", "5s"),
        ];
        let env: BTreeMap<String, String> = base
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match Self::from_sources(None, &env) {
            Ok(c) => c,
            Err(e) => panic!("test configuration: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::from_sources(None, &env(&[])).expect("defaults are valid");
        assert_eq!(c.bind, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.retry_max_attempts, 5);
        assert_eq!(c.retry_max_delay, Duration::from_secs(6 * 3600));
        assert_eq!(c.audit_retention, Duration::from_secs(365 * 86400));
        use secrecy::ExposeSecret;
        assert_eq!(c.database_url.expose_secret(), "sqlite://./data/leadline.db");
    }

    #[test]
    fn port_wins_and_binds_everywhere() {
        let c = Config::from_sources(None, &env(&[("PORT", "9000"), ("LEADLINE_BIND", "127.0.0.1:1")])).expect("valid");
        assert_eq!(c.bind, "0.0.0.0:9000".parse().expect("addr"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_sources(
            None,
            &env(&[
                ("LEADLINE_RETRY_BASE_DELAY", "soon"),
                ("LEADLINE_RATE_LIMIT_PER_MINUTE", "-1"),
                ("DATABASE_URL", "mysql://x"),
            ]),
        )
        .expect_err("invalid");
        let text = e.to_string();
        assert!(text.contains("LEADLINE_RETRY_BASE_DELAY"), "{text}");
        assert!(text.contains("LEADLINE_RATE_LIMIT_PER_MINUTE"), "{text}");
        assert!(text.contains("DATABASE_URL"), "{text}");
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leadline.toml");
        std::fs::write(&path, "rate_limit_per_minute = 100\nretry_base_delay = \"1s\"\n").expect("write");
        let c = Config::from_sources(Some(&path), &env(&[("LEADLINE_RATE_LIMIT_PER_MINUTE", "7")])).expect("valid");
        assert_eq!(c.rate_limit_per_minute, 7);
        assert_eq!(c.retry_base_delay, Duration::from_secs(1));
        std::fs::write(&path, "no_such_setting = 1\n").expect("write");
        assert!(Config::from_sources(Some(&path), &env(&[])).is_err());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        assert!(Cidr::parse("::1").expect("valid").contains("::1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(
            Cidr::parse("10.1.2.3/8")
                .expect("valid")
                .contains("10.9.9.9".parse().expect("ip"))
        );
        assert!(c.contains("::ffff:10.0.0.1".parse().expect("ip")), "IPv4-mapped");
    }
}
