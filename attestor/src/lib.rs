//! # assay-attestor — the node agent
//!
//! Proves to an Assay verifier, with the node's TPM, what the node booted. All
//! TPM access goes through [`tpm`] (the only module that uses tss-esapi); the
//! protocol (enroll with credential activation, challenge, quote, verdict and
//! join token) is in [`flow`], which repeats an exchange a transport failure or
//! a busy verifier cut short ([`retry`]); event logs are read in [`logs`]; the container
//! measurement log (CEL, appended and fsynced before each PCR extend) is
//! [`measure`]; the long-running agent that follows containerd's events is
//! [`agent`] over [`containerd`]; configuration in [`config`]; the node's
//! identity in the state dir in [`enrollment`].
//!
//! It does not judge its own evidence: the verifier does.

pub mod agent;
pub mod config;
pub mod containerd;
pub mod ekfetch;
pub mod enrollment;
mod files;
pub mod flow;
pub mod logs;
pub mod measure;
pub mod metrics;
pub mod retry;
pub mod tpm;
