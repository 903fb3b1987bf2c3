//! The station end to end: a listener's message goes through ingest, embed and moderate,
//! the host-streamer claims it from `submission-ready`, plays it in a QANDA block with the
//! DJ's reply, marks it aired and logs it with the recording's path.

use std::time::Duration;

use serde_json::json;
use shared::bus::OutgoingMessage;
use shared::message::{Event, SubmissionEvent};
use shared::submission::{SubmissionId, SubmissionKind};
use testkit::pipeline::{Pipeline, PipelineOptions};
use testkit::{FakeGcs, Postgres, PubsubEmulator, wait_until};

/// Every hour one 60-minute QANDA block.
const ALL_QANDA: &str = "DELETE FROM schedule WHERE channel_id = 'main'; \
    INSERT INTO schedule (channel_id, hour, position, block, minutes) \
    SELECT 'main', h, 0, 'QANDA', 60 FROM generate_series(0, 23) AS h;";

async fn station(env: Vec<(&'static str, String, String)>) -> Pipeline {
    let (pg, emulator, gcs) = tokio::try_join!(
        Postgres::shared(),
        PubsubEmulator::shared(),
        FakeGcs::shared()
    )
    .expect("test servers");
    let options = PipelineOptions {
        streamer: Some(0),
        before_streamer: vec![ALL_QANDA.to_owned()],
        env,
        ..PipelineOptions::default()
    };
    Pipeline::start(pg, emulator, gcs, options)
        .await
        .expect("pipeline with streamer")
}

#[tokio::test]
async fn the_director_plays_a_ready_submission_within_one_qanda_block_and_logs_it() {
    let p = station(vec![(
        "host-streamer",
        "RECORDING_SEGMENT".into(),
        "10s".into(),
    )])
    .await;
    let text = "Hello Radio24, greetings from the night shift at the bakery!";
    let res = reqwest::Client::new()
        .post(format!("{}/v1/submissions", p.ingest_url))
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id: uuid::Uuid = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let aired = wait_until("aired", Duration::from_secs(90), || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM submission WHERE id = $1")
            .bind(id)
            .fetch_one(&p.db)
            .await
            .is_ok_and(|s| s == "aired")
    })
    .await;
    assert!(aired.is_ok(), "not aired:\n{}", p.log_tails(40));

    let (queued_to_aired, approved_to_queued): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM aired_at - queued_at)::float8, \
                extract(epoch FROM queued_at - approved_at)::float8 \
         FROM submission WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&p.db)
    .await
    .unwrap();
    println!(
        "approved -> queued {approved_to_queued:.2} s, queued -> aired {queued_to_aired:.2} s"
    );
    assert!(
        queued_to_aired < 60.0 * 60.0,
        "played within the hour-long QANDA block"
    );

    let (segment, transcript, recording, ended): (String, String, Option<String>, bool) =
        sqlx::query_as(
            "SELECT segment, transcript, recording_path, ended_at IS NOT NULL \
             FROM on_air_log WHERE submission_id = $1",
        )
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    println!("on-air log: {segment} {recording:?}\n{transcript}");
    assert_eq!(segment, "QANDA");
    assert!(transcript.contains(text), "{transcript}");
    assert!(transcript.contains("DJ (local)"), "{transcript}");
    assert!(ended);
    let recording = recording.expect("recording path");
    assert!(
        recording.starts_with(&format!("gs://{}/recordings/main/", p.bucket)),
        "{recording}"
    );

    // A redelivered ready message (Pub/Sub is at-least-once) plays nothing twice.
    let event = SubmissionEvent::new(
        Event::Ready,
        SubmissionId(id),
        "main",
        SubmissionKind::Text,
        None,
    );
    p.bus
        .publish(
            &p.topics.ready,
            OutgoingMessage::new(serde_json::to_vec(&event.to_json()).unwrap()),
        )
        .await
        .unwrap();
    let streamer_log = || {
        p.streamer
            .as_ref()
            .map(|(c, _)| c.log_tail(400))
            .unwrap_or_default()
    };
    wait_until(
        "the redelivery is claimed",
        Duration::from_secs(30),
        || async { streamer_log().contains("AlreadyClaimed") },
    )
    .await
    .unwrap_or_else(|_| panic!("{}", streamer_log()));
    let plays: i64 = sqlx::query_scalar("SELECT count(*) FROM on_air_log WHERE submission_id = $1")
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(plays, 1);
}
