//! The program director: follows the hour schedule, decides what plays next, feeds the
//! engine (the DJ's voice, callers' recordings, music, jingles) and writes the on-air log.
//! It never produces audio itself and never waits on the engine: whatever it fails to
//! deliver, the engine covers with the bed.

pub mod on_air_log;
pub mod queue;
pub mod schedule;
pub mod scripts;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use media::decode::decode_at;
use shared::store::ObjectStore;
use shared::submission::{SubmissionKind, repository};
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::audio::SAMPLE_RATE;
use crate::library::{Kind, Library};
use crate::metrics::Metrics;
use crate::on_air::{Feeds, NowPlaying};
use crate::voice::FeedWriter;
use crate::voice::chain::{Spoken, VoiceChain};
use on_air_log::OnAirLog;
use queue::Queued;
use schedule::{Block, Schedule, Slot};

/// Longest caller recording played.
const MAX_CALLER_CLIP: Duration = Duration::from_secs(5 * 60);
/// Related past submissions given to the DJ.
const RELATED: i64 = 3;

/// Where the recording of the current moment is going (an object URI), for the log.
pub type RecordingPath = Arc<dyn Fn() -> Option<String> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct DirectorConfig {
    pub channel: String,
    pub station_name: String,
    /// How often the DJ speaks up in a block that has nothing else to play (a QANDA block
    /// with an empty queue, a TOPIC block).
    pub talk_interval: Duration,
}

/// What the director is made of, by name: the database, the voices, the feeds it writes
/// into and the stores it reads from.
pub struct DirectorParts {
    pub config: DirectorConfig,
    pub pool: PgPool,
    /// The DJ's voices, tried in order.
    pub voices: Arc<VoiceChain>,
    pub feeds: Feeds,
    /// Where listeners' recordings are read from.
    pub uploads: Arc<dyn ObjectStore>,
    /// Music and jingles, when the station has a library.
    pub library: Option<Arc<Library>>,
    pub recording: RecordingPath,
    pub metrics: Arc<Metrics>,
    /// Signalled when the ready-queue puller claims a submission.
    pub claimed: Arc<Notify>,
}

pub struct Director {
    config: DirectorConfig,
    pool: PgPool,
    voices: Arc<VoiceChain>,
    feeds: Mutex<Feeds>,
    uploads: Arc<dyn ObjectStore>,
    library: Option<Arc<Library>>,
    log: OnAirLog,
    recording: RecordingPath,
    metrics: Arc<Metrics>,
    /// Signalled when a ready submission was claimed.
    claimed: Arc<Notify>,
    now_playing: watch::Sender<NowPlaying>,
}

impl Director {
    pub fn new(parts: DirectorParts) -> Self {
        let DirectorParts {
            config,
            pool,
            voices,
            feeds,
            uploads,
            library,
            recording,
            metrics,
            claimed,
        } = parts;
        Director {
            log: OnAirLog::new(pool.clone(), config.channel.clone()),
            config,
            pool,
            voices,
            feeds: Mutex::new(feeds),
            uploads,
            library,
            recording,
            metrics,
            claimed,
            now_playing: watch::Sender::new(NowPlaying::default()),
        }
    }

    /// What is on air, updated as items start.
    pub fn now_playing(&self) -> watch::Receiver<NowPlaying> {
        self.now_playing.subscribe()
    }

    /// An item starts; `block` is `None` to stay in the current one.
    fn on_air(&self, block: Option<Block>, item: &str, title: Option<String>) {
        self.now_playing.send_modify(|now| {
            let block = block.map_or_else(|| now.block.clone(), |b| b.as_str().to_owned());
            *now = NowPlaying::new(block, item, title);
        });
    }

    /// Runs the program until `stop`. Database trouble is logged and retried: the engine
    /// keeps the bed on air meanwhile.
    pub async fn run(&self, stop: CancellationToken) {
        recover_interrupted(&self.pool, &self.config.channel).await;
        while !stop.is_cancelled() {
            match self.current_slot().await {
                Ok((slot, local, ends)) => {
                    tracing::info!(block = %slot.block, until = %slot.ends, topic = slot.topic.as_deref().unwrap_or(""), "block starts");
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = self.run_block(&slot, local, ends) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the schedule; retrying in 5 s");
                    let _ = tokio::time::timeout(Duration::from_secs(5), stop.cancelled()).await;
                }
            }
        }
        // Nothing half-played stays buffered for the engine.
        let mut feeds = self.feeds.lock().await;
        feeds.dj.abandon();
        feeds.caller.abandon();
        feeds.music.abandon();
    }

