//! The message bus: Cloud Pub/Sub through Google's official `google-cloud-pubsub` crate.
//!
//! Messages on the bus are claim checks (ids plus a few attributes), never payloads, so the
//! bus only needs three things: publish with a *bounded* latency, create topics and pull
//! subscriptions for local runs, and a streaming-pull consumer for the host-streamer.
//!
//! The same code runs against production Pub/Sub (Application Default Credentials) and
//! against Google's Pub/Sub emulator (`PUBSUB_EMULATOR_HOST`, anonymous credentials). In
//! emulator mode the clients are always given explicit anonymous credentials, so a test can
//! never wander off to the metadata server or to a developer's real project.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::options::RequestOptionsBuilder;
use google_cloud_gax::retry_policy::{NeverRetry, RetryPolicyExt};
use google_cloud_pubsub::client::{
    BasePublisher, Publisher, Subscriber, SubscriptionAdmin, TopicAdmin,
};
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::{DeadLetterPolicy, Message, PushConfig, RetryPolicy};
use google_cloud_pubsub::retry_policy::RetryableErrors;
use google_cloud_pubsub::subscriber::MessageStream;
use google_cloud_pubsub::subscriber::handler::Handler;

/// Default upper bound for one [`Bus::publish`]. Ingest awaits the publish inside an HTTP
/// request; when Pub/Sub is unreachable the transactional outbox keeps the message, so failing
/// after two seconds is better than holding the listener's request for the crate's default
/// ten-minute retry budget.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Default bound for admin calls ([`Bus::ping`], [`Bus::ensure_topic`], ...).
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Default batching delay: how long a message may wait for others to share its RPC.
///
/// Every publisher here is closed-loop (a request awaits its own publish), so the delay adds
/// to each publish's latency, and with a fixed number of concurrent publishers throughput is
/// concurrency divided by latency. Measured against the
/// emulator with 64 concurrent publishers: 1 ms gave ~4 ms per publish and ~14,000 msgs/s,
/// 5 ms gave ~8 ms and ~7,500 msgs/s, 10 ms ~14 ms and ~4,600 msgs/s. Concurrent publishes
/// still share batches at 1 ms.
pub const DEFAULT_BATCH_MAX_DELAY: Duration = Duration::from_millis(1);

/// Default batch size cap: small batches keep a busy publisher's per-RPC latency low.
pub const DEFAULT_BATCH_MAX_MESSAGES: u32 = 100;

/// How to reach Pub/Sub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// Google Cloud project id that owns the topics and subscriptions (the emulator needs at
    /// least 6 characters).
    pub project: String,
    /// `HOST:PORT` of a Pub/Sub emulator (the `PUBSUB_EMULATOR_HOST` convention; an
    /// `http://` prefix is accepted too). `None` means production Pub/Sub with Application
    /// Default Credentials.
    pub emulator_host: Option<String>,
    /// Upper bound for one publish, retries included.
    pub publish_timeout: Duration,
    /// Upper bound for admin calls and readiness probes.
    pub admin_timeout: Duration,
    /// Longest time a message waits for batch companions before it is sent.
    pub batch_max_delay: Duration,
    /// A batch is sent as soon as it holds this many messages.
    pub batch_max_messages: u32,
}

impl BusConfig {
    /// Production Pub/Sub for `project` with the default timeouts and batching.
    pub fn new(project: impl Into<String>) -> Self {
        BusConfig {
            project: project.into(),
            emulator_host: None,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            admin_timeout: DEFAULT_ADMIN_TIMEOUT,
            batch_max_delay: DEFAULT_BATCH_MAX_DELAY,
            batch_max_messages: DEFAULT_BATCH_MAX_MESSAGES,
        }
    }

