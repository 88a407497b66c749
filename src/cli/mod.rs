//! The `lpgpu` command line (`../shared/design.md`, "Command-line contract").
//!
//! Every flag also reads `LPGPU_<FLAG>` from the environment, and `--config FILE`
//! reads the same keys from TOML: top-level keys apply to every command that
//! has such a flag, a `[<command>]` table to that command only (an unknown key
//! there is an error). A flag on the command line wins over the environment,
//! which wins over the file. This is the tool edge: errors become `anyhow`.
#![allow(
    clippy::expect_used,
    reason = "the command line's own invariants, checked at start-up"
)]

mod bench;
mod broadcast;
mod config;
mod demo;
mod keys;
mod ledger_cmds;
mod payments;
mod protocol;
mod serve;
mod transcode;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use crate::chain::ChainSpec;

#[derive(Debug, Parser)]
#[command(
    name = "lpgpu",
    version,
    about = "GPU-accelerated transcoding node for the Livepeer protocol v2"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A TOML file of flag values (keys are flag names).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the Ethereum key in a keystore directory.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Create a chain (an embedded ledger file).
    #[command(subcommand)]
    Chain(ledger_cmds::ChainCommand),
    /// Create and inspect transcoding jobs.
    #[command(subcommand)]
    Job(ledger_cmds::JobCommand),
    /// Register and look up service URIs.
    #[command(subcommand)]
    Registry(ledger_cmds::RegistryCommand),
    /// Livepeer's own contracts (eth:URL?controller=0x…): become an
    /// orchestrator, fund a sender, initialize the round, show an account.
    #[command(subcommand)]
    Protocol(protocol::ProtocolCommand),
    /// Run a node: orchestrator (gRPC) and HTTP routes on one TLS port.
    Node(serve::NodeArgs),
    /// Run the orchestrator alone, pointing broadcasters at --transcoder-uri.
    Orchestrator(serve::OrchestratorArgs),
    /// Run a transcoder alone: listen mode (v2 POST /segment with credentials
    /// of --orchestrator-address), or dial-out mode (--orch-addr: register
    /// with a go-livepeer-style orchestrator, as `livepeer -transcoder`).
    Transcoder(serve::TranscoderArgs),
    /// Broadcast a file through an orchestrator and write the HLS ladder.
    Broadcast(broadcast::BroadcastArgs),
    /// The whole protocol in one process: node, job, broadcast, HLS in ./demo-out.
    Demo(demo::DemoArgs),
    /// Benchmark transcoding throughput (real-time ratio, latency).
    Bench(bench::BenchArgs),
    /// Transcode one MPEG-TS segment offline into DIR/<profile>.ts.
    Transcode(transcode::TranscodeArgs),
    /// Write the synthetic test clip the demo uses (H.264 + AAC MPEG-TS), e.g.
    /// as `bench --input` on a machine without fixtures or the ffmpeg CLI.
    TestClip(transcode::TestClipArgs),
}

/// `--keystore DIR` and how to get its password.
#[derive(Debug, Args, Clone)]
pub(crate) struct KeystoreArgs {
    /// Directory holding one V3 keystore file.
    #[arg(long, value_name = "DIR")]
    keystore: PathBuf,
    /// File whose first line is the keystore password (else LPGPU_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

impl KeystoreArgs {
    /// The password from `--password-file` or `LPGPU_PASSWORD`, if either is given.
    fn password_if_given(&self) -> Result<Option<Zeroizing<String>>> {
        if let Some(path) = &self.password_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --password-file {}", path.display()))?,
            );
            let first_line = text.lines().next().unwrap_or("");
            return Ok(Some(Zeroizing::new(first_line.to_string())));
        }
        Ok(std::env::var("LPGPU_PASSWORD").ok().map(Zeroizing::new))
    }

    fn password(&self) -> Result<Zeroizing<String>> {
        self.password_if_given()?
            .context("no keystore password: give --password-file FILE or set LPGPU_PASSWORD")
    }

    fn store(&self) -> crate::eth::keystore::KeystoreDir {
        crate::eth::keystore::KeystoreDir::new(&self.keystore)
    }

    /// Unlocks the key (scrypt: CPU-heavy, so never called on the async executor).
    fn unlock(&self) -> Result<crate::eth::PrivateKey> {
        let password = self.password()?;
        self.store()
            .unlock(password.as_bytes())
            .with_context(|| format!("unlocking the key in {}", self.keystore.display()))
    }
}

