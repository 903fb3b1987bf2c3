//! The object store's two backends under one contract: a local directory, and Cloud Storage
//! as spoken by fake-gcs-server.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use shared::store::{self, GcsStore, LocalFsStore, ObjectStore, StoreError};
use testkit::FakeGcs;

/// Every byte value plus a deterministic pseudo-random tail: any re-encoding, truncation or
/// appended checksum shows up as a mismatch.
fn binary_payload(len: usize) -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..len.saturating_sub(256)).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    data.truncate(len.max(256));
    Bytes::from(data)
}

/// The behaviour both backends share.
async fn check_contract(store: &dyn ObjectStore) {
    store.ping().await.expect("ping");

    let key = format!("submissions/{}/voice.ogg", uuid::Uuid::new_v4());
    let data = binary_payload(300_000);
    assert!(
        !store.exists(&key).await.expect("exists"),
        "absent before put"
    );
    store
        .put(&key, data.clone(), "audio/ogg")
        .await
        .expect("put");
    assert!(
        store.exists(&key).await.expect("exists"),
        "present after put"
    );
    let back = store.get(&key).await.expect("get");
    assert_eq!(back.len(), data.len(), "length preserved");
    assert!(back == data, "bytes preserved");

    // Same bytes again: an idempotent retry succeeds.
    store
        .put(&key, data.clone(), "audio/ogg")
        .await
        .expect("idempotent put");
    // Different bytes: write-once objects are never replaced.
    let err = store
        .put(&key, Bytes::from_static(b"other"), "audio/ogg")
        .await
        .expect_err("different content under an existing key");
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert!(!err.is_transient());
    assert!(store.get(&key).await.expect("get") == data, "original kept");

    // Empty objects are objects too.
    let empty_key = format!("empty/{}", uuid::Uuid::new_v4());
    store
        .put(&empty_key, Bytes::new(), "application/octet-stream")
        .await
        .expect("put empty");
    assert!(store.exists(&empty_key).await.expect("exists empty"));
    assert!(store.get(&empty_key).await.expect("get empty").is_empty());

    let missing = format!("missing/{}", uuid::Uuid::new_v4());
    match store.get(&missing).await {
        Err(StoreError::NotFound(uri)) => assert!(uri.ends_with(&missing), "{uri}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!store.exists(&missing).await.expect("exists"));

    for bad in [
        "../escape",
        "/absolute/key",
        "a/../../b",
        "a//b",
        "",
        "a\\b",
        "./a",
    ] {
        let err = store
            .put(bad, Bytes::from_static(b"x"), "text/plain")
            .await
            .expect_err("invalid key");
        assert!(matches!(err, StoreError::InvalidKey(_)), "{bad:?}: {err:?}");
        assert!(matches!(
            store.get(bad).await,
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            store.exists(bad).await,
            Err(StoreError::InvalidKey(_))
        ));
    }
}

#[tokio::test]
async fn local_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("objects");
    let url = format!("file://{}", root.display());
    let store = store::open(&url, None).await.expect("open file URL");
    check_contract(store.as_ref()).await;

    let canonical_root = root.canonicalize().expect("root created");
    assert_eq!(
        store.uri("a/b.ogg"),
        format!("file://{}/a/b.ogg", canonical_root.display())
    );
    assert!(
        no_temp_files(&canonical_root),
        "temporary files are cleaned up"
    );
}

#[tokio::test]
async fn local_store_never_writes_outside_its_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let store = LocalFsStore::new(&root).await.expect("open");
    for key in ["../outside", "../root-sibling/x", "/absolute/key"] {
        assert!(matches!(
            store.put(key, Bytes::from_static(b"x"), "text/plain").await,
            Err(StoreError::InvalidKey(_))
        ));
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("root")]);
    assert_eq!(std::fs::read_dir(&root).expect("list root").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_concurrent_puts_of_one_key_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalFsStore::new(dir.path()).await.expect("open"));
    let data = binary_payload(64 * 1024);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        let data = data.clone();
        tasks.spawn(async move { store.put("race/same.bin", data, "audio/ogg").await });
    }
    for result in tasks.join_all().await {
        result.expect("every identical put succeeds");
    }
    assert!(store.get("race/same.bin").await.expect("get") == data);
    assert!(no_temp_files(store.root()));
}

