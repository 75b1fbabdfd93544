//! Dynamic batching across cameras, in the manner of Triton's dynamic
//! batcher: frames from every camera share one queue, and a batch goes to the
//! engine as soon as it holds `max_batch` frames or its oldest frame has
//! waited `max_wait` since it was queued. Frames that queued up while the
//! engine was busy go out at once, up to `max_batch`, without further wait.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Something waiting in the batching queue.
pub trait Queued {
    /// When it entered the queue.
    fn queued_at(&self) -> Instant;
}

/// Why a batch was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// It reached `max_batch`.
    Full,
    /// Its oldest item waited `max_wait`.
    Waited,
    /// The queue closed; this is what was left.
    Closed,
}

/// A batch and why it went.
#[derive(Debug)]
pub struct Batch<T> {
    pub items: Vec<T>,
    pub release: Release,
}

/// The release rule.
#[derive(Debug, Clone, Copy)]
pub struct Batcher {
    pub max_batch: usize,
    pub max_wait: Duration,
}

impl Batcher {
    pub fn new(max_batch: usize, max_wait: Duration) -> Self {
        Self {
            max_batch: max_batch.max(1),
            max_wait,
        }
    }

    /// Waits for the next batch; `None` once the queue is closed and empty.
    pub async fn next<T: Queued>(&self, rx: &mut mpsc::Receiver<T>) -> Option<Batch<T>> {
        let first = rx.recv().await?;
        Some(self.fill(first, rx).await)
    }

    /// Completes a batch that starts with `first`.
    pub async fn fill<T: Queued>(&self, first: T, rx: &mut mpsc::Receiver<T>) -> Batch<T> {
        let deadline = first.queued_at() + self.max_wait;
        let mut items = vec![first];
        loop {
            if items.len() >= self.max_batch {
                return Batch {
                    items,
                    release: Release::Full,
                };
            }
            tokio::select! {
                // Frames already queued join before the deadline is looked at.
                biased;
                next = rx.recv() => match next {
                    Some(item) => items.push(item),
                    None => return Batch { items, release: Release::Closed },
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Batch { items, release: Release::Waited };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(u32, Instant);

    impl Queued for Item {
        fn queued_at(&self) -> Instant {
            self.1
        }
    }

    fn ids(b: &Batch<Item>) -> Vec<u32> {
        b.items.iter().map(|i| i.0).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let batcher = Batcher::new(4, Duration::from_millis(20));
        let t0 = Instant::now();
        for i in 0..6 {
            tx.send(Item(i, Instant::now())).await.unwrap();
        }
        let b = batcher.next(&mut rx).await.unwrap();
        assert_eq!(b.release, Release::Full);
        assert_eq!(ids(&b), vec![0, 1, 2, 3]);
        assert_eq!(Instant::now(), t0, "no time passed: it did not wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_goes_when_its_oldest_frame_waited_max_wait() {
        let (tx, mut rx) = mpsc::channel(16);
        let batcher = Batcher::new(4, Duration::from_millis(20));
        let t0 = Instant::now();
        tx.send(Item(0, t0)).await.unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(15)).await;
            late.send(Item(1, Instant::now())).await.unwrap();
            // Arrives after the deadline: belongs to the next batch.
            tokio::time::sleep(Duration::from_millis(10)).await;
            late.send(Item(2, Instant::now())).await.unwrap();
        });
        let b = batcher.next(&mut rx).await.unwrap();
        assert_eq!(b.release, Release::Waited);
        assert_eq!(ids(&b), vec![0, 1]);
        assert_eq!(
            Instant::now() - t0,
            Duration::from_millis(20),
            "released exactly max_wait after the oldest frame was queued"
        );
        let b = batcher.next(&mut rx).await.unwrap();
        assert_eq!(ids(&b), vec![2]);
        assert_eq!(Instant::now() - t0, Duration::from_millis(45));
    }

    #[tokio::test(start_paused = true)]
    async fn frames_that_waited_while_the_engine_was_busy_go_without_further_wait() {
        let (tx, mut rx) = mpsc::channel(16);
        let batcher = Batcher::new(8, Duration::from_millis(20));
        tx.send(Item(0, Instant::now())).await.unwrap();
        tx.send(Item(1, Instant::now())).await.unwrap();
        // The engine was busy for 50 ms: the oldest frame is already overdue.
        tokio::time::advance(Duration::from_millis(50)).await;
        let t = Instant::now();
        let b = batcher.next(&mut rx).await.unwrap();
        assert_eq!(b.release, Release::Waited);
        assert_eq!(ids(&b), vec![0, 1]);
        assert_eq!(Instant::now(), t);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_queue_hands_over_what_is_left_then_ends() {
        let (tx, mut rx) = mpsc::channel(16);
        let batcher = Batcher::new(4, Duration::from_secs(10));
        tx.send(Item(7, Instant::now())).await.unwrap();
        drop(tx);
        let b = batcher.next(&mut rx).await.unwrap();
        assert_eq!((ids(&b), b.release), (vec![7], Release::Closed));
        assert!(batcher.next(&mut rx).await.is_none());
    }
}
