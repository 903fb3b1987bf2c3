//! Radio24 host-streamer: the long-lived process that turns the program schedule and ready
//! submissions into a continuous audio stream.

pub mod app;
pub mod audio;
pub mod config;
pub mod director;
pub mod library;
pub mod livekit;
pub mod metrics;
pub mod on_air;
pub mod output;
pub mod program;
pub mod voice;
