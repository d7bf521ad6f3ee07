//! What a hostile network can make the verifier hold: `[limits]`.
//!
//! The node-facing RPCs (Enroll, Activate, Challenge, Attest) answer anyone
//! who reaches the port, so every kind of state they create is bounded here:
//!
//! - **Rate limits** ([`RateLimits`], GCRA from `governor`): per source
//!   address (IPv6 by /64, the unit one host usually holds) and per node id.
//!   A node's own traffic is told apart from traffic in its name: requests
//!   from the address its last *authentic* attestation came from are limited
//!   per (node, address), so a flood in a node's name from elsewhere does
//!   not lock the node itself out. Refusals are logged once when a key
//!   starts being limited and once, with the count, when it has been quiet
//!   for [`BURST_QUIET`].
//! - **Outstanding state** ([`Outstanding`]): nonces per node and in all,
//!   pending enrollments per EK and in all. Past a cap the request is
//!   refused with RESOURCE_EXHAUSTED; an entry counts until the sweeper has
//!   removed it from the store, so the caps bound the store too.
//! - **Transport** (used by `server`): TLS handshake timeout, request
//!   timeout, connections, streams per connection, HTTP/2 keepalive and
//!   connection age.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use tracing::{info, warn};

use crate::setting::InvalidKey;

/// `[limits]`: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Node-facing requests per second per source address (0: no limit).
    pub source_rate: Option<u32>,
    pub source_burst: Option<u32>,
    /// Node-facing requests per second per node id (0: no limit).
    pub node_rate: Option<u32>,
    pub node_burst: Option<u32>,
    pub nonces_per_node: Option<usize>,
    pub nonces_total: Option<usize>,
    pub enrollments_per_ek: Option<usize>,
    pub enrollments_total: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_streams_per_connection: Option<u32>,
    pub request_timeout_secs: Option<u64>,
    pub handshake_timeout_secs: Option<u64>,
    pub keepalive_interval_secs: Option<u64>,
    pub keepalive_timeout_secs: Option<u64>,
    pub max_connection_age_secs: Option<u64>,
}

/// The validated `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// (per second, burst); None: off.
    pub source: Option<(u32, u32)>,
    pub node: Option<(u32, u32)>,
    pub nonces_per_node: usize,
    pub nonces_total: usize,
    pub enrollments_per_ek: usize,
    pub enrollments_total: usize,
    pub max_connections: usize,
    pub max_streams_per_connection: u32,
    pub request_timeout: Duration,
    pub handshake_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_connection_age: Duration,
}

pub const DEFAULT_SOURCE_RATE: u32 = 100;
pub const DEFAULT_SOURCE_BURST: u32 = 400;
pub const DEFAULT_NODE_RATE: u32 = 5;
pub const DEFAULT_NODE_BURST: u32 = 40;
pub const DEFAULT_NONCES_PER_NODE: usize = 16;
pub const DEFAULT_NONCES_TOTAL: usize = 100_000;
pub const DEFAULT_ENROLLMENTS_PER_EK: usize = 4;
pub const DEFAULT_ENROLLMENTS_TOTAL: usize = 10_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_STREAMS: u32 = 64;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_KEEPALIVE_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_MAX_CONNECTION_AGE_SECS: u64 = 3600;

impl Default for Limits {
    fn default() -> Self {
        FileLimits::default()
            .validate()
            .expect("the defaults are valid")
    }
}

fn rate(
    key: &'static str,
    rate: Option<u32>,
    burst: Option<u32>,
    default: (u32, u32),
) -> Result<Option<(u32, u32)>, InvalidKey> {
    let r = rate.unwrap_or(default.0);
    if r == 0 {
        return Ok(None);
    }
    let b = burst.unwrap_or(default.1.max(r));
    if b < r {
        return Err(InvalidKey::new(
            key,
            format!("burst {b} is below the rate {r}: a second's requests must fit in a burst"),
        ));
    }
    Ok(Some((r, b)))
}

