//! The `submission` table's one owner: every statement that reads or writes it, in the order
//! of a submission's life.
//!
//! ```text
//! ingest      insert_ingested ─ find_for_user ─ find_by_key
//! stages      load ─ transition (guarded) ─ store_transcript ─ mark_duplicate_of ─ held
//! director    status_on_channel ─ take_next ─ requeue_interrupted ─ queued_count ─ aired_near
//! ```
//!
//! - Every statement is compile-checked (`query!`) against the schema in `migrations/`; the
//!   checked shapes are committed in `.sqlx/` so builds need no database (`dev/sqlx-prepare`
//!   writes them again after a query or the schema changes).
//! - `status` and `kind` are read as [`Status`] and [`SubmissionKind`]: a value the enums do
//!   not know is a decode error, never a guess.
//! - A status only changes through [`transition`] (guarded by the expected status), or
//!   through `take_next` and `requeue_interrupted`, the director's two moves of many rows.
//! - Functions take any executor, so a caller chooses the pool or its own transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::{
    IdempotencyKey, Status, SubmissionId, SubmissionKind, SubmissionText, Transition, UserId,
};

/// A submission as ingest writes it, `ingested` from the start.
#[derive(Debug)]
pub struct NewSubmission<'a> {
    pub id: SubmissionId,
    pub channel: &'a str,
    pub user: &'a UserId,
    pub content: NewContent<'a>,
    pub idempotency_key: Option<&'a IdempotencyKey>,
    /// The request's fingerprint: a keyed retry must match it.
    pub request_hash: &'a [u8],
    pub trace_id: &'a str,
}

/// What the listener sent.
#[derive(Debug)]
pub enum NewContent<'a> {
    Text(&'a SubmissionText),
    /// A stored recording: its URI, MIME type and probed length.
    Audio {
        path: &'a str,
        mime: &'a str,
        duration_ms: i32,
    },
}

impl NewContent<'_> {
    pub fn kind(&self) -> SubmissionKind {
        match self {
            NewContent::Text(_) => SubmissionKind::Text,
            NewContent::Audio { .. } => SubmissionKind::Audio,
        }
    }
}

/// Inserts a submission; `None` when the user already sent one with the same idempotency key
/// (the earlier one stands, nothing is written).
pub async fn insert_ingested(
    conn: &mut PgConnection,
    new: &NewSubmission<'_>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let (text, audio_path, audio_mime, duration_ms) = match new.content {
        NewContent::Text(text) => (Some(text.as_str()), None, None, None),
        NewContent::Audio {
            path,
            mime,
            duration_ms,
        } => (None, Some(path), Some(mime), Some(duration_ms)),
    };
    sqlx::query_scalar!(
        "INSERT INTO submission (id, channel_id, user_id, kind, text, audio_path, audio_mime, \
         audio_duration_ms, status, idempotency_key, request_hash, trace_id, ingested_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ingested', $9, $10, $11, now()) \
         ON CONFLICT ON CONSTRAINT submission_idempotency DO NOTHING \
         RETURNING received_at",
        new.id.0,
        new.channel,
        new.user.as_str(),
        new.content.kind().as_str(),
        text,
        audio_path,
        audio_mime,
        duration_ms,
        new.idempotency_key.map(IdempotencyKey::as_str),
        new.request_hash,
        new.trace_id,
    )
    .fetch_optional(conn)
    .await
}

/// What a caller may see of their own submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub id: SubmissionId,
    pub kind: SubmissionKind,
    pub status: Status,
    pub received_at: DateTime<Utc>,
    pub failure_reason: Option<String>,
}

/// The submission `id` if `user` sent it.
pub async fn find_for_user(
    exec: impl PgExecutor<'_>,
    id: SubmissionId,
    user: &UserId,
) -> Result<Option<Summary>, sqlx::Error> {
    sqlx::query_as!(
        Summary,
        r#"SELECT id AS "id: SubmissionId", kind AS "kind: SubmissionKind",
                  status AS "status: Status", received_at, failure_reason
           FROM submission WHERE id = $1 AND user_id = $2"#,
        id.0,
        user.as_str(),
    )
    .fetch_optional(exec)
    .await
}

