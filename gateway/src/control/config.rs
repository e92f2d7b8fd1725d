//! The gateway's `[control]` section: where the rules server is and which certificates to use.
//! Read at start-up; changing it needs a restart (addresses and keys do not reload).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{parse_sockaddr, ConfigError};

/// `[control]`: subscribe to a rules server (`dragnet rules serve`) over QUIC with mutual TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Off by default: a gateway without a rules server runs its local snapshot.
    pub enabled: bool,
    /// The rules server, `ip:port` (IPv6 as `[::1]:7443`).
    pub server: String,
    /// The name the server's certificate must carry (RFC 6125), e.g. `localhost` in a lab.
    pub server_name: String,
    /// CA certificate(s) (PEM) that the server's certificate must chain to.
    pub ca: PathBuf,
    /// This gateway's client certificate (PEM), issued by the server's client CA.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The name this gateway reports to the fleet table; "" = the host name.
    pub name: String,
    /// First reconnection delay (ms); doubles on each failure up to `backoff_max_ms`, with jitter.
    pub backoff_min_ms: u64,
    /// Longest reconnection delay (ms).
    pub backoff_max_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: false,
            server: String::new(),
            server_name: "localhost".into(),
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            name: String::new(),
            backoff_min_ms: 200,
            backoff_max_ms: 30_000,
        }
    }
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl ControlConfig {
    /// Checks every key when enabled (a disabled section is not looked at); errors name
    /// `control.<key>` and say why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.server.is_empty() {
            return Err(err(
                "control.server",
                "control is enabled but no rules server is set (ip:port)",
            ));
        }
        parse_sockaddr("control.server", &self.server)?;
        if self.server_name.is_empty()
            || rustls::pki_types::ServerName::try_from(self.server_name.as_str()).is_err()
        {
            return Err(err(
                "control.server_name",
                format!(
                    "{:?} is not a DNS name or IP address the server's certificate could carry",
                    self.server_name
                ),
            ));
        }
        for (key, p) in [
            ("control.ca", &self.ca),
            ("control.cert", &self.cert),
            ("control.key", &self.key),
        ] {
            if p.as_os_str().is_empty() {
                return Err(err(key, "must be set: mutual TLS needs it"));
            }
        }
        if self.name.len() > 255 || self.name.chars().any(char::is_control) {
            return Err(err(
                "control.name",
                "must be at most 255 bytes of printable text",
            ));
        }
        if self.backoff_min_ms == 0 {
            return Err(err("control.backoff_min_ms", "must be at least 1"));
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            return Err(err(
                "control.backoff_max_ms",
                format!(
                    "{} is below control.backoff_min_ms ({})",
                    self.backoff_max_ms, self.backoff_min_ms
                ),
            ));
        }
        Ok(())
    }

    /// The name reported to the fleet: `name`, else the host name, else "gateway".
    pub fn display_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "gateway".into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn good() -> ControlConfig {
        ControlConfig {
            enabled: true,
            server: "127.0.0.1:7443".into(),
            ca: "ca.pem".into(),
            cert: "gw.pem".into(),
            key: "gw.key".into(),
            ..ControlConfig::default()
        }
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let c: ControlConfig = toml::from_str("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.backoff_min_ms, 200);
        assert_eq!(c.backoff_max_ms, 30_000);
        assert_eq!(c.server_name, "localhost");
        c.validate().unwrap();
        good().validate().unwrap();
        assert!(toml::from_str::<ControlConfig>("sever = \"x\"").is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(ControlConfig, &str)> = vec![
            (
                ControlConfig {
                    server: String::new(),
                    ..good()
                },
                "control.server",
            ),
            (
                ControlConfig {
                    server: "localhost".into(),
                    ..good()
                },
                "control.server",
            ),
            (
                ControlConfig {
                    server_name: String::new(),
                    ..good()
                },
                "control.server_name",
            ),
            (
                ControlConfig {
                    ca: PathBuf::new(),
                    ..good()
                },
                "control.ca",
            ),
            (
                ControlConfig {
                    key: PathBuf::new(),
                    ..good()
                },
                "control.key",
            ),
            (
                ControlConfig {
                    name: "a\nb".into(),
                    ..good()
                },
                "control.name",
            ),
            (
                ControlConfig {
                    backoff_min_ms: 0,
                    ..good()
                },
                "control.backoff_min_ms",
            ),
            (
                ControlConfig {
                    backoff_max_ms: 10,
                    ..good()
                },
                "control.backoff_max_ms",
            ),
        ];
        for (c, key) in cases {
            assert_eq!(c.validate().unwrap_err().key, key, "{c:?}");
        }
    }
}
