//! `lpgpu broadcast`: sign and upload a file's segments, write the HLS ladder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{ChainArgs, OptionalKeystoreArgs, runtime};
use crate::broadcaster::today::{TodayBroadcaster, parse_orch_addrs};
use crate::broadcaster::{
    BroadcastOptions, Broadcaster, OrchestratorTarget, SegmentReport, Uploader, broadcast,
    segments_from,
};
use crate::eth::Address;
use crate::pipeline::segmenter::{Segment, segment_file, segment_reader};

#[derive(Debug, Args)]
pub(crate) struct BroadcastArgs {
    /// The 2018 job to broadcast (with --orchestrator or --orchestrator-address).
    #[arg(long, value_name = "ID", required_unless_present = "orch_addr")]
    job: Option<u64>,
    /// The broadcaster's keystore (the 2018 job's broadcaster).
    #[command(flatten)]
    keystore: OptionalKeystoreArgs,
    #[command(flatten)]
    chain: ChainArgs,
    /// The orchestrator's https://HOST:PORT.
    #[arg(long, value_name = "URI", conflicts_with = "orchestrator_address")]
    orchestrator: Option<String>,
    /// The orchestrator's address, looked up in the chain's service registry.
    #[arg(long, value_name = "0x…")]
    orchestrator_address: Option<Address>,
    /// Today's wire, as a go-livepeer gateway's -orchAddr: orchestrators
    /// HOST[:PORT] (port 8935 by default), comma-separated; offchain, no job
    /// and no keystore.
    #[arg(long, value_name = "HOST:PORT[,…]", conflicts_with_all = ["job", "orchestrator", "orchestrator_address"])]
    orch_addr: Option<String>,
    /// The renditions, with --orch-addr (go-livepeer's default ladder):
    /// names, or a -transcodingOptions JSON file (H.264 or HEVC: the HLS
    /// ladder is MPEG-TS).
    #[arg(
        long,
        value_name = "LIST|FILE",
        default_value = "P240p30fps16x9,P360p30fps16x9",
        requires = "orch_addr"
    )]
    profiles: String,
    /// MPEG-TS, MP4 or MKV file (cut at keyframes by remuxing), an m3u8 playlist
    /// of segments, or - for a live MPEG-TS on standard input.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Directory for the HLS ladder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Target segment length when cutting a file.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    segment_seconds: f64,
    /// Segments uploaded at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_in_flight: usize,
    /// With --orch-addr on an eth: chain (and --keystore): pay in PM
    /// tickets, refusing orchestrators whose price is over this many wei
    /// per pixel (go-livepeer's -maxPricePerUnit; any price when absent).
    #[arg(long, value_name = "WEI", requires = "orch_addr")]
    max_price_per_unit: Option<u64>,
}

/// A paying broadcaster's own funds on Livepeer's TicketBroker, when the
/// spec names its Controller: go-livepeer's sender stops without a deposit
/// or a reserve, or with an unlock under way.
fn check_funds(rest: &str, chain: &ChainArgs, key: &crate::eth::PrivateKey) -> Result<()> {
    let spec = crate::chain::EthSpec::parse(rest)?;
    let Some(controller) = spec.controller else {
        return Ok(());
    };
    let ethereum = crate::chain::Ethereum::with_tls(spec, &chain.rpc_tls()?)?;
    let status = runtime()?.block_on(async {
        let protocol = crate::chain::operator::Protocol::connect(
            ethereum.provider().clone(),
            alloy::primitives::Address::from(controller.0),
        )
        .await?;
        protocol
            .status(alloy::primitives::Address::from(key.address().0))
            .await
    })?;
    anyhow::ensure!(
        status.deposit != "0",
        "no sender deposit: fund it with `lpgpu protocol fund --deposit ETH`"
    );
    anyhow::ensure!(
        status.reserve != "0",
        "no sender reserve: fund it with `lpgpu protocol fund --reserve ETH`"
    );
    anyhow::ensure!(
        status.withdraw_round == 0,
        "unable to validate sender: its deposit and reserve are unlocking (round {})",
        status.withdraw_round
    );
    tracing::info!(deposit = %status.deposit, reserve = %status.reserve, "paying from the TicketBroker");
    Ok(())
}

