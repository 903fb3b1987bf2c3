//! Context for the DJ: past aired submissions closest in meaning to the one on air, found
//! with pgvector in whichever embedding space the submission was embedded in.

use shared::submission::SubmissionId;
use sqlx::PgPool;

/// Up to `limit` words of earlier aired submissions of the channel, most similar first.
pub async fn related(
    pool: &PgPool,
    id: SubmissionId,
    channel: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // A filtered HNSW scan returns at most ef_search candidates before the filter; keep
    // scanning until enough aired ones are found.
    sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .execute(&mut *tx)
        .await?;
    let mut words = Vec::new();
    for table in ["submission_embedding_local", "submission_embedding"] {
        // Table names come from this closed list, never from input.
        let sql = format!(
            "SELECT COALESCE(s.text, s.transcript) FROM {table} e \
             JOIN submission s ON s.id = e.submission_id \
             WHERE e.channel_id = $2 AND e.submission_id <> $1 AND s.status = 'aired' \
               AND COALESCE(s.text, s.transcript) IS NOT NULL \
               AND EXISTS (SELECT 1 FROM {table} WHERE submission_id = $1) \
             ORDER BY e.embedding <=> (SELECT embedding FROM {table} WHERE submission_id = $1) \
             LIMIT $3"
        );
        let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(channel)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if !found.is_empty() {
            words = found;
            break;
        }
    }
    tx.commit().await?;
    Ok(words)
}
