//! Replaying dead-lettered messages.
//!
//! Each push subscription has a dead-letter topic (`<topic>-dead-letter`) with a pull
//! subscription of the same name. A message lands there after the subscription's
//! `max_delivery_attempts` transient failures (database or provider down for longer than
//! the retry backoff covers); the submission is still in the status the stage expects, so
//! once the cause is fixed, publishing the message to its topic again finishes the work.
//! Handlers are idempotent, so replaying a message that did get through is harmless.

use std::time::Duration;

use anyhow::Context;

use crate::bus::{Bus, BusConfig, BusError, OutgoingMessage};
use crate::config::Env;
use crate::message::Event;

/// The attributes Pub/Sub adds when it dead-letters a message; dropped on replay so the
/// replayed message looks like the original.
const DEAD_LETTER_ATTRIBUTE_PREFIX: &str = "CloudPubSubDeadLetter";

/// Dead-letter topic (and its pull subscription) for a stage's input topic.
pub fn topic_for(topic: &str) -> String {
    format!("{topic}-dead-letter")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Stop after this many messages.
    pub max_messages: usize,
    /// Stop when no message arrives for this long: the subscription is drained.
    pub idle: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max_messages: 10_000,
            // The emulator's streaming pull takes a few seconds to hand out its first message.
            idle: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
}

/// Moves messages from the dead-letter `subscription` back to `topic`: each is acknowledged
/// only after its copy is published, so a crash mid-way duplicates at most, never loses.
pub async fn replay(
    bus: &Bus,
    subscription: &str,
    topic: &str,
    options: ReplayOptions,
) -> Result<ReplayReport, BusError> {
    let mut stream = bus.subscribe(subscription).await?;
    let mut report = ReplayReport::default();
    while report.replayed < options.max_messages {
        let msg = match tokio::time::timeout(options.idle, stream.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(msg)) => msg?,
        };
        let mut copy = OutgoingMessage::new(msg.data.clone());
        for (k, v) in msg
            .attributes
            .iter()
            .filter(|(k, _)| !k.starts_with(DEAD_LETTER_ATTRIBUTE_PREFIX))
        {
            copy = copy.with_attribute(k.clone(), v.clone());
        }
        match bus.publish(topic, copy).await {
            Ok(id) => {
                tracing::info!(from = %msg.message_id, to = %id, %topic, "replayed dead letter");
                msg.ack();
                report.replayed += 1;
            }
            Err(e) => {
                msg.nack();
                stream.shutdown().await;
                return Err(e);
            }
        }
    }
    stream.shutdown().await;
    Ok(report)
}

/// The `replay-dead-letters` command of a stage that consumes `input`: replays
/// `DEAD_LETTER_SUBSCRIPTION` (default the input topic's dead-letter topic name) to the
/// input topic and prints how many messages it moved.
pub async fn command(env: &Env, input: Event) -> anyhow::Result<()> {
    let bus = Bus::connect(&BusConfig::from_env(env)?).await?;
    let topic = input.topic(env)?;
    let subscription = env.or("DEAD_LETTER_SUBSCRIPTION", topic_for(&topic))?;
    let options = ReplayOptions {
        idle: env.duration_or("REPLAY_IDLE", ReplayOptions::default().idle)?,
        ..ReplayOptions::default()
    };
    let report = replay(&bus, &subscription, &topic, options)
        .await
        .with_context(|| format!("replaying {subscription} to {topic}"))?;
    println!(
        "replayed {} message(s) from {subscription} to {topic}",
        report.replayed
    );
    Ok(())
}
