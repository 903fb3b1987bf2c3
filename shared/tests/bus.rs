//! The bus against Google's real Pub/Sub emulator: round trips, outage behaviour, throughput.
//!
//! Tests share one emulator (isolated by unique topic names) except the outage test, which
//! stops its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shared::bus::{Bus, BusConfig, BusError, OutgoingMessage, ReceivedMessage, Subscription};
use testkit::PubsubEmulator;

const PROJECT: &str = "radio24-test";
const RECEIVE_DEADLINE: Duration = Duration::from_secs(30);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn bus_for(emulator: &PubsubEmulator) -> Bus {
    let cfg = BusConfig::new(PROJECT).with_emulator_host(emulator.host());
    Bus::connect(&cfg).await.expect("connect to the emulator")
}

/// A topic with one pull subscription, created before anything is published (Pub/Sub only
/// delivers messages published after a subscription exists).
async fn topic_with_subscription(bus: &Bus) -> (String, String) {
    let topic = unique("topic");
    let subscription = unique("sub");
    bus.ensure_topic(&topic).await.expect("ensure topic");
    bus.ensure_pull_subscription(&topic, &subscription, Duration::from_secs(30))
        .await
        .expect("ensure subscription");
    (topic, subscription)
}

async fn next_message(sub: &mut Subscription) -> ReceivedMessage {
    tokio::time::timeout(RECEIVE_DEADLINE, sub.next())
        .await
        .expect("a message within the deadline")
        .expect("stream open")
        .expect("no stream error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_receive_keep_data_and_attributes() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    bus.ping().await.expect("ping a running emulator");
    let (topic, subscription) = topic_with_subscription(&bus).await;

    // Creating again is a no-op, not an error.
    bus.ensure_topic(&topic).await.expect("ensure topic twice");
    bus.ensure_pull_subscription(&topic, &subscription, Duration::from_secs(30))
        .await
        .expect("ensure subscription twice");

    let data = Bytes::from_static(b"\x00\xffsubmission 0195\xc3\x28");
    let msg = OutgoingMessage::new(data.clone())
        .with_attribute("submission_id", "0195f1c2-7e1a-7000-8000-000000000001")
        .with_attribute("kind", "audio")
        .with_attribute("empty", "");
    let expected_attributes: BTreeMap<String, String> = msg.attributes.clone();
    let id = bus.publish(&topic, msg).await.expect("publish");
    assert!(!id.is_empty(), "server message id");

    let mut sub = bus.subscribe(&subscription).await.expect("subscribe");
    let received = next_message(&mut sub).await;
    assert_eq!(received.message_id, id);
    assert_eq!(received.data, data);
    assert_eq!(received.attributes, expected_attributes);
    assert_eq!(received.ordering_key, None);
    assert!(received.publish_time.is_some(), "publish time set");
    received.ack();
    sub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_message_is_redelivered() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    let (topic, subscription) = topic_with_subscription(&bus).await;
    let id = bus
        .publish(&topic, OutgoingMessage::new("retry me"))
        .await
        .expect("publish");

    let mut sub = bus.subscribe(&subscription).await.expect("subscribe");
    let first = next_message(&mut sub).await;
    assert_eq!(first.message_id, id);
    first.nack();
    let again = next_message(&mut sub).await;
    assert_eq!(again.message_id, id, "a nacked message comes back");
    again.ack();
    sub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_on_another_topic_is_reported() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    let (_, subscription) = topic_with_subscription(&bus).await;
    let other = unique("topic");
    bus.ensure_topic(&other).await.expect("ensure topic");
    let err = bus
        .ensure_pull_subscription(&other, &subscription, Duration::from_secs(30))
        .await
        .expect_err("subscription is attached to a different topic");
    assert!(
        matches!(err, BusError::SubscriptionMismatch { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_missing_subscription_fails_permanently() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    let mut sub = bus
        .subscribe(&unique("never-created"))
        .await
        .expect("subscribe is lazy");
    let err = tokio::time::timeout(RECEIVE_DEADLINE, sub.next())
        .await
        .expect("an answer within the deadline")
        .expect("an item, not the end of the stream")
        .expect_err("the subscription does not exist");
    assert!(!err.is_transient(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_fail_before_any_rpc() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    let err = bus
        .publish("no/slashes", OutgoingMessage::new("x"))
        .await
        .expect_err("invalid topic id");
    assert!(matches!(err, BusError::InvalidName(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_missing_topic_is_permanent() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    let err = bus
        .publish(&unique("never-created"), OutgoingMessage::new("x"))
        .await
        .expect_err("topic does not exist");
    assert!(!err.is_transient(), "NOT_FOUND is permanent: {err:?}");
}

/// A stopped emulator must make publish fail fast (inside an HTTP request, ingest cannot wait
/// the client's default ten minutes) with an error the caller treats as "retry later", and the
/// same `Bus` must work again once the emulator is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_fast_and_transient_while_emulator_is_down() {
    let mut emulator = PubsubEmulator::start().await.expect("own emulator");
    let timeout = Duration::from_secs(2);
    let cfg = BusConfig::new(PROJECT)
        .with_emulator_host(emulator.host())
        .with_publish_timeout(timeout)
        .with_admin_timeout(Duration::from_secs(2));
    let bus = Bus::connect(&cfg).await.expect("connect");
    let topic = unique("topic");
    bus.ensure_topic(&topic).await.expect("ensure topic");
    bus.publish(&topic, OutgoingMessage::new("before"))
        .await
        .expect("publish while up");

    emulator.stop();

    let started = Instant::now();
    let err = bus
        .publish(&topic, OutgoingMessage::new("during"))
        .await
        .expect_err("publish while down");
    let publish_elapsed = started.elapsed();
    println!("publish to a stopped emulator failed after {publish_elapsed:?}: {err}");
    assert!(err.is_transient(), "an outage is transient: {err:?}");
    assert!(
        publish_elapsed <= timeout + Duration::from_millis(500),
        "publish took {publish_elapsed:?}, timeout is {timeout:?}"
    );

    let started = Instant::now();
    let err = bus.ping().await.expect_err("ping while down");
    let ping_elapsed = started.elapsed();
    println!("ping of a stopped emulator failed after {ping_elapsed:?}: {err}");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        ping_elapsed <= Duration::from_millis(2500),
        "{ping_elapsed:?}"
    );

    // The emulator keeps no state: after a restart the topic has to be created again.
    emulator.restart().await.expect("restart emulator");
    testkit::wait_until("ping after restart", Duration::from_secs(30), || async {
        bus.ping().await.is_ok()
    })
    .await
    .expect("ping recovers");
    bus.ensure_topic(&topic).await.expect("ensure topic again");
    testkit::wait_until("publish after restart", Duration::from_secs(30), || async {
        bus.publish(&topic, OutgoingMessage::new("after"))
            .await
            .is_ok()
    })
    .await
    .expect("the same Bus publishes again after the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_fails_fast_when_nothing_listens() {
    let port = testkit::free_port();
    let cfg = BusConfig::new(PROJECT)
        .with_emulator_host(format!("127.0.0.1:{port}"))
        .with_publish_timeout(Duration::from_secs(1))
        .with_admin_timeout(Duration::from_secs(1));
    let bus = Bus::connect(&cfg).await.expect("connect is lazy");

    let started = Instant::now();
    let err = bus.ping().await.expect_err("nothing listens");
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() <= Duration::from_millis(1500));

    let started = Instant::now();
    let err = bus
        .publish("submission-ingested", OutgoingMessage::new("x"))
        .await
        .expect_err("nothing listens");
    let elapsed = started.elapsed();
    println!("publish with nothing listening failed after {elapsed:?}: {err}");
    assert!(err.is_transient(), "{err:?}");
    assert!(elapsed <= Duration::from_millis(1500), "{elapsed:?}");
}

/// 2,000 publishes from 64 concurrent tasks (ingest's shape: many requests, one message each)
/// must all arrive; the throughput is printed for the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_publishes_all_arrive() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 2_000_usize.div_ceil(TASKS); // 64 x 32 = 2,048
    let total = TASKS * PER_TASK;

    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = bus_for(emulator).await;
    let (topic, subscription) = topic_with_subscription(&bus).await;

    // Latency of a lone publish (the common case: one message per ingest request).
    let mut lone = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        bus.publish(
            &topic,
            OutgoingMessage::new("warm-up").with_attribute("seq", format!("w{i}")),
        )
        .await
        .expect("publish");
        lone.push(t.elapsed());
    }
    lone.sort();
    println!(
        "lone publish latency: p50 {:?}, max {:?}",
        lone[lone.len() / 2],
        lone[lone.len() - 1]
    );

    let topic = Arc::new(topic);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let bus = bus.clone();
        let topic = Arc::clone(&topic);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let seq = task * PER_TASK + i;
                let msg = OutgoingMessage::new(format!("submission {seq}"))
                    .with_attribute("seq", seq.to_string());
                let t = Instant::now();
                bus.publish(&topic, msg).await.expect("publish");
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    let publish_elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "published {total} messages from {TASKS} tasks in {publish_elapsed:?}: {:.0} msgs/s \
         (per-publish latency p50 {:?}, p99 {:?}, max {:?})",
        total as f64 / publish_elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );

    let mut sub = bus.subscribe(&subscription).await.expect("subscribe");
    let started = Instant::now();
    let mut seen = HashSet::new();
    while seen.len() < total {
        let msg = next_message(&mut sub).await;
        if msg.attributes["seq"].starts_with('w') {
            msg.ack();
            continue;
        }
        let seq: usize = msg.attributes["seq"].parse().expect("seq attribute");
        assert_eq!(msg.data, Bytes::from(format!("submission {seq}")));
        seen.insert(seq);
        msg.ack();
    }
    let receive_elapsed = started.elapsed();
    println!(
        "received all {total} in {receive_elapsed:?}: {:.0} msgs/s",
        total as f64 / receive_elapsed.as_secs_f64()
    );
    assert_eq!(seen, (0..total).collect::<HashSet<_>>());
    sub.shutdown().await;
}