    /// `GOOGLE_CLOUD_PROJECT` (required unless `PUBSUB_EMULATOR_HOST` is set, then
    /// `radio24-local` by default), `PUBSUB_EMULATOR_HOST`, `PUBLISH_TIMEOUT`.
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let emulator: Option<String> = env.optional("PUBSUB_EMULATOR_HOST")?;
        let project: String = match &emulator {
            Some(_) => env.or("GOOGLE_CLOUD_PROJECT", "radio24-local".to_owned())?,
            None => env.required("GOOGLE_CLOUD_PROJECT")?,
        };
        let mut cfg = BusConfig::new(project)
            .with_publish_timeout(env.duration_or("PUBLISH_TIMEOUT", DEFAULT_PUBLISH_TIMEOUT)?);
        if let Some(host) = emulator {
            cfg = cfg.with_emulator_host(host);
        }
        Ok(cfg)
    }

    /// Targets an emulator at `host` (`HOST:PORT`) instead of production Pub/Sub.
    pub fn with_emulator_host(mut self, host: impl Into<String>) -> Self {
        self.emulator_host = Some(host.into());
        self
    }

    /// Overrides [`DEFAULT_PUBLISH_TIMEOUT`].
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Overrides [`DEFAULT_ADMIN_TIMEOUT`].
    pub fn with_admin_timeout(mut self, timeout: Duration) -> Self {
        self.admin_timeout = timeout;
        self
    }

    fn emulator_endpoint(&self) -> Option<String> {
        self.emulator_host.as_deref().map(|h| {
            if h.starts_with("http://") || h.starts_with("https://") {
                h.to_owned()
            } else {
                format!("http://{h}")
            }
        })
    }
}

/// Why a bus operation failed. Use [`BusError::is_transient`] to decide between "retry later"
/// (answer non-2xx, leave the outbox row pending) and "give up" (record a failure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A topic or subscription name is not a valid Pub/Sub id.
    #[error("invalid Pub/Sub resource name {0:?}")]
    InvalidName(String),
    /// A client could not be constructed (typically: no Application Default Credentials).
    #[error("cannot build the Pub/Sub {client} client: {source}")]
    Connect {
        client: &'static str,
        #[source]
        source: google_cloud_gax::client_builder::Error,
    },
    /// The publish did not complete within the configured publish timeout.
    #[error("publish to {topic} did not complete within {timeout:?}")]
    PublishTimeout { topic: String, timeout: Duration },
    /// The publisher reported an error.
    #[error("publish to {topic} failed: {source}")]
    Publish {
        topic: String,
        #[source]
        source: PublishError,
    },
    /// An admin or readiness call did not complete in time.
    #[error("{operation} did not complete within {timeout:?}")]
    Timeout {
        operation: String,
        timeout: Duration,
    },
    /// An admin RPC or the streaming pull failed.
    #[error("{operation} failed: {source}")]
    Rpc {
        operation: String,
        #[source]
        source: GaxError,
    },
    /// An existing subscription is attached to a different topic than requested.
    #[error("subscription {subscription} exists but is attached to {actual}, not {expected}")]
    SubscriptionMismatch {
        subscription: String,
        expected: String,
        actual: String,
    },
}

impl BusError {
    /// `true` when trying again later may succeed (unavailable, timeouts, throttling, a
    /// publisher shut down mid-flight); `false` for configuration and permission problems.
    pub fn is_transient(&self) -> bool {
        match self {
            BusError::PublishTimeout { .. } | BusError::Timeout { .. } => true,
            BusError::Publish { source, .. } => match source {
                PublishError::Rpc(e) => gax_error_is_transient(e),
                // `OrderingKeyPaused` follows an earlier failure for the same key and `Shutdown`
                // races a process exit: both succeed on a later attempt.
                _ => true,
            },
            BusError::Rpc { source, .. } => gax_error_is_transient(source),
            BusError::InvalidName(_)
            | BusError::Connect { .. }
            | BusError::SubscriptionMismatch { .. } => false,
        }
    }

