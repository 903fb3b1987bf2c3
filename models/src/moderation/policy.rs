//! The station's policy: per-category thresholds turn a provider's scores into approve, hold
//! for a human, or reject.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared::config::{ConfigError, Env};

use super::{CATEGORIES, ModerationResult, STATION_CATEGORIES, known_category};

/// What to do with a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    /// In the grey zone: a human decides.
    Held,
    Rejected,
}

impl Decision {
    /// The submission status it leads to.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Held => "held",
            Decision::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scores at or above `hold_at` are held for review; at or above `reject_at`, rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub hold_at: f64,
    pub reject_at: f64,
}

impl Thresholds {
    /// # Panics
    /// Unless `0 <= hold_at <= reject_at <= 1`.
    pub const fn new(hold_at: f64, reject_at: f64) -> Self {
        assert!(0.0 <= hold_at && hold_at <= reject_at && reject_at <= 1.0);
        Thresholds { hold_at, reject_at }
    }
}

/// Defaults for a general-audience station, as `(category, hold_at, reject_at)`.
///
/// Self-harm and intent reject only at 1.0, i.e. practically never: someone who writes
/// about ending their life should be seen by a person. Instructions for it, threats and
/// anything sexual about minors are rejected early. Contact details and instructions to the
/// DJ are only ever held: a person can approve them.
const DEFAULT_THRESHOLDS: [(&str, f64, f64); 15] = [
    ("harassment", 0.4, 0.9),
    ("harassment/threatening", 0.3, 0.7),
    ("hate", 0.3, 0.85),
    ("hate/threatening", 0.2, 0.6),
    ("illicit", 0.4, 0.9),
    ("illicit/violent", 0.3, 0.7),
    ("self-harm", 0.3, 1.0),
    ("self-harm/intent", 0.2, 1.0),
    ("self-harm/instructions", 0.2, 0.6),
    ("sexual", 0.4, 0.85),
    ("sexual/minors", 0.1, 0.4),
    ("violence", 0.4, 0.85),
    ("violence/graphic", 0.3, 0.7),
    ("personal-data", 0.5, 1.0),
    ("prompt-injection", 0.5, 1.0),
];

/// For a category the policy does not know (a provider added one): hold when it is
/// confident, never reject unseen.
const UNKNOWN_CATEGORY: Thresholds = Thresholds::new(0.5, 1.0);

/// Per-category thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    thresholds: BTreeMap<&'static str, Thresholds>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            thresholds: DEFAULT_THRESHOLDS
                .iter()
                .map(|&(c, hold, reject)| (c, Thresholds::new(hold, reject)))
                .collect(),
        }
    }
}

impl Policy {
    /// The variable [`Policy::from_env`] reads.
    pub const ENV: &str = "MODERATION_THRESHOLDS";

    /// The defaults, overridden per category by `MODERATION_THRESHOLDS`, e.g.
    /// `violence=0.4:0.8,hate=0.3:0.7` (`category=hold_at:reject_at`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(env
            .optional_with(Self::ENV, |v| Policy::default().with_overrides(v))?
            .unwrap_or_default())
    }

    /// Applies `category=hold:reject,...` overrides.
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, String> {
        let mut seen = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (category, range) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected category=hold:reject"))?;
            let category = category.trim();
            let key = known_category(category).ok_or_else(|| {
                format!(
                    "unknown category {category:?}; known: {}, {}",
                    CATEGORIES.join(", "),
                    STATION_CATEGORIES.join(", ")
                )
            })?;
            if seen.contains(&key) {
                return Err(format!("{key} is given twice"));
            }
            seen.push(key);
            let (hold, reject) = range
                .split_once(':')
                .ok_or_else(|| format!("{item:?}: expected category=hold:reject"))?;
            let number = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("{item:?}: {:?} is not a number", s.trim()))
            };
            let (hold_at, reject_at) = (number(hold)?, number(reject)?);
            if !(0.0 <= hold_at && hold_at <= reject_at && reject_at <= 1.0) {
                return Err(format!("{item:?}: need 0 <= hold <= reject <= 1"));
            }
            self.thresholds
                .insert(key, Thresholds { hold_at, reject_at });
        }
        Ok(self)
    }

    /// The thresholds applied to `category`.
    pub fn thresholds(&self, category: &str) -> Thresholds {
        self.thresholds
            .get(category)
            .copied()
            .unwrap_or(UNKNOWN_CATEGORY)
    }

    /// Approved, held (some score in a grey zone) or rejected (some score at or above its
    /// reject threshold), with the categories that decided it.
    pub fn decide(&self, result: &ModerationResult) -> (Decision, Vec<String>) {
        let mut held = Vec::new();
        let mut rejected = Vec::new();
        for (category, &score) in &result.category_scores {
            let t = self.thresholds(category);
            if score >= t.reject_at {
                rejected.push(category.clone());
            } else if score >= t.hold_at || score.is_nan() {
                // A NaN score is a broken provider answer: a person should look.
                held.push(category.clone());
            }
        }
        if !rejected.is_empty() {
            (Decision::Rejected, rejected)
        } else if !held.is_empty() {
            (Decision::Held, held)
        } else {
            (Decision::Approved, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_threshold_names_a_known_category() {
        for (c, _, _) in DEFAULT_THRESHOLDS {
            assert_eq!(known_category(c), Some(c));
        }
    }
}
