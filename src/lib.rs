//! lpgpu: a GPU-accelerated video transcoding appliance speaking the Livepeer
//! protocols: the 2018 networking protocol v2, and today's orchestrator ↔
//! transcoder protocol.
//!
//! # Code map
//!
//! | module | owns |
//! | --- | --- |
//! | [`proto`] | the generated `net` wire types and gRPC services (`proto/net.proto`, `proto/transcoder.proto`) |
//! | [`protocol`] | header encodings, `flatten`, profiles, `transcodingOptions`, stream ids, O–T capabilities, `/transcodeResults` checks and the streaming multipart reader ([`protocol::results`]), the O–T deadline |
//! | [`eth`] | keccak256, secp256k1 signing and recovery, EIP-55, V3 keystores |
//! | [`chain`] | the [`chain::Chain`] trait, the embedded [`chain::Ledger`], [`chain::Ethereum`] (alloy) |
//! | [`tls`] | per-start self-signed certificates; the name-only client verifier; [`tls::DialTarget`] |
//! | [`orchestrator`] | `GetTranscoder` verification (plain), its tonic service (edge), a client |
//! | [`store`] | the bounded in-memory byte stores behind `/stream/` (renditions, and the pool's source segments) |
//! | [`pool`] | the orchestrator's pool of remote transcoders (`--orch-secret`): placement and the wire of a task as plain code ([`pool::placement`], [`pool::relay`]); the waiting, retries and evictions; `RegisterTranscoder` ([`pool::service`]); `/stream/…/….tempfile` and `/transcodeResults` ([`pool::http`]) |
//! | [`transcoder`] | `/segment` verification (plain), the handler (local slots, or placement in the pool), `/healthz`, `/readyz`; [`transcoder::remote`]: the dial-out mode (tasks, sessions, uploads and backoff as plain code; the gRPC link, downloads and uploads at the edge) |
//! | [`pipeline`] | the [`pipeline::Backend`] trait (and [`pipeline::echo`], a backend that does no work, for relay benchmarks), what a rendition is ([`pipeline::rendition`]), ladder arithmetic, timestamp repair, the CPU backend, the GPU backend ([`pipeline::gpu`]: NVDEC, CUDA resize, hybrid libx264, the rig), the segmenter, the demo clip |
//! | [`broadcaster`] | orchestrator lookup, signed uploads with retries, HLS output, the ladder's player page ([`broadcaster::player`]) |
//! | [`metrics`] | the Prometheus registry, the contract's metric names, NVML sampling |
//! | [`plot`] | the SVG sizing plot of `lpgpu bench --plot` (plain string building) |
//! | [`bench`](mod@bench) | the `lpgpu bench` workload, report, ffmpeg baseline and sweep |
//! | [`status`] | `/status` (JSON from the metrics registry and a minute of samples, plain) and `/`, a self-contained page over it |
//! | [`server`] | one TLS listener serving gRPC and HTTP, the metrics listener, graceful shutdown |
//! | [`cli`] | the `lpgpu` command line: flags, environment, config file (`anyhow` lives here) |
//!
//! # Rules
//!
//! - Verification is plain synchronous code over plain values; tonic and axum
//!   only adapt requests to it and map its typed rejections to statuses once.
//! - `unsafe` is denied crate-wide (`Cargo.toml [lints]`) except in the FFI
//!   fences of the GPU backend: `pipeline::gpu::{sys, cuda, nvdec, nvenc}`,
//!   each block with a `// SAFETY:` comment, each native handle freed on `Drop`.
//! - A private key is never logged or printed: [`eth::PrivateKey`]'s `Debug`
//!   shows only its address.
//! - CPU work (key derivation, hashing bodies, decode/scale/encode, ledger file
//!   I/O) runs on blocking threads, never on the async executor; queues are
//!   bounded. GPU work runs on the transcoder's blocking threads with the
//!   device's context bound to them.

pub mod bench;
pub mod broadcaster;
pub mod chain;
pub mod cli;
pub mod eth;
pub mod metrics;
pub mod orchestrator;
pub mod pipeline;
pub mod plot;
pub mod pool;
pub mod proto;
pub mod protocol;
pub mod server;
pub mod status;
pub mod store;
pub mod tls;
pub mod transcoder;

#[cfg(test)]
pub(crate) mod test_vectors;
