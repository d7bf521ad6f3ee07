//! TPM 2.0 wire structures (TPM 2.0 Library Part 2) and the cryptography around them.

pub mod attest;
pub mod credential;
pub mod pcr;
pub mod public;
pub mod signature;