/// Reads an m3u8 media playlist's segments (local files, relative to it).
fn playlist_segments(path: &Path) -> Result<Vec<Segment>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        text.starts_with("#EXTM3U"),
        "{} is not an m3u8 playlist",
        path.display()
    );
    let base = path.parent().unwrap_or(Path::new("."));
    let mut segments = Vec::new();
    let mut duration = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(value) = line.strip_prefix("#EXTINF:") {
            duration = value
                .split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok());
        } else if !line.starts_with('#') {
            let file = base.join(line);
            let data: bytes::Bytes = std::fs::read(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .into();
            // Probing the segment gives its picture size; one that does not
            // probe still goes out, and the transcoder's answer says why it failed.
            let (picture, has_audio, probed_seconds) = match segment_file(&file, f64::INFINITY) {
                Ok(cut) if cut.len() == 1 => (cut[0].picture, cut[0].has_audio, cut[0].seconds),
                Ok(_) | Err(_) => {
                    tracing::warn!(file = %file.display(), "segment does not probe as one video segment");
                    ((0, 0, crate::pipeline::Rational::new(1, 1)), false, 0.0)
                }
            };
            let seconds = duration.take().unwrap_or(probed_seconds);
            let segment = Segment {
                data,
                seconds,
                picture,
                has_audio,
            };
            segments.push(segment);
        }
    }
    Ok(segments)
}

