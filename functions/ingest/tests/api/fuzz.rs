//! Property test: whatever arrives, ingest answers with a deliberate status (never a 5xx,
//! never a dropped connection), and every error is problem+json.

use proptest::prelude::*;

use crate::helpers::*;

fn content_types() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_owned())),
        Just(Some("application/json; charset=utf-8".to_owned())),
        Just(Some("multipart/form-data; boundary=b".to_owned())),
        Just(Some("multipart/form-data".to_owned())),
        Just(Some("text/plain".to_owned())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        ".{0,300}".prop_map(|s| serde_json::json!({ "text": s }).to_string().into_bytes()),
        any::<f64>().prop_map(|n| format!("{{\"text\": {n}}}").into_bytes()),
        "[\\[\\]{}\":,a-z0-9 ]{0,200}".prop_map(String::into_bytes),
        (proptest::collection::vec(any::<u8>(), 0..1024)).prop_map(|audio| {
            let mut b =
                b"--b\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"x\"\r\n\r\n"
                    .to_vec();
            b.extend(audio);
            b.extend(b"\r\n--b--\r\n");
            b
        }),
    ]
}

fn keys() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), "[ -~]{0,300}".prop_map(Some)]
}

#[test]
fn arbitrary_requests_never_break_ingest() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_with(|env| {
        env.insert("MAX_TEXT_CHARS".into(), "200".into());
    }));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(content_types(), bodies(), keys(), prop::bool::ANY),
            |(ct, body, key, get)| {
                let status = rt.block_on(async {
                    let mut req = if get {
                        app.client.put(app.url("/v1/submissions"))
                    } else {
                        app.client.post(app.url("/v1/submissions"))
                    };
                    if let Some(v) = ct
                        .as_deref()
                        .and_then(|c| reqwest::header::HeaderValue::from_str(c).ok())
                    {
                        req = req.header("content-type", v);
                    }
                    if let Some(v) = key
                        .as_deref()
                        .and_then(|k| reqwest::header::HeaderValue::from_str(k).ok())
                    {
                        req = req.header("idempotency-key", v);
                    }
                    let res = req.body(body.clone()).send().await.expect("an answer");
                    let status = res.status().as_u16();
                    if status >= 400 {
                        assert_eq!(
                            res.headers()["content-type"],
                            "application/problem+json",
                            "status {status}"
                        );
                    }
                    status
                });
                prop_assert!(
                    [202, 400, 405, 413, 415, 422].contains(&status),
                    "status {status} for content-type {ct:?}, {} body bytes",
                    body.len()
                );
                Ok(())
            },
        )
        .unwrap();
    rt.block_on(app.stop());
}
