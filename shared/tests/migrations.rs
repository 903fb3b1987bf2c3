//! The embedded migrations apply to a fresh database and are a no-op on an already
//! migrated one; the schema enforces the design's invariants.

use shared::db::MIGRATOR;
use sqlx::PgPool;
use testkit::Postgres;

async fn fresh_db() -> PgPool {
    let pg = Postgres::shared().await.expect("postgres");
    PgPool::connect(&pg.create_database().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_fresh_and_again() {
    let pool = fresh_db().await;
    MIGRATOR.run(&pool).await.expect("fresh database");
    MIGRATOR
        .run(&pool)
        .await
        .expect("already migrated database");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());

    for table in [
        "channel",
        "schedule",
        "submission",
        "submission_embedding",
        "submission_embedding_local",
        "moderation_result",
        "on_air_log",
        "outbox",
    ] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(exists, "{table}");
    }
    // A full default day: 24 hours of the six blocks.
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM schedule WHERE channel_id = 'main'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(blocks, 24 * 6);
    // Both embedding spaces have an HNSW cosine index.
    let hnsw: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE indexdef LIKE '%USING hnsw (embedding vector_cosine_ops)%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        hnsw,
        [
            "submission_embedding_hnsw",
            "submission_embedding_local_hnsw"
        ]
    );
}

#[tokio::test]
async fn the_migrations_job_applies_everything_once() {
    let pg = Postgres::shared().await.expect("postgres");
    let url = pg.create_database().await.unwrap();
    let env = shared::config::Env::from_pairs([("DATABASE_URL", url.as_str())]);
    let config = shared::db::DbConfig::from_env(&env).unwrap();
    let first = shared::db::migrate(&config).await.expect("fresh database");
    assert_eq!(first, MIGRATOR.iter().count());
    let again = shared::db::migrate(&config)
        .await
        .expect("migrated database");
    assert_eq!(again, 0);
}

#[tokio::test]
async fn schema_enforces_the_invariants() {
    let pool = fresh_db().await;
    MIGRATOR.run(&pool).await.unwrap();
    let insert = |id: uuid::Uuid, user: &str, key: Option<&str>, status: &str| {
        sqlx::query(
            "INSERT INTO submission (id, channel_id, user_id, kind, text, status, idempotency_key) \
             VALUES ($1, 'main', $2, 'text', 'hi', $3, $4)",
        )
        .bind(id)
        .bind(user.to_owned())
        .bind(status.to_owned())
        .bind(key.map(str::to_owned))
        .execute(&pool)
    };
    insert(uuid::Uuid::now_v7(), "u1", Some("k"), "ingested")
        .await
        .unwrap();
    // Idempotency keys are unique per user, and absent keys never collide.
    assert!(
        insert(uuid::Uuid::now_v7(), "u1", Some("k"), "ingested")
            .await
            .is_err()
    );
    insert(uuid::Uuid::now_v7(), "u2", Some("k"), "ingested")
        .await
        .unwrap();
    insert(uuid::Uuid::now_v7(), "u1", None, "ingested")
        .await
        .unwrap();
    insert(uuid::Uuid::now_v7(), "u1", None, "ingested")
        .await
        .unwrap();
    // Unknown statuses and reasonless failures are refused.
    assert!(
        insert(uuid::Uuid::now_v7(), "u1", None, "lost")
            .await
            .is_err()
    );
    assert!(
        insert(uuid::Uuid::now_v7(), "u1", None, "failed")
            .await
            .is_err()
    );
    // Vectors of the wrong dimension are refused; cosine distance works.
    let id = uuid::Uuid::now_v7();
    insert(id, "u3", None, "embedded").await.unwrap();
    let wrong = sqlx::query(
        "INSERT INTO submission_embedding_local (submission_id, channel_id, model, embedding) VALUES ($1, 'main', 'm', '[1,2,3]')",
    )
    .bind(id)
    .execute(&pool)
    .await;
    assert!(wrong.is_err());
    let v = format!("[{}]", vec!["0.5"; 384].join(","));
    sqlx::query(
        "INSERT INTO submission_embedding_local (submission_id, channel_id, model, embedding) VALUES ($1, 'main', 'm', $2::vector)",
    )
    .bind(id)
    .bind(&v)
    .execute(&pool)
    .await
    .unwrap();
    let d: f64 =
        sqlx::query_scalar("SELECT embedding <=> $1::vector FROM submission_embedding_local")
            .bind(&v)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(d.abs() < 1e-6);
}

#[tokio::test]
async fn guarded_transitions_apply_once() {
    use shared::submission::{Status, SubmissionId, Transition, transition};
    let pool = fresh_db().await;
    MIGRATOR.run(&pool).await.unwrap();
    let id = SubmissionId::new();
    sqlx::query(
        "INSERT INTO submission (id, channel_id, user_id, kind, text, status) VALUES ($1, 'main', 'u', 'text', 'hi', 'ingested')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    // The same transition delivered three times at once applies exactly once.
    let results = futures::future::join_all(
        (0..3).map(|_| transition(&pool, id, Status::Ingested, Status::Embedded, None)),
    )
    .await;
    let applied = results
        .into_iter()
        .filter(|r| *r.as_ref().unwrap() == Transition::Applied)
        .count();
    assert_eq!(applied, 1);
    let stamped: bool =
        sqlx::query_scalar("SELECT embedded_at IS NOT NULL FROM submission WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(stamped);
    let failed = transition(
        &pool,
        id,
        Status::Embedded,
        Status::Failed,
        Some("no provider"),
    )
    .await
    .unwrap();
    assert_eq!(failed, Transition::Applied);
}
