//! Who is calling: the client's IP (for per-IP limits) and the authenticated user.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use shared::auth::JwtVerifier;
use shared::submission::UserId;

use crate::error::Error;

/// The client address: the socket peer, or with `FORWARDED_HOPS = n` the n-th address
/// from the right of `X-Forwarded-For` (entries to the left of it are client-supplied and
/// cannot be trusted).
pub fn client_ip(parts: &Parts, forwarded_hops: usize) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if forwarded_hops == 0 {
        return peer;
    }
    let xff: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    xff.len()
        .checked_sub(forwarded_hops)
        .and_then(|i| xff.get(i))
        .and_then(|ip| ip.parse().ok())
        .or(peer)
}

/// How identities are established.
#[derive(Clone)]
pub enum Authenticator {
    Jwt(JwtVerifier),
    /// Callers name themselves (`X-Anonymous-Id`) or are known by their address, read as
    /// [`client_ip`] reads it with this many trusted proxy hops.
    Anonymous {
        forwarded_hops: usize,
    },
}

/// Application states that can authenticate callers: what [`Identity`] is extracted with.
pub trait HasAuthenticator {
    fn authenticator(&self) -> &Authenticator;
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub anonymous: bool,
}

impl<S: HasAuthenticator + Sync> FromRequestParts<S> for Identity {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let identity = match state.authenticator() {
            Authenticator::Jwt(verifier) => {
                let token = JwtVerifier::bearer(parts.headers.get(http::header::AUTHORIZATION))?;
                let claims = verifier.verify(token).await?;
                if claims.email.is_some() && claims.email_verified == Some(false) {
                    return Err(Error::Forbidden("verify your email address first".into()));
                }
                Identity {
                    user: UserId::parse(&claims.sub).map_err(|e| Error::Unauthenticated(e.0))?,
                    anonymous: false,
                }
            }
            &Authenticator::Anonymous { forwarded_hops } => {
                // Anonymous means no token is needed, not that any token is accepted: a
                // client that sends credentials this service cannot verify is told so, rather
                // than believing it signed in.
                if parts.headers.contains_key(http::header::AUTHORIZATION) {
                    return Err(Error::Unauthenticated(
                        "this station runs without sign-in (AUTH_MODE=anonymous) and cannot \
                         verify the Authorization header; send the request without it"
                            .into(),
                    ));
                }
                let claimed = parts
                    .headers
                    .get("x-anonymous-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let who = match claimed {
                    Some(id) => id,
                    None => client_ip(parts, forwarded_hops)
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                };
                Identity {
                    user: UserId::parse(&format!("anon:{who}"))
                        .map_err(|e| Error::BadRequest(format!("X-Anonymous-Id: {}", e.0)))?,
                    anonymous: true,
                }
            }
        };
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(xff: Option<&str>) -> Parts {
        let mut req = http::Request::builder();
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 1234))));
        parts
    }

    #[test]
    fn forwarded_for_is_trusted_only_as_far_as_configured() {
        let p = parts(Some("6.6.6.6, 1.2.3.4"));
        assert_eq!(client_ip(&p, 0), Some(IpAddr::from([10, 0, 0, 9])));
        assert_eq!(client_ip(&p, 1), Some(IpAddr::from([1, 2, 3, 4])));
        assert_eq!(client_ip(&p, 2), Some(IpAddr::from([6, 6, 6, 6])));
        assert_eq!(client_ip(&p, 3), Some(IpAddr::from([10, 0, 0, 9])));
        assert_eq!(
            client_ip(&parts(None), 1),
            Some(IpAddr::from([10, 0, 0, 9]))
        );
    }
}
