//! Who may act as an operator (review held submissions, ...): people whose Google identity
//! is on an allowlist. In production an operator calls with
//! `Authorization: Bearer $(gcloud auth print-identity-token --audiences=<OPERATOR_AUDIENCE>)`;
//! the token is a Google-signed ID token checked like a push token, and its verified email
//! must be listed in `OPERATOR_EMAILS`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::config::{ConfigError, Env};
use crate::google_id::{GoogleIdConfig, GoogleIdVerifier, IdTokenError, parse_list};

/// How operator requests are authenticated.
#[derive(Debug, Clone)]
pub enum OperatorAuth {
    GoogleId {
        verifier: GoogleIdVerifier,
        emails: Vec<String>,
    },
    /// Local runs only: every request acts as the operator `local`.
    Disabled,
}

impl OperatorAuth {
    /// Reads `OPERATOR_AUTH` (`oidc` | `off`, required) and, for `oidc`, `OPERATOR_EMAILS`
    /// (comma-separated, required) and the `OPERATOR_` token settings of
    /// [`GoogleIdConfig::from_env`] (`OPERATOR_AUDIENCE` required).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode: String = env.required("OPERATOR_AUTH")?;
        match mode.to_ascii_lowercase().as_str() {
            "off" => Ok(OperatorAuth::disabled()),
            "oidc" => {
                let config = GoogleIdConfig::from_env(env, "OPERATOR")?;
                let emails = env
                    .optional_with("OPERATOR_EMAILS", parse_list)?
                    .ok_or_else(|| ConfigError::Missing("OPERATOR_EMAILS".into()))?;
                Ok(OperatorAuth::google_id(config, emails))
            }
            _ => Err(ConfigError::invalid(
                "OPERATOR_AUTH",
                &mode,
                "expected oidc (production) or off (local runs only)",
            )),
        }
    }

    pub fn google_id(config: GoogleIdConfig, emails: Vec<String>) -> Self {
        tracing::info!(
            audience = %config.audience,
            operators = emails.len(),
            "operator authentication: Google ID tokens of listed operators required"
        );
        OperatorAuth::GoogleId {
            verifier: GoogleIdVerifier::new(config),
            emails,
        }
    }

    pub fn disabled() -> Self {
        tracing::warn!(
            "operator authentication is OFF: anyone who can reach this service can approve \
             and reject submissions; only for local runs"
        );
        OperatorAuth::Disabled
    }
}

/// Router state that knows how operators are authenticated.
pub trait HasOperatorAuth {
    fn operator_auth(&self) -> &OperatorAuth;
}

impl<T: HasOperatorAuth> HasOperatorAuth for Arc<T> {
    fn operator_auth(&self) -> &OperatorAuth {
        (**self).operator_auth()
    }
}

/// An authenticated operator, as recorded with their decisions: `operator:<email>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(pub String);

impl<S> FromRequestParts<S> for Operator
where
    S: HasOperatorAuth + Send + Sync,
{
    type Rejection = IdTokenError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match state.operator_auth() {
            OperatorAuth::GoogleId { verifier, emails } => {
                let email = verifier.verify(&parts.headers, emails).await?;
                Ok(Operator(format!("operator:{}", email.to_ascii_lowercase())))
            }
            OperatorAuth::Disabled => Ok(Operator("operator:local".to_owned())),
        }
    }
}

impl HasOperatorAuth for OperatorAuth {
    fn operator_auth(&self) -> &OperatorAuth {
        self
    }
}
