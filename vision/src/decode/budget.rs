//! The pixels held at once, bounded for the whole process.
//!
//! One picture is bounded by the decoder's limits; many are not: with 64
//! frames queued and 8 in flight, a few dozen large files dropped at once
//! would need tens of GB. Each decoded picture from an untrusted source (the
//! hot folder) holds a [`Held`] share of one [`Budget`] for as long as its
//! frame lives; the next decode waits until enough is given back, so the
//! folder is read more slowly instead of the process running out of memory.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// What the process-wide budget allows: room for the queue of ordinary
/// frames many times over (a 5 MP RGB frame is 15 MB).
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

/// Bytes of decoded pixels that may be held at once.
#[derive(Debug)]
pub struct Budget {
    capacity: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// A share of a [`Budget`], given back when the last clone is dropped.
#[derive(Debug, Clone, Default)]
pub struct Held(Option<Arc<Share>>);

#[derive(Debug)]
struct Share {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().expect("budget lock");
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

impl Held {
    /// Bytes this share holds (0 for frames outside any budget).
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |s| s.bytes)
    }
}

/// Why a share was not given.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// More than the whole budget: it could never be held.
    Larger { bytes: u64, capacity: u64 },
    /// `give_up` said stop while waiting.
    GaveUp,
}

impl Budget {
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// The process's budget.
    pub fn global() -> Arc<Self> {
        static GLOBAL: OnceLock<Arc<Budget>> = OnceLock::new();
        GLOBAL.get_or_init(|| Budget::new(DEFAULT_CAPACITY)).clone()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        *self.used.lock().expect("budget lock")
    }

    /// Takes `bytes`, waiting while they do not fit; `give_up` is asked
    /// every 100 ms while waiting (a stopping station).
    pub fn take(self: &Arc<Self>, bytes: u64, give_up: impl Fn() -> bool) -> Result<Held, Refused> {
        if bytes > self.capacity {
            return Err(Refused::Larger {
                bytes,
                capacity: self.capacity,
            });
        }
        let mut used = self.used.lock().expect("budget lock");
        while *used + bytes > self.capacity {
            if give_up() {
                return Err(Refused::GaveUp);
            }
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(100))
                .expect("budget lock")
                .0;
        }
        *used += bytes;
        Ok(Held(Some(Arc::new(Share {
            budget: self.clone(),
            bytes,
        }))))
    }

    /// Gives back what `held` holds beyond `bytes` (the decoder's scratch
    /// space, once only the RGB picture is left).
    pub fn shrink(self: &Arc<Self>, held: Held, bytes: u64) -> Held {
        let Some(share) = held.0 else {
            return Held(None);
        };
        if bytes >= share.bytes {
            return Held(Some(share));
        }
        match Arc::try_unwrap(share) {
            Ok(mut share) => {
                let freed = share.bytes - bytes;
                share.bytes = bytes;
                let mut used = self.used.lock().expect("budget lock");
                *used -= freed;
                self.freed.notify_all();
                Held(Some(Arc::new(share)))
            }
            Err(shared) => Held(Some(shared)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_waits_until_enough_is_given_back() {
        let budget = Budget::new(100);
        let a = budget.take(60, || false).unwrap();
        let b = budget.take(40, || false).unwrap();
        assert_eq!(budget.used(), 100);
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.take(50, || false).map(|h| h.bytes()))
        };
        std::thread::sleep(Duration::from_millis(150));
        assert!(!waiter.is_finished(), "50 more do not fit in 100");
        drop(a);
        assert_eq!(waiter.join().unwrap(), Ok(50));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn more_than_the_whole_budget_is_refused_and_a_stop_ends_the_wait() {
        let budget = Budget::new(100);
        assert_eq!(
            budget.take(101, || false).unwrap_err(),
            Refused::Larger {
                bytes: 101,
                capacity: 100
            }
        );
        let _all = budget.take(100, || false).unwrap();
        assert_eq!(budget.take(1, || true).unwrap_err(), Refused::GaveUp);
    }

    #[test]
    fn shrinking_gives_the_scratch_space_back() {
        let budget = Budget::new(100);
        let held = budget.take(80, || false).unwrap();
        let held = budget.shrink(held, 30);
        assert_eq!((held.bytes(), budget.used()), (30, 30));
        drop(held);
        assert_eq!(budget.used(), 0);
    }
}
