//! The host-streamer process: wires the configuration into the air thread, the outputs,
//! the director, the ready-queue puller, the outbox sweeper and the HTTP endpoints, and
//! takes them down in order on SIGTERM.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared::bus::{Bus, SubscriptionSpec};
use shared::operator::{HasOperatorAuth, Operator, OperatorAuth};
use shared::problem::Problem;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::audio::Engine;
use crate::audio::air::AirThread;
use crate::config::{Config, VoiceKind};
use crate::director::{Director, DirectorConfig, DirectorParts, RecordingPath};
use crate::library::Library;
use crate::metrics::Metrics;
use crate::on_air::NowPlaying;
use crate::output::Outputs;
use crate::program::Program;
use crate::voice::chain::VoiceChain;
use crate::voice::local::LocalVoice;
use crate::voice::realtime::Dump;
use crate::voice::screen::Screen;
use crate::voice::{RealtimeVoice, RestVoice, Voice};
use models::moderation::{LocalModerator, Moderator, OpenAiModerator};
use models::openai::OpenAiClient;
use models::provider::Provider;

/// How long Pub/Sub waits for an ack before redelivering a ready message: a claim is one
/// short transaction.
const READY_ACK_DEADLINE: Duration = Duration::from_secs(60);
/// The now-playing title while the line-up tone is on air.
const LINEUP_TITLE: &str = "1 kHz / 500 Hz line-up tone, -18 dBFS";

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    metrics: Arc<Metrics>,
    /// Frames counted at the last readiness probe, to see the air thread advance.
    last_probe: Arc<std::sync::Mutex<(Instant, u64)>>,
    /// The operator's button that cuts what the live voice holds in its broadcast delay.
    dump: Arc<Dump>,
    operators: Arc<OperatorAuth>,
}

impl HasOperatorAuth for AppState {
    fn operator_auth(&self) -> &OperatorAuth {
        &self.operators
    }
}