    fn rpc(operation: impl Into<String>, source: GaxError) -> Self {
        BusError::Rpc {
            operation: operation.into(),
            source,
        }
    }
}

/// Classifies an error from any Google client: `true` for failures worth retrying.
///
/// Mirrors Pub/Sub's documented retry guidance (and the crates' own `RetryableErrors`
/// policies), plus `exhausted`: a retry loop that ran out of time on retryable errors.
pub(crate) fn gax_error_is_transient(e: &GaxError) -> bool {
    if e.is_transient_and_before_rpc()
        || e.is_io()
        || e.is_timeout()
        || e.is_exhausted()
        || e.is_connect()
    {
        return true;
    }
    if let Some(status) = e.status() {
        return matches!(
            status.code,
            Code::Aborted
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::ResourceExhausted
                | Code::Unavailable
                | Code::Unknown
        );
    }
    match e.http_status_code() {
        Some(code) => matches!(code, 408 | 429 | 500 | 502 | 503 | 504),
        // A transport failure without an HTTP status is a broken connection.
        None => e.is_transport(),
    }
}

fn status_code(e: &GaxError) -> Option<Code> {
    e.status().map(|s| s.code)
}

/// A message to publish. Keep `data` small: the bus carries ids, Postgres and GCS hold state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub data: Bytes,
    pub attributes: BTreeMap<String, String>,
    /// Messages with the same key are delivered in order on subscriptions with message
    /// ordering enabled. After a failure the key is resumed by [`Bus::publish`] itself, since
    /// the outbox re-drives whatever failed.
    pub ordering_key: Option<String>,
}

impl OutgoingMessage {
    /// A message with `data` and no attributes.
    pub fn new(data: impl Into<Bytes>) -> Self {
        OutgoingMessage {
            data: data.into(),
            ..Default::default()
        }
    }

    /// Adds one attribute.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    fn into_model(self) -> Message {
        let msg = Message::new()
            .set_data(self.data)
            .set_attributes(self.attributes);
        match self.ordering_key {
            Some(key) => msg.set_ordering_key(key),
            None => msg,
        }
    }
}

/// A message received from a subscription.
///
/// Exactly one of [`ack`](Self::ack) or [`nack`](Self::nack) should be called once the message's
/// effect is durable (or known to be impossible). Dropping the message without either is a
/// nack: Pub/Sub redelivers it, which is the safe default after a panic or an early return.
#[derive(Debug)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub data: Bytes,
    pub attributes: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub publish_time: Option<DateTime<Utc>>,
    /// Set only when the subscription has a dead-letter policy; starts at 1.
    pub delivery_attempt: Option<i32>,
    handler: Handler,
}

impl ReceivedMessage {
    /// Acknowledges the message (best effort: at-least-once delivery may still redeliver it,
    /// which handlers tolerate by being idempotent).
    pub fn ack(self) {
        self.handler.ack();
    }

    /// Returns the message to Pub/Sub for redelivery, subject to the subscription's retry
    /// and dead-letter policies.
    pub fn nack(self) {
        self.handler.nack();
    }
}

/// A streaming-pull subscription. Leases of received messages are extended automatically
/// until they are acked or nacked.
pub struct Subscription {
    name: String,
    stream: MessageStream,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The full subscription path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message. Transient stream failures are retried inside the client; an `Err`
    /// means the stream hit a permanent error (e.g. the subscription does not exist) and
    /// `None` means it was shut down.
    pub async fn next(&mut self) -> Option<Result<ReceivedMessage, BusError>> {
        let item = self.stream.next().await?;
        Some(match item {
            Ok((m, handler)) => Ok(ReceivedMessage {
                message_id: m.message_id,
                data: m.data,
                attributes: m.attributes.into_iter().collect(),
                ordering_key: Some(m.ordering_key).filter(|k| !k.is_empty()),
                publish_time: m.publish_time.and_then(|t| {
                    DateTime::from_timestamp(t.seconds(), u32::try_from(t.nanos()).unwrap_or(0))
                }),
                delivery_attempt: handler.delivery_attempt(),
                handler,
            }),
            Err(e) => Err(BusError::rpc(format!("streaming pull on {}", self.name), e)),
        })
    }

