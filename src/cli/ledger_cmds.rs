//! `lpgpu chain init`, `job new | show`, `registry set | get`: the chain's
//! administrative commands, the same on every backend.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{ChainArgs, KeystoreArgs, runtime};
use crate::chain::{ChainSpec, DEFAULT_BLOCK_SECONDS, Ledger, NewJob};
use crate::eth::Address;
use crate::protocol::{ManifestId, Profile, encode_transcoding_options};

#[derive(Debug, Subcommand)]
pub(crate) enum ChainCommand {
    /// Create the chain: for ledger:PATH, a new ledger file. Prints the chain spec.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Seconds per block of the embedded ledger.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_BLOCK_SECONDS)]
    block_seconds: f64,
    /// eth: the deployer's keystore.
    #[arg(long, value_name = "DIR")]
    keystore: Option<std::path::PathBuf>,
    /// File whose first line is the keystore password (else LPGPU_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,
    /// eth: deploy Livepeer's own protocol contracts (the compiled artifacts
    /// of npm @livepeer/sdk@1.0.1-alpha.10) instead of lpgpu's 2018
    /// development contracts, register and configure them, mint 10,000
    /// development LPT to the deployer, unpause; prints eth:URL?controller=0x….
    #[arg(long)]
    livepeer: bool,
    /// The SDK's abis/ directory (default
    /// contracts/node_modules/@livepeer/sdk/abis, or $LPGPU_LIVEPEER_ABIS).
    #[arg(long, value_name = "DIR", requires = "livepeer")]
    livepeer_abis: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Create a job broadcast by the keystore's account; prints the job id.
    New(JobNewArgs),
    /// Print a job as JSON.
    Show(JobShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct JobNewArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The broadcaster's keystore.
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// The orchestrator assigned to the job.
    #[arg(long, value_name = "0x…")]
    transcoder: Address,
    /// Comma-separated profile names, e.g. P720p30fps16x9,P360p30fps16x9, or
    /// a -transcodingOptions JSON file whose entries are each one of the
    /// protocol's nine profiles (the only ones a 2018 job can name).
    #[arg(long, value_name = "LIST|FILE")]
    profiles: String,
    /// The job ends this many blocks from now.
    #[arg(long, value_name = "N", default_value_t = 86_400)]
    blocks: u64,
    /// The source's profile, the suffix of the job's stream id.
    #[arg(long, value_name = "NAME", default_value = "P720p30fps16x9")]
    source_profile: Profile,
}

#[derive(Debug, Args)]
pub(crate) struct JobShowArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The job id.
    id: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Register the keystore account's service URI (https://HOST:PORT).
    Set(RegistrySetArgs),
    /// Print the service URI an address registered.
    Get(RegistryGetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RegistrySetArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The orchestrator's keystore.
    #[command(flatten)]
    keystore: KeystoreArgs,
    #[arg(long, value_name = "https://HOST:PORT")]
    uri: String,
}

#[derive(Debug, Args)]
pub(crate) struct RegistryGetArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The orchestrator's address.
    address: Address,
}

pub(crate) fn run_chain(command: ChainCommand) -> Result<()> {
    let ChainCommand::Init(args) = command;
    match &args.chain.chain {
        ChainSpec::Offchain => {
            anyhow::bail!("--chain offchain has no chain to initialize: run nodes with it as it is")
        }
        ChainSpec::Ledger(path) => {
            anyhow::ensure!(
                !args.livepeer,
                "--livepeer deploys Livepeer's contracts on an Ethereum node: use --chain eth:URL"
            );
            Ledger::init(path.clone(), args.block_seconds)?;
            tracing::info!(path = %path.display(), block_seconds = args.block_seconds, "ledger created");
            println!("{}", args.chain.chain);
            Ok(())
        }
        ChainSpec::Ethereum(rest) => {
            let spec = crate::chain::EthSpec::parse(rest)?;
            let keystore = args
                .keystore
                .as_ref()
                .context("chain init on eth: deploys contracts: give --keystore DIR (the deployer's account)")?;
            let key = KeystoreArgs {
                keystore: keystore.clone(),
                password_file: args.password_file.clone(),
            }
            .unlock()?;
            let tls = args.chain.rpc_tls()?;
            if args.livepeer {
                let artifacts =
                    crate::chain::livepeer::Artifacts::directory(args.livepeer_abis.as_deref());
                let deployed = runtime()?.block_on(crate::chain::Ethereum::deploy_livepeer(
                    &spec.url, &key, &tls, &artifacts,
                ))?;
                tracing::info!(deployer = %key.address(), artifacts = %artifacts.display(),
                    "Livepeer's contracts deployed, configured and unpaused");
                println!("{}", deployed.render());
                return Ok(());
            }
            let deployed =
                runtime()?.block_on(crate::chain::Ethereum::deploy(&spec.url, &key, &tls))?;
            tracing::info!(deployer = %key.address(), "development contracts deployed");
            println!("{}", deployed.render());
            Ok(())
        }
    }
}

pub(crate) fn run_job(command: JobCommand) -> Result<()> {
    match command {
        JobCommand::New(args) => {
            let profiles = crate::cli::transcode::named_profiles_of(&args.profiles)?;
            let key = args.keystore.unlock()?;
            let chain = args.chain.open()?;
            let job = NewJob {
                stream_id: ManifestId::random().stream_id(&args.source_profile),
                transcoding_options: encode_transcoding_options(&profiles),
                transcoder: args.transcoder,
                blocks: args.blocks,
            };
            let id = runtime()?.block_on(chain.create_job(&key, job))?;
            tracing::info!(id, broadcaster = %key.address(), transcoder = %args.transcoder, "job created");
            println!("{id}");
            Ok(())
        }
        JobCommand::Show(args) => {
            let chain = args.chain.open()?;
            let job = runtime()?
                .block_on(chain.job(args.id))?
                .with_context(|| format!("job {} not found on {}", args.id, args.chain.chain))?;
            let mut json = serde_json::to_value(&job).expect("a job serialises");
            let profiles = job
                .profiles()
                .map(|p| p.iter().map(|p| p.name).collect::<Vec<_>>());
            json["profiles"] = match profiles {
                Ok(names) => serde_json::json!(names),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("JSON serialises")
            );
            Ok(())
        }
    }
}

pub(crate) fn run_registry(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Set(args) => {
            let key = args.keystore.unlock()?;
            let chain = args.chain.open()?;
            runtime()?.block_on(chain.set_service_uri(&key, &args.uri))?;
            tracing::info!(address = %key.address(), uri = %args.uri, "service URI registered");
            Ok(())
        }
        RegistryCommand::Get(args) => {
            let chain = args.chain.open()?;
            let uri = runtime()?
                .block_on(chain.service_uri(args.address))?
                .with_context(|| format!("{} has registered no service URI", args.address))?;
            println!("{uri}");
            Ok(())
        }
    }
}
