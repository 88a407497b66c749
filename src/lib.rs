//! lpgpu: a GPU-accelerated video transcoding appliance speaking the Livepeer
//! protocols: the 2018 networking protocol v2, and today's orchestrator ↔
//! transcoder and broadcaster ↔ orchestrator wires, offchain or paid in PM
//! tickets on Livepeer's contracts.
//!
//! # Code map
//!
//! | module | owns |
//! | --- | --- |
//! | [`proto`] | the generated `net` wire types and gRPC services (`proto/net.proto`, `proto/transcoder.proto`, `proto/lp_rpc.proto`); one `net.Orchestrator` service for both generations |
//! | [`protocol`] | header encodings, `flatten`, profiles, `transcodingOptions`, stream ids, what a rendition is ([`protocol::rendition`]: codec with its profile, container, box, rate, GOP), `VideoProfile` ↔ rendition both ways ([`protocol::video_profile`]), O–T capabilities, `/transcodeResults` checks and the streaming multipart reader ([`protocol::results`]), the O–T deadline, the sizes accepted from peers ([`protocol::limits`]), today's broadcaster wire as plain code ([`protocol::today`]: auth tokens, the signed preimage, the `/segment` header checks with go-livepeer's statuses and texts), the perceptual hash's format ([`protocol::signature`]: FFmpeg's binary MPEG-7 video signature, read and compared frame by frame), PM tickets ([`protocol::pm`]: hash, signature, win, recipientRand, face value, the sender's fee estimate) and a paid orchestrator's checks of a payment ([`protocol::payment`]) |
//! | [`eth`] | keccak256, secp256k1 signing and recovery, EIP-55, V3 keystores |
//! | [`chain`] | the [`chain::Chain`] trait, the embedded [`chain::Ledger`], [`chain::Ethereum`] (alloy); Livepeer's own contracts from the npm SDK's artifacts ([`chain::livepeer`]: deploying them on a dev chain, finding them through a Controller) |
//! | [`tls`] | per-start self-signed certificates; the name-only client verifier; [`tls::DialTarget`] |
//! | [`orchestrator`] | `GetTranscoder` verification (plain), the one tonic service of both generations (edge), a client; [`orchestrator::today`]: today's sessions (plain), `GetOrchestrator` / `EndTranscodingSession` / `Ping`, and today's `/segment` as a thin adapter over [`segment`]; a paid node's edge ([`orchestrator::today::payments`]: quotes, checks against cached chain reads, balances; [`orchestrator::today::redeemer`]: winning tickets on disk and their redemption) |
//! | [`session`] | streams and their sessions: [`session::StreamKey`], the 128-bit [`session::SessionId`], the one [`session::Registry`] of live sessions (idle expiry, renewal, teardown) and [`session::Sessions`], whose end hooks release every per-stream table (a backend's GPU placement, a pool's pin) |
//! | [`store`] | the node's one bounded `/stream/…` store (renditions and the pool's source segments, one budget) and its router |
//! | [`pool`] | the orchestrator's pool of remote transcoders (`--orch-secret`): placement and the wire of a task as plain code ([`pool::placement`], [`pool::relay`]); the waiting, retries and evictions; `RegisterTranscoder` ([`pool::service`]); `/transcodeResults` ([`pool::http`]) |
//! | [`segment`] | the generation-neutral path of a segment below every wire: admit (the executor's slots, or the pool) → read and hash the body → execute → store; one [`segment::Error`] with blame and retry-after; the `/segment` dispatcher choosing the wire by its headers ([`segment::http`]) |
//! | [`transcoder`] | the 2018 `/segment` wire: verification (plain) and rendering, a thin adapter over [`segment`]; [`transcoder::remote`]: the dial-out mode, today's O–T wire (tasks, sessions, uploads, backoff, the flags' orchestrator list and the split of capacity between several orchestrators, [`transcoder::remote::shares`], as plain code; each orchestrator's gRPC link, downloads and uploads at the edge) over the same executor |
//! | [`pipeline`] | the [`pipeline::Backend`] trait (and [`pipeline::echo`], a backend that does no work, for relay benchmarks), the one executor ([`pipeline::workers`]: a worker thread per slot, honest slots, per-stream queues, cancellation at the deadline), which encoder makes a codec and what a backend can do ([`pipeline::encoders`], [`pipeline::Backend::capabilities`]), ladder arithmetic, timestamp repair, perceptual hashes ([`pipeline::signature`]: FFmpeg's `signature` filter over the pictures each encoder gets), the CPU backend, the GPU backend ([`pipeline::gpu`]: NVDEC, CUDA resize, hybrid libx264, the rig), the segmenter, the demo clip |
//! | [`broadcaster`] | the HLS loop over a [`broadcaster::Uploader`] per wire generation: the 2018 job's (orchestrator lookup, signed uploads with retries) and today's ([`broadcaster::today`]: discovery, go-livepeer's retry rules, sessions; paying in tickets through [`broadcaster::payer`], plain), HLS output, the ladder's player page ([`broadcaster::player`]) |
//! | [`metrics`] | the Prometheus registry, the contract's metric names, NVML sampling |
//! | [`plot`] | the SVG sizing plot of `lpgpu bench --plot` (plain string building) |
//! | [`bench`](mod@bench) | the `lpgpu bench` workload, report, ffmpeg baseline and sweep; a remote orchestrator on today's wire ([`bench::remote`]) |
//! | [`status`] | `/status` (JSON from the metrics registry and a minute of samples, plain) and `/`, a self-contained page over it |
//! | [`node`] | assembly: a checked [`node::NodeConfig`] becomes a [`node::Node`] (services, store, executor or pool, segment core, wires, routes); used by `serve`, `demo` and the tests |
//! | [`server`] | one TLS listener serving gRPC and HTTP, the metrics listener, graceful shutdown |
//! | [`cli`] | the `lpgpu` command line: flags, environment, config file (`anyhow` lives here) |
//!
//! # Rules
//!
//! - Verification is plain synchronous code over plain values; tonic and axum
//!   only adapt requests to it and map its typed rejections to statuses once.
//! - `unsafe` is denied crate-wide (`Cargo.toml [lints]`) except in the FFI
//!   fences of the GPU backend, `pipeline::gpu::{sys, cuda, nvdec, nvenc}`,
//!   and in `pipeline::ffglue` (the FFmpeg calls ffmpeg-next does not wrap:
//!   bitstream filters, a stream's codec tag); each block with a
//!   `// SAFETY:` comment, each native handle freed on `Drop`.
//! - A private key is never logged or printed: [`eth::PrivateKey`]'s `Debug`
//!   shows only its address.
//! - CPU work (key derivation, hashing bodies, ledger file I/O) runs on
//!   blocking threads, never on the async executor; queues are bounded.
//!   Transcodes run only on [`pipeline::workers`]'s threads, one per slot,
//!   for every wire; GPU work binds the device's context on them.
//! - Rooms, bottom to top: `proto`/`protocol`/`eth`/`session` → `pipeline`
//!   → `store` → `pool` → `segment` → the wires (`transcoder`,
//!   `transcoder::remote`, `orchestrator` with `orchestrator::today`) →
//!   `node` → `server`/`cli`; `broadcaster` is a client beside the wires. A
//!   room imports only from rooms below it.

pub mod bench;
pub mod broadcaster;
pub mod chain;
pub mod cli;
pub mod eth;
pub mod metrics;
pub mod node;
pub mod orchestrator;
pub mod pipeline;
pub mod plot;
pub mod pool;
pub mod proto;
pub mod protocol;
pub mod segment;
pub mod server;
pub mod session;
pub mod status;
pub mod store;
pub mod tls;
pub mod transcoder;

#[cfg(test)]
pub(crate) mod test_vectors;
