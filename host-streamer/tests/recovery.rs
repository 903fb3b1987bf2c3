//! What a restart finds of a run that stopped mid-item: the submission that was on air plays
//! again from the start, in its place at the head of the queue, and its on-air log row is
//! closed as interrupted instead of staying open for ever.

use host_streamer::director::recover_interrupted;
use shared::submission::repository;
use testkit::Postgres;

#[tokio::test]
async fn an_item_interrupted_on_air_keeps_its_place_and_its_log_row_is_closed() {
    let pg = Postgres::shared().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.create_database().await.unwrap())
        .await
        .unwrap();
    shared::db::MIGRATOR.run(&pool).await.unwrap();
    // Queued 20, 10 and 5 minutes ago; the first was on air when the streamer stopped.
    let mut ids = Vec::new();
    for (minutes, status) in [(20, "on_air"), (10, "queued"), (5, "queued")] {
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO submission (id, channel_id, user_id, kind, text, status, ingested_at, \
             embedded_at, approved_at, queued_at, on_air_at) \
             VALUES ($1, 'main', 'anon:t', 'text', 'hello', $2, now(), now(), now(), \
             now() - make_interval(mins => $3), \
             CASE WHEN $2 = 'on_air' THEN now() - interval '1 minute' END)",
        )
        .bind(id)
        .bind(status)
        .bind(minutes)
        .execute(&pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let row: i64 = sqlx::query_scalar(
        "INSERT INTO on_air_log (channel_id, segment, submission_id, started_at) \
         VALUES ('main', 'QANDA', $1, now() - interval '1 minute') RETURNING id",
    )
    .bind(ids[0])
    .fetch_one(&pool)
    .await
    .unwrap();

    recover_interrupted(&pool, "main").await;

    let mut order = Vec::new();
    while let Some(next) = repository::take_next(&pool, "main").await.unwrap() {
        order.push(next.id.0);
    }
    assert_eq!(
        order, ids,
        "the interrupted item plays first, the others in their order"
    );
    let (ended, interrupted): (bool, bool) =
        sqlx::query_as("SELECT ended_at IS NOT NULL, interrupted FROM on_air_log WHERE id = $1")
            .bind(row)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((ended, interrupted), (true, true));
}
