//! Dynamic batching across cameras, in the manner of Triton's dynamic
//! batcher: frames from every camera share one queue, and a batch goes to the
//! engine as soon as it holds `max_batch` frames or its oldest frame has
//! waited `max_wait` since it was queued. Frames that queued up while the
//! engine was busy go out at once, up to `max_batch`, without further wait.
//!
//! With several inference workers one rule comes first: a worker never waits
//! for its batch to fill while another worker is idle, and takes only its
//! share of what is queued, leaving the rest to the idle ones. Four cameras
//! that deliver together onto two idle workers are judged two and two at
//! once, not four on one worker after `max_wait`; under load every worker is
//! busy, the queue is long, and batches fill to `max_batch` as before.

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
    /// Another worker was idle: this worker took its share of the queue
    /// and left the rest to it.
    Shared,
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
        self.fill_sharing(first, rx, || 0).await
    }

    /// Completes a batch that starts with `first`, for one of several
    /// workers: `idle_others` says how many other workers wait for work
    /// right now (see the module's doc).
    pub async fn fill_sharing<T: Queued>(
        &self,
        first: T,
        rx: &mut mpsc::Receiver<T>,
        idle_others: impl Fn() -> usize,
    ) -> Batch<T> {
        let deadline = first.queued_at() + self.max_wait;
        let mut items = vec![first];
        loop {
            if items.len() >= self.max_batch {
                return Batch {
                    items,
                    release: Release::Full,
                };
            }
            let idle = idle_others();
            if idle > 0 {
                // Another worker waits: take this one's share of what is
                // queued (rounded up) and go, without waiting for more.
                let share = (items.len() + rx.len()).div_ceil(idle + 1);
                let release = if items.len() >= share {
                    Release::Shared
                } else {
                    match rx.try_recv() {
                        Ok(item) => {
                            items.push(item);
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => Release::Shared,
                        Err(mpsc::error::TryRecvError::Disconnected) => Release::Closed,
                    }
                };
                return Batch { items, release };
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

    #[tokio::test(start_paused = true)]
    async fn with_another_worker_idle_a_worker_takes_its_share_and_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let batcher = Batcher::new(8, Duration::from_millis(20));
        let t0 = Instant::now();
        // Four cameras deliver together; two workers are free.
        for i in 0..4 {
            tx.send(Item(i, t0)).await.unwrap();
        }
        let first = rx.recv().await.unwrap();
        let a = batcher.fill_sharing(first, &mut rx, || 1).await;
        assert_eq!((ids(&a), a.release), (vec![0, 1], Release::Shared));
        let first = rx.recv().await.unwrap();
        let b = batcher.fill_sharing(first, &mut rx, || 0).await;
        assert_eq!(
            ids(&b),
            vec![2, 3],
            "the other half is left for the idle worker"
        );
        assert_eq!(
            Instant::now() - t0,
            Duration::from_millis(20),
            "with no one idle the last worker waits max_wait as before"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_frame_goes_at_once_while_another_worker_is_idle() {
        let (tx, mut rx) = mpsc::channel(16);
        let batcher = Batcher::new(8, Duration::from_millis(20));
        let t0 = Instant::now();
        tx.send(Item(0, t0)).await.unwrap();
        let first = rx.recv().await.unwrap();
        let b = batcher.fill_sharing(first, &mut rx, || 1).await;
        assert_eq!((ids(&b), b.release), (vec![0], Release::Shared));
        assert_eq!(Instant::now(), t0, "it did not wait for company");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_queue_still_fills_whole_batches_with_a_worker_idle() {
        let (tx, mut rx) = mpsc::channel(32);
        let batcher = Batcher::new(4, Duration::from_millis(20));
        for i in 0..12 {
            tx.send(Item(i, Instant::now())).await.unwrap();
        }
        // Twelve queued, two workers: six each would be the share, but no
        // batch is larger than max_batch.
        let first = rx.recv().await.unwrap();
        let b = batcher.fill_sharing(first, &mut rx, || 1).await;
        assert_eq!((ids(&b), b.release), (vec![0, 1, 2, 3], Release::Full));
        // Eight left, three others idle: two each.
        let first = rx.recv().await.unwrap();
        let b = batcher.fill_sharing(first, &mut rx, || 3).await;
        assert_eq!((ids(&b), b.release), (vec![4, 5], Release::Shared));
    }
}