/// The submission `user` sent with `key`, with the fingerprint of that first request.
pub async fn find_by_key(
    exec: impl PgExecutor<'_>,
    user: &UserId,
    key: &IdempotencyKey,
) -> Result<Option<(Summary, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id AS "id: SubmissionId", kind AS "kind: SubmissionKind",
                  status AS "status: Status", received_at, failure_reason, request_hash
           FROM submission WHERE user_id = $1 AND idempotency_key = $2"#,
        user.as_str(),
        key.as_str(),
    )
    .fetch_optional(exec)
    .await?;
    Ok(row.map(|r| {
        let summary = Summary {
            id: r.id,
            kind: r.kind,
            status: r.status,
            received_at: r.received_at,
            failure_reason: r.failure_reason,
        };
        (summary, r.request_hash.unwrap_or_default())
    }))
}

/// What a pipeline stage reads of a submission.
#[derive(Debug, Clone)]
pub struct SubmissionRow {
    pub id: SubmissionId,
    pub status: Status,
    pub kind: SubmissionKind,
    pub channel: String,
    pub text: Option<String>,
    pub transcript: Option<String>,
    pub audio_path: Option<String>,
    pub audio_mime: Option<String>,
}

impl SubmissionRow {
    /// The words of the submission: its text, or for audio its transcript once there is one.
    pub fn words(&self) -> Option<&str> {
        match self.kind {
            SubmissionKind::Text => self.text.as_deref(),
            SubmissionKind::Audio => self.transcript.as_deref(),
        }
    }
}

pub async fn load(
    exec: impl PgExecutor<'_>,
    id: SubmissionId,
) -> Result<Option<SubmissionRow>, sqlx::Error> {
    sqlx::query_as!(
        SubmissionRow,
        r#"SELECT id AS "id: SubmissionId", status AS "status: Status",
                  kind AS "kind: SubmissionKind", channel_id AS channel, text, transcript,
                  audio_path, audio_mime
           FROM submission WHERE id = $1"#,
        id.0,
    )
    .fetch_optional(exec)
    .await
}

/// Moves a submission `from -> to` with one guarded UPDATE, stamping `<to>_at`, and records
/// `failure_reason` when one is given. Idempotent under redelivery: a second call finds the
/// status moved and changes nothing.
///
/// # Panics
/// If the status machine does not allow `from -> to` (a bug in the caller).
pub async fn transition(
    exec: impl PgExecutor<'_>,
    id: SubmissionId,
    from: Status,
    to: Status,
    failure_reason: Option<&str>,
) -> Result<Transition, sqlx::Error> {
    assert!(from.can_become(to), "illegal transition {from} -> {to}");
    // One static statement for every target status: the CASEs stamp only `<to>_at`.
    let done = sqlx::query!(
        "UPDATE submission SET status = $3, \
           ingested_at = CASE WHEN $3 = 'ingested' THEN now() ELSE ingested_at END, \
           embedded_at = CASE WHEN $3 = 'embedded' THEN now() ELSE embedded_at END, \
           approved_at = CASE WHEN $3 = 'approved' THEN now() ELSE approved_at END, \
           held_at = CASE WHEN $3 = 'held' THEN now() ELSE held_at END, \
           rejected_at = CASE WHEN $3 = 'rejected' THEN now() ELSE rejected_at END, \
           duplicate_at = CASE WHEN $3 = 'duplicate' THEN now() ELSE duplicate_at END, \
           queued_at = CASE WHEN $3 = 'queued' THEN now() ELSE queued_at END, \
           on_air_at = CASE WHEN $3 = 'on_air' THEN now() ELSE on_air_at END, \
           aired_at = CASE WHEN $3 = 'aired' THEN now() ELSE aired_at END, \
           failed_at = CASE WHEN $3 = 'failed' THEN now() ELSE failed_at END, \
           failure_reason = COALESCE($4, failure_reason) \
         WHERE id = $1 AND status = $2",
        id.0,
        from.as_str(),
        to.as_str(),
        failure_reason,
    )
    .execute(exec)
    .await?;
    Ok(if done.rows_affected() == 1 {
        Transition::Applied
    } else {
        Transition::NotApplicable
    })
}

