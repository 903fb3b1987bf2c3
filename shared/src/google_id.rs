//! Google-signed ID tokens: what Pub/Sub push attaches (`oidcToken`) and what an operator's
//! `gcloud auth print-identity-token` produces. A token passes when it is RS256-signed by a
//! key at the JWKS, names an accepted issuer and the configured audience, has not expired,
//! and carries a verified `email` from the allowed list.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::auth::{AuthError, JwtConfig, JwtVerifier};
use crate::config::{ConfigError, Env};
use crate::problem::Problem;

/// Google's JWKS for its ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The issuers Google ID tokens carry (both spellings are in use).
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Default clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Where tokens come from and for whom they must be minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleIdConfig {
    /// The `aud` the tokens must name (for push: the subscription's audience, by default
    /// the endpoint URL).
    pub audience: String,
    pub jwks_url: String,
    /// Accepted `iss` values; must not be empty.
    pub issuers: Vec<String>,
    pub leeway: Duration,
}

impl GoogleIdConfig {
    /// Google's issuers and JWKS with the default leeway.
    pub fn google(audience: impl Into<String>) -> Self {
        GoogleIdConfig {
            audience: audience.into(),
            jwks_url: GOOGLE_JWKS_URL.to_owned(),
            issuers: GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Reads `{prefix}_AUDIENCE` (required), `{prefix}_JWKS_URL` (default
    /// [`GOOGLE_JWKS_URL`]; `https://`, or `http://` on loopback), `{prefix}_ISSUERS`
    /// (comma-separated, default [`GOOGLE_ISSUERS`]) and `{prefix}_LEEWAY` (default 60s).
    pub fn from_env(env: &Env, prefix: &str) -> Result<Self, ConfigError> {
        let var = |s: &str| format!("{prefix}_{s}");
        let defaults = GoogleIdConfig::google(env.required::<String>(&var("AUDIENCE"))?);
        let jwks_url = env.or(&var("JWKS_URL"), defaults.jwks_url.clone())?;
        check_jwks_url(&jwks_url)
            .map_err(|reason| ConfigError::invalid(&var("JWKS_URL"), &jwks_url, reason))?;
        let issuers = env
            .optional_with(&var("ISSUERS"), parse_list)?
            .unwrap_or(defaults.issuers.clone());
        let leeway = env.duration_or(&var("LEEWAY"), defaults.leeway)?;
        Ok(GoogleIdConfig {
            jwks_url,
            issuers,
            leeway,
            ..defaults
        })
    }
}

/// Verifies Google ID tokens for one audience.
#[derive(Clone)]
pub struct GoogleIdVerifier {
    verifier: JwtVerifier,
    audience: String,
}

impl std::fmt::Debug for GoogleIdVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleIdVerifier")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl GoogleIdVerifier {
    /// # Panics
    /// If `config.issuers` is empty (a programming error: no token could ever pass).
    pub fn new(config: GoogleIdConfig) -> Self {
        let mut issuers = config.issuers.into_iter();
        let first = issuers
            .next()
            .expect("GoogleIdConfig::issuers names at least one issuer");
        let verifier = issuers.fold(
            JwtVerifier::new(JwtConfig {
                issuer: first,
                audience: config.audience.clone(),
                jwks_url: config.jwks_url,
                leeway: config.leeway,
            }),
            JwtVerifier::also_accept_issuer,
        );
        GoogleIdVerifier {
            verifier,
            audience: config.audience,
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Checks the request's `Authorization: Bearer` token and returns its verified email,
    /// which must be one of `allowed` (compared case-insensitively).
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        allowed: &[String],
    ) -> Result<String, IdTokenError> {
        let token = JwtVerifier::bearer(headers.get(header::AUTHORIZATION))?;
        let claims = self.verifier.verify(token).await?;
        let Some(email) = claims.email else {
            return Err(IdTokenError::Forbidden(
                "token has no email claim".to_owned(),
            ));
        };
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&email)) {
            return Err(IdTokenError::Forbidden(format!("{email} is not allowed")));
        }
        if claims.email_verified != Some(true) {
            return Err(IdTokenError::Forbidden(
                "token's email is not verified".to_owned(),
            ));
        }
        Ok(email)
    }
}

/// Keys must come over TLS; plain http is allowed only to a loopback address (tests).
fn check_jwks_url(url: &str) -> Result<(), &'static str> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL")?;
    let loopback = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must be an https:// URL (plain http only to a loopback IP address)"),
    }
}

/// A comma-separated, non-empty list.
pub fn parse_list(s: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err("expected a comma-separated list".to_owned());
    }
    Ok(items)
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// No usable token: missing, malformed, unsigned, badly signed, expired, wrong issuer or
    /// audience (401).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid token, but not for an allowed account (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Google's signing keys could not be fetched; not the caller's fault (503, retried).
    #[error("cannot verify tokens: {0}")]
    KeysUnavailable(String),
}

impl From<AuthError> for IdTokenError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable(reason) => IdTokenError::KeysUnavailable(reason),
            e => IdTokenError::Unauthenticated(e.to_string()),
        }
    }
}

impl IdTokenError {
    pub fn status(&self) -> StatusCode {
        match self {
            IdTokenError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IdTokenError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdTokenError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for IdTokenError {
    fn into_response(self) -> Response {
        // Usually a misconfiguration (audience, account) worth seeing in the logs: for push
        // it would otherwise retry silently into the dead-letter topic.
        tracing::warn!(error = %self, "request rejected");
        match self {
            IdTokenError::Unauthenticated(detail) => {
                let mut res = Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "Authentication required",
                )
                .detail(detail)
                .into_response();
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
                res
            }
            IdTokenError::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
                    .detail(detail)
                    .into_response()
            }
            IdTokenError::KeysUnavailable(_) => {
                Problem::unavailable("signing keys unavailable").into_response()
            }
        }
    }
}
