//! Near-duplicate detection with pgvector.
//!
//! A submission whose embedding is closer than the threshold (cosine similarity) to one
//! received on the same channel within the window is a duplicate of it. The query orders by
//! distance with a LIMIT so Postgres uses the HNSW index, and filters on columns of the
//! indexed table; `hnsw.iterative_scan = strict_order` makes pgvector keep scanning the index
//! until enough rows pass the filter, so the filter cannot starve the result (without it a
//! filtered HNSW scan returns at most `ef_search` candidates before filtering).

use std::time::Duration;

use models::embedding::Space;
use pgvector::Vector;
use shared::submission::SubmissionId;
use sqlx::PgConnection;

#[derive(Debug, Clone, Copy)]
pub struct DuplicatePolicy {
    /// How far back a submission counts as recent.
    pub window: Duration,
    /// Cosine similarity at or above which a submission is a duplicate.
    pub min_similarity: f32,
}

/// The closest recent submission on `channel` other than `exclude`, with its similarity.
pub async fn nearest(
    conn: &mut PgConnection,
    space: Space,
    channel: &str,
    exclude: SubmissionId,
    vector: &Vector,
    window: Duration,
) -> Result<Option<(SubmissionId, f32)>, sqlx::Error> {
    // For this transaction only: scan the HNSW index past filtered-out rows, in order.
    sqlx::query!(
        r#"SELECT set_config('hnsw.iterative_scan', 'strict_order', true) AS "scan!",
                  set_config('hnsw.ef_search', '100', true) AS "ef!""#
    )
    .fetch_one(&mut *conn)
    .await?;
    let sql = nearest_sql(space);
    // Unchecked: the table depends on the vector space, and the macros cannot type `vector`.
    let row: Option<(SubmissionId, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(vector)
        .bind(channel)
        .bind(window.as_secs_f64())
        .bind(exclude)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(id, distance)| (id, (1.0 - distance) as f32)))
}

/// The near-duplicate query; public so tests can EXPLAIN exactly what runs.
pub fn nearest_sql(space: Space) -> String {
    format!(
        "SELECT submission_id, embedding <=> $1 AS distance FROM {} \
         WHERE channel_id = $2 AND created_at > now() - make_interval(secs => $3) \
         AND submission_id <> $4 \
         ORDER BY embedding <=> $1 LIMIT 1",
        space.submission_table()
    )
}

/// Stores a vector with its model. A redelivered message finds the row there and keeps it.
pub async fn store(
    conn: &mut PgConnection,
    space: Space,
    id: SubmissionId,
    channel: &str,
    model: &str,
    vector: &Vector,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO {} (submission_id, channel_id, model, embedding) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (submission_id) DO NOTHING",
        space.submission_table()
    );
    // Unchecked: the table depends on the vector space, and the macros cannot type `vector`.
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(channel)
        .bind(model)
        .bind(vector)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
