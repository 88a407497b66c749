//! lpgpu: a GPU-accelerated video transcoding appliance speaking the Livepeer
//! networking protocol v2.
//!
//! # Code map
//!
//! | module | owns |
//! | --- | --- |
//! | [`proto`] | the generated `net` wire types and gRPC service (`proto/net.proto`) |
//! | [`protocol`] | header encodings, `flatten`, profiles, `transcodingOptions`, stream ids |
//! | [`eth`] | keccak256, secp256k1 signing and recovery, EIP-55, V3 keystores |
//! | [`chain`] | the [`chain::Chain`] trait and the embedded [`chain::Ledger`] |
//! | [`tls`] | per-start self-signed certificates; the name-only client verifier |
//! | [`orchestrator`] | `GetTranscoder` verification (plain) and its tonic service (edge) |
//! | [`transcoder`] | the HTTP routes of a node (`/healthz`, `/segment`) |
//! | [`server`] | one TLS listener serving gRPC and HTTP, graceful shutdown |
//! | [`cli`] | the `lpgpu` command line: flags, environment, config file |
//!
//! # Rules
//!
//! - Verification is plain synchronous code over plain values; tonic and axum
//!   only adapt requests to it and map its typed rejections to statuses once.
//! - `unsafe` is denied crate-wide (`Cargo.toml [lints]`).
//! - A private key is never logged or printed: [`eth::PrivateKey`]'s `Debug`
//!   shows only its address.
//! - Pipeline, broadcaster, metrics and bench modules arrive with their issues.

pub mod bench;
pub mod broadcaster;
pub mod chain;
pub mod cli;
pub mod eth;
pub mod metrics;
pub mod orchestrator;
pub mod pipeline;
pub mod proto;
pub mod protocol;
pub mod server;
pub mod tls;
pub mod transcoder;

#[cfg(test)]
pub(crate) mod test_vectors;
