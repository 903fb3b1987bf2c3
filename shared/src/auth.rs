//! Bearer JWT verification against a configured issuer, audience and JWKS.
//!
//! Used for listener identity at ingest (Firebase Auth / Identity Platform ID tokens) and,
//! with Google's JWKS, for Pub/Sub push OIDC tokens. Keys are cached for the JWKS
//! response's `max-age` and refetched (at most every `refetch_min`) when a token names an
//! unknown key id, which is how key rotation shows up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::{ConfigError, Env};

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`.
    pub leeway: Duration,
}

impl JwtConfig {
    /// Reads `{prefix}_ISSUER`, `{prefix}_AUDIENCE`, `{prefix}_JWKS_URL`, `{prefix}_LEEWAY`.
    pub fn from_env(env: &Env, prefix: &str) -> Result<Self, ConfigError> {
        let var = |s: &str| format!("{prefix}_{s}");
        let jwks_url: String = env.required(&var("JWKS_URL"))?;
        if !(jwks_url.starts_with("https://") || jwks_url.starts_with("http://127.0.0.1")) {
            return Err(ConfigError::invalid(
                &var("JWKS_URL"),
                &jwks_url,
                "must be an https:// URL (plain http only on loopback)",
            ));
        }
        Ok(JwtConfig {
            issuer: env.required(&var("ISSUER"))?,
            audience: env.required(&var("AUDIENCE"))?,
            jwks_url,
            leeway: env.duration_or(&var("LEEWAY"), Duration::from_secs(60))?,
        })
    }
}

/// The claims the services use; everything else in the token is ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub exp: u64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    /// The key set could not be fetched: not the client's fault (503, retry).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

struct KeyCache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    expires: Instant,
    fetched: Option<Instant>,
}

#[derive(Clone)]
pub struct JwtVerifier {
    config: Arc<JwtConfig>,
    /// Accepted `iss` values: `config.issuer` plus any added with
    /// [`JwtVerifier::also_accept_issuer`].
    issuers: Vec<String>,
    http: reqwest::Client,
    cache: Arc<RwLock<KeyCache>>,
    refetch_min: Duration,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Self {
        JwtVerifier {
            issuers: vec![config.issuer.clone()],
            config: Arc::new(config),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a TLS client can be built"),
            cache: Arc::new(RwLock::new(KeyCache {
                keys: HashMap::new(),
                expires: Instant::now(),
                fetched: None,
            })),
            refetch_min: Duration::from_secs(30),
        }
    }

    /// Also accepts tokens whose `iss` is `issuer`, for providers that use more than one
    /// spelling of the same issuer (Google signs ID tokens with `https://accounts.google.com`
    /// or `accounts.google.com`). Everything else is verified exactly as for the configured
    /// issuer.
    pub fn also_accept_issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        if !self.issuers.contains(&issuer) {
            self.issuers.push(issuer);
        }
        self
    }

    /// Takes the token out of an `Authorization: Bearer ...` header value.
    pub fn bearer(header: Option<&http::HeaderValue>) -> Result<&str, AuthError> {
        let value = header
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Invalid("authorization header is not ASCII".into()))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(|| AuthError::Invalid("expected 'Bearer <token>'".into()))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Invalid("expected 'Bearer <token>'".into()));
        }
        Ok(token.trim())
    }

    /// Verifies signature, issuer (any accepted one), audience, expiry and not-before.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("token has no key id".into()))?;
        let (key, alg) = self.key(&kid).await?;
        if header.alg != alg {
            return Err(AuthError::Invalid(
                "algorithm does not match the key".into(),
            ));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&self.issuers);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        {
            let cache = self.cache.read().await;
            if cache.expires > Instant::now()
                && let Some(k) = cache.keys.get(kid)
            {
                return Ok(k.clone());
            }
        }
        let mut cache = self.cache.write().await;
        let fresh = cache.expires > Instant::now();
        let recently = cache
            .fetched
            .is_some_and(|t| t.elapsed() < self.refetch_min);
        // Refetch when stale, or when a fresh set lacks the kid (rotation) but not more
        // often than `refetch_min`, so garbage kids cannot hammer the JWKS endpoint.
        if !fresh || (!cache.keys.contains_key(kid) && !recently) {
            let (keys, max_age) = self.fetch().await?;
            cache.keys = keys;
            cache.expires = Instant::now() + max_age;
            cache.fetched = Some(Instant::now());
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown signing key".into()))
    }

    async fn fetch(
        &self,
    ) -> Result<(HashMap<String, (DecodingKey, Algorithm)>, Duration), AuthError> {
        let fetch = || async {
            let res = self
                .http
                .get(&self.config.jwks_url)
                .send()
                .await?
                .error_for_status()?;
            let max_age = cache_max_age(res.headers()).unwrap_or(Duration::from_secs(3600));
            let set: JwkSet = res.json().await?;
            Ok::<_, reqwest::Error>((set, max_age))
        };
        let (set, max_age) = fetch
            .retry(crate::retry::exponential())
            .await
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            keys.insert(kid.clone(), (key, alg));
        }
        tracing::info!(
            keys = keys.len(),
            max_age_s = max_age.as_secs(),
            "fetched JWKS"
        );
        Ok((
            keys,
            max_age.clamp(Duration::from_secs(60), Duration::from_secs(86_400)),
        ))
    }
}

fn cache_max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let cc = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?;
    cc.split(',').find_map(|d| {
        d.trim()
            .strip_prefix("max-age=")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
    })
}
