//! A small OpenAI REST client: JSON and multipart POSTs with per-attempt timeouts, retries
//! and OpenAI's error shape mapped onto [`ProviderError`]. The endpoints that use it live with
//! their role: `embedding::openai`, `transcription`, `moderation`.
//!
//! Why not a full SDK: the pipeline needs three endpoints, and what matters for it is how
//! failures are classified (retry in process, let Pub/Sub redeliver later, or give up), which
//! is exactly the part an SDK hides.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use backon::Retryable;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
use shared::config::{ConfigError, Env};

/// The provider name every error from this module carries.
pub const PROVIDER: &str = "openai";

/// Where the API lives unless `OPENAI_BASE_URL` says otherwise (a proxy, a fake in tests).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The longest `Retry-After` waited out in process. A longer one means the quota is gone for
/// a while: holding a request (and a Cloud Run instance) open that long is worse than giving
/// the message back to Pub/Sub, which redelivers it later with its own backoff.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(20);

/// How to reach OpenAI and how patient to be with it.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// API root including the version, without a trailing slash (`OPENAI_BASE_URL`).
    pub base_url: String,
    /// Secret key sent as `Authorization: Bearer` (`OPENAI_API_KEY`). Never logged.
    pub api_key: String,
    /// Limit for one attempt, from connecting to the last byte of the body (`OPENAI_TIMEOUT`).
    pub timeout: Duration,
    /// In-process retries after the first attempt (`OPENAI_MAX_RETRIES`).
    pub max_retries: usize,
    /// Wall-clock limit for one call including every retry and wait (`OPENAI_CALL_BUDGET`).
    /// It must stay below the Pub/Sub acknowledgement deadline of the handler making the call,
    /// or Pub/Sub redelivers a message that is still being worked on.
    pub budget: Duration,
}

impl OpenAiConfig {
    /// A configuration with the defaults and the given key.
    pub fn new(api_key: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            budget: Duration::from_secs(30),
        }
    }

    /// Reads `OPENAI_*`; `None` when `OPENAI_API_KEY` is unset, which means "use the local
    /// providers" rather than an error.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(api_key) = env.raw("OPENAI_API_KEY") else {
            return Ok(None);
        };
        if !api_key.bytes().all(|b| b.is_ascii_graphic()) {
            // Not `ConfigError::invalid`: that would put the secret into the error message.
            return Err(ConfigError::Invalid {
                name: "OPENAI_API_KEY".to_owned(),
                value: "<redacted>".to_owned(),
                reason: "must be printable ASCII without spaces".to_owned(),
            });
        }
        let defaults = OpenAiConfig::new(api_key);
        let base_url = env
            .optional_with("OPENAI_BASE_URL", parse_base_url)?
            .unwrap_or(defaults.base_url);
        let timeout = env.duration_or("OPENAI_TIMEOUT", defaults.timeout)?;
        if timeout.is_zero() {
            return Err(ConfigError::invalid(
                "OPENAI_TIMEOUT",
                "0",
                "must be positive",
            ));
        }
        let max_retries: usize = env.or("OPENAI_MAX_RETRIES", defaults.max_retries)?;
        if max_retries > 10 {
            return Err(ConfigError::invalid(
                "OPENAI_MAX_RETRIES",
                &max_retries.to_string(),
                "at most 10: past that Pub/Sub redelivery is the better retry",
            ));
        }
        let budget = env.duration_or("OPENAI_CALL_BUDGET", defaults.budget)?;
        if budget.is_zero() {
            return Err(ConfigError::invalid(
                "OPENAI_CALL_BUDGET",
                "0",
                "must be positive",
            ));
        }
        Ok(Some(OpenAiConfig {
            base_url,
            api_key: defaults.api_key,
            timeout,
            max_retries,
            budget,
        }))
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("budget", &self.budget)
            .finish()
    }
}

