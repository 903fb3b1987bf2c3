//! Clients that hang up at any point of a request: before, while and after the submission
//! commits. Nothing may be left half-done: no transaction left open on a pooled connection
//! (the next request would run inside it), no committed submission without its message.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::Postgres;

use crate::helpers::*;

#[tokio::test]
async fn clients_that_hang_up_anywhere_leave_no_open_transaction_and_no_silent_submission() {
    // A Postgres of its own, so its log holds this test's warnings only.
    let pg = Postgres::start().await.expect("postgres");
    let db_url = pg.create_database().await.expect("database");
    let mut app = spawn_with(|env| {
        env.insert("DATABASE_URL".into(), db_url.clone());
        // Few connections: a connection handed back inside a transaction is soon reused.
        env.insert("DATABASE_MAX_CONNECTIONS".into(), "3".into());
    })
    .await;

    // Each client gives up after a random 0-150 ms: some before the body is read, some
    // during the insert, some after the commit and before the answer.
    let mut rng = StdRng::seed_from_u64(13);
    let give_up: Vec<Duration> = (0..400)
        .map(|_| Duration::from_micros(rng.random_range(0..150_000)))
        .collect();
    let url = app.url("/v1/submissions");
    let answered: usize = futures::stream::iter(give_up.into_iter().enumerate())
        .map(|(i, after)| {
            let request = app
                .client
                .post(&url)
                .json(&serde_json::json!({ "text": format!("hang-up {i}") }))
                .send();
            async move { usize::from(tokio::time::timeout(after, request).await.is_ok()) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();

    // The pool still serves: each of these gets its own, clean transaction.
    let after = app.burst("after the hang-ups", 40).await;
    assert_eq!(after.len(), 40);

    // Every submission that committed is announced, by its request or by the relay.
    let committed: HashSet<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM submission")
        .fetch_all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    app.expect_messages(&committed, Duration::from_secs(60))
        .await;
    println!(
        "400 clients hanging up at random: {answered} answered, {} committed, all announced",
        committed.len() - after.len()
    );
    app.stop().await;

    let log = std::fs::read_to_string(pg.dir().expect("started here").join("postgres.log"))
        .expect("postgres.log");
    for warning in [
        "there is no transaction in progress",
        "there is already a transaction in progress",
    ] {
        assert!(!log.contains(warning), "Postgres logged {warning:?}");
    }
}