/// Keeps the transcript of an audio submission that is still `ingested`; false when it has
/// moved on meanwhile (nothing is written).
pub async fn store_transcript(
    exec: impl PgExecutor<'_>,
    id: SubmissionId,
    transcript: &str,
    transcribed_by: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE submission SET transcript = $2, transcribed_by = $3 \
         WHERE id = $1 AND status = 'ingested'",
        id.0,
        transcript,
        transcribed_by,
    )
    .execute(exec)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records which earlier submission `id` repeats.
pub async fn mark_duplicate_of(
    exec: impl PgExecutor<'_>,
    id: SubmissionId,
    original: SubmissionId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE submission SET duplicate_of = $2 WHERE id = $1",
        id.0,
        original.0,
    )
    .execute(exec)
    .await?;
    Ok(())
}

/// A held submission as the operators' review queue lists it, with the latest moderation
/// result that held it.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: SubmissionId,
    pub channel_id: String,
    pub kind: SubmissionKind,
    /// The text, or an audio submission's transcript.
    pub words: Option<String>,
    pub audio_path: Option<String>,
    pub held_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub triggered: Option<Vec<String>>,
    pub scores: Option<serde_json::Value>,
}

/// The oldest `limit` held submissions.
pub async fn held(exec: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Held>, sqlx::Error> {
    sqlx::query_as!(
        Held,
        r#"SELECT s.id AS "id: SubmissionId", s.channel_id, s.kind AS "kind: SubmissionKind",
                  coalesce(s.text, s.transcript) AS words, s.audio_path, s.held_at,
                  m.decided_by AS "decided_by?", m.triggered AS "triggered?",
                  m.scores AS "scores?"
           FROM submission s
           LEFT JOIN LATERAL (SELECT decided_by, triggered, scores FROM moderation_result
                              WHERE submission_id = s.id ORDER BY created_at DESC LIMIT 1) m
             ON true
           WHERE s.status = 'held' ORDER BY s.held_at, s.id LIMIT $1"#,
        limit,
    )
    .fetch_all(exec)
    .await
}

/// The status of submission `id` if it belongs to `channel`.
pub async fn status_on_channel(
    exec: impl PgExecutor<'_>,
    id: SubmissionId,
    channel: &str,
) -> Result<Option<Status>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT status AS "status: Status" FROM submission WHERE id = $1 AND channel_id = $2"#,
        id.0,
        channel,
    )
    .fetch_optional(exec)
    .await
}

/// A submission taken for the air.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: SubmissionId,
    pub kind: SubmissionKind,
    pub text: Option<String>,
    pub transcript: Option<String>,
    pub audio_path: Option<String>,
    /// Who approved it last: `operator:<email>` when a person let it through as it is.
    pub approved_by: Option<String>,
}

impl Queued {
    /// Whether an operator approved its words as they are (personal data included).
    pub fn operator_approved(&self) -> bool {
        self.approved_by
            .as_deref()
            .is_some_and(|by| by.starts_with("operator:"))
    }

    /// What the listener said: their text, or the transcript of their recording.
    pub fn words(&self) -> &str {
        self.text
            .as_deref()
            .or(self.transcript.as_deref())
            .unwrap_or("")
    }
}

/// Takes the oldest queued submission of `channel` for the air (`queued -> on_air`), skipping
/// rows another transaction holds.
pub async fn take_next(
    exec: impl PgExecutor<'_>,
    channel: &str,
) -> Result<Option<Queued>, sqlx::Error> {
    sqlx::query_as!(
        Queued,
        r#"UPDATE submission SET status = 'on_air', on_air_at = now()
           WHERE id = (SELECT id FROM submission WHERE channel_id = $1 AND status = 'queued'
                       ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id AS "id: SubmissionId", kind AS "kind: SubmissionKind", text,
                     transcript, audio_path,
                     (SELECT decided_by FROM moderation_result
                      WHERE submission_id = submission.id AND outcome = 'approved'
                      ORDER BY created_at DESC, id DESC LIMIT 1) AS approved_by"#,
        channel,
    )
    .fetch_optional(exec)
    .await
}

/// Queues again what a previous run of the director left on air (`on_air -> queued`), in the
/// place it had: `queued_at` is kept, so it plays next, from the start.
pub async fn requeue_interrupted(
    exec: impl PgExecutor<'_>,
    channel: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE submission SET status = 'queued' WHERE channel_id = $1 AND status = 'on_air'",
        channel,
    )
    .execute(exec)
    .await?;
    Ok(done.rows_affected())
}