#[tokio::test]
async fn open_accepts_file_url_forms_and_rejects_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `file:/abs` (no authority) is the same as `file:///abs`.
    let store = store::open(&format!("file:{}", dir.path().display()), None)
        .await
        .expect("file:/abs");
    store
        .put("k", Bytes::from_static(b"v"), "text/plain")
        .await
        .expect("put");
    assert!(dir.path().join("k").is_file());

    for bad in [
        "s3://bucket",
        "gs://",
        "gs://Bad_Bucket",
        "file://host/dir",
        "file:",
        "/plain/path",
    ] {
        match store::open(bad, None).await {
            Err(StoreError::InvalidUrl(_)) => {}
            other => panic!("{bad:?}: expected InvalidUrl, got {other:?}"),
        }
    }
}

async fn fake_gcs_bucket() -> (&'static FakeGcs, String) {
    let gcs = FakeGcs::shared().await.expect("fake-gcs-server");
    let bucket = format!("radio24-test-{}", uuid::Uuid::new_v4().simple());
    gcs.create_bucket(&bucket).await.expect("create bucket");
    (gcs, bucket)
}

#[tokio::test]
async fn gcs_store_keeps_the_contract() {
    let (gcs, bucket) = fake_gcs_bucket().await;
    let endpoint = gcs.endpoint();
    let store = store::open(&format!("gs://{bucket}/audio/"), Some(&endpoint))
        .await
        .expect("open gs URL");
    assert_eq!(store.uri("a/b.ogg"), format!("gs://{bucket}/audio/a/b.ogg"));
    check_contract(store.as_ref()).await;

    // The prefix is really part of the object name: a store without it does not see the key.
    let key = "prefixed.bin";
    store
        .put(key, Bytes::from_static(b"p"), "application/octet-stream")
        .await
        .expect("put");
    let bare = GcsStore::new(&bucket, "", Some(&endpoint))
        .await
        .expect("open without prefix");
    assert!(!bare.exists(key).await.expect("exists"));
    assert!(bare.exists("audio/prefixed.bin").await.expect("exists"));
}

/// Above the client's default resumable-upload threshold (16 MiB) the store still uploads in
/// one request (see `SINGLE_SHOT_UPLOAD_LIMIT`), so big generated segments work against the
/// fake exactly as in production.
#[tokio::test]
async fn gcs_store_round_trips_a_large_object() {
    let (gcs, bucket) = fake_gcs_bucket().await;
    let store = store::open(&format!("gs://{bucket}"), Some(&gcs.endpoint()))
        .await
        .expect("open");
    let data = binary_payload(17 * 1024 * 1024 + 3);
    store
        .put("big/segment.pcm", data.clone(), "application/octet-stream")
        .await
        .expect("put large");
    let back = store.get("big/segment.pcm").await.expect("get large");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "bytes preserved");
}

#[tokio::test]
async fn gcs_store_unreachable_is_transient() {
    let port = testkit::free_port();
    let store = store::open(
        "gs://radio24-nowhere",
        Some(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .expect("opening makes no request");
    let started = std::time::Instant::now();
    let err = store.ping().await.expect_err("nothing listens");
    println!(
        "ping of an unreachable store failed after {:?}: {err}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err:?}");
}

fn no_temp_files(root: &Path) -> bool {
    fn walk(dir: &Path) -> bool {
        std::fs::read_dir(dir).expect("list").all(|entry| {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path)
            } else {
                !path.to_string_lossy().ends_with(".tmp")
            }
        })
    }
    walk(root)
}
