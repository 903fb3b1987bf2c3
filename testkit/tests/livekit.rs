//! Tests in a network namespace of the test's own ([`netns::reexec_inside`]): outside, the
//! call runs the test there and returns `None`; inside, it returns the address to use.

use std::time::Duration;

use shared::message::{Event as BusEvent, SubmissionEvent};
use testkit::netns;
use testkit::pipeline::{Pipeline, PipelineOptions};

/// Whose network namespace this process is in (`net:[inode]`).
fn netns_of(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .expect("reading a network namespace link")
        .to_string_lossy()
        .into_owned()
}

/// Postgres, the Pub/Sub emulator, fake-gcs-server and the pipeline's services bind
/// 127.0.0.1; inside the namespace that is the namespace's own loopback, which nothing
/// outside can reach. A text posted to ingest arriving on the ready topic proves all of them
/// run (and talk) in there.
#[tokio::test]
async fn the_pipeline_runs_inside_a_network_namespace() -> anyhow::Result<()> {
    let Some(inside) = netns::reexec_inside("the_pipeline_runs_inside_a_network_namespace")? else {
        return Ok(());
    };
    // The test binary that re-executed this one (under `ip netns exec`) is the parent.
    let outer = std::os::unix::process::parent_id().to_string();
    assert_ne!(
        netns_of("self"),
        netns_of(&outer),
        "not in a namespace of its own"
    );
    assert!(inside.name.starts_with("r24-"), "{inside:?}");
    // The namespace's address is this process's own (it would not be bindable outside).
    std::net::TcpListener::bind((inside.addr, 0))?;

    let p = Pipeline::start_shared(PipelineOptions::default()).await?;
    let mut ready = p.ready().await?;
    let id = p
        .post_text("Hello from inside the namespace, play some jazz")
        .await?;
    let msg = tokio::time::timeout(Duration::from_secs(120), ready.next())
        .await
        .map_err(|_| anyhow::anyhow!("nothing on the ready topic\n{}", p.log_tails(30)))?
        .expect("the subscription is open")?;
    let event = SubmissionEvent::decode(&msg.data)?;
    assert_eq!(
        (event.event, event.submission_id.0),
        (BusEvent::Ready, id),
        "{}",
        p.log_tails(30)
    );
    msg.ack();
    // Every server is a child of this process, so in this namespace.
    for server in [&p.ingest, &p.embed, &p.moderate] {
        assert_eq!(netns_of(&server.id().to_string()), netns_of("self"));
    }
    Ok(())
}
