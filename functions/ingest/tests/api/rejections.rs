//! Every class of bad input gets a clear problem+json 4xx, never a 5xx.

use crate::helpers::*;

#[tokio::test]
async fn malformed_and_invalid_bodies() {
    let app = spawn_with(|env| {
        env.insert("MAX_TEXT_CHARS".into(), "50".into());
    })
    .await;
    let post = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut req = app.client.post(app.url("/v1/submissions")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json = Some("application/json");

    // 400: not JSON at all, truncated JSON.
    assert_problem(post(json, b"{not json".to_vec()).await.unwrap(), 400).await;
    assert_problem(post(json, b"{\"text\": \"abc".to_vec()).await.unwrap(), 400).await;
    // 422: valid JSON of the wrong shape, or text that breaks the rules.
    for body in [
        r#"{"txt": "hi"}"#,
        r#"{"text": 42}"#,
        r#"{"text": "hi", "extra": 1}"#,
        r#"["hi"]"#,
        r#"{"text": "   "}"#,
        r#"{"text": "bell\u0007"}"#,
    ] {
        let p = assert_problem(post(json, body.into()).await.unwrap(), 422).await;
        assert!(p["detail"].is_string(), "{body}: {p}");
    }
    let long = serde_json::json!({ "text": "x".repeat(51) }).to_string();
    let p = assert_problem(post(json, long.into()).await.unwrap(), 422).await;
    assert!(p["detail"].as_str().unwrap().contains("at most 50"), "{p}");
    // 413: the body is bigger than any valid text could be; refused before reading.
    let huge = serde_json::json!({ "text": "x".repeat(1 << 20) }).to_string();
    assert_problem(post(json, huge.into()).await.unwrap(), 413).await;
    // 415: no type, or a type we do not take.
    assert_problem(post(None, b"hello".to_vec()).await.unwrap(), 415).await;
    assert_problem(
        post(Some("text/plain"), b"hello".to_vec()).await.unwrap(),
        415,
    )
    .await;
    // 400: a bad Idempotency-Key.
    let res = app
        .client
        .post(app.url("/v1/submissions"))
        .header("idempotency-key", "has spaces in it")
        .json(&serde_json::json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400).await;

    let count = submission_count(&app.db).await;
    assert_eq!(count, 0, "no rejected request may leave a row");
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_ids_and_methods() {
    let app = spawn_app().await;
    assert_problem(app.get("/nope").await, 404).await;
    let res = app
        .get(&format!("/v1/submissions/{}", uuid::Uuid::new_v4()))
        .await;
    assert_problem(res, 404).await;
    let res = app.get("/v1/submissions/not-a-uuid").await;
    assert_problem(res, 404).await;
    let res = app
        .client
        .delete(app.url("/v1/submissions"))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["allow"].to_str().unwrap().contains("POST"));
    assert_problem(res, 405).await;
    let res = app.get("/v1/listen-token").await;
    assert_problem(res, 405).await;
    app.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_with(|env| {
        env.insert("RATE_LIMIT_PER_IP".into(), "3/min".into());
    })
    .await;
    for _ in 0..3 {
        accepted_id(app.post_text("hello").await).await;
    }
    let res = app.post_text("hello").await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let p = assert_problem(res, 429).await;
    assert_eq!(p["retry_after"], retry_after);
    app.stop().await;

    let app = spawn_with(|env| {
        env.insert("RATE_LIMIT_PER_USER".into(), "2/min".into());
    })
    .await;
    let as_user = |who: &'static str| {
        app.client
            .post(app.url("/v1/submissions"))
            .header("x-anonymous-id", who)
            .json(&serde_json::json!({"text": "hi"}))
            .send()
    };
    accepted_id(as_user("alice").await.unwrap()).await;
    accepted_id(as_user("alice").await.unwrap()).await;
    assert_problem(as_user("alice").await.unwrap(), 429).await;
    // The limit is per user: bob is unaffected.
    accepted_id(as_user("bob").await.unwrap()).await;
    // Reading a submission's status does not use up the quota.
    for _ in 0..5 {
        let res = app
            .client
            .get(app.url(&format!("/v1/submissions/{}", uuid::Uuid::new_v4())))
            .header("x-anonymous-id", "bob")
            .send()
            .await
            .unwrap();
        assert_problem(res, 404).await;
    }
    app.stop().await;
}

/// Sends a whole request before reading anything, as Python's `http.client` and many SDKs
/// do, and returns the status line of the answer (or what went wrong).
async fn write_all_then_read(addr: &str, head: String, body: &[u8], chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = head.into_bytes();
    if chunked {
        for piece in body.chunks(64 * 1024) {
            request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            request.extend_from_slice(piece);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
    } else {
        request.extend_from_slice(body);
    }
    if let Err(e) = stream.write_all(&request).await {
        return format!("writing the body failed: {e}");
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer).await {
        Ok(_) if answer.is_empty() => "no answer".to_owned(),
        Ok(_) => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        Err(e) if !answer.is_empty() => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .map_or_else(|| format!("reading failed: {e}"), str::to_owned),
        Err(e) => format!("reading the answer failed: {e}"),
    }
}

#[tokio::test]
async fn a_client_that_writes_the_whole_body_first_still_reads_its_413() {
    let app = spawn_with(|env| {
        env.insert("MAX_TEXT_CHARS".into(), "50".into());
        env.insert("MAX_AUDIO_BYTES".into(), "100000".into());
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Far larger than the socket buffers: the write completes only if the server reads.
    let json = serde_json::json!({ "text": "x".repeat(8 << 20) }).to_string();
    let multipart_body = {
        let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.webm\"\r\nContent-Type: audio/webm\r\n\r\n".to_vec();
        b.extend(std::iter::repeat_n(0u8, 8 << 20));
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    };
    for (what, content_type, body) in [
        ("json", "application/json", json.as_bytes()),
        (
            "multipart",
            "multipart/form-data; boundary=XyZ",
            &multipart_body[..],
        ),
    ] {
        for chunked in [false, true] {
            let length = if chunked {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {}", body.len())
            };
            let head = format!(
                "POST /v1/submissions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
                 {length}\r\nConnection: close\r\n\r\n"
            );
            let status = write_all_then_read(&addr, head, body, chunked).await;
            assert!(
                status.starts_with("HTTP/1.1 413"),
                "{what}, chunked {chunked}: {status}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_writes_the_whole_body_first_reads_a_401_or_429_answered_before_it() {
    let app = spawn_with(|env| {
        env.insert("RATE_LIMIT_PER_IP".into(), "2/min".into());
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Far larger than the socket buffers: the write completes only if the server reads.
    let json = serde_json::json!({ "text": "x".repeat(8 << 20) }).to_string();
    let post = |extra: &str| {
        format!(
            "POST /v1/submissions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            json.len()
        )
    };
    // Anonymous mode refuses a token that does not verify, before the body.
    let status = write_all_then_read(
        &addr,
        post("Authorization: Bearer junk\r\n"),
        json.as_bytes(),
        false,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // The per-IP limiter answers before the handler: the 401 took the first of the
    // minute's two, this one the second, and the next is refused.
    let first = write_all_then_read(&addr, post(""), json.as_bytes(), false).await;
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    let status = write_all_then_read(&addr, post(""), json.as_bytes(), false).await;
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    app.stop().await;
}
