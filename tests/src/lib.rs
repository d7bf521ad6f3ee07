//! # assay-tests — harness for Assay's real-part tests
//!
//! Starts real software TPMs (swtpm) with EK certificates signed by a per-process
//! test CA, each on its own loopback port pair with its own temporary state
//! directory, so tests run in parallel and clean up after themselves (the child
//! process is killed and the directory removed on drop). It is not a mock: every
//! test that uses it talks to a real TPM 2.0 simulator.

pub mod swtpm;

pub use swtpm::{Swtpm, TestCa};
