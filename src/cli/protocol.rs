//! `lpgpu protocol activate | fund | round | status`: an operator's
//! transactions on Livepeer's own contracts, found through the chain spec's
//! `controller=` (see `chain init --livepeer`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{ChainArgs, KeystoreArgs, runtime};
use crate::chain::operator::{DECIMALS, Protocol, parse_units, percent_to_ppm};
use crate::chain::{ChainSpec, EthSpec, Ethereum};

#[derive(Debug, Subcommand)]
pub(crate) enum ProtocolCommand {
    /// Become an orchestrator: approve and bond LPT to yourself, register
    /// with a reward cut and fee share, publish the service URI.
    Activate(ActivateArgs),
    /// Fund the account as a ticket sender (a broadcaster): deposit and reserve.
    Fund(FundArgs),
    /// Initialize the current round (anyone may; needed once per round).
    Round(TxArgs),
    /// Print an account's standing as JSON: stake, active, deposit, reserve,
    /// pending fees.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TxArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    keystore: KeystoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ActivateArgs {
    #[command(flatten)]
    tx: TxArgs,
    /// The URI broadcasters reach this orchestrator at (https://HOST:PORT).
    #[arg(long, value_name = "URI")]
    service_uri: String,
    /// LPT to bond to yourself (decimal; 0 when already bonded).
    #[arg(long, value_name = "LPT", default_value = "0")]
    stake: String,
    /// Percent of rewards kept, the rest to delegators.
    #[arg(long, value_name = "PCT", default_value = "10")]
    reward_cut: String,
    /// Percent of fees shared with delegators.
    #[arg(long, value_name = "PCT", default_value = "50")]
    fee_share: String,
}

#[derive(Debug, Args)]
pub(crate) struct FundArgs {
    #[command(flatten)]
    tx: TxArgs,
    /// ETH into the deposit (what winning tickets are paid from).
    #[arg(long, value_name = "ETH", default_value = "0")]
    deposit: String,
    /// ETH into the reserve (what covers tickets past the deposit).
    #[arg(long, value_name = "ETH", default_value = "0")]
    reserve: String,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The account (else the keystore's).
    #[arg(long, value_name = "0x…", conflicts_with = "keystore")]
    address: Option<crate::eth::Address>,
    /// The keystore whose account to show (its address is read without the
    /// password where the file states it).
    #[arg(long, value_name = "DIR")]
    keystore: Option<std::path::PathBuf>,
    /// A paid node's winning-ticket store: its tickets for this account
    /// not yet redeemed are counted (`pending_winning_tickets`).
    #[arg(long, value_name = "FILE", default_value = "lpgpu-tickets.json")]
    ticket_store: std::path::PathBuf,
}

/// Tickets for `recipient` in a node's store not yet redeemed: (count, Σ
/// face value in wei). A missing store holds none.
fn pending_tickets(
    path: &std::path::Path,
    recipient: crate::eth::Address,
) -> Result<(u64, String)> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, "0".into())),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let tickets: Vec<crate::orchestrator::today::redeemer::StoredTicket> =
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a winning-ticket store", path.display()))?;
    let mut count = 0u64;
    let mut face = alloy::primitives::U256::ZERO;
    for stored in &tickets {
        let (ticket, _, _) = stored.ticket().map_err(anyhow::Error::msg)?;
        if ticket.recipient == recipient {
            count += 1;
            face = face.saturating_add(ticket.face_value);
        }
    }
    Ok((count, face.to_string()))
}

/// The eth: spec naming a Controller, and a connection to its node.
fn ethereum(chain: &ChainArgs) -> Result<(Ethereum, alloy::primitives::Address)> {
    let ChainSpec::Ethereum(rest) = &chain.chain else {
        anyhow::bail!(
            "lpgpu protocol speaks to Livepeer's contracts: give --chain eth:URL?controller=0x… \
             (`lpgpu chain init --livepeer` prints one)"
        );
    };
    let spec = EthSpec::parse(rest)?;
    let controller = spec.controller.with_context(|| {
        format!(
            "{} names no controller=0x…: Livepeer's contracts are found through their Controller",
            spec.render()
        )
    })?;
    let ethereum = Ethereum::with_tls(spec, &chain.rpc_tls()?)?;
    Ok((ethereum, alloy::primitives::Address::from(controller.0)))
}