fn parse_base_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// A cheap-to-clone handle on one connection pool to the API.
#[derive(Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    /// `None` for a key that is not a valid header value: requests then go out without one
    /// and the API's 401 says what is wrong.
    auth: Option<HeaderValue>,
    timeout: Duration,
    max_retries: usize,
    budget: Duration,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// The client for a role the configuration already gave to OpenAI.
    ///
    /// # Panics
    /// Without a configuration: [`crate::provider::Provider::from_env`] refuses `openai`
    /// unless `OPENAI_API_KEY` is set, so a validated configuration always has one.
    pub fn required(config: Option<&OpenAiConfig>) -> Self {
        OpenAiClient::new(
            config
                .cloned()
                .expect("a provider set to openai requires OPENAI_API_KEY"),
        )
    }

    /// # Panics
    /// If the TLS backend cannot be initialised, which no retry would fix.
    pub fn new(cfg: OpenAiConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("radio24/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS HTTP client can be built");
        let auth = HeaderValue::from_str(&format!("Bearer {}", cfg.api_key))
            .ok()
            .map(|mut v| {
                // Keeps the key out of hyper's debug output and HTTP/2 header tables.
                v.set_sensitive(true);
                v
            });
        OpenAiClient {
            inner: Arc::new(Inner {
                http,
                base_url: cfg.base_url.trim_end_matches('/').to_owned(),
                auth,
                timeout: cfg.timeout,
                max_retries: cfg.max_retries,
                budget: cfg.budget,
            }),
        }
    }

    /// POSTs `body` as JSON to `path` (relative to the base URL, e.g. `embeddings`).
    pub async fn post_json<Req, Resp>(&self, path: &str, body: &Req) -> Result<Resp, ProviderError>
    where
        Req: Serialize + Sync,
        Resp: DeserializeOwned,
    {
        let body = json_bytes(body)?;
        self.send(path, || self.json_request(path, body.clone()))
            .await
    }

    /// POSTs `body` as JSON and hands back the successful response with its body unread, for
    /// endpoints whose answer is a stream (speech). Retries and the per-attempt timeout cover
    /// the part up to the response headers; reading the body, and deciding how long a pause
    /// in it is too long, is the caller's.
    pub async fn post_json_streaming<Req>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Response, ProviderError>
    where
        Req: Serialize + Sync,
    {
        let body = json_bytes(body)?;
        let body = &body;
        self.with_retries(path, |timeout| async move {
            let res = tokio::time::timeout(timeout, self.json_request(path, body.clone()).send())
                .await
                .map_err(|_| Failure::transient(format!("no response within {timeout:?}")))?
                .map_err(|e| Failure::transport(&e, timeout))?;
            if res.status().is_success() {
                Ok(res)
            } else {
                Err(read_error(res, timeout).await)
            }
        })
        .await
    }

    fn json_request(&self, path: &str, body: Bytes) -> RequestBuilder {
        self.request(path)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// POSTs a multipart form to `path`. `form` builds the form anew for every attempt
    /// because a sent form is consumed.
    pub async fn post_multipart<Resp: DeserializeOwned>(
        &self,
        path: &str,
        form: impl Fn() -> reqwest::multipart::Form + Send + Sync,
    ) -> Result<Resp, ProviderError> {
        self.send(path, || self.request(path).multipart(form()))
            .await
    }

    fn request(&self, path: &str) -> RequestBuilder {
        let url = format!("{}/{}", self.inner.base_url, path.trim_start_matches('/'));
        let mut req = self.inner.http.post(url);
        if let Some(auth) = &self.inner.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req
    }

    /// Runs attempts until one succeeds, one fails for good, the retries are used up or the
    /// next wait would end past the call budget.
    async fn send<Resp: DeserializeOwned>(
        &self,
        path: &str,
        build: impl Fn() -> RequestBuilder + Send + Sync,
    ) -> Result<Resp, ProviderError> {
        let build = &build;
        self.with_retries(path, |timeout| async move {
            let res = build()
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| Failure::transport(&e, timeout))?;
            read_response(res, timeout).await
        })
        .await
    }

    /// Runs `attempt` (given its timeout) under the retry policy of [`OpenAiClient::send`].
    async fn with_retries<T, Fut>(
        &self,
        path: &str,
        attempt: impl Fn(Duration) -> Fut + Send + Sync,
    ) -> Result<T, ProviderError>
    where
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let inner = &self.inner;
        let started = Instant::now();
        let attempt = || async {
            let remaining = inner.budget.saturating_sub(started.elapsed());
            let timeout = inner.timeout.min(remaining);
            if timeout.is_zero() {
                return Err(Failure::transient(format!(
                    "call budget of {:?} used up",
                    inner.budget
                )));
            }
            attempt(timeout).await
        };
        attempt
            .retry(shared::retry::exponential().with_max_times(inner.max_retries))
            .when(|f: &Failure| f.retry)
            .adjust(|f: &Failure, backoff: Option<Duration>| {
                let mut wait = backoff?;
                if let Some(retry_after) = f.retry_after {
                    if retry_after > MAX_RETRY_AFTER {
                        return None;
                    }
                    wait = wait.max(retry_after);
                }
                // Waiting only to find the budget gone would waste the wait: hand the
                // error back now so the caller (or Pub/Sub) retries later.
                (started.elapsed() + wait < inner.budget).then_some(wait)
            })
            .notify(|f: &Failure, wait: Duration| {
                tracing::warn!(
                    provider = PROVIDER,
                    path,
                    error = %f.error,
                    wait_ms = wait.as_millis() as u64,
                    "retrying OpenAI call"
                );
            })
            .await
            .map_err(|f| f.error)
    }
}

