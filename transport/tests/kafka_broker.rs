//! The Kafka transport against the real broker that `deploy/dev/services.sh up` starts (tansu in
//! CI): idempotent `acks=all` produce, consumer-group consume, and resuming from committed offsets.

use std::collections::BTreeSet;
use std::time::Duration;

use varde_testkit::TestEnv;
use varde_transport::kafka::{KafkaPublisher, KafkaSubscriber, ensure_topics};
use varde_transport::{Message, Publisher, Subscriber};

const N: usize = 2000;

async fn drain(sub: &mut KafkaSubscriber, want: usize) -> Vec<Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(
            sub.poll_batch(500, Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_commit_resume() {
    let env = TestEnv::new("kafka_resume");
    let kafka = env.kafka();
    let topic = format!("{}roundtrip", kafka.topic_prefix);
    ensure_topics(&kafka, &[(topic.clone(), 3)])
        .await
        .expect("create topic");
    // Creating an existing topic is not an error.
    ensure_topics(&kafka, &[(topic.clone(), 3)])
        .await
        .expect("create again");

    let publisher =
        KafkaPublisher::new(&kafka, "test-producer", Duration::from_secs(30)).expect("producer");
    let sends = (0..N).map(|i| {
        let payload = format!("message-{i}");
        let key = format!("key-{}", i % 7);
        let publisher = &publisher;
        let topic = &topic;
        async move {
            publisher
                .publish(topic, key.as_bytes(), payload.as_bytes())
                .await
        }
    });
    // All sends in flight at once, so the producer batches them.
    for result in futures::future::join_all(sends).await {
        result.expect("acknowledged");
    }

    let group = format!("{}group", kafka.topic_prefix);
    let mut sub =
        KafkaSubscriber::new(&kafka, &group, std::slice::from_ref(&topic)).expect("consumer");
    let first = drain(&mut sub, N).await;
    let distinct: BTreeSet<Vec<u8>> = first.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(
        distinct.len(),
        N,
        "every message exactly once (got {} reads)",
        first.len()
    );
    assert_eq!(first.len(), N, "idempotent producer: no duplicates");

    // Commit only the first half of each partition, then leave the group.
    let mut half: Vec<Message> = Vec::new();
    for p in 0..3 {
        let mut of_p: Vec<&Message> = first.iter().filter(|m| m.partition == p).collect();
        of_p.sort_by_key(|m| m.offset);
        half.extend(of_p.iter().take(of_p.len() / 2).map(|m| (*m).clone()));
    }
    sub.commit(&half).expect("commit");
    drop(sub);

    // A new member of the same group resumes after the committed offsets.
    let mut sub =
        KafkaSubscriber::new(&kafka, &group, std::slice::from_ref(&topic)).expect("consumer");
    let rest = drain(&mut sub, N - half.len()).await;
    let rest_set: BTreeSet<Vec<u8>> = rest.iter().map(|m| m.payload.clone()).collect();
    let half_set: BTreeSet<Vec<u8>> = half.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(
        rest.len(),
        N - half.len(),
        "exactly the uncommitted messages"
    );
    assert!(
        rest_set.is_disjoint(&half_set),
        "committed messages are not redelivered"
    );
    assert_eq!(rest_set.len() + half_set.len(), N);
}
