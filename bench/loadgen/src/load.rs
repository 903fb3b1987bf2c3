//! The closed-loop load generator.
//!
//! Each of the N workers owns one HTTP/1.1 keep-alive connection (hyper's client connection,
//! no pool) and sends its next request as soon as the previous answer has been read in full.
//! Requests that *start* inside the measurement window `[warm-up end, warm-up end + duration)`
//! are counted, and each of them is awaited to its end, so a slow answer near the end of the
//! window still lands in the histogram instead of being dropped (dropping them would flatter
//! p99). Latency is recorded for accepted (202) answers only; everything else is an error,
//! counted by status code, or as `connect`, `io` or `timeout`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::args::Args;

/// Filler that pads each text to the requested length: a plausible listener message.
const FILLER: &str = "please play something upbeat for the night shift, and say hello to everyone \
                      listening from the harbour tonight. ";

struct Plan {
    addr: String,
    authority: HeaderValue,
    path: String,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    unique_keys: bool,
    text_chars: usize,
    timeout: Duration,
    /// Makes texts and keys distinct across runs against the same database.
    run_id: String,
}

pub fn main(mut args: Args) -> Result<()> {
    let url: Uri = args
        .required::<String>("url")?
        .parse()
        .context("--url is not a URL")?;
    let concurrency: usize = args.required("concurrency")?;
    let duration = args.duration_or("duration", Duration::from_secs(10))?;
    let warmup = args.duration_or("warmup", Duration::from_secs(2))?;
    let unique_keys = args.flag("unique-keys");
    let text_chars: usize = args.or("text-chars", 100)?;
    let threads: usize = args.or("threads", 1)?;
    let timeout = args.duration_or("timeout", Duration::from_secs(10))?;
    args.finish()?;

    if url.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported");
    }
    if concurrency == 0 || threads == 0 || duration.is_zero() {
        bail!("--concurrency, --threads and --duration must be positive");
    }
    let authority = url.authority().context("--url needs a host")?.clone();
    let addr = format!(
        "{}:{}",
        authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']'),
        authority.port_u16().unwrap_or(80)
    );
    let path = url
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let plan = Plan {
        addr,
        authority: HeaderValue::from_str(authority.as_str())?,
        path,
        concurrency,
        duration,
        warmup,
        unique_keys,
        text_chars: text_chars.max(1),
        timeout,
        run_id: format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id()),
    };

    // One worker thread by default: the generator shares two cores with everything it
    // measures, and at a few thousand requests/s one thread is plenty.
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(run(Arc::new(plan)))?;
    println!("{report}");
    Ok(())
}

#[derive(Default)]
struct Tally {
    requests: u64,
    accepted: u64,
    errors: BTreeMap<String, u64>,
    hist: Option<Histogram<u64>>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // 1 µs .. 60 s at 3 significant digits.
            hist: Some(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")),
            ..Default::default()
        }
    }

    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        if let (Some(h), Some(o)) = (self.hist.as_mut(), other.hist.as_ref()) {
            h.add(o).expect("same bounds");
        }
    }
}

async fn run(plan: Arc<Plan>) -> Result<serde_json::Value> {
    // Fail fast (and clearly) if nothing listens, rather than reporting 100% errors.
    connect(&plan)
        .await
        .with_context(|| format!("cannot connect to {}", plan.addr))?;

    let start = Instant::now();
    let from = start + plan.warmup;
    let to = from + plan.duration;
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|n| tokio::spawn(worker(plan.clone(), n, from, to)))
        .collect();

    tokio::time::sleep_until(from.into()).await;
    let cpu0 = cpu_seconds();
    tokio::time::sleep_until(to.into()).await;
    let cpu1 = cpu_seconds();

    let mut total = Tally::new();
    for w in workers {
        total.merge(w.await.context("worker panicked")?);
    }
    let hist = total.hist.take().expect("histogram");
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    // Latencies in ms with µs resolution; null when nothing was accepted.
    let ms = |us: f64| -> serde_json::Value {
        if hist.is_empty() {
            serde_json::Value::Null
        } else {
            round3(us / 1e3).into()
        }
    };
    let q = |quantile: f64| ms(hist.value_at_quantile(quantile) as f64);
    let secs = plan.duration.as_secs_f64();
    let errors: u64 = total.errors.values().sum();
    Ok(serde_json::json!({
        "url": format!("http://{}{}", plan.authority.to_str().unwrap_or("?"), plan.path),
        "concurrency": plan.concurrency,
        "duration_s": secs,
        "warmup_s": plan.warmup.as_secs_f64(),
        "unique_keys": plan.unique_keys,
        "requests": total.requests,
        "accepted": total.accepted,
        "rps_accepted": (total.accepted as f64 / secs * 10.0).round() / 10.0,
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": ms(hist.max() as f64),
        "mean_ms": ms(hist.mean()),
        "errors": errors,
        "errors_by_kind": total.errors,
        "loadgen_cpu_cores": round3((cpu1 - cpu0) / secs),
    }))
}

async fn worker(plan: Arc<Plan>, conn_no: usize, from: Instant, to: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut seq: u64 = 0;
    loop {
        let started = Instant::now();
        if started >= to {
            break;
        }
        let counted = started >= from;
        // A connection the server closed between requests is replaced without counting an
        // error: only a request that was sent and failed is one.
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(&plan).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    if counted {
                        tally.error("connect");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        seq += 1;
        let req = request(&plan, conn_no, seq);
        let started = Instant::now();
        let counted = started >= from && started < to;
        let outcome = tokio::time::timeout(plan.timeout, async {
            s.ready().await?;
            let res = s.send_request(req).await?;
            let status = res.status();
            res.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await;
        let elapsed = started.elapsed();
        if !counted {
            if !matches!(outcome, Ok(Ok(_))) {
                sender = None;
            }
            continue;
        }
        tally.requests += 1;
        match outcome {
            Ok(Ok(StatusCode::ACCEPTED)) => {
                tally.accepted += 1;
                let us = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
                if let Some(h) = tally.hist.as_mut() {
                    h.record(us).expect("clamped into bounds");
                }
            }
            Ok(Ok(status)) => tally.error(status.as_u16().to_string()),
            Ok(Err(_)) => {
                sender = None;
                tally.error("io");
            }
            Err(_) => {
                sender = None;
                tally.error("timeout");
            }
        }
    }
    tally
}

fn request(plan: &Plan, conn_no: usize, seq: u64) -> Request<Full<Bytes>> {
    let mut text = format!("Listener {}-{conn_no}-{seq}: ", plan.run_id);
    while text.len() < plan.text_chars {
        let room = plan.text_chars - text.len();
        text.push_str(&FILLER[..room.min(FILLER.len())]);
    }
    let body = serde_json::to_vec(&serde_json::json!({ "text": text.trim_end() }))
        .expect("a string serialises");
    let mut req = Request::post(plan.path.as_str())
        .header(header::HOST, plan.authority.clone())
        .header(header::CONTENT_TYPE, "application/json");
    if plan.unique_keys {
        req = req.header(
            "idempotency-key",
            format!("bench-{}-{conn_no}-{seq}", plan.run_id),
        );
    }
    req.body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

async fn connect(plan: &Plan) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(&plan.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// User + system CPU time of this process so far, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
