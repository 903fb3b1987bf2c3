//! Everything after the engine's frame: one Opus encoder whose packets go, as Ogg pages, to
//! every output.

pub mod encoder;
pub mod hub;
pub mod ogg;

pub use encoder::{OpusEncoder, PACKET_SAMPLES};
pub use hub::{Listener, STREAM_PATH, StreamHub};
pub use ogg::{OggWriter, OpusHeaders};