/// How many submissions of `channel` wait to be played.
pub async fn queued_count(exec: impl PgExecutor<'_>, channel: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM submission WHERE channel_id = $1 AND status = 'queued'"#,
        channel,
    )
    .fetch_one(exec)
    .await
}

/// The words of up to `limit` aired submissions of `channel` closest in meaning to `id`, in
/// the vector space `id` was embedded in (the local model's or OpenAI's), nearest first.
/// Runs in a transaction of its own, which the scan setting below needs.
pub async fn aired_near(
    pool: &PgPool,
    id: SubmissionId,
    channel: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let conn = &mut *tx;
    // A filtered HNSW scan returns at most ef_search candidates before the filter; keep
    // scanning until enough aired ones are found (for this transaction only).
    sqlx::query!("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        .fetch_one(&mut *conn)
        .await?;
    // One statement per vector space: the tables differ in their vectors' dimensions.
    let local = sqlx::query_scalar!(
        r#"SELECT COALESCE(s.text, s.transcript) AS "words!" FROM submission_embedding_local e
           JOIN submission s ON s.id = e.submission_id
           WHERE e.channel_id = $2 AND e.submission_id <> $1 AND s.status = 'aired'
             AND COALESCE(s.text, s.transcript) IS NOT NULL
             AND EXISTS (SELECT 1 FROM submission_embedding_local WHERE submission_id = $1)
           ORDER BY e.embedding <=> (SELECT embedding FROM submission_embedding_local
                                     WHERE submission_id = $1)
           LIMIT $3"#,
        id.0,
        channel,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let words = if !local.is_empty() {
        local
    } else {
        sqlx::query_scalar!(
            r#"SELECT COALESCE(s.text, s.transcript) AS "words!" FROM submission_embedding e
           JOIN submission s ON s.id = e.submission_id
           WHERE e.channel_id = $2 AND e.submission_id <> $1 AND s.status = 'aired'
             AND COALESCE(s.text, s.transcript) IS NOT NULL
             AND EXISTS (SELECT 1 FROM submission_embedding WHERE submission_id = $1)
           ORDER BY e.embedding <=> (SELECT embedding FROM submission_embedding
                                     WHERE submission_id = $1)
           LIMIT $3"#,
            id.0,
            channel,
            limit,
        )
        .fetch_all(&mut *conn)
        .await?
    };
    tx.commit().await?;
    Ok(words)
}

/// A submission waiting between two stages for longer than it should.
#[derive(Debug, Clone, PartialEq)]
pub struct Stuck {
    pub id: SubmissionId,
    pub channel: String,
    pub kind: SubmissionKind,
    pub status: Status,
}

/// Up to `limit` submissions in `ingested`, `embedded` or `approved` whose status (or the
/// sweeper's last announcement of it) is older than `age`, oldest first; each is locked
/// (`FOR UPDATE SKIP LOCKED`) and stamped as announced now, in the caller's transaction.
pub async fn claim_stuck(
    conn: &mut sqlx::PgConnection,
    age: std::time::Duration,
    limit: i64,
) -> Result<Vec<Stuck>, sqlx::Error> {
    sqlx::query_as!(
        Stuck,
        r#"UPDATE submission s SET announced_at = now()
           FROM (SELECT id FROM submission
                 WHERE status IN ('ingested', 'embedded', 'approved')
                   AND GREATEST(announced_at,
                                CASE status WHEN 'ingested' THEN ingested_at
                                            WHEN 'embedded' THEN embedded_at
                                            ELSE approved_at END)
                       < now() - make_interval(secs => $1)
                 ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
           WHERE s.id = due.id
           RETURNING s.id AS "id: SubmissionId", s.channel_id AS channel,
                     s.kind AS "kind: SubmissionKind", s.status AS "status: Status""#,
        age.as_secs_f64(),
        limit,
    )
    .fetch_all(conn)
    .await
}