/// `POST /v1/dump`: an operator cuts whatever the live voice holds in its broadcast delay
/// (a safe line airs instead). Says whether anything was held.
async fn press_dump(
    State(state): State<AppState>,
    Operator(operator): Operator,
) -> Json<serde_json::Value> {
    let cut = state.dump.press();
    tracing::warn!(%operator, cut, "dump pressed");
    Json(serde_json::json!({ "cut": cut, "by": operator }))
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (pool, bus) = shared::process::connect(&config.db, &config.bus, &[]).await?;
    if bus.config().emulator_host.is_some() {
        // The emulator starts empty; in production Terraform owns topics and subscriptions.
        bus.ensure_topic(&config.ready_topic).await?;
        bus.ensure_subscription(
            &config.ready_topic,
            &config.ready_subscription,
            &SubscriptionSpec::pull(READY_ACK_DEADLINE),
        )
        .await?;
    }
    let gcs = config.gcs_endpoint.as_deref();
    let recordings = shared::store::open(&config.recordings_url, gcs)
        .await
        .context("cannot open the recordings store (RECORDINGS_URL)")?;
    let metrics = Arc::new(Metrics::default());

    let outputs = Outputs::start(config.output.clone(), recordings, metrics.clone())
        .await
        .context("cannot start the outputs")?;
    let stream_routes = outputs.hub().routes();
    let segments = outputs.recorder().segments();
    let recording: RecordingPath =
        Arc::new(move || segments.borrow().as_ref().map(|s| s.uri.clone()));

    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (engine, now_playing, dump) = match config.program {
        Program::Station => {
            start_director(&config, &pool, &bus, &metrics, recording, &stop, &mut tasks).await?
        }
        Program::LineUp => {
            tracing::warn!("PROGRAM=lineup: the line-up tone is on air, not the station");
            let tone = NowPlaying::new("LINEUP", "tone", Some(LINEUP_TITLE.to_owned()));
            let (_, now_playing) = watch::channel(tone);
            let nothing_to_dump = Arc::new(Dump::default());
            (
                crate::program::build_lineup(&config.audio),
                now_playing,
                nothing_to_dump,
            )
        }
    };
    let outputs = match config.livekit.clone() {
        Some(room) => {
            let (feed, publisher) =
                crate::livekit::publisher(room, metrics.clone(), now_playing, stop.clone());
            tasks.spawn(publisher);
            outputs.with_room(feed)
        }
        None => outputs,
    };
    let air = AirThread::spawn(engine, outputs, metrics.clone());
    let outbox = shared::outbox::Outbox::new(
        pool.clone(),
        bus.clone(),
        config.outbox_relay.clone().unwrap_or_default(),
    );
    if config.outbox_relay.is_some() {
        tasks.spawn(outbox.clone().run_relay(stop.clone()));
    }
    // The always-on process also re-announces submissions stuck between stages.
    let sweeper = shared::sweeper::Sweeper::new(pool.clone(), outbox, config.sweeper.clone());
    tasks.spawn({
        let metrics = metrics.clone();
        sweeper.run(stop.clone(), move |n| {
            Metrics::add(&metrics.submissions_reannounced, n)
        })
    });

    let state = AppState {
        dump,
        operators: Arc::new(config.operators.clone()),
        pool: pool.clone(),
        metrics: metrics.clone(),
        last_probe: Arc::new(std::sync::Mutex::new((Instant::now(), 0))),
    };
    let router = Router::new()
        .route("/healthz", get(shared::http::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/dump", post(press_dump))
        .with_state(state)
        .merge(stream_routes);
    let listener = shared::process::bind(config.host, config.port).await?;
    tracing::info!(addr = %listener.local_addr()?, channel = %config.channel, "host-streamer on air");
    // The server stops accepting at the stop; listeners' responses end when the stream
    // does (below), so they get its last page rather than a cut connection.
    let server = tokio::spawn(shared::http::serve(
        listener,
        shared::http::finish_router(router),
        stop.clone().cancelled_owned(),
        Duration::from_secs(2),
    ));
    shared::http::shutdown_signal().await;

    // SIGTERM: stop taking and claiming (held messages are nacked), finish the frame in
    // progress, end the live stream and upload the open recording segment.
    tracing::info!("stopping");
    stop.cancel();
    if tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("tasks did not finish in time");
        tasks.abort_all();
    }
    let (report, outputs) = tokio::task::spawn_blocking(move || air.stop()).await?;
    tracing::info!(
        frames = report.engine.frames,
        late = report.late,
        silence_events = report.engine.silence_events,
        "air stopped"
    );
    let finished = outputs.finish(config.shutdown_grace).await;
    tracing::info!(?finished, "outputs finished");
    let served = server.await?;
    bus.flush().await;
    served?;
    Ok(())
}

/// The station's program: opens the uploads store and the library, builds the voice chain,
/// spawns the director and the ready-queue puller; returns the engine they feed, what is on
/// air, and the dump button of the live voice. (The line-up tone needs none of it.)
async fn start_director(
    config: &Config,
    pool: &PgPool,
    bus: &Bus,
    metrics: &Arc<Metrics>,
    recording: RecordingPath,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<(Engine, watch::Receiver<NowPlaying>, Arc<Dump>)> {
    let gcs = config.gcs_endpoint.as_deref();
    let uploads = shared::store::open(&config.uploads_url, gcs)
        .await
        .context("cannot open the uploads store (UPLOADS_URL)")?;
    let library = match &config.library_url {
        Some(url) => {
            let store = shared::store::open(url, gcs)
                .await
                .context("cannot open the library (LIBRARY_URL)")?;
            Some(Arc::new(Library::load(store).await.context(
                "cannot read the library's index.txt (LIBRARY_URL)",
            )?))
        }
        None => None,
    };
    // The operator's dump button, for the live voice's broadcast delay.
    let dump = Arc::new(Dump::default());
    let voices = Arc::new(VoiceChain::new(
        voices(config, metrics, &dump),
        metrics.clone(),
    ));
    tracing::info!(voices = ?voices.names(), "DJ voice chain");
    let (engine, feeds) = crate::program::build(&config.audio);
    let claimed = Arc::new(Notify::new());
    let director = Director::new(DirectorParts {
        config: DirectorConfig {
            channel: config.channel.clone(),
            station_name: config.station_name.clone(),
            talk_interval: config.talk_interval,
        },
        pool: pool.clone(),
        voices,
        feeds,
        uploads,
        library,
        recording,
        metrics: metrics.clone(),
        claimed: claimed.clone(),
    });
    let now_playing = director.now_playing();
    tasks.spawn({
        let stop = stop.clone();
        async move { director.run(stop).await }
    });
    tasks.spawn(crate::director::queue::pull_ready(
        bus.clone(),
        config.ready_subscription.clone(),
        pool.clone(),
        config.channel.clone(),
        stop.clone(),
        claimed,
    ));
    Ok((engine, now_playing, dump))
}

fn voices(config: &Config, metrics: &Arc<Metrics>, dump: &Arc<Dump>) -> Vec<Arc<dyn Voice>> {
    // Every line the REST and template voices speak is moderated first, by the station's
    // moderation provider and policy.
    let moderator: Arc<dyn Moderator> = match config.moderation {
        Provider::Local => Arc::new(LocalModerator::new()),
        Provider::OpenAi => match &config.openai {
            Some(openai) => Arc::new(OpenAiModerator::new(OpenAiClient::new(openai.clone()))),
            None => Arc::new(LocalModerator::new()),
        },
    };
    let screen = Arc::new(Screen::new(
        moderator,
        config.moderation_policy.clone(),
        metrics.clone(),
    ));
    // `Config` only lists the OpenAI voices when a key is set.
    config
        .voices
        .iter()
        .filter_map(|kind| -> Option<Arc<dyn Voice>> {
            Some(match kind {
                VoiceKind::Realtime => Arc::new(RealtimeVoice::new(
                    config.realtime.clone()?,
                    metrics.clone(),
                    screen.clone(),
                    dump.clone(),
                )),
                VoiceKind::Rest => Arc::new(RestVoice::new(
                    OpenAiClient::new(config.openai.clone()?),
                    config.rest.clone(),
                    screen.clone(),
                )),
                VoiceKind::Local => {
                    Arc::new(LocalVoice::new(config.local_voice.clone(), screen.clone()))
                }
            })
        })
        .collect()
}

/// Ready when the database answers and the air thread is producing frames.
async fn readyz(State(state): State<AppState>) -> Response {
    let frames = state.metrics.frames.load(Ordering::Relaxed);
    let advancing = {
        let mut last = state
            .last_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let moved = frames > last.1 || last.0.elapsed() < Duration::from_millis(100);
        *last = (Instant::now(), frames);
        moved && frames > 0
    };
    if !advancing {
        return Problem::unavailable("the air thread is not producing frames").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), shared::db::ping(&state.pool)).await {
        Ok(Ok(())) => "ready".into_response(),
        _ => Problem::unavailable("database not reachable").into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(chrono::Utc::now().timestamp()),
    )
        .into_response()
}
