//! `[web]`: where the fleet page listens and what one page may hold.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::setting::InvalidKey;

/// `[web]`: off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWeb {
    /// Address of the HTTPS listener of the fleet page (absent: no page).
    pub listen: Option<SocketAddr>,
    /// Connections served at once (default 64); more are closed at accept.
    pub max_connections: Option<usize>,
    /// Nodes listed on one fleet page (default 500, at most 10000).
    pub nodes_per_page: Option<usize>,
    /// Records on one page of a node's timeline (default 100, at most 1000).
    pub records_per_page: Option<usize>,
    /// A client must finish the TLS handshake and send its request head
    /// within this many seconds (default 10).
    pub header_timeout_secs: Option<u64>,
    /// A connection is closed this long after it was accepted (default 60).
    pub connection_timeout_secs: Option<u64>,
}

/// The validated `[web]`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub nodes_per_page: usize,
    pub records_per_page: usize,
    pub header_timeout: Duration,
    pub connection_timeout: Duration,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_NODES_PER_PAGE: usize = 500;
pub const MAX_NODES_PER_PAGE: usize = 10_000;
pub const DEFAULT_RECORDS_PER_PAGE: usize = 100;
pub const MAX_RECORDS_PER_PAGE: usize = 1_000;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_CONNECTION_TIMEOUT_SECS: u64 = 60;

fn count(
    key: &'static str,
    v: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, InvalidKey> {
    match v.unwrap_or(default) {
        n @ 1.. if n <= max => Ok(n),
        n => Err(InvalidKey::new(
            key,
            format!("{n} is out of range (1 to {max})"),
        )),
    }
}

impl FileWeb {
    pub fn validate(self) -> Result<Option<WebConfig>, InvalidKey> {
        let Some(listen) = self.listen else {
            let set = [
                ("web.max_connections", self.max_connections.is_some()),
                ("web.nodes_per_page", self.nodes_per_page.is_some()),
                ("web.records_per_page", self.records_per_page.is_some()),
                (
                    "web.header_timeout_secs",
                    self.header_timeout_secs.is_some(),
                ),
                (
                    "web.connection_timeout_secs",
                    self.connection_timeout_secs.is_some(),
                ),
            ];
            if let Some((key, _)) = set.iter().find(|(_, is_set)| *is_set) {
                return Err(InvalidKey::new(
                    key,
                    "set without web.listen (the page is off)",
                ));
            }
            return Ok(None);
        };
        Ok(Some(WebConfig {
            listen,
            max_connections: count(
                "web.max_connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
                65_536,
            )?,
            nodes_per_page: count(
                "web.nodes_per_page",
                self.nodes_per_page,
                DEFAULT_NODES_PER_PAGE,
                MAX_NODES_PER_PAGE,
            )?,
            records_per_page: count(
                "web.records_per_page",
                self.records_per_page,
                DEFAULT_RECORDS_PER_PAGE,
                MAX_RECORDS_PER_PAGE,
            )?,
            header_timeout: crate::setting::secs(
                "web.header_timeout_secs",
                self.header_timeout_secs,
                DEFAULT_HEADER_TIMEOUT_SECS,
            )?,
            connection_timeout: crate::setting::secs(
                "web.connection_timeout_secs",
                self.connection_timeout_secs,
                DEFAULT_CONNECTION_TIMEOUT_SECS,
            )?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_off_unless_listen_is_set() {
        assert!(FileWeb::default().validate().unwrap().is_none());
        let e = FileWeb {
            nodes_per_page: Some(10),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "web.nodes_per_page");
        let c = FileWeb {
            listen: Some("127.0.0.1:7445".parse().unwrap()),
            ..Default::default()
        }
        .validate()
        .unwrap()
        .unwrap();
        assert_eq!(c.nodes_per_page, DEFAULT_NODES_PER_PAGE);
        assert_eq!(c.records_per_page, DEFAULT_RECORDS_PER_PAGE);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn page_sizes_are_bounded() {
        for (f, key) in [
            (
                FileWeb {
                    nodes_per_page: Some(MAX_NODES_PER_PAGE + 1),
                    ..Default::default()
                },
                "web.nodes_per_page",
            ),
            (
                FileWeb {
                    records_per_page: Some(0),
                    ..Default::default()
                },
                "web.records_per_page",
            ),
            (
                FileWeb {
                    max_connections: Some(0),
                    ..Default::default()
                },
                "web.max_connections",
            ),
            (
                FileWeb {
                    header_timeout_secs: Some(0),
                    ..Default::default()
                },
                "web.header_timeout_secs",
            ),
        ] {
            let f = FileWeb {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                ..f
            };
            assert_eq!(f.validate().unwrap_err().key, key);
        }
    }
}