    /// Stops pulling, flushes pending acks and waits until the lease machinery has stopped, so
    /// a graceful shutdown neither loses acks nor keeps messages leased until their deadline.
    /// Messages still held by the application are nacked when dropped.
    pub async fn shutdown(self) {
        self.stream.shutdown_token().shutdown().await;
    }
}

/// How [`Bus::ensure_subscription`] creates a subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    pub ack_deadline: Duration,
    /// `Some` makes it a push subscription POSTing to this URL.
    pub push_endpoint: Option<String>,
    pub dead_letter: Option<DeadLetterSpec>,
}

/// Where messages go after `max_delivery_attempts` failed deliveries, and the retry backoff
/// until then.
#[derive(Debug, Clone)]
pub struct DeadLetterSpec {
    pub topic: String,
    /// Pub/Sub accepts 5..=100.
    pub max_delivery_attempts: i32,
    pub minimum_backoff: Duration,
    pub maximum_backoff: Duration,
}

impl SubscriptionSpec {
    pub fn pull(ack_deadline: Duration) -> Self {
        SubscriptionSpec {
            ack_deadline,
            push_endpoint: None,
            dead_letter: None,
        }
    }

    pub fn push(endpoint: impl Into<String>, ack_deadline: Duration) -> Self {
        SubscriptionSpec {
            push_endpoint: Some(endpoint.into()),
            ..SubscriptionSpec::pull(ack_deadline)
        }
    }

    pub fn with_dead_letter(mut self, dead_letter: DeadLetterSpec) -> Self {
        self.dead_letter = Some(dead_letter);
        self
    }
}

fn wkt_duration(d: Duration) -> google_cloud_wkt::Duration {
    google_cloud_wkt::Duration::clamp(d.as_secs() as i64, d.subsec_nanos() as i32)
}

/// Handle to Pub/Sub. Cheap to clone; clones share clients and the per-topic publishers.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: BusConfig,
    base_publisher: BasePublisher,
    /// One batching publisher per topic path, created on first use.
    publishers: Mutex<HashMap<String, Publisher>>,
    subscriber: Subscriber,
    topics: TopicAdmin,
    subscriptions: SubscriptionAdmin,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("project", &self.inner.cfg.project)
            .field("emulator_host", &self.inner.cfg.emulator_host)
            .finish_non_exhaustive()
    }
}

/// Applies the endpoint and credentials every client needs. A macro because each client has
/// its own builder type with the same method names.
macro_rules! configure {
    ($builder:expr, $endpoint:expr, $credentials:expr) => {{
        let builder = $builder.with_credentials($credentials.clone());
        match $endpoint {
            Some(endpoint) => builder.with_endpoint(endpoint.clone()),
            None => builder,
        }
    }};
}

impl Bus {
    /// Builds the publisher, subscriber and admin clients. No RPC is made: use [`Bus::ping`]
    /// to check reachability.
    pub async fn connect(cfg: &BusConfig) -> Result<Bus, BusError> {
        let endpoint = cfg.emulator_endpoint();
        let connect_err = |client| move |source| BusError::Connect { client, source };
        // One credentials object for all four clients, so they share one cached token. An
        // emulator gets anonymous credentials: never the metadata server, never a real project.
        let credentials = match &endpoint {
            Some(_) => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            None => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| BusError::Connect {
                    client: "credentials",
                    source: google_cloud_gax::client_builder::Error::cred(e),
                })?,
        };

