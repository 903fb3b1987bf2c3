//! Starts each real server and checks it is usable the way the services use it.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use testkit::{FakeGcs, Postgres, PubsubEmulator, wait_until};

#[tokio::test]
async fn shared_postgres_gives_each_test_a_database_with_pgvector() -> anyhow::Result<()> {
    let pg = Postgres::shared().await?;
    let url = pg.create_database().await?;
    let other = pg.create_database().await?;
    assert_ne!(url, other);
    assert!(url.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", pg.port())));

    let mut conn = PgConnection::connect(&url).await?;
    sqlx::query("CREATE EXTENSION vector")
        .execute(&mut conn)
        .await?;
    let distance: f64 = sqlx::query_scalar("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")
        .fetch_one(&mut conn)
        .await?;
    // cosine distance between (1,2,3) and (1,2,4)
    let expected = 1.0 - 17.0 / (14f64.sqrt() * 21f64.sqrt());
    assert!(
        (distance - expected).abs() < 1e-6,
        "{distance} != {expected}"
    );
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(fsync, "on");
    let max_connections: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(max_connections, "300");
    conn.close().await?;
    Ok(())
}

/// Each `#[tokio::test]` has its own runtime; the shared server must come up once for all.
#[test]
fn shared_postgres_is_one_server_across_runtimes() {
    let ports: Vec<u16> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let pg = Postgres::shared().await.unwrap();
                        let url = pg.create_database().await.unwrap();
                        let mut conn = PgConnection::connect(&url).await.unwrap();
                        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
                        pg.port()
                    })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(ports.windows(2).all(|w| w[0] == w[1]), "{ports:?}");
}

#[tokio::test]
async fn own_postgres_is_stopped_and_removed_on_drop() -> anyhow::Result<()> {
    let started = Instant::now();
    let pg = Postgres::start().await?;
    eprintln!("postgres started in {:?}", started.elapsed());
    let dir = pg.dir().expect("started here");
    let url = pg.url("postgres");
    let mut conn = PgConnection::connect(&url).await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    drop(conn);
    let created = Instant::now();
    pg.create_database().await?;
    eprintln!("database created in {:?}", created.elapsed());

    let stopped = Instant::now();
    drop(pg);
    eprintln!("postgres stopped in {:?}", stopped.elapsed());
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(PgConnection::connect(&url).await.is_err());
    Ok(())
}

async fn put_topic(host: &str, topic: &str) -> anyhow::Result<reqwest::StatusCode> {
    let url = format!("http://{host}/v1/projects/radio24-test/topics/{topic}");
    Ok(reqwest::Client::new().put(&url).send().await?.status())
}

async fn get_topic(host: &str, topic: &str) -> anyhow::Result<reqwest::StatusCode> {
    let url = format!("http://{host}/v1/projects/radio24-test/topics/{topic}");
    Ok(reqwest::Client::new().get(&url).send().await?.status())
}

#[tokio::test]
async fn shared_pubsub_emulator_creates_topics() -> anyhow::Result<()> {
    let emulator = PubsubEmulator::shared().await?;
    assert!(emulator.host().starts_with("127.0.0.1:"));
    // Topic ids need at least 3 characters ("t1" is rejected with 400).
    assert_eq!(put_topic(&emulator.host(), "topic-1").await?, 200);
    assert_eq!(get_topic(&emulator.host(), "topic-1").await?, 200);
    Ok(())
}

#[tokio::test]
async fn own_pubsub_emulator_stops_and_restarts_empty_on_the_same_port() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut emulator = PubsubEmulator::start().await?;
    eprintln!("pubsub emulator started in {:?}", started.elapsed());
    let host = emulator.host();
    let log = emulator.log_path().expect("started here").to_path_buf();
    assert_eq!(put_topic(&host, "before-restart").await?, 200);

    emulator.stop();
    assert!(put_topic(&host, "while-stopped").await.is_err());

    let restarted = Instant::now();
    emulator.restart().await?;
    eprintln!("pubsub emulator restarted in {:?}", restarted.elapsed());
    assert_eq!(emulator.host(), host);
    assert_eq!(get_topic(&host, "before-restart").await?, 404);
    assert_eq!(put_topic(&host, "after-restart").await?, 200);

    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("Server started"), "log: {text}");
    drop(emulator);
    assert!(!log.exists());
    assert!(put_topic(&host, "after-drop").await.is_err());
    Ok(())
}

#[tokio::test]
async fn fake_gcs_stores_and_serves_objects() -> anyhow::Result<()> {
    let started = Instant::now();
    let gcs = FakeGcs::shared().await?;
    eprintln!("fake-gcs-server ready in {:?}", started.elapsed());
    let endpoint = gcs.endpoint();
    let bucket = format!("bucket-{}", uuid::Uuid::new_v4().simple());
    gcs.create_bucket(&bucket).await?;

    let client = reqwest::Client::new();
    let body = b"segment audio bytes".to_vec();
    let upload = client
        .post(format!(
            "{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=segments%2Fa.opus"
        ))
        .header("content-type", "audio/ogg")
        .body(body.clone())
        .send()
        .await?;
    assert!(upload.status().is_success(), "{}", upload.text().await?);
    let meta: serde_json::Value = upload.json().await?;
    assert_eq!(meta["name"], "segments/a.opus");
    assert_eq!(meta["size"], body.len().to_string());

    let download = client
        .get(format!(
            "{endpoint}/storage/v1/b/{bucket}/o/segments%2Fa.opus?alt=media"
        ))
        .send()
        .await?;
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await?.as_ref(), body.as_slice());

    // Creating the same bucket twice is reported, not ignored.
    assert!(gcs.create_bucket(&bucket).await.is_err());
    Ok(())
}

#[tokio::test]
async fn wait_until_names_what_never_happened() {
    let started = Instant::now();
    let err = wait_until(
        "the moon to turn blue",
        Duration::from_millis(120),
        || async { false },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("the moon to turn blue"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(120));

    let mut calls = 0;
    wait_until("the third call", Duration::from_secs(5), || {
        calls += 1;
        let done = calls >= 3;
        async move { done }
    })
    .await
    .unwrap();
    assert_eq!(calls, 3);
}

#[test]
fn missing_binary_points_to_install_tools() {
    let cmd = std::process::Command::new("radio24-no-such-binary");
    let dir = tempfile::tempdir().unwrap();
    let err = testkit::spawn_logged(cmd, dir.path().join("log")).unwrap_err();
    assert!(err.to_string().contains("dev/install-tools"), "{err}");
}

#[test]
fn child_guard_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("sh");
    // The shell forks a grandchild; both must go.
    cmd.args(["-c", "sleep 300 & echo $! ; wait"]);
    let guard = testkit::spawn_logged(cmd, dir.path().join("log")).unwrap();
    let log = guard.log_path().to_path_buf();
    let grandchild = {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if let Ok(pid) = text.trim().parse::<i32>() {
                break pid;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no pid in log");
            std::thread::yield_now();
        }
    };
    assert!(guard.is_running());
    drop(guard);
    // The grandchild is reaped by init, which may take a moment: poll its state.
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let dead = stat.is_empty() || stat.contains(") Z ");
        if dead {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "grandchild still running: {stat}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
