//! # assay-core — the pure verification core of Assay
//!
//! This crate turns bytes into verdicts. It parses the TPM 2.0 structures a node
//! sends (`TPMS_ATTEST`, `TPMT_SIGNATURE`, `TPM2B_PUBLIC`) with strict bounds,
//! verifies quote signatures, validates EK certificate chains, performs
//! `TPM2_MakeCredential` in software, evaluates golden-value policies and returns
//! a typed [`verdict::Verdict`] that lists every claim with expected and actual
//! values.
//!
//! It is *not* a service: there is no async runtime, no network, no storage, no
//! file system access, no clock reads and no ambient randomness in here. Time,
//! nonces and random number generators are passed in by the caller. That keeps
//! the core unit-testable on fixtures, fuzzable, benchmarkable, and usable for
//! offline re-verification of stored evidence.
//!
//! Peer bytes must never panic the verifier: the whole crate (outside its unit
//! tests) denies indexing, slicing, `unwrap`, `expect` and `panic!`. The
//! workspace `[lints]` table cannot carry per-crate keys, hence the attribute.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod ek;
pub mod ek_service;
pub mod enroll;
pub mod eventlog;
pub mod ima_signature;
pub mod policy;
pub mod reader;
pub mod tpm;
pub mod verdict;
pub mod verify;
