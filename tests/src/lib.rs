//! # assay-tests — harness for Assay's real-part tests
//!
//! Starts real software TPMs (swtpm) with EK certificates signed by a per-process
//! test CA, each on its own loopback port pair with its own temporary state
//! directory, and real `assay-verifier` / `assay-attestor` processes over TLS, so
//! tests run in parallel and clean up after themselves (children are killed and
//! directories removed on drop). It is not a mock: every test that uses it talks
//! to a real TPM 2.0 simulator and real binaries.

pub mod procs;
pub mod swtpm;

pub use procs::{attestor, bin, VerifierOpts, VerifierProc};
pub use swtpm::{Swtpm, TestCa};
