//! The in-process bus of `varde demo`: topics are append-only logs in memory, one partition each,
//! and a subscriber resumes from its group's last commit, like a Kafka consumer group with one
//! member. Same at-least-once contract as Kafka, no external service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::{Error, Message, Publisher, Result, Subscriber, next_offsets};

#[derive(Default)]
struct State {
    /// Each message with the time it was published, ms since the epoch (as Kafka stamps it).
    topics: HashMap<String, Vec<Stamped>>,
    /// Committed next offset per (group, topic).
    committed: HashMap<(String, String), i64>,
    closed: bool,
}

/// An in-process message bus. Cloning gives another handle to the same bus.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        MemoryBus::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while appending; the log itself is still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A subscriber in consumer group `group` over `topics`, starting after the group's last
    /// commit on each topic.
    pub fn subscribe(&self, group: &str, topics: &[String]) -> MemorySubscriber {
        let state = self.lock();
        let positions = topics
            .iter()
            .map(|t| {
                let committed = state
                    .committed
                    .get(&(group.to_owned(), t.clone()))
                    .copied()
                    .unwrap_or(0);
                (t.clone(), committed)
            })
            .collect();
        MemorySubscriber {
            bus: self.clone(),
            group: group.to_owned(),
            positions,
        }
    }

    /// Number of messages ever published to `topic`.
    pub fn len(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, Vec::len)
    }

    /// Whether nothing was ever published to `topic`.
    pub fn is_empty(&self, topic: &str) -> bool {
        self.len(topic) == 0
    }

    /// Closes the bus: publishers fail, subscribers drain what is left and then report
    /// [`Error::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }
}

impl Publisher for MemoryBus {
    async fn publish(&self, topic: &str, _key: &[u8], payload: &[u8]) -> Result<()> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Error::Closed);
            }
            state
                .topics
                .entry(topic.to_owned())
                .or_default()
                .push((Arc::new(payload.to_vec()), now_ms()));
        }
        self.notify.notify_waiters();
        Ok(())
    }
}

/// A payload and when it was published (ms since the epoch).
type Stamped = (Arc<Vec<u8>>, i64);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A subscriber of a [`MemoryBus`].
pub struct MemorySubscriber {
    bus: MemoryBus,
    group: String,
    positions: Vec<(String, i64)>,
}

impl MemorySubscriber {
    fn take(&mut self, max: usize) -> (Vec<Message>, bool) {
        let state = self.bus.lock();
        let mut out = Vec::new();
        for (topic, pos) in &mut self.positions {
            let Some(log) = state.topics.get(topic.as_str()) else {
                continue;
            };
            while out.len() < max {
                let Some((payload, at)) = usize::try_from(*pos).ok().and_then(|p| log.get(p))
                else {
                    break;
                };
                out.push(Message {
                    topic: topic.clone(),
                    partition: 0,
                    offset: *pos,
                    payload: payload.as_ref().clone(),
                    timestamp_ms: Some(*at),
                });
                *pos += 1;
            }
        }
        (out, state.closed)
    }
}

impl Subscriber for MemorySubscriber {
    async fn poll_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>> {
        let notified = self.bus.notify.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish in between is not missed.
            let waiter = notified.notified();
            let (batch, closed) = self.take(max);
            if !batch.is_empty() {
                return Ok(batch);
            }
            if closed {
                return Err(Error::Closed);
            }
            if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    fn commit(&mut self, messages: &[Message]) -> Result<()> {
        let mut state = self.bus.lock();
        for (topic, _, next) in next_offsets(messages) {
            let entry = state
                .committed
                .entry((self.group.clone(), topic))
                .or_insert(0);
            *entry = (*entry).max(next);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resumes_after_the_last_commit() {
        let bus = MemoryBus::new();
        let topics = vec!["t".to_owned()];
        for i in 0..5u8 {
            bus.publish("t", b"k", &[i]).await.expect("publish");
        }
        let mut sub = bus.subscribe("g", &topics);
        let first = sub
            .poll_batch(3, Duration::from_millis(10))
            .await
            .expect("poll");
        assert_eq!(first.len(), 3);
        sub.commit(&first[..2]).expect("commit");
        drop(sub);
        // The uncommitted third message is delivered again: at least once.
        let mut sub = bus.subscribe("g", &topics);
        let again = sub
            .poll_batch(10, Duration::from_millis(10))
            .await
            .expect("poll");
        let payloads: Vec<u8> = again.iter().map(|m| m.payload[0]).collect();
        assert_eq!(payloads, vec![2, 3, 4]);
        // Another group starts from the beginning.
        let mut other = bus.subscribe("h", &topics);
        assert_eq!(
            other
                .poll_batch(10, Duration::from_millis(10))
                .await
                .expect("poll")
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn a_waiting_subscriber_wakes_on_publish_and_on_close() {
        let bus = MemoryBus::new();
        let mut sub = bus.subscribe("g", &["t".to_owned()]);
        let publisher = bus.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            publisher.publish("t", b"", b"x").await.expect("publish");
            publisher.close();
        });
        let got = sub
            .poll_batch(10, Duration::from_secs(10))
            .await
            .expect("poll");
        assert_eq!(got.len(), 1);
        task.await.expect("task");
        assert!(matches!(
            sub.poll_batch(10, Duration::from_secs(10)).await,
            Err(Error::Closed)
        ));
    }
}