pub(crate) fn run(command: ProtocolCommand) -> Result<()> {
    match command {
        ProtocolCommand::Status(args) => {
            let address = match (&args.address, &args.keystore) {
                (Some(address), _) => *address,
                (None, Some(dir)) => crate::eth::keystore::KeystoreDir::new(dir)
                    .stated_address()?
                    .context("the keystore file does not state its address: give --address")?,
                (None, None) => anyhow::bail!("give --address 0x… or --keystore DIR"),
            };
            let (ethereum, controller) = ethereum(&args.chain)?;
            let status = runtime()?.block_on(async {
                let protocol = Protocol::connect(ethereum.provider().clone(), controller).await?;
                protocol
                    .status(alloy::primitives::Address::from(address.0))
                    .await
            })?;
            let mut json = serde_json::to_value(&status)?;
            let (pending, face) = pending_tickets(&args.ticket_store, address)?;
            json["pending_winning_tickets"] = pending.into();
            json["pending_face_value"] = face.into();
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
        ProtocolCommand::Round(tx) => {
            let key = tx.keystore.unlock()?;
            let (ethereum, controller) = ethereum(&tx.chain)?;
            let provider = ethereum.signing(&key)?;
            let (started, round) = runtime()?.block_on(async {
                let protocol = Protocol::connect(provider, controller).await?;
                let started = protocol.initialize_round().await?;
                Ok::<_, crate::chain::ChainError>((started, protocol.round().await?))
            })?;
            if started {
                println!("round {} initialized", round.current_round);
            } else {
                println!("round {} was already initialized", round.current_round);
            }
            Ok(())
        }
        ProtocolCommand::Activate(args) => {
            let stake = parse_units(&args.stake, DECIMALS)
                .map_err(anyhow::Error::msg)
                .context("--stake")?;
            let reward_cut = percent_to_ppm(&args.reward_cut)
                .map_err(anyhow::Error::msg)
                .context("--reward-cut")?;
            let fee_share = percent_to_ppm(&args.fee_share)
                .map_err(anyhow::Error::msg)
                .context("--fee-share")?;
            crate::chain::validate_service_uri(&args.service_uri)?;
            let key = args.tx.keystore.unlock()?;
            let me = alloy::primitives::Address::from(key.address().0);
            let (ethereum, controller) = ethereum(&args.tx.chain)?;
            let provider = ethereum.signing(&key)?;
            runtime()?.block_on(async {
                let protocol = Protocol::connect(provider, controller).await?;
                protocol
                    .activate(me, stake, reward_cut, fee_share, &args.service_uri)
                    .await
            })?;
            println!(
                "{} registered as an orchestrator at {} (active from the next round)",
                key.address(),
                args.service_uri
            );
            Ok(())
        }
        ProtocolCommand::Fund(args) => {
            let deposit = parse_units(&args.deposit, DECIMALS)
                .map_err(anyhow::Error::msg)
                .context("--deposit")?;
            let reserve = parse_units(&args.reserve, DECIMALS)
                .map_err(anyhow::Error::msg)
                .context("--reserve")?;
            let key = args.tx.keystore.unlock()?;
            let me = alloy::primitives::Address::from(key.address().0);
            let (ethereum, controller) = ethereum(&args.tx.chain)?;
            let provider = ethereum.signing(&key)?;
            runtime()?.block_on(async {
                let protocol = Protocol::connect(provider, controller).await?;
                protocol.fund(me, deposit, reserve).await
            })?;
            println!(
                "{} funded: deposit +{deposit} wei, reserve +{reserve} wei",
                key.address()
            );
            Ok(())
        }
    }
}
