//! Radio24 host-streamer. Until its pipeline work lands it serves health endpoints only.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::health_service::main("host-streamer").await
}