fn count(key: &'static str, v: Option<usize>, default: usize) -> Result<usize, InvalidKey> {
    match v.unwrap_or(default) {
        0 => Err(InvalidKey::new(key, "must be at least 1")),
        n => Ok(n),
    }
}

impl FileLimits {
    pub fn validate(self) -> Result<Limits, InvalidKey> {
        use crate::setting::secs;
        let l = Limits {
            source: rate(
                "limits.source_burst",
                self.source_rate,
                self.source_burst,
                (DEFAULT_SOURCE_RATE, DEFAULT_SOURCE_BURST),
            )?,
            node: rate(
                "limits.node_burst",
                self.node_rate,
                self.node_burst,
                (DEFAULT_NODE_RATE, DEFAULT_NODE_BURST),
            )?,
            nonces_per_node: count(
                "limits.nonces_per_node",
                self.nonces_per_node,
                DEFAULT_NONCES_PER_NODE,
            )?,
            nonces_total: count(
                "limits.nonces_total",
                self.nonces_total,
                DEFAULT_NONCES_TOTAL,
            )?,
            enrollments_per_ek: count(
                "limits.enrollments_per_ek",
                self.enrollments_per_ek,
                DEFAULT_ENROLLMENTS_PER_EK,
            )?,
            enrollments_total: count(
                "limits.enrollments_total",
                self.enrollments_total,
                DEFAULT_ENROLLMENTS_TOTAL,
            )?,
            max_connections: count(
                "limits.max_connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            )?,
            max_streams_per_connection: match self
                .max_streams_per_connection
                .unwrap_or(DEFAULT_MAX_STREAMS)
            {
                0 => {
                    return Err(InvalidKey::new(
                        "limits.max_streams_per_connection",
                        "must be at least 1",
                    ))
                }
                n => n,
            },
            request_timeout: secs(
                "limits.request_timeout_secs",
                self.request_timeout_secs,
                DEFAULT_REQUEST_TIMEOUT_SECS,
            )?,
            handshake_timeout: secs(
                "limits.handshake_timeout_secs",
                self.handshake_timeout_secs,
                DEFAULT_HANDSHAKE_TIMEOUT_SECS,
            )?,
            keepalive_interval: secs(
                "limits.keepalive_interval_secs",
                self.keepalive_interval_secs,
                DEFAULT_KEEPALIVE_INTERVAL_SECS,
            )?,
            keepalive_timeout: secs(
                "limits.keepalive_timeout_secs",
                self.keepalive_timeout_secs,
                DEFAULT_KEEPALIVE_TIMEOUT_SECS,
            )?,
            max_connection_age: secs(
                "limits.max_connection_age_secs",
                self.max_connection_age_secs,
                DEFAULT_MAX_CONNECTION_AGE_SECS,
            )?,
        };
        Ok(l)
    }
}

/// How often expired nonces, enrollments and tokens are removed from the store.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Records stay this long past expiry, so a late request is still told
/// "expired" rather than "unknown" (and the caps count them this long).
pub const SWEEP_GRACE_SECS: i64 = 120;

/// A request refused by a limit: the message says which and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Exhausted(pub String);

/// The rate-limit key of a source address: the address itself for IPv4 (and
/// IPv4-mapped IPv6), the /64 for IPv6.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How long a limited key must stay quiet before its burst is over (and
/// its refusal count logged).
pub const BURST_QUIET: Duration = Duration::from_secs(10);
/// Most bursts tracked for logging at once; past it refusals are only counted.
const MAX_BURSTS: usize = 10_000;
/// Most nodes whose last authentic source address is remembered.
const MAX_KNOWN_SOURCES: usize = 1_000_000;

struct Burst {
    first: Instant,
    last: Instant,
    refused: u64,
}

/// Rate limits of the node-facing RPCs (see the module docs).
pub struct RateLimits {
    source: Option<DefaultKeyedRateLimiter<IpAddr>>,
    node: Option<DefaultKeyedRateLimiter<String>>,
    /// The node's own traffic: (node id, its last authentic address).
    node_own: Option<DefaultKeyedRateLimiter<(String, IpAddr)>>,
    known: Mutex<HashMap<String, IpAddr>>,
    bursts: Mutex<HashMap<String, Burst>>,
    /// Requests refused by a rate limit since start.
    pub refused: AtomicU64,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    (per_sec, burst): (u32, u32),
) -> DefaultKeyedRateLimiter<K> {
    let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
    governor::RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst))
}