/// One failed attempt: the error to return if it is the last, and how to retry it.
#[derive(Debug)]
struct Failure {
    error: ProviderError,
    /// Worth another attempt in process.
    retry: bool,
    /// The server's `Retry-After`: the next attempt must not come earlier.
    retry_after: Option<Duration>,
}

impl Failure {
    fn transient(reason: String) -> Self {
        Failure {
            error: ProviderError::Transient {
                provider: PROVIDER,
                reason,
            },
            retry: true,
            retry_after: None,
        }
    }

    fn transport(e: &reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            return Failure::transient(format!("no complete response within {timeout:?}"));
        }
        if e.is_builder() {
            return Failure {
                error: ProviderError::Permanent {
                    provider: PROVIDER,
                    reason: format!("request cannot be built: {}", error_chain(e)),
                },
                retry: false,
                retry_after: None,
            };
        }
        // Connection refused or reset, TLS or HTTP/2 errors, a body cut short: all of them
        // may go away on a new connection.
        Failure::transient(error_chain(e))
    }
}

/// An error with its causes: reqwest's own message alone ("error sending request") hides
/// whether it was DNS, TLS or a reset.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn json_bytes<Req: Serialize>(body: &Req) -> Result<Bytes, ProviderError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ProviderError::Permanent {
            provider: PROVIDER,
            reason: format!("request body does not serialize: {e}"),
        })
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

async fn read_response<Resp: DeserializeOwned>(
    res: Response,
    timeout: Duration,
) -> Result<Resp, Failure> {
    if !res.status().is_success() {
        return Err(read_error(res, timeout).await);
    }
    let request_id = request_id(res.headers());
    let body = res
        .bytes()
        .await
        .map_err(|e| Failure::transport(&e, timeout))?;
    // A 2xx whose body does not parse is most likely cut short by a proxy; if it is a
    // real schema change, Pub/Sub dead-letters the message after its attempts.
    serde_json::from_slice(&body).map_err(|e| {
        Failure::transient(format!(
            "unexpected response body ({e}), request {request_id}"
        ))
    })
}

/// Reads an error response's body and classifies it.
async fn read_error(res: Response, timeout: Duration) -> Failure {
    let status = res.status();
    let headers = res.headers().clone();
    let request_id = request_id(&headers);
    match tokio::time::timeout(timeout, res.bytes()).await {
        Ok(Ok(body)) => classify(status, &headers, &body, &request_id),
        Ok(Err(e)) => Failure::transport(&e, timeout),
        Err(_) => classify(status, &headers, b"", &request_id),
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    error: ApiError,
}

/// Maps an error response onto what the pipeline should do about it.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], request_id: &str) -> Failure {
    let api = serde_json::from_slice::<ApiErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| ApiError {
            message: String::from_utf8_lossy(body).chars().take(300).collect(),
            ..ApiError::default()
        });
    let code = match &api.code {
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let reason = {
        let mut r = format!("HTTP {}", status.as_u16());
        if let Some(kind) = api.kind.as_deref().or(code) {
            r.push(' ');
            r.push_str(kind);
        }
        if !api.message.is_empty() {
            r.push_str(": ");
            r.extend(redact_keys(&api.message).chars().take(500));
        }
        r.push_str(&format!(" (request {request_id})"));
        r
    };
    let retry_after = retry_after(headers);
    match status.as_u16() {
        429 => {
            // RateLimited has no room for a reason, so the log says which limit it was.
            tracing::warn!(provider = PROVIDER, %reason, ?retry_after, "rate limited");
            Failure {
                error: ProviderError::RateLimited {
                    provider: PROVIDER,
                    retry_after,
                },
                // An exhausted quota (billing) does not come back within seconds.
                retry: code != Some("insufficient_quota"),
                retry_after,
            }
        }
        408 | 409 | 500..=599 => Failure {
            retry_after,
            ..Failure::transient(reason)
        },
        // A bad key, a revoked project or an unknown model says nothing about the input: the
        // operator fixes the configuration and the messages, retried by Pub/Sub or replayed
        // from the dead-letter topic, go through. Retrying within the call cannot help.
        401 | 403 | 404 => Failure {
            retry: false,
            ..Failure::transient(reason)
        },
        _ => Failure {
            error: ProviderError::Permanent {
                provider: PROVIDER,
                reason,
            },
            retry: false,
            retry_after: None,
        },
    }
}