/// `--chain SPEC` and how an HTTPS JSON-RPC endpoint is trusted.
/// A keystore needed on a chain and unused offchain (nodes, and the
/// broadcaster of today's wire).
#[derive(Debug, Args)]
pub(crate) struct OptionalKeystoreArgs {
    /// Directory holding one V3 keystore file (not needed with --chain
    /// offchain).
    #[arg(long, value_name = "DIR")]
    keystore: Option<PathBuf>,
    /// File whose first line is the keystore password (else LPGPU_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

impl OptionalKeystoreArgs {
    /// The key on a chain; none offchain (a keystore given then is unused).
    pub(crate) fn unlock(
        self,
        chain: &crate::chain::ChainSpec,
    ) -> Result<Option<std::sync::Arc<crate::eth::PrivateKey>>> {
        if chain.is_offchain() {
            if self.keystore.is_some() {
                tracing::info!("--chain offchain: the keystore is not used");
            }
            return Ok(None);
        }
        let keystore = self
            .keystore
            .context("--keystore DIR is needed on a chain (or run with --chain offchain)")?;
        let key = KeystoreArgs {
            keystore,
            password_file: self.password_file,
        }
        .unlock()?;
        Ok(Some(std::sync::Arc::new(key)))
    }
}

#[derive(Debug, Args, Clone)]
pub(crate) struct ChainArgs {
    /// ledger:PATH (embedded), eth:http(s)://HOST:PORT?jobs=0x…&registry=0x…, or
    /// offchain (no chain: today's wire only, unpaid)
    #[arg(
        long,
        value_name = "SPEC",
        default_value = "ledger:./lpgpu-ledger.json"
    )]
    chain: ChainSpec,
    /// A PEM file of CA certificates to trust for an https eth: endpoint,
    /// beside the system's roots.
    #[arg(long, value_name = "FILE")]
    rpc_ca: Option<PathBuf>,
}

impl ChainArgs {
    fn rpc_tls(&self) -> Result<crate::chain::RpcTls> {
        Ok(match &self.rpc_ca {
            Some(path) => crate::chain::RpcTls::with_ca_file(path)?,
            None => crate::chain::RpcTls::default(),
        })
    }

    /// Opens the chain `--chain` names.
    fn open(&self) -> Result<std::sync::Arc<dyn crate::chain::ChainAdmin>> {
        Ok(self.chain.open_with(&self.rpc_tls()?)?)
    }
}

/// Adds `LPGPU_<FLAG>` as the environment variable of every long flag, at every
/// level, so that no flag can forget it.
fn with_environment_variables(command: clap::Command) -> clap::Command {
    let mut command = command;
    let ids: Vec<(clap::Id, String)> = command
        .get_arguments()
        .filter(|a| !a.is_global_set() || command.get_name() == "lpgpu")
        .filter_map(|a| {
            a.get_long()
                .map(|long| (a.get_id().clone(), long.to_string()))
        })
        .filter(|(_, long)| long != "help" && long != "version")
        .collect();
    for (id, long) in ids {
        let variable = format!("LPGPU_{}", long.to_uppercase().replace('-', "_"));
        command = command.mut_arg(id, |arg| arg.env(variable));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, with_environment_variables);
    }
    command
}

pub(crate) fn command() -> clap::Command {
    with_environment_variables(Cli::command())
}

/// Parses `args` (program name first), applying the config file, and runs the command.
pub fn run(args: Vec<OsString>) -> Result<()> {
    let args = config::apply_config_file(&command(), args)?;
    let matches = command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.log_format);
    match cli.command {
        Command::Keys(command) => keys::run(command),
        Command::Chain(command) => ledger_cmds::run_chain(command),
        Command::Job(command) => ledger_cmds::run_job(command),
        Command::Registry(command) => ledger_cmds::run_registry(command),
        Command::Protocol(command) => protocol::run(command),
        Command::Node(args) => serve::run_node(args),
        Command::Orchestrator(args) => serve::run_orchestrator(args),
        Command::Transcoder(args) => serve::run_transcoder(args),
        Command::Transcode(args) => transcode::run(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Broadcast(args) => broadcast::run(args),
        Command::Demo(args) => demo::run(args),
        Command::TestClip(args) => transcode::write_test_clip(args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LPGPU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A tokio runtime for the commands that talk to the network or the chain.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_flag_has_its_environment_variable() {
        fn walk(command: &clap::Command) {
            for arg in command.get_arguments() {
                if let Some(long) = arg.get_long().filter(|l| *l != "help" && *l != "version") {
                    let expected = format!("LPGPU_{}", long.to_uppercase().replace('-', "_"));
                    assert_eq!(
                        arg.get_env().and_then(|e| e.to_str()),
                        Some(expected.as_str()),
                        "{} --{long}",
                        command.get_name()
                    );
                }
            }
            command.get_subcommands().for_each(walk);
        }
        walk(&command());
    }
}
