//! `loadgen`: the load generator of `bench/ingest.sh`, plus the few helpers that script needs.
//!
//! ```text
//! loadgen --url URL --concurrency N [--duration 10s] [--warmup 2s] [--unique-keys]
//!         [--text-chars 100] [--threads 1] [--timeout 10s]
//!     Closed loop: N persistent HTTP/1.1 keep-alive connections, each sending
//!     POST JSON {"text": "..."} (every text distinct) as soon as the previous answer is in.
//!     Requests *started* during the measurement window (after the warm-up) are counted; 202
//!     is accepted, anything else is an error counted by status (or io/connect/timeout).
//!     Prints one JSON line on stdout.
//! loadgen baseline --port P [--host 127.0.0.1]
//!     Serves a trivial axum handler (POST /v1/submissions: read the body, answer 202 with a
//!     tiny JSON) on the same runtime shape as ingest, to measure the HTTP stack's ceiling.
//! loadgen servers [--project radio24-bench] [--topic submission-ingested]
//!                 [--subscription bench-ingested]
//!     Starts Postgres (+pgvector) and the Pub/Sub emulator through testkit, creates a
//!     database, the topic and a pull subscription, prints KEY=VALUE lines and READY, then
//!     runs until SIGTERM/SIGINT and stops both servers.
//! loadgen free-port          prints a free TCP port on 127.0.0.1
//! loadgen wait URL [--timeout 60s]
//!     Polls GET URL until it answers 200.
//! loadgen coldstart --bin PATH [--path /readyz] [--runs 10] [--timeout 30s]
//!     Starts PATH (with this environment and PORT set) RUNS times, one after another, and
//!     prints the median, min and max time from process start to the first 200 on --path.
//! ```

mod args;
mod baseline;
mod coldstart;
mod load;
mod servers;

use std::process::ExitCode;

use args::Args;

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match argv.first().map(String::as_str) {
        Some("baseline" | "servers" | "free-port" | "wait" | "coldstart") => argv.remove(0),
        Some("-h" | "--help") => {
            print!("{}", USAGE);
            return ExitCode::SUCCESS;
        }
        _ => "load".to_owned(),
    };
    let result = Args::parse(argv).and_then(|args| match command.as_str() {
        "load" => load::main(args),
        "baseline" => baseline::main(args),
        "servers" => servers::main(args),
        "free-port" => {
            args.finish()?;
            println!("{}", testkit::free_port());
            Ok(())
        }
        "wait" => servers::wait_main(args),
        "coldstart" => coldstart::main(args),
        _ => unreachable!(),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage:
  loadgen --url URL --concurrency N [--duration 10s] [--warmup 2s] [--unique-keys]
          [--text-chars 100] [--threads 1] [--timeout 10s]
  loadgen baseline --port P [--host 127.0.0.1]
  loadgen servers [--project radio24-bench] [--topic submission-ingested] [--subscription bench-ingested]
  loadgen free-port
  loadgen wait URL [--timeout 60s]
  loadgen coldstart --bin PATH [--path /readyz] [--runs 10] [--timeout 30s]
";