impl RateLimits {
    pub fn new(l: &Limits) -> Self {
        RateLimits {
            source: l.source.map(limiter),
            node: l.node.map(limiter),
            node_own: l.node.map(limiter),
            known: Mutex::default(),
            bursts: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether a node-facing request from `source` in `node_id`'s name may
    /// proceed now.
    pub fn check(&self, source: Option<IpAddr>, node_id: &str) -> Result<(), Exhausted> {
        let source = source.map(source_key);
        if let (Some(l), Some(ip)) = (&self.source, source) {
            if l.check_key(&ip).is_err() {
                return Err(self.refuse(
                    format!("source {ip}"),
                    format!(
                        "rate limit: too many requests from {ip} (limits.source_rate); retry with backoff"
                    ),
                ));
            }
        }
        let own = source.filter(|ip| self.known_source(node_id) == Some(*ip));
        let limited = match (own, &self.node_own, &self.node) {
            (Some(ip), Some(l), _) => l.check_key(&(node_id.to_string(), ip)).is_err(),
            (None, _, Some(l)) => l.check_key(&node_id.to_string()).is_err(),
            _ => false,
        };
        if limited {
            return Err(self.refuse(
                format!("node {node_id}"),
                format!(
                    "rate limit: too many requests in node `{node_id}`'s name (limits.node_rate); retry with backoff"
                ),
            ));
        }
        Ok(())
    }

    /// Whether `source` is the address of the node's last authentic attestation.
    pub fn is_known_source(&self, node_id: &str, source: Option<IpAddr>) -> bool {
        source.is_some_and(|ip| self.known_source(node_id) == Some(source_key(ip)))
    }

    fn known_source(&self, node_id: &str) -> Option<IpAddr> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node_id)
            .copied()
    }

    /// The node attested authentically from `source`: its later requests
    /// from there are its own.
    pub fn note_authentic(&self, node_id: &str, source: Option<IpAddr>) {
        let Some(ip) = source.map(source_key) else {
            return;
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() < MAX_KNOWN_SOURCES || known.contains_key(node_id) {
            known.insert(node_id.to_string(), ip);
        }
    }

    fn refuse(&self, key: String, message: String) -> Exhausted {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut bursts = self.bursts.lock().unwrap_or_else(|p| p.into_inner());
        let tracked = bursts.len();
        if let Some(b) = bursts.get_mut(&key) {
            b.refused += 1;
            b.last = now;
        } else if tracked < MAX_BURSTS {
            warn!(key = %key, "rate limit reached; refusals are counted and logged when the burst ends");
            bursts.insert(
                key,
                Burst {
                    first: now,
                    last: now,
                    refused: 1,
                },
            );
        }
        Exhausted(message)
    }

    /// Ends bursts that went quiet (logging their counts) and forgets rate
    /// state that is back to full; the number of keys still tracked.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        self.bursts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, b| {
                let over = now.duration_since(b.last) >= BURST_QUIET;
                if over {
                    info!(
                        key = %key,
                        refused = b.refused,
                        lasted_secs = b.last.duration_since(b.first).as_secs(),
                        "rate-limit burst ended"
                    );
                }
                !over
            });
        let mut keys = 0;
        if let Some(l) = &self.source {
            l.retain_recent();
            l.shrink_to_fit();
            keys += l.len();
        }
        if let Some(l) = &self.node {
            l.retain_recent();
            l.shrink_to_fit();
            keys += l.len();
        }
        if let Some(l) = &self.node_own {
            l.retain_recent();
            l.shrink_to_fit();
            keys += l.len();
        }
        keys
    }
}

