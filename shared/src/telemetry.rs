//! Logging and trace context.
//!
//! On Cloud Run (`K_SERVICE` is set) logs are JSON in Cloud Logging's shape via
//! tracing-stackdriver; locally they are human-readable text. `LOG_FORMAT=json|text`
//! overrides the choice, `RUST_LOG` the levels.
//!
//! A [`TraceContext`] is taken from the incoming request (`traceparent`, or Google's
//! `X-Cloud-Trace-Context`) or made fresh, recorded on the request span so every log line
//! of the request carries it, stored with the submission and copied into every message
//! published on its behalf, so one trace id follows a submission through the pipeline.

use std::fmt;

use rand::Rng;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("expected json or text".into()),
        }
    }
}

/// Installs the global subscriber. Calling it twice (as tests do) is harmless.
pub fn init(default_level: &str) {
    let format = std::env::var("LOG_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(if std::env::var_os("K_SERVICE").is_some() {
            LogFormat::Json
        } else {
            LogFormat::Text
        });
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry.with(tracing_stackdriver::layer()).try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init(),
    };
}

/// W3C trace context: a 128-bit trace id and the 64-bit id of the parent span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

impl TraceContext {
    /// A new root trace.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        TraceContext {
            trace_id: rng.random::<u128>().max(1),
            span_id: rng.random::<u64>().max(1),
            sampled: false,
        }
    }

    /// From request headers: `traceparent` first, then `X-Cloud-Trace-Context`.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        get("traceparent")
            .and_then(Self::from_traceparent)
            .or_else(|| get("x-cloud-trace-context").and_then(Self::from_cloud_trace))
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex flags>`.
    pub fn from_traceparent(v: &str) -> Option<Self> {
        let mut parts = v.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|s| *s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// Parses Google's `TRACE_ID/SPAN_ID;o=1` (span id decimal).
    pub fn from_cloud_trace(v: &str) -> Option<Self> {
        let (trace, rest) = v.trim().split_once('/').unwrap_or((v.trim(), ""));
        if trace.len() != 32 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let (span, opts) = rest.split_once(';').unwrap_or((rest, ""));
        let span_id = span.parse::<u64>().ok().filter(|s| *s != 0).unwrap_or(1);
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: opts.trim() == "o=1",
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// A child context for an outgoing call or message: same trace, new span.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: rand::rng().random::<u64>().max(1),
            sampled: self.sampled,
        }
    }

    /// The `traceparent` header/attribute value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.sampled as u8
        )
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.trace_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let t = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled);
        assert_eq!(
            t.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(t.child().trace_id(), t.trace_id());
        assert!(TraceContext::from_traceparent("00-0000-00f067aa0ba902b7-01").is_none());
        assert!(TraceContext::from_traceparent("garbage").is_none());
    }

    #[test]
    fn cloud_trace_header_is_understood() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        let t = TraceContext::from_headers(&h).unwrap();
        assert_eq!(t.trace_id(), "105445aa7843bc8bf206b12000100000");
        assert!(t.sampled);
    }
}
