//! Configuration from environment variables, validated once at start-up.
//!
//! Every service builds its own `Config` struct from an [`Env`]; each read names its
//! variable, so a bad or missing value fails start-up with an error that says which
//! variable is wrong and why, instead of surfacing later as a confusing runtime fault.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(String),
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(name: &str, value: &str, reason: impl Display) -> Self {
        ConfigError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A source of configuration values: the process environment, or a map in tests.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Reads the process environment. Empty values count as unset, which is what an
    /// operator who writes `FOO=` in a deployment file means.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        Env { vars }
    }

    /// The raw value, if set.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.trim())
    }

    /// A required value parsed with `FromStr`.
    pub fn required<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.optional(name)?
            .ok_or_else(|| ConfigError::Missing(name.to_owned()))
    }

    /// An optional value parsed with `FromStr`.
    pub fn optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.optional_with(name, |v| v.parse::<T>().map_err(|e| e.to_string()))
    }

    /// A value with a default when unset.
    pub fn or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// An optional value parsed by a custom parser.
    pub fn optional_with<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .map_err(|reason| ConfigError::invalid(name, v, reason)),
        }
    }

    /// A duration such as `250ms`, `2s`, `5m`, `1h`; `default` when unset.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self.optional_with(name, parse_duration)?.unwrap_or(default))
    }

    /// A boolean (`true/false`, `1/0`, `on/off`, `yes/no`); `default` when unset.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.optional_with(name, parse_flag)?.unwrap_or(default))
    }
}

/// Parses `250ms`, `2s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number followed by ms, s, m or h".to_owned())?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| "duration too large".to_owned())
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A byte size such as `64KiB`, `5MiB`, `1000` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| "expected a number optionally followed by KiB or MiB".to_owned())?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" | "KB" => 1024,
            "MiB" | "M" | "MB" => 1024 * 1024,
            other => return Err(format!("unknown unit {other:?}: use B, KiB or MiB")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| "size too large".to_owned())
    }
}

/// A rate limit such as `60/min`, `5/s`, `1000/h`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `per`; `None` when the limit is off.
    pub quota: Option<(std::num::NonZeroU32, Duration)>,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { quota: None };
}

impl FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(RateLimit::OFF);
        }
        let (n, per) = s
            .split_once('/')
            .ok_or_else(|| "expected N/s, N/min, N/h or off".to_owned())?;
        let n: std::num::NonZeroU32 = n
            .trim()
            .parse()
            .map_err(|_| "the count must be a positive whole number".to_owned())?;
        let per = match per.trim() {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown period {other:?}: use s, min or h")),
        };
        Ok(RateLimit {
            quota: Some((n, per)),
        })
    }
}

/// A process environment variable that is set and not empty (model directories and other
/// paths read outside a service's [`Env`]).
pub fn process_var(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Where a local model's files are: `$<var>` if set, else
/// `$RADIO24_CACHE/tools/models/<name>` (cache root defaulting to `$HOME/.cache/radio24`),
/// where `dev/install-tools` puts them.
pub fn model_dir(var: &str, name: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(dir) = process_var(var) {
        return PathBuf::from(dir);
    }
    let cache = process_var("RADIO24_CACHE").map_or_else(
        || {
            process_var("HOME")
                .map_or_else(std::env::temp_dir, PathBuf::from)
                .join(".cache")
                .join("radio24")
        },
        PathBuf::from,
    );
    cache.join("tools").join("models").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("PORT", "eighty"), ("EMPTY", "  ")]);
        let err = env.required::<u16>("PORT").unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
        let err = env.required::<u16>("EMPTY").unwrap_err();
        assert_eq!(err, ConfigError::Missing("EMPTY".into()));
        assert_eq!(env.or("UNSET", 7u16).unwrap(), 7);
    }

    #[test]
    fn parses_durations_sizes_and_rates() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 fortnights").is_err());
        assert_eq!("5MiB".parse::<ByteSize>().unwrap(), ByteSize(5 << 20));
        assert!("5GiB".parse::<ByteSize>().is_err());
        let r: RateLimit = "60/min".parse().unwrap();
        assert_eq!(r.quota.unwrap().0.get(), 60);
        assert_eq!("off".parse::<RateLimit>().unwrap(), RateLimit::OFF);
        assert!("0/s".parse::<RateLimit>().is_err());
    }
}
