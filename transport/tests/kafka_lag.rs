//! The lag probe of the Kafka subscriber against the development broker: the consumer's own
//! position and the group's committed offsets per partition, with the broker's watermarks.

use std::time::Duration;

use varde_testkit::TestEnv;
use varde_transport::kafka::{KafkaPublisher, KafkaSubscriber, ensure_topics};
use varde_transport::{Message, Publisher, Subscriber};

const N: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_reports_position_and_commits_per_partition() {
    let env = TestEnv::new("kafka_lag");
    let kafka = env.kafka();
    let topic = format!("{}lag", kafka.topic_prefix);
    ensure_topics(&kafka, &[(topic.clone(), 2)])
        .await
        .expect("create topic");
    let publisher =
        KafkaPublisher::new(&kafka, "test-producer", Duration::from_secs(30)).expect("producer");
    for i in 0..N {
        publisher
            .publish(&topic, format!("k{}", i % 5).as_bytes(), b"x")
            .await
            .expect("acknowledged");
    }
    let group = format!("{}group", kafka.topic_prefix);
    let mut sub =
        KafkaSubscriber::new(&kafka, &group, std::slice::from_ref(&topic)).expect("consumer");
    let probe = sub.lag_probe();
    let mut got: Vec<Message> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < N && tokio::time::Instant::now() < deadline {
        got.extend(
            sub.poll_batch(100, Duration::from_millis(300))
                .await
                .expect("poll"),
        );
    }
    assert_eq!(got.len(), N);
    // Commit everything of partition 0 only.
    let p0: Vec<Message> = got.iter().filter(|m| m.partition == 0).cloned().collect();
    sub.commit(&p0).expect("commit");

    let lag = tokio::task::spawn_blocking(move || probe.partitions(Duration::from_secs(5)))
        .await
        .expect("join")
        .expect("probe");
    eprintln!("{lag:#?}");
    assert_eq!(
        lag.len(),
        2,
        "both partitions are assigned to the only member"
    );
    for p in &lag {
        assert_eq!(p.topic, topic);
        let read = got.iter().filter(|m| m.partition == p.partition).count() as i64;
        // The consumer's own position is one past the last message it handed out.
        let last = got
            .iter()
            .filter(|m| m.partition == p.partition)
            .map(|m| m.offset + 1)
            .max();
        assert_eq!(p.position, last, "partition {}: read {read}", p.partition);
        if p.partition == 0 {
            assert_eq!(p.committed, last);
        } else {
            assert_eq!(p.committed, None, "nothing committed on partition 1");
        }
        // The watermarks come from the broker's ListOffsets answer, which tansu may get wrong;
        // they are reported, and the lag derived from them is never negative.
        assert!(p.committed_lag().is_none_or(|l| l >= 0));
    }
}
