//! Near-duplicate search on clustered synthetic vectors against real Postgres + pgvector:
//! the query runs on the HNSW index, and with most rows filtered out (other channel, outside
//! the window) it still finds what an exact scan finds.

use std::time::Duration;

use embed::duplicates;
use models::embedding::Space;
use pgvector::Vector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::submission::SubmissionId;
use testkit::Postgres;

const DIMS: usize = 384;
const CLUSTERS: usize = 40;
const PER_CLUSTER: usize = 50;
const QUERIES: usize = 200;
const WINDOW: Duration = Duration::from_secs(3600);
/// Random rows on another channel: a table large enough that the planner prefers the HNSW
/// index over a sequential scan on its own (it rightly scans a table of a few thousand
/// rows), and a filter that removes almost every row the index walks past.
const FILLER: i64 = 20_000;

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller: enough for test data.
    let (u1, u2): (f32, f32) = (rng.random_range(1e-6..1.0), rng.random());
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn around(rng: &mut StdRng, centre: &[f32], spread: f32) -> Vec<f32> {
    normalise(centre.iter().map(|c| c + spread * gaussian(rng)).collect())
}

async fn database() -> sqlx::PgPool {
    let pg = Postgres::shared().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.create_database().await.unwrap())
        .await
        .unwrap();
    shared::db::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query("INSERT INTO channel (id, name, livekit_room) VALUES ('other', 'Other', 'other')")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// Loads the rows, three in four of them invisible to a query on `main` now: on `other`,
/// or on `main` but two hours old.
async fn load(pool: &sqlx::PgPool, rng: &mut StdRng, centres: &[Vec<f32>]) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("DROP INDEX submission_embedding_local_hnsw")
        .execute(&mut *tx)
        .await
        .unwrap();
    for (c, centre) in centres.iter().enumerate() {
        for i in 0..PER_CLUSTER {
            let id = SubmissionId::new();
            let (channel, age_s) = match (c * PER_CLUSTER + i) % 4 {
                0 => ("main", 0.0),
                1 => ("main", 7200.0),
                _ => ("other", 0.0),
            };
            sqlx::query(
                "INSERT INTO submission (id, channel_id, user_id, kind, text, status) \
                 VALUES ($1, $2, 'u', 'text', 'x', 'embedded')",
            )
            .bind(id)
            .bind(channel)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO submission_embedding_local \
                 (submission_id, channel_id, model, embedding, created_at) \
                 VALUES ($1, $2, 'synthetic', $3, now() - make_interval(secs => $4))",
            )
            .bind(id)
            .bind(channel)
            .bind(Vector::from(around(rng, centre, 0.02)))
            .bind(age_s)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    sqlx::query(
        "WITH ids AS (SELECT gen_random_uuid() AS id, g FROM generate_series(1, $1) g), \
         s AS (INSERT INTO submission (id, channel_id, user_id, kind, text, status) \
               SELECT id, 'other', 'u', 'text', 'x', 'embedded' FROM ids) \
         INSERT INTO submission_embedding_local (submission_id, channel_id, model, embedding) \
         SELECT id, 'other', 'filler', \
                (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE g > 0)::vector \
         FROM ids",
    )
    .bind(FILLER)
    .execute(&mut *tx)
    .await
    .unwrap();
    // Rows first, index after: much faster than growing the graph row by row.
    sqlx::query(
        "CREATE INDEX submission_embedding_local_hnsw \
         ON submission_embedding_local USING hnsw (embedding vector_cosine_ops)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE submission_embedding_local")
        .execute(pool)
        .await
        .unwrap();
}

/// The nearest visible row by a sequential scan: the ground truth.
async fn exact(pool: &sqlx::PgPool, v: &Vector) -> Option<SubmissionId> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_indexscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let sql = duplicates::nearest_sql(Space::Local);
    let row: Option<(SubmissionId, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(v)
        .bind("main")
        .bind(WINDOW.as_secs_f64())
        .bind(SubmissionId::new())
        .fetch_optional(&mut *tx)
        .await
        .unwrap();
    row.map(|(id, _)| id)
}

#[tokio::test]
async fn filtered_hnsw_search_uses_the_index_and_matches_exact_search() {
    let pool = database().await;
    let mut rng = StdRng::seed_from_u64(24);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| normalise((0..DIMS).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    load(&pool, &mut rng, &centres).await;

    // The plan: an index scan on the HNSW index, not a sort of a sequential scan.
    let probe = Vector::from(around(&mut rng, &centres[0], 0.02));
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL hnsw.iterative_scan = strict_order")
        .execute(&mut *tx)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN {}",
        duplicates::nearest_sql(Space::Local)
    )))
    .bind(&probe)
    .bind("main")
    .bind(WINDOW.as_secs_f64())
    .bind(SubmissionId::new())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using submission_embedding_local_hnsw"),
        "{plan}"
    );
    tx.rollback().await.unwrap();

    let mut hits = 0;
    for q in 0..QUERIES {
        let v = Vector::from(around(&mut rng, &centres[q % CLUSTERS], 0.02));
        let truth = exact(&pool, &v).await;
        assert!(truth.is_some(), "every cluster has visible rows");
        let mut conn = pool.begin().await.unwrap();
        let found = duplicates::nearest(
            &mut conn,
            Space::Local,
            "main",
            SubmissionId::new(),
            &v,
            WINDOW,
        )
        .await
        .unwrap();
        // Never empty although three in four rows are filtered out: the iterative scan
        // keeps going where a plain HNSW scan stops at ef_search candidates.
        let (id, similarity) = found.expect("a visible neighbour");
        assert!(similarity > 0.5, "{similarity}");
        if Some(id) == truth {
            hits += 1;
        }
    }
    let recall = hits as f64 / QUERIES as f64;
    println!("recall@1 against exact search: {recall:.3} ({hits}/{QUERIES})");
    assert!(recall >= 0.95, "recall@1 {recall}");
}
