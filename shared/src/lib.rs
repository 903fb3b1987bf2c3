//! Radio24's plumbing: what every service is built on, and nothing about audio or models
//! (those are the `media` and `models` crates). Each concept lives in one module.

pub mod auth;
pub mod body;
pub mod bus;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod google_id;
pub mod http;
pub mod livekit;
pub mod message;
pub mod operator;
pub mod outbox;
pub mod pipeline;
pub mod problem;
pub mod process;
pub mod push;
pub mod retry;
pub mod store;
pub mod submission;
pub mod sweeper;
pub mod telemetry;
