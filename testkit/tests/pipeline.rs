//! The whole pipeline end to end, black-box: real ingest, embed and moderate binaries; the
//! Pub/Sub emulator pushing to them (retry and dead-letter policies included);
//! fake-gcs-server; Postgres + pgvector; local providers, or the OpenAI protocol fake where a
//! provider must fail.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use shared::bus::Subscription;
use shared::message::{Event, SubmissionEvent};
use testkit::openai_fake::MODERATIONS;
use testkit::pipeline::{Pipeline, PipelineOptions, binary};
use testkit::{Fault, OpenAiFake, PubsubEmulator, wait_until};

async fn start(options: PipelineOptions) -> Pipeline {
    Pipeline::start_shared(options).await.expect("pipeline")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../media/tests/fixtures/audio/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn post_text(p: &Pipeline, text: &str) -> uuid::Uuid {
    p.post_text(text).await.expect("text accepted")
}

async fn post_audio(p: &Pipeline, bytes: Vec<u8>) -> uuid::Uuid {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("clip.webm")
        .mime_str("audio/webm")
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/submissions", p.ingest_url))
        .multipart(reqwest::multipart::Form::new().part("audio", part))
        .send()
        .await
        .unwrap();
    accepted(res).await
}

async fn accepted(res: reqwest::Response) -> uuid::Uuid {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Collects ready events until every id in `want` has arrived, acknowledging them.
async fn await_ready(
    p: &Pipeline,
    ready: &mut Subscription,
    want: &[uuid::Uuid],
    within: Duration,
) -> HashMap<uuid::Uuid, usize> {
    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while !want.iter().all(|id| seen.contains_key(id)) {
        let msg = match tokio::time::timeout_at(deadline, ready.next()).await {
            Ok(Some(Ok(m))) => m,
            other => panic!(
                "ready messages for {want:?} not all seen ({seen:?}): {other:?}\n{}",
                p.log_tails(30)
            ),
        };
        let ev = SubmissionEvent::decode(&msg.data).unwrap();
        assert_eq!(ev.event, Event::Ready);
        *seen.entry(ev.submission_id.0).or_default() += 1;
        msg.ack();
    }
    seen
}

async fn status(p: &Pipeline, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM submission WHERE id = $1")
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap()
}

async fn wait_status(p: &Pipeline, id: uuid::Uuid, want: &str) {
    let reached = wait_until(&format!("{id} {want}"), Duration::from_secs(60), || async {
        status(p, id).await == want
    })
    .await;
    if reached.is_err() {
        panic!(
            "{id} is {} instead of {want}\n{}",
            status(p, id).await,
            p.log_tails(30)
        );
    }
}

#[tokio::test]
async fn text_and_audio_reach_ready_with_local_providers() {
    let p = start(PipelineOptions::default()).await;
    let mut ready = p.ready().await.unwrap();
    let text = post_text(
        &p,
        "Good morning Radio24, please play something by Miles Davis",
    )
    .await;
    let audio = post_audio(&p, fixture("speech.webm")).await;
    let seen = await_ready(&p, &mut ready, &[text, audio], Duration::from_secs(90)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");

    for id in [text, audio] {
        assert_eq!(status(&p, id).await, "approved");
        let (decided_by, outcome): (String, String) = sqlx::query_as(
            "SELECT decided_by, outcome FROM moderation_result WHERE submission_id = $1",
        )
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
        assert_eq!(
            (decided_by.as_str(), outcome.as_str()),
            ("local:rules+exemplars", "approved")
        );
    }
    let (transcript, by): (String, String) =
        sqlx::query_as("SELECT transcript, transcribed_by FROM submission WHERE id = $1")
            .bind(audio)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert!(
        transcript.to_lowercase().contains("radio"),
        "{transcript:?}"
    );
    assert!(by.starts_with("local:"), "{by}");
    let vectors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM submission_embedding_local WHERE submission_id = ANY($1)",
    )
    .bind(vec![text, audio])
    .fetch_one(&p.db)
    .await
    .unwrap();
    assert_eq!(vectors, 2);
    // What the moderate service holds at its peak, exemplar search included.
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", p.moderate.id())) {
        let peak = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .unwrap_or("?")
            .trim();
        println!("moderate service peak RSS (VmHWM): {peak}");
    }

    // Redelivery of an already moderated message, three at once and once more: 204 each,
    // no second decision, no second ready message.
    let event = SubmissionEvent::new(
        Event::Embedded,
        shared::submission::SubmissionId(text),
        "main",
        shared::submission::SubmissionKind::Text,
        None,
    );
    let envelope = json!({
        "message": {
            "data": base64_encode(&serde_json::to_vec(&event).unwrap()),
            "attributes": event.attributes(),
            "messageId": "redelivered",
            "publishTime": "2026-11-22T00:00:00Z",
        },
        "subscription": "projects/radio24-local/subscriptions/moderate",
    });
    let client = reqwest::Client::new();
    let push = || {
        client
            .post(format!("{}/push", p.moderate_url))
            .json(&envelope)
            .send()
    };
    let answers = futures::future::join_all([push(), push(), push()]).await;
    for a in answers {
        assert_eq!(a.unwrap().status(), 204);
    }
    assert_eq!(push().await.unwrap().status(), 204);
    let decisions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM moderation_result WHERE submission_id = $1")
            .bind(text)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!(decisions, 1);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), ready.next())
            .await
            .is_err(),
        "a redelivery published a second ready message"
    );

    // Junk in an envelope: a channel id with a NUL (Postgres cannot store it in the outbox)
    // is acknowledged as a permanent failure at once, not answered 503 forever; a message
    // naming another channel moves the submission on its own channel, never to the other.
    let waiting = |text: &str| {
        let id = uuid::Uuid::now_v7();
        let db = p.db.clone();
        let text = text.to_owned();
        async move {
            sqlx::query(
                "INSERT INTO submission (id, channel_id, user_id, kind, text, status, embedded_at) \
                 VALUES ($1, 'main', 'anon:test', 'text', $2, 'embedded', now())",
            )
            .bind(id)
            .bind(text)
            .execute(&db)
            .await
            .unwrap();
            id
        }
    };
    let push_embedded = |id: uuid::Uuid, channel: &str| {
        let mut event = SubmissionEvent::new(
            Event::Embedded,
            shared::submission::SubmissionId(id),
            "main",
            shared::submission::SubmissionKind::Text,
            None,
        )
        .to_json();
        event["channel_id"] = json!(channel);
        let body = json!({
            "message": {
                "data": base64_encode(event.to_string().as_bytes()),
                "messageId": format!("junk-{id}"),
                "publishTime": "2026-11-22T00:00:00Z",
            },
            "subscription": "projects/radio24-local/subscriptions/moderate",
        });
        client
            .post(format!("{}/push", p.moderate_url))
            .json(&body)
            .send()
    };
    let nul = waiting("a message whose envelope carries a NUL").await;
    assert_eq!(push_embedded(nul, "\u{0}").await.unwrap().status(), 204);
    assert_eq!(status(&p, nul).await, "embedded", "junk changes nothing");
    let elsewhere = waiting("a message whose envelope names another channel").await;
    assert_eq!(
        push_embedded(elsewhere, "other").await.unwrap().status(),
        204
    );
    assert_eq!(status(&p, elsewhere).await, "approved");
    let msg = tokio::time::timeout(Duration::from_secs(30), ready.next())
        .await
        .expect("a ready message")
        .unwrap()
        .unwrap();
    let ev = SubmissionEvent::decode(&msg.data).unwrap();
    msg.ack();
    assert_eq!(
        (ev.submission_id.0, ev.channel_id.as_str()),
        (elsewhere, "main"),
        "the ready message follows the row's channel"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn held_list(p: &Pipeline) -> Value {
    reqwest::get(format!("{}/v1/held", p.moderate_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn operators_review_held_submissions() {
    let p = start(PipelineOptions::default()).await;
    let mut ready = p.ready().await.unwrap();
    let client = reqwest::Client::new();
    // Grey zone for the local moderator: self-harm is held for a person, never rejected.
    let held = post_text(
        &p,
        "Some nights I feel like I want to die, can you play something hopeful",
    )
    .await;
    let held_too = post_text(&p, "Honestly I hate immigrants and their food").await;
    let rejected = post_text(&p, "I know where you live and I will kill you").await;
    wait_status(&p, held, "held").await;
    wait_status(&p, held_too, "held").await;
    wait_status(&p, rejected, "rejected").await;

    let list = held_list(&p).await;
    let items = list["items"].as_array().unwrap();
    // Oldest first; the two were held in whichever order their deliveries ran.
    let held_at: Vec<&str> = items
        .iter()
        .map(|i| i["held_at"].as_str().unwrap())
        .collect();
    assert!(held_at.windows(2).all(|w| w[0] <= w[1]), "{list}");
    let mut ids: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want = vec![held.to_string(), held_too.to_string()];
    want.sort();
    assert_eq!(ids, want, "{list}");
    let self_harm = items.iter().find(|i| i["id"] == held.to_string()).unwrap();
    assert!(
        self_harm["triggered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("self-harm")),
        "{list}"
    );
    assert_eq!(self_harm["held_by"], "local:rules+exemplars");
    assert!(
        self_harm["scores"]["self-harm"].as_f64().unwrap() > 0.0,
        "{list}"
    );

    let decide = |id: uuid::Uuid, body: Value| {
        client
            .post(format!("{}/v1/held/{id}/decision", p.moderate_url))
            .json(&body)
            .send()
    };
    let res = decide(
        held,
        json!({"decision": "approve", "note": "hopeful, fine on air"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "approved");
    assert_eq!(body["decided_by"], "operator:local");
    await_ready(&p, &mut ready, &[held], Duration::from_secs(30)).await;

    // Deciding twice, a bad decision, an unknown id, a non-id.
    assert_eq!(
        decide(held, json!({"decision": "reject"}))
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        decide(held_too, json!({"decision": "maybe"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        decide(uuid::Uuid::new_v4(), json!({"decision": "reject"}))
            .await
            .unwrap()
            .status(),
        404
    );
    let res = client
        .post(format!("{}/v1/held/nope/decision", p.moderate_url))
        .json(&json!({"decision": "reject"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = client
        .post(format!("{}/v1/held/{held_too}/decision", p.moderate_url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    assert_eq!(
        decide(held_too, json!({"decision": "reject"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(status(&p, held_too).await, "rejected");
    let trail: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT outcome, decided_by, note FROM moderation_result \
         WHERE submission_id = $1 ORDER BY id",
    )
    .bind(held)
    .fetch_all(&p.db)
    .await
    .unwrap();
    assert_eq!(
        trail,
        [
            ("held".into(), "local:rules+exemplars".into(), None),
            (
                "approved".into(),
                "operator:local".into(),
                Some("hopeful, fine on air".into())
            ),
        ]
    );
    let list = held_list(&p).await;
    assert_eq!(list["items"], json!([]));

    // Revoking: the approved one airs (as the streamer would mark it), is quoted by the DJ
    // beside a related message, then an operator revokes it and it is never quoted again.
    let other = post_text(&p, "Some nights I play something hopeful on the radio").await;
    await_ready(&p, &mut ready, &[other], Duration::from_secs(30)).await;
    sqlx::query("UPDATE submission SET status = 'aired', aired_at = now() WHERE id = ANY($1)")
        .bind(vec![held, other])
        .execute(&p.db)
        .await
        .unwrap();
    let quoted = |of: uuid::Uuid| {
        shared::submission::repository::aired_near(
            &p.db,
            shared::submission::SubmissionId(of),
            "main",
            5,
        )
    };
    assert_eq!(quoted(other).await.unwrap().len(), 1, "the DJ may quote it");
    let revoke = |id: uuid::Uuid, body: Value| {
        client
            .post(format!("{}/v1/submissions/{id}/revoke", p.moderate_url))
            .json(&body)
            .send()
    };
    let res = revoke(held, json!({"note": "a listener recognised the caller"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "rejected");
    assert_eq!(status(&p, held).await, "rejected");
    assert_eq!(
        quoted(other).await.unwrap(),
        Vec::<String>::new(),
        "never quoted again"
    );
    let (outcome, by, note): (String, String, Option<String>) = sqlx::query_as(
        "SELECT outcome, decided_by, note FROM moderation_result \
         WHERE submission_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(held)
    .fetch_one(&p.db)
    .await
    .unwrap();
    assert_eq!(
        (outcome.as_str(), by.as_str(), note.as_deref()),
        (
            "rejected",
            "operator:local",
            Some("a listener recognised the caller")
        )
    );
    // Twice, a rejected one, an unknown id, an unknown field.
    assert_eq!(revoke(held, json!({})).await.unwrap().status(), 409);
    assert_eq!(revoke(held_too, json!({})).await.unwrap().status(), 409);
    assert_eq!(
        revoke(uuid::Uuid::new_v4(), json!({}))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        revoke(other, json!({"reason": "x"}))
            .await
            .unwrap()
            .status(),
        422
    );
}

#[tokio::test]
async fn a_failing_provider_dead_letters_and_the_replay_finishes_the_work() {
    let fake = OpenAiFake::start().await;
    let mut options = PipelineOptions::default();
    for (k, v) in fake.env() {
        options.env.push(("moderate", k, v));
    }
    options
        .env
        .push(("moderate", "MODERATION_PROVIDER".into(), "openai".into()));
    // One provider call per delivery, so deliveries and calls can be counted together.
    options
        .env
        .push(("moderate", "OPENAI_MAX_RETRIES".into(), "0".into()));
    let attempts = options.max_delivery_attempts as usize;
    fake.fail_next_on(MODERATIONS, attempts, Fault::ServerError(503));
    let p = start(options).await;
    let mut ready = p.ready().await.unwrap();

    let id = post_text(&p, "Can you play the one about the rain in Kyoto?").await;
    wait_until(
        "every delivery attempt",
        Duration::from_secs(60),
        || async { fake.requests(MODERATIONS) >= attempts },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", p.log_tails(30)));
    // Transient failures leave the submission where it was, for the replay.
    assert_eq!(status(&p, id).await, "embedded");

    // The operator's command, polled until the dead-lettered message has arrived.
    let emulator_host = PubsubEmulator::shared().await.unwrap().host();
    let replay = || {
        let mut cmd = tokio::process::Command::new(binary("moderate").unwrap());
        cmd.arg("replay-dead-letters")
            .env("PUBSUB_EMULATOR_HOST", &emulator_host)
            .env("GOOGLE_CLOUD_PROJECT", testkit::pipeline::PROJECT)
            .env("TOPIC_SUBMISSION_EMBEDDED", &p.topics.embedded);
        testkit::run_ok(cmd)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let replayed = loop {
        let printed = replay().await;
        let nothing = printed.lines().any(|l| l.starts_with("replayed 0 "));
        if !nothing || std::time::Instant::now() > deadline {
            break printed;
        }
    };
    assert!(
        replayed
            .lines()
            .any(|l| l.starts_with("replayed 1 message(s)")),
        "{replayed}"
    );

    await_ready(&p, &mut ready, &[id], Duration::from_secs(60)).await;
    assert_eq!(status(&p, id).await, "approved");
    assert_eq!(fake.requests(MODERATIONS), attempts + 1);
    let by: String =
        sqlx::query_scalar("SELECT decided_by FROM moderation_result WHERE submission_id = $1")
            .bind(id)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!(by, "openai:omni-moderation-latest");
}

/// The statuses a submission rests in once the pipeline is done with it (without a
/// streamer, `approved` is where it waits to be played).
const DECIDED: [&str; 5] = ["approved", "held", "rejected", "duplicate", "failed"];

#[tokio::test]
async fn submissions_stranded_by_an_outage_are_announced_again_until_each_is_decided() {
    let mut options = PipelineOptions::default();
    for var in ["RATE_LIMIT_PER_IP", "RATE_LIMIT_PER_USER"] {
        options.env.push(("ingest", var.into(), "off".into()));
    }
    let p = start(options).await;

    // Messages lost for good after their outbox rows were deleted: one waiting at each
    // stage, as the streamer-side sweeper finds them.
    let mut orphans = Vec::new();
    for (status, words) in [
        (
            "ingested",
            "an orphan the embed stage never heard of, about jazz",
        ),
        (
            "embedded",
            "an orphan the moderate stage never heard of, about rain",
        ),
        (
            "approved",
            "an orphan the streamer never heard of, about trains",
        ),
    ] {
        let id = uuid::Uuid::now_v7();
        // Each stage's time stamp up to its status, an hour ago.
        sqlx::query(
            "INSERT INTO submission (id, channel_id, user_id, kind, text, status, ingested_at, \
             embedded_at, approved_at) VALUES ($1, 'main', 'anon:orphan', 'text', $2, $3, \
             now() - interval '1 hour', \
             CASE WHEN $3 <> 'ingested' THEN now() - interval '1 hour' END, \
             CASE WHEN $3 = 'approved' THEN now() - interval '1 hour' END)",
        )
        .bind(id)
        .bind(words)
        .bind(status)
        .execute(&p.db)
        .await
        .unwrap();
        orphans.push(id);
    }

    // And an outage: the embed stage hangs for 14 s while listeners keep writing.
    const OUTAGE: Duration = Duration::from_secs(14);
    p.embed.freeze();
    let posts = (0..300).map(|i| {
        let p = &p;
        async move {
            post_text(
                p,
                &format!("Message {i} for the request hour: song number {i}, please"),
            )
            .await
        }
    });
    let mut accepted = futures::future::join_all(posts).await;
    // The outage is the scenario, not a synchronisation: its length is what is tested.
    tokio::time::sleep(OUTAGE).await;
    p.embed.thaw();

    let sweeper = shared::sweeper::Sweeper::new(
        p.db.clone(),
        shared::outbox::Outbox::new(p.db.clone(), p.bus.clone(), Default::default()),
        shared::sweeper::SweeperConfig {
            after: Duration::from_secs(3),
            interval: Duration::from_millis(500),
            batch: 500,
            ingested_topic: p.topics.ingested.clone(),
            embedded_topic: p.topics.embedded.clone(),
            ready_topic: p.topics.ready.clone(),
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let announced = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sweeping = tokio::spawn(sweeper.run(stop.clone(), {
        let announced = announced.clone();
        move |n| {
            announced.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }));

    accepted.extend(orphans.iter().copied());
    let undecided = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM submission WHERE id = ANY($1) AND NOT (status = ANY($2))",
        )
        .bind(&accepted)
        .bind(&DECIDED[..])
        .fetch_one(&p.db)
        .await
        .unwrap()
    };
    let done = wait_until(
        "every accepted submission decided",
        Duration::from_secs(240),
        || async { undecided().await == 0 },
    )
    .await;
    stop.cancel();
    sweeping.await.unwrap();
    if done.is_err() {
        panic!(
            "{} of {} submissions still undecided\n{}",
            undecided().await,
            accepted.len(),
            p.log_tails(30)
        );
    }
    let announced = announced.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "outage of {OUTAGE:?}: {} submissions decided, {announced} re-announced",
        accepted.len()
    );
    assert!(announced >= orphans.len() as u64, "{announced}");
}