/// `message` with anything that looks like an API key masked: OpenAI's 401 quotes part
/// of the key it got, and these messages end up in logs and in the database.
pub fn redact_keys(message: &str) -> String {
    message
        .split(' ')
        .map(|word| {
            if word.contains("sk-") {
                "[redacted]"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The wait a response asks for: OpenAI's `retry-after-ms`, else `Retry-After` in seconds
/// or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |s: &str| {
        s.parse::<f64>()
            .ok()
            .and_then(|v| Duration::try_from_secs_f64(v).ok())
    };
    if let Some(wait) = header("retry-after-ms").and_then(|ms| seconds(ms).map(|d| d / 1000)) {
        return Some(wait);
    }
    let value = header("retry-after")?;
    seconds(value).or_else(|| {
        let when = httpdate::parse_http_date(value).ok()?;
        Some(
            when.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        let later = SystemTime::now() + Duration::from_secs(90);
        let date = httpdate::fmt_http_date(later);
        let wait = retry_after(&headers(&[("retry-after", &date)])).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
    }

    #[test]
    fn classification() {
        let h = HeaderMap::new();
        let body = br#"{"error":{"message":"bad input","type":"invalid_request_error","param":null,"code":null}}"#;
        let f = classify(StatusCode::BAD_REQUEST, &h, body, "req_1");
        assert!(!f.retry);
        let reason = f.error.to_string();
        assert!(
            reason.contains("bad input") && reason.contains("req_1"),
            "{reason}"
        );
        for status in [408, 409, 500, 502, 503] {
            let f = classify(StatusCode::from_u16(status).unwrap(), &h, b"oops", "r");
            assert!(f.retry && f.error.is_transient(), "{status}");
        }
        let key = br#"{"error":{"message":"Incorrect API key provided: sk-abc***wxyz. You can find your API key at x.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let f = classify(StatusCode::UNAUTHORIZED, &h, key, "r");
        assert!(
            !f.retry && f.error.is_transient(),
            "a bad key is the operator's to fix"
        );
        let reason = f.error.to_string();
        assert!(
            !reason.contains("wxyz") && reason.contains("[redacted]"),
            "{reason}"
        );
        let quota = br#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let f = classify(StatusCode::TOO_MANY_REQUESTS, &h, quota, "r");
        assert!(!f.retry && matches!(f.error, ProviderError::RateLimited { .. }));
    }

    #[test]
    fn config_from_env() {
        assert!(
            OpenAiConfig::from_env(&Env::from_pairs([("X", "1")]))
                .unwrap()
                .is_none()
        );
        let env = Env::from_pairs([
            ("OPENAI_API_KEY", "sk-secret"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_TIMEOUT", "500ms"),
        ]);
        let cfg = OpenAiConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(cfg.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(cfg.timeout, Duration::from_millis(500));
        assert_eq!(cfg.max_retries, 3);
        assert!(!format!("{cfg:?}").contains("sk-secret"));
        let bad = Env::from_pairs([("OPENAI_API_KEY", "k"), ("OPENAI_BASE_URL", "ftp://x")]);
        let err = OpenAiConfig::from_env(&bad).unwrap_err().to_string();
        assert!(err.contains("OPENAI_BASE_URL"), "{err}");
        let bad = Env::from_pairs([("OPENAI_API_KEY", "sk secret")]);
        let err = OpenAiConfig::from_env(&bad).unwrap_err().to_string();
        assert!(
            err.contains("OPENAI_API_KEY") && !err.contains("sk secret"),
            "{err}"
        );
    }
}
