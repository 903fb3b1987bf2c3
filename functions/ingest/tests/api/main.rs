//! Black-box tests of the ingest API against real Postgres + pgvector, the Pub/Sub
//! emulator and (for audio) fake-gcs-server. One test binary keeps link time down.

mod helpers;

mod audio;
mod auth;
mod cancellation;
mod crash;
mod fuzz;
mod idempotency;
mod lifecycle;
mod listen_token;
mod outage;
mod rejections;
mod text;