/// Entries that live until they are used or expire (nonces, pending
/// enrollments), counted per key and in all so that past a cap new ones are
/// refused. An entry counts until `until` (its expiry plus the time the
/// sweeper may take to remove it from the store), or until it is used.
pub struct Outstanding {
    what: &'static str,
    key_name: &'static str,
    setting: &'static str,
    per_key: usize,
    total: usize,
    inner: Mutex<OutInner>,
    /// Requests refused by a cap since start.
    pub refused: AtomicU64,
}

#[derive(Default)]
struct OutInner {
    by_key: HashMap<String, Vec<i64>>,
    total: usize,
}

impl OutInner {
    fn sweep(&mut self, now: i64) -> usize {
        let mut dropped = 0;
        self.by_key.retain(|_, v| {
            let before = v.len();
            v.retain(|until| *until >= now);
            dropped += before - v.len();
            !v.is_empty()
        });
        self.total -= dropped;
        dropped
    }
}

impl Outstanding {
    /// `what` names the entries ("nonces"), `key_name` their key ("node"),
    /// `setting` the config keys that set the caps.
    pub fn new(
        what: &'static str,
        key_name: &'static str,
        setting: &'static str,
        per_key: usize,
        total: usize,
    ) -> Self {
        Outstanding {
            what,
            key_name,
            setting,
            per_key,
            total,
            inner: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Counts a new entry for `key`, alive until `until`, unless a cap is reached.
    pub fn admit(&self, key: &str, now: i64, until: i64) -> Result<(), Exhausted> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut expired = 0;
        if let Some(v) = inner.by_key.get_mut(key) {
            let before = v.len();
            v.retain(|u| *u >= now);
            expired = before - v.len();
        }
        inner.total -= expired;
        let mine = inner.by_key.get(key).map_or(0, Vec::len);
        if mine >= self.per_key {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Exhausted(format!(
                "{mine} {} outstanding for {} `{key}` (at most {}, {}); use or let them expire first",
                self.what, self.key_name, self.per_key, self.setting
            )));
        }
        if inner.total >= self.total {
            inner.sweep(now);
        }
        if inner.total >= self.total {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Exhausted(format!(
                "{} {} outstanding in all (at most {}, {}); retry later",
                inner.total, self.what, self.total, self.setting
            )));
        }
        inner.by_key.entry(key.to_string()).or_default().push(until);
        inner.total += 1;
        Ok(())
    }

    /// One entry of `key` was used (its store record is gone).
    pub fn release(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(v) = inner.by_key.get_mut(key) else {
            return;
        };
        // The one that would live longest was most likely just issued; the
        // used one is older. Either way the count is what matters.
        v.sort_unstable();
        if !v.is_empty() {
            v.remove(0);
        }
        if v.is_empty() {
            inner.by_key.remove(key);
        }
        inner.total = inner.total.saturating_sub(1);
    }

    /// Drops entries past their time; how many.
    pub fn sweep(&self, now: i64) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sweep(now)
    }

    /// Entries counted now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection that holds one of `limits.max_connections` places until it closes.