    /// The block on air now, the local time, and when the block ends (UTC).
    async fn current_slot(&self) -> Result<(Slot, NaiveDateTime, DateTime<Utc>), sqlx::Error> {
        let schedule = Schedule::load(&self.pool, &self.config.channel).await?;
        let now = Utc::now();
        let local = schedule::local_time(&self.pool, &self.config.channel, now).await?;
        let slot = schedule.slot_at(local);
        let ends = now + (slot.ends - local);
        Ok((slot, local, ends))
    }

    async fn run_block(&self, slot: &Slot, local: NaiveDateTime, ends: DateTime<Utc>) {
        self.speak_logged(
            slot.block,
            scripts::block_opening(slot, local, &self.config.station_name),
        )
        .await;
        match slot.block {
            Block::Qanda => self.listeners_until(ends).await,
            Block::Music => self.library_until(Kind::Music, ends).await,
            Block::Jingle => {
                self.play_library(Kind::Jingle).await;
            }
            Block::Topic => {
                while until(ends) > self.config.talk_interval {
                    tokio::time::sleep(self.config.talk_interval).await;
                    self.speak_logged(
                        slot.block,
                        scripts::block_opening(slot, local, &self.config.station_name),
                    )
                    .await;
                }
            }
            Block::Op | Block::News => {}
        }
        // The rest of the block: the bed (or music) the engine plays by itself.
        tokio::time::sleep(until(ends)).await;
    }

    /// QANDA: play claimed submissions oldest first; call for messages when there are none.
    async fn listeners_until(&self, ends: DateTime<Utc>) {
        loop {
            if until(ends).is_zero() {
                return;
            }
            match repository::take_next(&self.pool, &self.config.channel).await {
                Ok(Some(item)) => {
                    self.refresh_queue_depth().await;
                    self.play_submission(item).await;
                    continue;
                }
                Ok(None) => self.refresh_queue_depth().await,
                Err(e) => tracing::error!(error = %e, "cannot take the next submission"),
            }
            let wait = until(ends).min(self.config.talk_interval);
            let claimed = self.claimed.notified();
            tokio::select! {
                () = claimed => {}
                () = tokio::time::sleep(wait) => {
                    if until(ends) > Duration::from_secs(10) {
                        self.speak_logged(Block::Qanda, scripts::call_for_messages(&self.config.station_name)).await;
                    }
                }
            }
        }
    }

