//! Records the on-air stream into segment files in object storage.
//!
//! Segments start at wall-clock multiples of the segment length (on the hour by default),
//! decided from the timestamp the engine gives each packet, so a virtual clock works as well
//! as the real one. Each segment is a standalone Ogg/Opus file (its own serial, headers,
//! granule positions from 0) made of the shared encoder's packets.
//!
//! Cutting a running Opus stream needs care at both ends of a segment, so that segments
//! decode sample-exact and back to back without a glitch:
//! * the start: a decoder starting mid-stream needs 80 ms to converge (RFC 7845 §4.6), so a
//!   segment begins with the previous segment's last 4 packets as pre-roll, which its
//!   pre-skip discards along with the encoder's lookahead;
//! * the end: the encoder's output lags its input by the lookahead, so a segment ends with
//!   the next segment's first packet, trimmed by the last granule position to that lag.
//!
//! Crash safety: pages are appended to a spool file as they complete (every 200 ms); at the
//! segment's end the file is uploaded and removed only once the store has it. Failed uploads
//! stay and are retried with backoff; files left by a crash are sealed and uploaded at the
//! next start.
//!
//! The engine never waits: it hands packets over a bounded channel with `try_send`, and a
//! full channel drops the packet and counts it ([`Recorder::dropped_packets`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use shared::store::ObjectStore;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::OutputError;
use super::encoder::PACKET_SAMPLES;
use super::ogg::{OggWriter, OpusHeaders};
use super::spool::{self, Outcome, Uploader};
use crate::metrics::Metrics;

/// Packets a segment starts with to let the decoder converge: 80 ms (RFC 7845 §4.6).
const PREROLL_PACKETS: usize = 4;

/// How the recorder cuts, spools and uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Names the recordings: `recordings/<channel>/...`, and the spool subdirectory.
    /// Letters, digits, `-`, `_` and `.`. Default `main`.
    pub channel: String,
    /// Segment length; boundaries fall on multiples of it since midnight UTC, so it must
    /// divide a day. `RECORDING_SEGMENT`, default 1 h.
    pub segment: Duration,
    /// Local directory for segments being recorded or waiting for upload; it must survive
    /// a restart of the process for crash recovery to work. `RECORDING_SPOOL_DIR`, default
    /// `spool/recordings` (relative to the working directory).
    pub spool_dir: PathBuf,
    /// Packets the engine may be ahead of the recorder before packets are dropped.
    /// Default 500 (10 s).
    pub queue_packets: usize,
    /// Packets per Ogg page in the spool file: what a crash can lose. Default 10 (200 ms).
    pub packets_per_page: usize,
    /// First delay between upload attempts; it doubles up to `retry_max`. Defaults 1 s and
    /// 5 min.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            channel: "main".to_owned(),
            segment: Duration::from_secs(3600),
            spool_dir: PathBuf::from("spool/recordings"),
            queue_packets: 500,
            packets_per_page: OggWriter::DEFAULT_PACKETS_PER_PAGE,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
        }
    }
}

impl RecordingConfig {
    /// Checks what the type cannot: the channel's spelling and the segment length.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.channel;
        let channel_ok = !c.is_empty()
            && !c.starts_with('.')
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !channel_ok {
            return Err(format!(
                "recording channel {c:?}: use letters, digits, '-', '_' and '.'"
            ));
        }
        validate_segment(self.segment)
    }
}

/// A segment length must be whole seconds that divide a day, so that boundaries fall at the
/// same clock times every day (on the hour, on the half hour, ...).
pub fn validate_segment(segment: Duration) -> Result<(), String> {
    let secs = segment.as_secs();
    if segment.subsec_nanos() != 0 || secs == 0 || 86_400 % secs != 0 {
        return Err(format!(
            "segment length {segment:?}: must be whole seconds dividing 24 h (1h, 30m, 10s, ...)"
        ));
    }
    Ok(())
}

/// The segment being recorded, for the on-air log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSegment {
    /// Object key the segment will be uploaded under.
    pub key: String,
    /// Where it will be, as the store names it (`gs://...`).
    pub uri: String,
    /// Timestamp of its first packet: audio at time `t` is at `t - started_at` in the file.
    pub started_at: DateTime<Utc>,
}

/// What [`Recorder::finish`] got done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinishReport {
    /// Segments uploaded while finishing.
    pub uploaded: usize,
    /// Segment files still in the spool (their upload failed or ran out of time); the next
    /// start uploads them.
    pub left_in_spool: usize,
}

/// Handle on the recorder task. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    commands: mpsc::Sender<Command>,
    current: watch::Receiver<Option<RecordingSegment>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("current", &*self.current.borrow())
            .field("dropped", &self.dropped_packets())
            .finish_non_exhaustive()
    }
}