pub struct Counted<IO> {
    inner: IO,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The accepted connections, at most `max` open at once: one past it is
/// closed at once (its client sees the connection reset and retries),
/// logged once per burst.
pub fn bounded_incoming<S, IO, E>(
    incoming: S,
    max: usize,
) -> impl futures_util::Stream<Item = Result<Counted<IO>, E>>
where
    S: futures_util::Stream<Item = Result<IO, E>>,
{
    use futures_util::StreamExt as _;
    let places = std::sync::Arc::new(tokio::sync::Semaphore::new(max));
    let burst = std::sync::Arc::new(Mutex::new(None::<(Instant, u64)>));
    incoming.filter_map(move |conn| {
        let places = places.clone();
        let burst = burst.clone();
        async move {
            let io = match conn {
                Ok(io) => io,
                Err(e) => return Some(Err(e)),
            };
            match places.try_acquire_owned() {
                Ok(place) => Some(Ok(Counted {
                    inner: io,
                    _place: place,
                })),
                Err(_) => {
                    let mut b = burst.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Instant::now();
                    match &mut *b {
                        Some((last, n)) if now.duration_since(*last) < BURST_QUIET => {
                            *last = now;
                            *n += 1;
                        }
                        _ => {
                            warn!(max, "limits.max_connections reached: new connections are closed until some end");
                            *b = Some((now, 1));
                        }
                    }
                    None
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_zero_rates_turn_limits_off() {
        let l = Limits::default();
        assert_eq!(l.source, Some((DEFAULT_SOURCE_RATE, DEFAULT_SOURCE_BURST)));
        let off = FileLimits {
            source_rate: Some(0),
            node_rate: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert!(off.source.is_none() && off.node.is_none());
        let e = FileLimits {
            node_rate: Some(10),
            node_burst: Some(5),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "limits.node_burst");
        assert_eq!(
            FileLimits {
                nonces_total: Some(0),
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .key,
            "limits.nonces_total"
        );
    }

    #[test]
    fn ipv6_sources_share_a_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    fn limits(source: (u32, u32), node: (u32, u32)) -> RateLimits {
        RateLimits::new(&Limits {
            source: Some(source),
            node: Some(node),
            ..Limits::default()
        })
    }

    #[test]
    fn a_source_past_its_burst_is_refused_and_others_are_not() {
        let r = limits((1, 3), (1000, 1000));
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for i in 0..3 {
            r.check(a, &format!("n{i}")).unwrap();
        }
        let e = r.check(a, "n9").unwrap_err();
        assert!(e.0.contains("192.0.2.1") && e.0.contains("limits.source_rate"));
        r.check(b, "n9").unwrap();
        assert_eq!(r.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_flood_in_a_nodes_name_does_not_lock_out_the_node_itself() {
        let r = limits((1000, 1000), (1, 2));
        let node = Some("192.0.2.10".parse().unwrap());
        let attacker = Some("198.51.100.1".parse().unwrap());
        r.note_authentic("web-1", node);
        for _ in 0..2 {
            r.check(attacker, "web-1").unwrap();
        }
        assert!(r.check(attacker, "web-1").unwrap_err().0.contains("web-1"));
        // The node's own address has its own budget.
        r.check(node, "web-1").unwrap();
        r.check(node, "web-1").unwrap();
        assert!(r.check(node, "web-1").is_err(), "and it is limited too");
        // Before any authentic attestation every source shares the node's budget.
        let fresh = limits((1000, 1000), (1, 1));
        fresh.check(attacker, "new").unwrap();
        assert!(fresh.check(node, "new").is_err());
    }

    #[test]
    fn a_burst_is_tracked_once_and_swept_when_quiet() {
        let r = limits((1, 1), (1000, 1000));
        let a = Some("192.0.2.1".parse().unwrap());
        r.check(a, "n").unwrap();
        for _ in 0..50 {
            assert!(r.check(a, "n").is_err());
        }
        assert_eq!(r.bursts.lock().unwrap().len(), 1);
        assert_eq!(r.bursts.lock().unwrap()["source 192.0.2.1"].refused, 50);
        r.sweep();
        assert_eq!(r.bursts.lock().unwrap().len(), 1, "not quiet yet");
    }

    #[test]
    fn outstanding_caps_per_key_and_in_all() {
        let o = Outstanding::new("nonces", "node", "limits.nonces_*", 2, 3);
        o.admit("a", 100, 200).unwrap();
        o.admit("a", 100, 200).unwrap();
        let e = o.admit("a", 100, 200).unwrap_err();
        assert!(e.0.contains("2 nonces outstanding for node `a`"), "{e}");
        o.admit("b", 100, 200).unwrap();
        let e = o.admit("c", 100, 200).unwrap_err();
        assert!(e.0.contains("in all (at most 3"), "{e}");
        // A use frees a place.
        o.release("a");
        o.admit("c", 100, 200).unwrap();
        assert_eq!(o.len(), 3);
        // Expired entries stop counting.
        o.admit("d", 201, 300).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o.sweep(301), 1);
        assert!(o.is_empty());
        assert_eq!(o.refused.load(Ordering::Relaxed), 2);
    }
}
