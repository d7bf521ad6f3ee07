//! # assay-verifier — the verifier service
//!
//! A thin shell around the pure core (`assay-core`): it owns the gRPC API over
//! TLS (`api`), the flows that need state (`service`: enrollment with
//! MakeCredential, single-use nonces, attestation, join tokens), the sled store
//! (`store`: nodes, nonces, tokens, hash-chained history), signed join tokens
//! (`token`), configuration (`config`) and TLS material (`tls`).
//!
//! It does not judge evidence itself: every verification decision is made by
//! `assay-core` and returned as a verdict that lists each claim.

pub mod api;
pub mod audit;
pub mod config;
pub mod files;
pub mod http;
pub mod join;
pub mod membership;
pub mod offline;
pub mod reference;
pub mod roles;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
pub mod token;
pub mod webhook;
