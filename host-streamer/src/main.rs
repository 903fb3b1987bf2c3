//! Radio24 host-streamer: one always-on process that streams the station.

use shared::config::Env;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init("info");
    let result = async {
        let config = host_streamer::config::Config::from_env(&Env::from_process())?;
        host_streamer::app::run(config).await
    }
    .await;
    shared::process::exit_code("host-streamer", result)
}