        let base_publisher = configure!(BasePublisher::builder(), &endpoint, credentials)
            // The retry budget is the publish timeout: the background batch stops retrying at
            // about the moment the caller gives up, instead of publishing minutes later.
            .with_retry_policy(RetryableErrors.with_time_limit(cfg.publish_timeout))
            .with_backoff_policy(
                ExponentialBackoffBuilder::new()
                    .with_initial_delay(Duration::from_millis(50))
                    .with_maximum_delay(Duration::from_millis(500))
                    .with_scaling(2.0)
                    .clamp(),
            )
            .build()
            .await
            .map_err(connect_err("publisher"))?;
        let subscriber = configure!(Subscriber::builder(), &endpoint, credentials)
            .build()
            .await
            .map_err(connect_err("subscriber"))?;
        let topics = configure!(TopicAdmin::builder(), &endpoint, credentials)
            .build()
            .await
            .map_err(connect_err("topic admin"))?;
        let subscriptions = configure!(SubscriptionAdmin::builder(), &endpoint, credentials)
            .build()
            .await
            .map_err(connect_err("subscription admin"))?;

        Ok(Bus {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                base_publisher,
                publishers: Mutex::new(HashMap::new()),
                subscriber,
                topics,
                subscriptions,
            }),
        })
    }

    /// The configuration this bus was built from.
    pub fn config(&self) -> &BusConfig {
        &self.inner.cfg
    }

    /// `projects/{project}/topics/{topic}`; a full path is returned unchanged.
    pub fn topic_path(&self, topic: &str) -> Result<String, BusError> {
        resource_path(&self.inner.cfg.project, "topics", topic)
    }

    /// `projects/{project}/subscriptions/{subscription}`; a full path is returned unchanged.
    pub fn subscription_path(&self, subscription: &str) -> Result<String, BusError> {
        resource_path(&self.inner.cfg.project, "subscriptions", subscription)
    }

    fn publisher(&self, topic_path: &str) -> Publisher {
        let mut publishers = self
            .inner
            .publishers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        publishers
            .entry(topic_path.to_owned())
            .or_insert_with(|| {
                self.inner
                    .base_publisher
                    .publisher(topic_path)
                    .set_delay_threshold(self.inner.cfg.batch_max_delay)
                    .set_message_count_threshold(self.inner.cfg.batch_max_messages)
                    .build()
            })
            .clone()
    }

    /// Publishes one message and returns the server-assigned message id.
    ///
    /// Fails within [`BusConfig::publish_timeout`]. A timed-out message may still reach the
    /// topic later (the client cannot recall a batch in flight); consumers are idempotent, so
    /// the outbox re-driving it only risks a duplicate, never a loss.
    pub async fn publish(&self, topic: &str, msg: OutgoingMessage) -> Result<String, BusError> {
        let path = self.topic_path(topic)?;
        let publisher = self.publisher(&path);
        let timeout = self.inner.cfg.publish_timeout;
        let ordering_key = msg.ordering_key.clone();

        // Only ordered messages can need a second attempt (see below).
        let retry_copy = ordering_key.as_ref().map(|_| msg.clone());
        let attempt = async {
            let first = publisher.publish(msg.into_model()).await;
            match (first, retry_copy, &ordering_key) {
                // An earlier failure paused this key. Ordering across an outage is already
                // broken and the outbox re-drives the failed message, so resume and retry once.
                (Err(PublishError::OrderingKeyPaused), Some(copy), Some(key)) => {
                    publisher.resume_publish(key.clone());
                    publisher.publish(copy.into_model()).await
                }
                (other, _, _) => other,
            }
        };
        let result = tokio::time::timeout(timeout, attempt).await;
        if result.as_ref().map_or(true, |r| r.is_err())
            && let Some(key) = &ordering_key
        {
            publisher.resume_publish(key.clone());
        }
        match result {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(source)) => Err(BusError::Publish {
                topic: path,
                source,
            }),
            Err(_) => Err(BusError::PublishTimeout {
                topic: path,
                timeout,
            }),
        }
    }

    /// Sends every batched message now and waits for the results: call before exiting so a
    /// shutdown does not drop messages still waiting for batch companions.
    pub async fn flush(&self) {
        let publishers: Vec<Publisher> = self
            .inner
            .publishers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        futures::future::join_all(publishers.iter().map(Publisher::flush)).await;
    }

    /// Readiness probe: one cheap admin call (list at most one topic), no retries, bounded by
    /// [`BusConfig::admin_timeout`].
    ///
    /// `PERMISSION_DENIED` counts as ready: the service answered and authenticated us, and a
    /// least-privilege runtime account (publisher or subscriber role only) may not list
    /// topics. Authentication failures and unreachable endpoints are errors.
    pub async fn ping(&self) -> Result<(), BusError> {
        let timeout = self.inner.cfg.admin_timeout;
        let call = self
            .inner
            .topics
            .list_topics()
            .set_project(format!("projects/{}", self.inner.cfg.project))
            .set_page_size(1)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(timeout)
            .send();
        match bounded("Pub/Sub ping", timeout, call).await? {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(Code::PermissionDenied) => Ok(()),
            Err(e) => Err(BusError::rpc("Pub/Sub ping", e)),
        }
    }

    /// Creates the topic unless it exists. For local runs and tests: in production Terraform
    /// owns topics and the runtime accounts cannot create them.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        let path = self.topic_path(topic)?;
        let timeout = self.inner.cfg.admin_timeout;
        let get = self
            .inner
            .topics
            .get_topic()
            .set_topic(&path)
            .with_attempt_timeout(timeout)
            .send();
        match bounded("get topic", timeout, get).await? {
            Ok(_) => return Ok(()),
            Err(e) if status_code(&e) == Some(Code::NotFound) => {}
            Err(e) => return Err(BusError::rpc(format!("get topic {path}"), e)),
        }
        let create = self
            .inner
            .topics
            .create_topic()
            .set_name(&path)
            .with_attempt_timeout(timeout)
            .send();
        match bounded("create topic", timeout, create).await? {
            Ok(_) => Ok(()),
            // Another process created it between our get and create.
            Err(e) if status_code(&e) == Some(Code::AlreadyExists) => Ok(()),
            Err(e) => Err(BusError::rpc(format!("create topic {path}"), e)),
        }
    }

    /// Creates a pull subscription on `topic` unless it exists; an existing subscription must
    /// be attached to the same topic. For local runs and tests (Terraform in production).
    pub async fn ensure_pull_subscription(
        &self,
        topic: &str,
        subscription: &str,
        ack_deadline: Duration,
    ) -> Result<(), BusError> {
        self.ensure_subscription(topic, subscription, &SubscriptionSpec::pull(ack_deadline))
            .await
    }

    /// Creates `subscription` on `topic` as `spec` describes unless it exists; an existing
    /// subscription must be attached to the same topic (its settings are left alone). For
    /// local runs and tests: in production Terraform owns subscriptions.
    pub async fn ensure_subscription(
        &self,
        topic: &str,
        subscription: &str,
        spec: &SubscriptionSpec,
    ) -> Result<(), BusError> {
        let topic_path = self.topic_path(topic)?;
        let path = self.subscription_path(subscription)?;
        let timeout = self.inner.cfg.admin_timeout;
        let get = self
            .inner
            .subscriptions
            .get_subscription()
            .set_subscription(&path)
            .with_attempt_timeout(timeout)
            .send();
        match bounded("get subscription", timeout, get).await? {
            Ok(existing) if existing.topic == topic_path => return Ok(()),
            Ok(existing) => {
                return Err(BusError::SubscriptionMismatch {
                    subscription: path,
                    expected: topic_path,
                    actual: existing.topic,
                });
            }
            Err(e) if status_code(&e) == Some(Code::NotFound) => {}
            Err(e) => return Err(BusError::rpc(format!("get subscription {path}"), e)),
        }
        // Pub/Sub accepts 10..=600 s.
        let deadline_secs = spec.ack_deadline.as_secs().clamp(10, 600) as i32;
        let mut create = self
            .inner
            .subscriptions
            .create_subscription()
            .set_name(&path)
            .set_topic(&topic_path)
            .set_ack_deadline_seconds(deadline_secs);
        if let Some(endpoint) = &spec.push_endpoint {
            create = create.set_push_config(PushConfig::new().set_push_endpoint(endpoint));
        }
        if let Some(dead) = &spec.dead_letter {
            create = create
                .set_dead_letter_policy(
                    DeadLetterPolicy::new()
                        .set_dead_letter_topic(self.topic_path(&dead.topic)?)
                        .set_max_delivery_attempts(dead.max_delivery_attempts),
                )
                .set_retry_policy(
                    RetryPolicy::new()
                        .set_minimum_backoff(wkt_duration(dead.minimum_backoff))
                        .set_maximum_backoff(wkt_duration(dead.maximum_backoff)),
                );
        }
        let create = create.with_attempt_timeout(timeout).send();
        match bounded("create subscription", timeout, create).await? {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(Code::AlreadyExists) => Ok(()),
            Err(e) => Err(BusError::rpc(format!("create subscription {path}"), e)),
        }
    }

    /// Opens a streaming pull on `subscription`. The connection is made lazily on the first
    /// [`Subscription::next`], which then retries transient failures by itself.
    pub async fn subscribe(&self, subscription: &str) -> Result<Subscription, BusError> {
        let name = self.subscription_path(subscription)?;
        let stream = self.inner.subscriber.subscribe(&name).build();
        Ok(Subscription { name, stream })
    }
}

