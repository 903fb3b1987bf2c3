//! The on-air log: what played when, with its words and where the recording of that
//! moment is. A row is written when an item starts and closed when it ends, so a crash
//! leaves an open row (ended_at NULL) that says exactly what was on air.

use chrono::{DateTime, Utc};
use shared::submission::SubmissionId;
use sqlx::PgPool;

use super::schedule::Block;

#[derive(Debug, Clone)]
pub struct OnAirLog {
    pool: PgPool,
    channel: String,
}

impl OnAirLog {
    pub fn new(pool: PgPool, channel: impl Into<String>) -> Self {
        OnAirLog {
            pool,
            channel: channel.into(),
        }
    }

    /// Opens a row; returns its id for [`OnAirLog::end`].
    pub async fn start(
        &self,
        block: Block,
        submission: Option<SubmissionId>,
        transcript: Option<&str>,
        recording: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar!(
            "INSERT INTO on_air_log (channel_id, segment, submission_id, started_at, transcript, \
             recording_path) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            self.channel,
            block.as_str(),
            submission.map(|s| s.0),
            at,
            transcript,
            recording,
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Closes, as interrupted, the rows a previous run left open (it stopped mid-item); how
    /// many.
    pub async fn close_interrupted(&self, at: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            "UPDATE on_air_log SET ended_at = $2, interrupted = true \
             WHERE channel_id = $1 AND ended_at IS NULL",
            self.channel,
            at,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Closes a row, with the words actually said (a voice's transcript is known only at
    /// the end).
    pub async fn end(
        &self,
        id: i64,
        transcript: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE on_air_log SET ended_at = $2, transcript = COALESCE($3, transcript) \
             WHERE id = $1",
            id,
            at,
            transcript,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