enum Command {
    Packet {
        packet: Bytes,
        at: DateTime<Utc>,
    },
    Finish {
        within: Duration,
        done: oneshot::Sender<FinishReport>,
    },
}

impl Recorder {
    /// Starts the recorder task on the current tokio runtime. Spool files left by a
    /// previous run are sealed and uploaded first (in the background).
    ///
    /// `headers` must be those of the encoder whose packets will be recorded: their
    /// pre-skip is the encoder's lookahead.
    pub async fn start(
        config: RecordingConfig,
        headers: OpusHeaders,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Recorder, OutputError> {
        config.validate().map_err(OutputError::Config)?;
        let dir = config.spool_dir.join(&config.channel);
        let spool_error = |source| OutputError::Spool {
            path: dir.clone(),
            source,
        };
        tokio::fs::create_dir_all(&dir).await.map_err(spool_error)?;
        let leftovers = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || spool::waiting_files(&dir))
                .await
                .map_err(|e| spool_error(std::io::Error::other(e)))?
                .map_err(spool_error)?
        };

        let uploader = Uploader {
            store,
            metrics,
            channel: config.channel.clone(),
            slots: Arc::new(Semaphore::new(2)),
            retry_min: config.retry_min,
            retry_max: config.retry_max,
        };
        let mut uploads = JoinSet::new();
        if !leftovers.is_empty() {
            tracing::warn!(
                files = leftovers.len(),
                dir = %dir.display(),
                "recording segments left by a previous run: sealing and uploading them"
            );
        }
        for path in leftovers {
            let uploader = uploader.clone();
            uploads.spawn(async move { uploader.upload(path).await });
        }

        let (commands, rx) = mpsc::channel(config.queue_packets.max(1));
        let (current_tx, current) = watch::channel(None);
        let task = RecorderTask {
            segment_ms: config.segment.as_millis() as i64,
            config,
            dir,
            lookahead: headers.pre_skip,
            headers,
            uploader,
            uploads,
            open: None,
            recent: VecDeque::with_capacity(PREROLL_PACKETS),
            unwritable: None,
            current: current_tx,
        };
        tokio::spawn(task.run(rx));
        Ok(Recorder {
            commands,
            current,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hands a packet (one 20 ms frame) stamped `at` to the recorder. Never waits: when the
    /// recorder is behind, the packet is dropped, counted, and `false` returned.
    pub fn record(&self, packet: Bytes, at: DateTime<Utc>) -> bool {
        match self.commands.try_send(Command::Packet { packet, at }) {
            Ok(()) => true,
            Err(e) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // The first drop of a run, then one line per 10 s of dropped audio.
                if dropped % 500 == 1 {
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => "recorder behind",
                        mpsc::error::TrySendError::Closed(_) => "recorder finished",
                    };
                    tracing::warn!(dropped, reason, "recording: packets dropped");
                }
                false
            }
        }
    }

