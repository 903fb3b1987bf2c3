//! `loadgen coldstart`: how long a service binary takes from process start to its first 200 on
//! a readiness path, the part of a Cloud Run cold start the code controls.
//!
//! Each run starts the binary with this process's environment plus `PORT` (a fresh free port),
//! then asks `GET path` over a new loopback connection every millisecond until one answers
//! 200, stops the process with SIGTERM and waits for it. Runs are sequential, so they share
//! nothing but the page cache (the first run warms it; the median hides that run).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::args::Args;

pub fn main(mut args: Args) -> Result<()> {
    let bin: String = args.required("bin")?;
    let path: String = args.or("path", "/readyz".to_owned())?;
    let runs: usize = args.or("runs", 10)?;
    let timeout = args.duration_or("timeout", Duration::from_secs(30))?;
    args.finish()?;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let port = testkit::free_port();
        let mut child = Command::new(&bin)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let started = Instant::now();
        let ready = wait_ready(&mut child, port, &path, started, timeout);
        stop(&mut child);
        let elapsed = ready.with_context(|| format!("run {run} of {bin}"))?;
        times.push(elapsed);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = if runs % 2 == 1 {
        ms(times[runs / 2])
    } else {
        (ms(times[runs / 2 - 1]) + ms(times[runs / 2])) / 2.0
    };
    println!(
        "{}",
        serde_json::json!({
            "runs": runs,
            "median_ms": round(median),
            "min_ms": round(ms(times[0])),
            "max_ms": round(ms(times[runs - 1])),
        })
    );
    Ok(())
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// Polls until `GET path` answers 200; fails if the process exits or `timeout` passes.
fn wait_ready(
    child: &mut Child,
    port: u16,
    path: &str,
    started: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        if answers_200(port, path) {
            return Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            bail!("exited with {status} before {path} answered 200");
        }
        if started.elapsed() > timeout {
            bail!("{path} did not answer 200 within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One HTTP/1.0 request on a fresh connection: whether the status line says 200.
fn answers_200(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// SIGTERM, then SIGKILL after 10 s; always reaps the child.
fn stop(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child this process spawned and has not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