    async fn refresh_queue_depth(&self) {
        if let Ok(depth) = repository::queued_count(&self.pool, &self.config.channel).await {
            self.metrics
                .queue_depth
                .store(depth, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// One listener submission: their recording (if any), the DJ's reply, the log, aired.
    pub async fn play_submission(&self, item: Queued) {
        let started = Utc::now();
        self.on_air(Some(Block::Qanda), "listener", None);
        let words = item.words().to_owned();
        let row = self
            .log
            .start(
                Block::Qanda,
                Some(item.id),
                Some(&words),
                (self.recording)().as_deref(),
                started,
            )
            .await
            .map_err(|e| tracing::error!(submission_id = %item.id, error = %e, "on-air log start failed"))
            .ok();
        if item.kind == SubmissionKind::Audio {
            self.play_caller(&item).await;
        }
        let related = repository::aired_near(&self.pool, item.id, &self.config.channel, RELATED)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no related submissions for context");
                Vec::new()
            });
        let reply = self.speak(scripts::listener_reply(&item, related)).await;
        let transcript = match &reply {
            Some(spoken) => format!("{words}\n\nDJ ({}): {}", spoken.voice, spoken.transcript),
            None => words.clone(),
        };
        if let Some(row) = row
            && let Err(e) = self.log.end(row, Some(&transcript), Utc::now()).await
        {
            tracing::error!(error = %e, "on-air log end failed");
        }
        match queue::mark_aired(&self.pool, item.id).await {
            Ok(_) => tracing::info!(submission_id = %item.id, "submission aired"),
            // Left on air: the next start re-queues it and it plays again.
            Err(e) => tracing::error!(submission_id = %item.id, error = %e, "cannot mark aired"),
        }
    }

    /// Plays a caller's recording from the uploads store; on any failure the DJ's reply
    /// (which quotes the transcript) carries the message alone.
    async fn play_caller(&self, item: &Queued) {
        let Some(path) = &item.audio_path else { return };
        let Some(key) = self.uploads.key_of(path) else {
            tracing::error!(submission_id = %item.id, %path, "recording is not in the uploads store");
            return;
        };
        let bytes = match self.uploads.get(&key).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(submission_id = %item.id, error = %e, "cannot read the recording");
                return;
            }
        };
        let decoded =
            tokio::task::spawn_blocking(move || decode_at(&bytes, MAX_CALLER_CLIP, SAMPLE_RATE))
                .await;
        match decoded {
            Ok(Ok(audio)) => self.play(Feed::Caller, &audio.samples).await,
            Ok(Err(e)) => {
                tracing::error!(submission_id = %item.id, error = %e, "cannot decode the recording")
            }
            Err(e) => tracing::error!(submission_id = %item.id, error = %e, "decoder task failed"),
        }
    }

    async fn library_until(&self, kind: Kind, ends: DateTime<Utc>) {
        while until(ends) > Duration::from_secs(5) {
            if !self.play_library(kind).await {
                return;
            }
        }
    }

    /// Plays the next library item of `kind`; `false` if there was none.
    async fn play_library(&self, kind: Kind) -> bool {
        let Some(library) = &self.library else {
            return false;
        };
        let Some((key, samples)) = library.next(kind).await else {
            return false;
        };
        tracing::info!(%key, "playing from the library");
        let (feed, item) = match kind {
            Kind::Music => (Feed::Music, "music"),
            Kind::Jingle => (Feed::Caller, "jingle"),
        };
        let title = key.rsplit('/').next().unwrap_or(&key).to_owned();
        self.on_air(None, item, Some(title));
        self.play(feed, &samples).await;
        true
    }

    async fn play(&self, feed: Feed, samples: &[f32]) {
        let mut feeds = self.feeds.lock().await;
        let writer = match feed {
            Feed::Caller => &mut feeds.caller,
            Feed::Music => &mut feeds.music,
        };
        writer.begin();
        writer.push_f32(SAMPLE_RATE, samples);
        writer.end();
        let length = writer.queued();
        wait_drained(writer, length).await;
    }

    /// Speaks and logs a cue of its own (an opening, a call for messages).
    async fn speak_logged(&self, block: Block, cue: crate::voice::Cue) {
        self.on_air(Some(block), "dj", None);
        let row = self
            .log
            .start(block, None, None, (self.recording)().as_deref(), Utc::now())
            .await
            .ok();
        let spoken = self.speak(cue).await;
        if let Some(row) = row {
            let transcript = spoken.map(|s| format!("DJ ({}): {}", s.voice, s.transcript));
            let _ = self.log.end(row, transcript.as_deref(), Utc::now()).await;
        }
    }

    /// Speaks `cue` through the voice chain and waits until it has played out.
    async fn speak(&self, cue: crate::voice::Cue) -> Option<Spoken> {
        let mut feeds = self.feeds.lock().await;
        match self.voices.speak(&cue, &mut feeds.dj).await {
            Ok(spoken) => {
                let length = feeds.dj.queued();
                wait_drained(&feeds.dj, length).await;
                Some(spoken)
            }
            Err(e) => {
                tracing::error!(block = %cue.block, error = %e, "no voice could speak; the bed carries on");
                None
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Feed {
    Caller,
    Music,
}

/// Waits for `writer` to play out, at most its length plus a margin (the engine may be
/// playing something of higher priority meanwhile).
async fn wait_drained(writer: &FeedWriter, length: Duration) {
    let limit = length * 2 + Duration::from_secs(5);
    if tokio::time::timeout(limit, writer.drained()).await.is_err() {
        tracing::warn!(
            seconds = limit.as_secs(),
            "audio did not play out in time; moving on"
        );
    }
}

/// Time left until `t`, zero if past.
fn until(t: DateTime<Utc>) -> Duration {
    (t - Utc::now()).to_std().unwrap_or_default()
}

/// What a previous run left on air when it stopped mid-item: its submission is queued again
/// in its place (it plays next, from the start), and its log rows are closed as interrupted.
/// Trouble is logged: the station goes on air regardless.
pub async fn recover_interrupted(pool: &PgPool, channel: &str) {
    match repository::requeue_interrupted(pool, channel).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            submissions = n,
            "re-queued, in their place, submissions a previous run left on air"
        ),
        Err(e) => tracing::error!(error = %e, "cannot re-queue interrupted submissions"),
    }
    match OnAirLog::new(pool.clone(), channel)
        .close_interrupted(Utc::now())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::warn!(rows = n, "closed on-air log rows a previous run left open"),
        Err(e) => tracing::error!(error = %e, "cannot close interrupted on-air log rows"),
    }
}
