//! Context for the DJ: past aired submissions closest in meaning to the one on air, found
//! with pgvector in whichever embedding space the submission was embedded in.

use shared::submission::{SubmissionId, repository};
use sqlx::PgPool;

/// Up to `limit` words of earlier aired submissions of the channel, most similar first.
pub async fn related(
    pool: &PgPool,
    id: SubmissionId,
    channel: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let words = repository::aired_near(&mut tx, id, channel, limit).await?;
    tx.commit().await?;
    Ok(words)
}
