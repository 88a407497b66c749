//! `lpgpu demo`: the whole protocol in one process on loopback. Makes a test
//! clip, starts a node with fresh keys and a fresh ledger in a temporary
//! directory, registers it, creates a job, broadcasts the clip through the
//! service-registry lookup, GetTranscoder and `POST /segment`, and leaves the
//! HLS ladder in `--out`. Nothing keeps running afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::runtime;
use super::transcode::PipelineArgs;
use crate::broadcaster::{
    BroadcastOptions, Broadcaster, OrchestratorTarget, SegmentReport, broadcast, segments_from,
};
use crate::chain::{Chain, ChainAdmin, Ledger, NewJob};
use crate::eth::PrivateKey;
use crate::metrics::Metrics;
use crate::node::{Node, NodeConfig};
use crate::pipeline::segmenter::segment_file;
use crate::pipeline::testclip::make_test_clip;
use crate::protocol::{ManifestId, Profile, encode_transcoding_options};
use crate::server::{serve, service_uri};
use crate::store::StoreLimits;
use crate::tls::SelfSignedCert;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// A video file to broadcast instead of the generated 6 s 720p clip.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Directory for the HLS ladder.
    #[arg(long, value_name = "DIR", default_value = "demo-out")]
    out: PathBuf,
    /// The job's profiles: names, or a -transcodingOptions JSON file whose
    /// entries are each one of the protocol's nine (a 2018 job names only
    /// those).
    #[arg(
        long,
        value_name = "LIST|FILE",
        default_value = "P720p30fps16x9,P360p30fps16x9,P240p30fps16x9"
    )]
    profiles: String,
    /// Afterwards, serve the ladder's folder over HTTP on this loopback
    /// address (default 127.0.0.1:8080) for a browser, until Ctrl-C.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    serve: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

/// A scratch directory removed when the demo ends, however it ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    // Refused before the demo runs, not after.
    if let Some(addr) = args.serve {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "--serve {addr}: the demo serves on loopback only (127.0.0.1 or ::1)"
        );
    }
    let profiles = crate::cli::transcode::named_profiles_of(&args.profiles)?;
    let backend = args.pipeline.backend()?;
    let scratch = Scratch(std::env::temp_dir().join(format!("lpgpu-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;

    let clip = match &args.input {
        Some(path) => path.clone(),
        None => {
            let path = scratch.0.join("clip.ts");
            std::fs::write(&path, make_test_clip(6, 1280, 720)?)?;
            println!("made a 6 s 1280x720 test clip (testsrc2 + noise, 440 Hz tone)");
            path
        }
    };
    let segments = segment_file(&clip, 2.0)?;
    let orchestrator = Arc::new(PrivateKey::random());
    let broadcaster = Arc::new(PrivateKey::random());
    let ledger = Ledger::init(scratch.0.join("ledger.json"), 1.0)?;
    println!(
        "orchestrator {}, broadcaster {} (fresh keys)",
        orchestrator.address(),
        broadcaster.address()
    );

    let cert = SelfSignedCert::generate("localhost")?;
    let tls = cert.server_config()?;
    let backend_name = backend.name();
    let summary = runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let uri = service_uri("localhost", listener.local_addr()?.port());
        let chain: Arc<dyn Chain> = Arc::new(ledger.clone());
        let metrics = Metrics::new();
        let mut config = NodeConfig::orchestrator(uri.clone(), orchestrator.clone());
        config.backend = Some(backend);
        config.max_sessions = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        config.transcode_timeout = Duration::from_secs(120);
        config.expose_errors = true;
        config.store = StoreLimits {
            max_bytes: 64 << 20,
            retention: Duration::from_secs(60),
        };
        let built = Node::build(config, chain.clone(), metrics)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = tokio::spawn(serve(listener, tls, built.routes(), async {
            let _ = stopped.await;
        }));
        println!("node listening on {uri}");

        ledger.set_service_uri(&orchestrator, &uri).await?;
        let source = Profile::by_name("P720p30fps16x9").expect("a known profile");
        let job = NewJob {
            stream_id: ManifestId::random().stream_id(&source),
            transcoding_options: encode_transcoding_options(&profiles),
            transcoder: orchestrator.address(),
            blocks: 3600,
        };
        let job_id = ledger.create_job(&broadcaster, job).await?;
        println!(
            "job {job_id}: {}",
            profiles
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        );

        let target = OrchestratorTarget::Address(orchestrator.address());
        let client = Broadcaster::connect(
            &ledger,
            job_id,
            broadcaster,
            target,
            BroadcastOptions::default(),
        )
        .await?;
        let on_segment = |report: &SegmentReport| match &report.result {
            Ok(sizes) => println!(
                "segment {}: {:.2} s of video transcoded in {:.2} s into {} renditions ({} bytes)",
                report.seq,
                report.seconds,
                report.elapsed.as_secs_f64(),
                sizes.len(),
                sizes.iter().sum::<usize>()
            ),
            Err(e) => println!("segment {}: FAILED: {e}", report.seq),
        };
        let summary = broadcast(
            Arc::new(client),
            segments_from(segments),
            &args.out,
            on_segment,
        )
        .await;
        let _ = stop.send(());
        node.await.context("the node task")?.context("the node")?;
        anyhow::Ok(summary?)
    })?;

    println!("\n{summary} on the {backend_name} backend");
    println!(
        "HLS ladder: {} (play it with ffplay or VLC, or open {} in a browser)",
        summary.master_playlist.display(),
        args.out.join(crate::broadcaster::player::PAGE).display()
    );
    anyhow::ensure!(
        summary.all_delivered(),
        "{} segments were not transcoded",
        summary.failed.len()
    );
    if let Some(addr) = args.serve {
        // Keys, ledger and clip are gone before the folder is served.
        drop(scratch);
        serve_ladder(addr, args.out)?;
    }
    Ok(())
}

/// `--serve`: the ladder's folder over HTTP on loopback, until Ctrl-C.
fn serve_ladder(addr: std::net::SocketAddr, out: PathBuf) -> Result<()> {
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --serve {addr}"))?;
        let local = listener.local_addr()?;
        println!(
            "serving {} at http://{local}/index.html (Ctrl-C to stop)",
            out.display()
        );
        crate::server::serve_folder(listener, out, crate::server::shutdown_signal())
            .await
            .context("serving the ladder")
    })
}
