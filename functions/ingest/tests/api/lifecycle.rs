//! Process lifecycle: configuration errors name the variable; SIGTERM drains in-flight
//! requests and exits cleanly within Cloud Run's grace period.

use std::process::Command;
use std::time::Duration;

use testkit::{PubsubEmulator, free_port, wait_until};

use crate::helpers::*;

#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    for (unset, bad, named) in [
        ("AUTH_MODE", None, "AUTH_MODE"),
        ("UPLOADS_URL", None, "UPLOADS_URL"),
        ("", Some(("MAX_AUDIO_BYTES", "lots")), "MAX_AUDIO_BYTES"),
        ("", Some(("AUTH_MODE", "jwt")), "AUTH_JWT_JWKS_URL"),
    ] {
        let emulator = PubsubEmulator::shared().await.unwrap();
        let mut env = test_env(&emulator.host()).await;
        env.remove(unset);
        if let Some((k, v)) = bad {
            env.insert(k.into(), v.into());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{named}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let emulator = PubsubEmulator::shared().await.unwrap();
    let mut env = test_env(&emulator.host()).await;
    let port = free_port();
    env.insert("PORT".into(), port.to_string());
    let log = std::env::temp_dir().join(format!("ingest-sigterm-{port}.log"));
    let ingest = start_ingest(&env, &log);
    let caller = Caller::new(format!("http://127.0.0.1:{port}"));
    caller.wait_healthy().await;

    // A slow client: the body arrives in two parts, the second only after SIGTERM.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let request = tokio::spawn({
        let caller = caller.clone();
        async move {
            caller
                .client
                .post(caller.url("/v1/submissions"))
                .header("content-type", "application/json")
                .header("content-length", "22")
                .body(body)
                .send()
                .await
        }
    });
    tx.send(Ok(br#"{"text": "#.to_vec())).await.unwrap();
    // The first part is on the wire once the channel has room again.
    wait_until("first part sent", Duration::from_secs(10), || {
        let cap = tx.capacity();
        async move { cap == 1 }
    })
    .await
    .unwrap();

    // SAFETY: plain system call to a child we own.
    unsafe { libc::kill(ingest.id() as libc::pid_t, libc::SIGTERM) };
    // New connections are refused once the server stops accepting ...
    wait_until("listener closed", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await
    .unwrap();
    // ... but the request in flight completes.
    tx.send(Ok(br#""last words"}"#.to_vec())).await.unwrap();
    drop(tx);
    let res = request.await.unwrap().expect("in-flight request answered");
    let id = accepted_id(res).await;
    wait_until("ingest exited", Duration::from_secs(10), || {
        let done = !ingest.is_running();
        async move { done }
    })
    .await
    .unwrap();
    assert_eq!(ingest.exit_status().and_then(|s| s.code()), Some(0));
    let db = sqlx::PgPool::connect(&env["DATABASE_URL"]).await.unwrap();
    let text: String = sqlx::query_scalar("SELECT text FROM submission WHERE id = $1")
        .bind(id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(text, "last words");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
