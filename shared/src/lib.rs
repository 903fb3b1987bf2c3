//! Radio24's shared library: everything the ingest, embed, moderate and host-streamer
//! binaries have in common. Each concept lives in one module.

pub mod audio_decode;
pub mod audio_probe;
pub mod auth;
pub mod bus;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod embedding;
pub mod google_id;
pub mod http;
pub mod livekit;
pub mod message;
pub mod moderation;
pub mod ogg;
pub mod openai;
pub mod operator;
pub mod outbox;
pub mod pipeline;
pub mod problem;
pub mod process;
pub mod provider;
pub mod push;
pub mod resample;
pub mod retry;
pub mod store;
pub mod submission;
pub mod telemetry;
pub mod transcription;
pub mod whisper;