pub(crate) fn run(args: BroadcastArgs) -> Result<()> {
    anyhow::ensure!(
        args.segment_seconds.is_finite() && (0.5..=60.0).contains(&args.segment_seconds),
        "--segment-seconds must be between 0.5 and 60"
    );
    anyhow::ensure!(
        (1..=16).contains(&args.max_in_flight),
        "--max-in-flight must be between 1 and 16"
    );
    // Which wire: today's (--orch-addr), or the 2018 job's.
    enum Wire {
        Today(
            Vec<String>,
            Vec<crate::pipeline::RenditionSpec>,
            Option<crate::broadcaster::payer::Payer>,
        ),
        V2 {
            job: u64,
            target: OrchestratorTarget,
            key: Arc<crate::eth::PrivateKey>,
            chain: Arc<dyn crate::chain::ChainAdmin>,
        },
    }
    let wire = match (args.orch_addr.as_deref(), args.job) {
        (Some(list), _) => {
            let orchestrators = parse_orch_addrs(list).map_err(anyhow::Error::msg)?;
            let profiles = crate::cli::transcode::renditions_of(&args.profiles)?;
            anyhow::ensure!(!profiles.is_empty(), "--profiles names no rendition");
            crate::broadcaster::today::check_hls_renditions(&profiles)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--profiles {}", args.profiles))?;
            // On an Ethereum chain the broadcaster has an account and pays;
            // otherwise it is offchain, as go-livepeer's -network offchain.
            let payer = match &args.chain.chain {
                crate::chain::ChainSpec::Ethereum(rest) => {
                    let key = args
                        .keystore
                        .unlock(&args.chain.chain)?
                        .context("a paying broadcaster signs its tickets: give --keystore DIR")?;
                    check_funds(rest, &args.chain, &key)?;
                    Some(crate::broadcaster::payer::Payer {
                        key,
                        max_price: args.max_price_per_unit.map(|wei| (wei, 1)),
                    })
                }
                _ => {
                    anyhow::ensure!(
                        args.max_price_per_unit.is_none(),
                        "--max-price-per-unit: only a broadcaster on an eth: chain pays"
                    );
                    None
                }
            };
            Wire::Today(orchestrators, profiles, payer)
        }
        (None, Some(job)) => {
            let target = match (args.orchestrator, args.orchestrator_address) {
                (Some(uri), None) => {
                    OrchestratorTarget::Uri(crate::chain::validate_service_uri(&uri)?)
                }
                (None, Some(address)) => OrchestratorTarget::Address(address),
                _ => bail!(
                    "give --orchestrator https://HOST:PORT or --orchestrator-address 0x… (or --orch-addr for today's wire)"
                ),
            };
            anyhow::ensure!(
                !args.chain.chain.is_offchain(),
                "a 2018 job lives on a chain: give --chain ledger:PATH or eth:URL (or --orch-addr for today's wire)"
            );
            let key = args
                .keystore
                .unlock(&args.chain.chain)?
                .context("the 2018 job's broadcaster signs its segments: give --keystore DIR")?;
            let chain = args.chain.open()?;
            Wire::V2 {
                job,
                target,
                key,
                chain,
            }
        }
        (None, None) => bail!("give --job ID (2018) or --orch-addr HOST:PORT (today's wire)"),
    };
    let live = args.input.as_os_str() == "-";
    let is_playlist = args
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("m3u8"));
    let (segments, total) = if live {
        // Segments come as the stream does: a reader thread cuts standard
        // input and hands each finished segment over a bounded channel.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let seconds = args.segment_seconds;
        std::thread::spawn(move || {
            let result = segment_reader(
                std::io::stdin(),
                "standard input",
                seconds,
                &mut |segment| sender.blocking_send(segment).is_ok(),
            );
            match result {
                Ok(count) => tracing::info!(segments = count, "standard input ended"),
                Err(error) => tracing::error!("reading standard input: {error}"),
            }
        });
        (receiver, None)
    } else {
        let list = if is_playlist {
            playlist_segments(&args.input)?
        } else {
            segment_file(&args.input, args.segment_seconds)?
        };
        tracing::info!(input = %args.input.display(), segments = list.len(), "input read");
        let total = list.len();
        (segments_from(list), Some(total))
    };
    let options = BroadcastOptions {
        max_in_flight: args.max_in_flight,
        live_window: live.then_some(6),
        ..Default::default()
    };
    let terminal = std::io::stderr().is_terminal();
    let summary = runtime()?.block_on(async {
        let broadcaster: Arc<dyn Uploader> = match wire {
            Wire::Today(orchestrators, profiles, payer) => {
                let broadcaster = TodayBroadcaster::new(orchestrators, profiles, options);
                Arc::new(match payer {
                    Some(payer) => broadcaster.with_payer(payer),
                    None => broadcaster,
                })
            }
            Wire::V2 {
                job,
                target,
                key,
                chain,
            } => Arc::new(Broadcaster::connect(chain.as_ref(), job, key, target, options).await?),
        };
        let started = std::time::Instant::now();
        let on_segment = |report: &SegmentReport| {
            let outcome = match &report.result {
                Ok(sizes) => format!("ok, renditions {sizes:?} bytes"),
                Err(e) => format!("FAILED: {e}"),
            };
            if terminal {
                let done = report.seq as usize + 1;
                let total = total.map_or_else(|| "live".to_string(), |t| t.to_string());
                let ratio = started.elapsed().as_secs_f64()
                    / (done as f64 * report.seconds).max(f64::EPSILON);
                eprint!(
                    "\r[{done}/{total}] segment {} {outcome}; real-time ratio {ratio:.2}   ",
                    report.seq
                );
            } else {
                tracing::info!(
                    seq = report.seq,
                    attempts = report.attempts,
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    "segment {outcome}"
                );
            }
        };
        let summary = broadcast(broadcaster, segments, &args.out, on_segment).await?;
        anyhow::Ok(summary)
    })?;
    if terminal {
        eprintln!();
    }
    println!(
        "{summary}; master playlist {}",
        summary.master_playlist.display()
    );
    for (seq, reason) in &summary.failed {
        println!("segment {seq} failed: {reason}");
    }
    if !summary.all_delivered() {
        bail!(
            "{} of {} segments were not transcoded",
            summary.failed.len(),
            summary.segments
        );
    }
    Ok(())
}
