//! Idempotent submissions: a client that sends `Idempotency-Key` may retry a
//! `POST /v1/submissions` as often as it likes and gets the first answer each time.
//!
//! The record of a keyed request is the submission row itself: `(user_id,
//! idempotency_key)` is unique, and the row keeps the request's [`Fingerprint`].
//!
//! - First request: the insert succeeds; 202.
//! - Retry, same body: the insert finds the key taken (`ON CONFLICT DO NOTHING`), the earlier
//!   submission is answered again: 202 with `Idempotent-Replayed: true`.
//! - Retry of an audio upload: looked up before the audio is stored, so a retry never stores
//!   the recording twice.
//! - Two identical requests at once: one insert wins; the other finds the winner's row after
//!   it commits and replays it.
//! - Same key, different body: 422 `idempotency-key-reused`; nothing is written.
//! - No key: every request is a new submission.
//! - Keys are per user: two users may use the same key.

mod key;
mod replay;

pub use key::from_headers;
pub use replay::{Fingerprint, earlier};