/// Runs `fut` with an outer deadline: the clients' own attempt timeouts do not cover every
/// step (credential refresh, connection set-up), and a probe must never hang.
async fn bounded<T>(
    operation: &str,
    timeout: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, BusError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| BusError::Timeout {
            operation: operation.to_owned(),
            timeout,
        })
}

/// Builds `projects/{project}/{kind}/{id}`, validating the id the way Pub/Sub does (3-255
/// characters from `[A-Za-z0-9-_.~+%]`, starting with a letter, not `goog`-prefixed) so a
/// typo fails here with a clear message instead of as an opaque RPC error.
fn resource_path(project: &str, kind: &str, id: &str) -> Result<String, BusError> {
    if let Some(rest) = id.strip_prefix("projects/") {
        let valid = rest
            .split_once('/')
            .and_then(|(_, r)| r.split_once('/'))
            .is_some_and(|(k, leaf)| k == kind && valid_id(leaf));
        return if valid {
            Ok(id.to_owned())
        } else {
            Err(BusError::InvalidName(id.to_owned()))
        };
    }
    if valid_id(id) {
        Ok(format!("projects/{project}/{kind}/{id}"))
    } else {
        Err(BusError::InvalidName(id.to_owned()))
    }
}

fn valid_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.to_ascii_lowercase().starts_with("goog")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_paths_from_short_ids() {
        assert_eq!(
            resource_path("radio24-dev", "topics", "submission-ingested").unwrap(),
            "projects/radio24-dev/topics/submission-ingested"
        );
        assert_eq!(
            resource_path("p", "topics", "projects/other/topics/abc").unwrap(),
            "projects/other/topics/abc"
        );
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "",
            "ab",
            "1abc",
            "goog-topic",
            "has/slash",
            "spa ce",
            "projects/p/subscriptions/abc",
        ] {
            assert!(
                resource_path("radio24-dev", "topics", bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn emulator_endpoint_gets_a_scheme() {
        let cfg = BusConfig::new("radio24-dev").with_emulator_host("127.0.0.1:8085");
        assert_eq!(
            cfg.emulator_endpoint().as_deref(),
            Some("http://127.0.0.1:8085")
        );
        assert_eq!(BusConfig::new("radio24-dev").emulator_endpoint(), None);
    }
}
