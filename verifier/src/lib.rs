//! # assay-verifier — the verifier service
//!
//! A thin shell around the pure core (`assay-core`), which makes every
//! verification decision and returns it as a verdict listing each claim.
//! This crate does not judge evidence; it owns what needs state, I/O or time:
//!
//! | module | what it is |
//! | --- | --- |
//! | [`server`] | start-up from the config, the TLS listener, background upkeep (sweeps, checkpoints, join upkeep) |
//! | [`api`] | the gRPC services, one file each: message conversion, roles, status codes |
//! | [`service`] | the flows (enroll, activate, challenge, attest, redeem, reverify) over the store and the core |
//! | [`membership`] | what a verdict does to a node's membership: grants, quarantine, restore, staleness, webhooks |
//! | [`store`] | the storage seam (`Storage`) and its backends, `sled/` and `postgres/` |
//! | [`join`] | orchestrator join issuers: signed token, Docker Swarm, kubeadm; node groups |
//! | [`audit`] | re-checking the hash-chained history and its signed checkpoints (pure) |
//! | [`web`] | the fleet page (`[web]`): a read-only HTTPS view for auditors and operators, roles from client certificates |
//! | [`metrics`] | Prometheus metrics (`[metrics]`): names, bounded labels, the scrape listener |
//! | [`limits`] | what a hostile network can make it hold: rate limits, caps on nonces and enrollments, transport limits (`[limits]`) |
//! | [`roles`] | client-certificate roles and the permission table |
//! | [`token`] | signed join tokens, detached signatures, the JWKS |
//! | [`policy_signature`] | operator signatures of policy files (minisign: Ed25519, detached `.minisig`) |
//! | [`config`] | the configuration: top-level keys and the sections owned by `tls`, `trust`, `join`, `store`, `webhook` |
//! | [`tls`], [`trust`], [`webhook`], [`http`], [`http_server`] | TLS material, EK trust anchors, notifications, the HTTP client they share, the small HTTP listeners (metrics, fleet page) |
//! | [`clock`], [`files`], [`setting`] | the clock, careful file reads and writes, config-key errors |
//!
//! The command line (`assay-verifier`) lives beside it in `src/cli/`, one file
//! per command family.

pub mod api;
pub mod audit;
pub mod clock;
pub mod config;
pub mod files;
pub mod http;
pub mod http_server;
pub mod join;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod policy_signature;
pub mod roles;
pub mod server;
pub mod service;
pub mod setting;
pub mod store;
pub mod tls;
pub mod token;
pub mod trust;
pub mod web;
pub mod webhook;