    /// Packets dropped because the recorder was behind (or already finished).
    pub fn dropped_packets(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The segment being recorded now, if any.
    pub fn current_segment(&self) -> Option<RecordingSegment> {
        self.current.borrow().clone()
    }

    /// A handle that follows the current segment, for tasks that outlive the borrow (the
    /// director writes it into the on-air log while the engine thread owns the recorder).
    pub fn segments(&self) -> watch::Receiver<Option<RecordingSegment>> {
        self.current.clone()
    }

    /// Ends recording at shutdown: closes the open segment and waits up to `within` for
    /// the uploads still running. What is not uploaded by then stays in the spool for the
    /// next start. Packets recorded after this are dropped.
    pub async fn finish(&self, within: Duration) -> FinishReport {
        let (done, report) = oneshot::channel();
        if self
            .commands
            .send(Command::Finish { within, done })
            .await
            .is_err()
        {
            return FinishReport::default();
        }
        report.await.unwrap_or_default()
    }
}

/// The segment being written.
struct OpenSegment {
    /// Which multiple of the segment length since the epoch it covers.
    index: i64,
    path: PathBuf,
    file: tokio::fs::File,
    writer: OggWriter,
    info: RecordingSegment,
}

struct RecorderTask {
    config: RecordingConfig,
    segment_ms: i64,
    dir: PathBuf,
    headers: OpusHeaders,
    /// The encoder's lookahead in samples.
    lookahead: u16,
    uploader: Uploader,
    uploads: JoinSet<Outcome>,
    open: Option<OpenSegment>,
    /// The last packets recorded: the next segment's pre-roll.
    recent: VecDeque<Bytes>,
    /// A segment whose spool file could not be written: its packets are skipped rather than
    /// failing on every one.
    unwritable: Option<i64>,
    current: watch::Sender<Option<RecordingSegment>>,
}

impl RecorderTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Packet { packet, at }) => self.record(packet, at).await,
                    Some(Command::Finish { within, done }) => {
                        let report = self.finish(Some(within)).await;
                        let _ = done.send(report);
                        return;
                    }
                    // Every handle dropped without finishing: close and upload anyway.
                    None => {
                        self.finish(None).await;
                        return;
                    }
                },
                // Reap finished uploads as they go (they log for themselves).
                Some(_) = self.uploads.join_next(), if !self.uploads.is_empty() => {}
            }
        }
    }

    async fn record(&mut self, packet: Bytes, at: DateTime<Utc>) {
        self.write(&packet, at).await;
        if self.recent.len() == PREROLL_PACKETS {
            self.recent.pop_front();
        }
        self.recent.push_back(packet);
    }

    async fn write(&mut self, packet: &Bytes, at: DateTime<Utc>) {
        let index = at.timestamp_millis().div_euclid(self.segment_ms);
        if self.open.as_ref().is_some_and(|open| open.index != index) {
            let keep = u32::from(self.lookahead);
            self.close(Some((packet, keep))).await;
        }
        if self.unwritable == Some(index) {
            return;
        }
        if self.open.is_none() {
            match self.open_segment(index, at).await {
                Ok(open) => self.open = Some(open),
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), error = %e,
                        "recording: cannot create a spool file; skipping this segment");
                    self.unwritable = Some(index);
                    return;
                }
            }
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let page = match open.writer.push(packet, PACKET_SAMPLES) {
            Ok(Some(page)) => page,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "recording: packet skipped");
                return;
            }
        };
        if let Err(e) = open.file.write_all(&page).await {
            tracing::error!(file = %open.path.display(), error = %e,
                "recording: spool write failed; closing the segment early");
            self.unwritable = Some(index);
            self.close(None).await;
        }
    }

    async fn open_segment(
        &mut self,
        index: i64,
        at: DateTime<Utc>,
    ) -> std::io::Result<OpenSegment> {
        let start = at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at);
        let (path, mut file) = spool::create(&self.dir, start).await?;
        let preroll = self.recent.len() as u16 * PACKET_SAMPLES as u16;
        let headers = OpusHeaders {
            pre_skip: self.lookahead + preroll,
            ..self.headers.clone()
        };
        let mut writer = OggWriter::new(rand::random(), &headers)
            .with_packets_per_page(self.config.packets_per_page);
        let mut start_pages = writer.headers().to_vec();
        for packet in &self.recent {
            if let Ok(Some(page)) = writer.push(packet, PACKET_SAMPLES) {
                start_pages.extend_from_slice(&page);
            }
        }
        if let Err(e) = file.write_all(&start_pages).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let key = spool::key_for(&self.config.channel, stem)
            .ok_or_else(|| std::io::Error::other(format!("unexpected spool name {stem}")))?;
        let info = RecordingSegment {
            uri: self.uploader.store.uri(&key),
            key,
            started_at: at,
        };
        tracing::info!(uri = info.uri, file = %path.display(), "recording segment started");
        self.current.send_replace(Some(info.clone()));
        Ok(OpenSegment {
            index,
            path,
            file,
            writer,
            info,
        })
    }

    /// Writes the open segment's last page, syncs the file and starts its upload.
    async fn close(&mut self, tail: Option<(&[u8], u32)>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        self.current.send_replace(None);
        let last = open.writer.finish(tail);
        let written = async {
            open.file.write_all(&last).await?;
            open.file.flush().await?;
            open.file.sync_all().await
        }
        .await;
        if let Err(e) = written {
            // The upload seals whatever made it to disk.
            tracing::error!(file = %open.path.display(), error = %e,
                "recording: could not complete the segment file");
        }
        drop(open.file);
        tracing::info!(uri = open.info.uri, "recording segment closed; uploading");
        let uploader = self.uploader.clone();
        self.uploads
            .spawn(async move { uploader.upload(open.path).await });
    }

    /// Closes the open segment and waits for the uploads (without limit if `within` is
    /// `None`); uploads still running at the deadline are abandoned, their files kept.
    async fn finish(&mut self, within: Option<Duration>) -> FinishReport {
        self.close(None).await;
        let deadline = within.map(|d| tokio::time::Instant::now() + d);
        let mut report = FinishReport::default();
        loop {
            let next = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.uploads.join_next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            tracing::warn!(
                                uploads = self.uploads.len(),
                                "recording: uploads still failing at shutdown; their files stay in the spool"
                            );
                            self.uploads.abort_all();
                            break;
                        }
                    }
                }
                None => self.uploads.join_next().await,
            };
            match next {
                Some(Ok(Outcome::Uploaded)) => report.uploaded += 1,
                Some(_) => {}
                None => break,
            }
        }
        // Aborted uploads must be gone before their files are counted.
        while self.uploads.join_next().await.is_some() {}
        report.left_in_spool = spool::waiting_files(&self.dir).map_or(0, |f| f.len());
        report
    }
}
