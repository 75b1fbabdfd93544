//! Time windows of samples: raw values where a quantile is needed (latency),
//! per-second tallies where a share is (context loss, view agreement), so a
//! day's window stays bounded whatever the line's rate.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Raw values with their time, at most `cap` of them (the oldest go first).
pub struct Samples {
    values: Mutex<VecDeque<(Instant, f64)>>,
    cap: usize,
}

impl Samples {
    pub fn new(cap: usize) -> Self {
        Self {
            values: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    pub fn record(&self, value: f64) {
        let mut v = self.values.lock().expect("samples lock");
        if v.len() == self.cap {
            v.pop_front();
        }
        v.push_back((Instant::now(), value));
    }

    /// Values recorded after `cutoff`; older ones are forgotten.
    pub fn since(&self, cutoff: Instant) -> Vec<f64> {
        let mut v = self.values.lock().expect("samples lock");
        while v.front().is_some_and(|(t, _)| *t <= cutoff) {
            v.pop_front();
        }
        v.iter().map(|(_, x)| *x).collect()
    }
}

/// Counts of events and of hits among them, per second.
pub struct Tally {
    seconds: Mutex<VecDeque<(Instant, u64, u64)>>,
    max_age: Duration,
}

impl Tally {
    /// Forgets seconds older than `max_age` even when nobody asks.
    pub fn new(max_age: Duration) -> Self {
        Self {
            seconds: Mutex::new(VecDeque::new()),
            max_age,
        }
    }

    pub fn record(&self, hit: bool) {
        let now = Instant::now();
        let mut s = self.seconds.lock().expect("tally lock");
        match s.back_mut() {
            Some((start, n, hits)) if now.duration_since(*start) < Duration::from_secs(1) => {
                *n += 1;
                *hits += hit as u64;
            }
            _ => s.push_back((now, 1, hit as u64)),
        }
        while s
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > self.max_age)
        {
            s.pop_front();
        }
    }

    /// `(events, hits)` in the seconds that began after `cutoff`; older
    /// seconds are forgotten (a window's cutoff only moves forward), so a
    /// tally holds at most its window.
    pub fn since(&self, cutoff: Instant) -> (u64, u64) {
        let mut s = self.seconds.lock().expect("tally lock");
        while s.front().is_some_and(|(t, _, _)| *t <= cutoff) {
            s.pop_front();
        }
        s.iter()
            .fold((0, 0), |(n, h), (_, dn, dh)| (n + dn, h + dh))
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank; `None` when empty.
pub fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_of_a_hundred_is_the_99th() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(v.clone(), 0.99), Some(99.0));
        assert_eq!(quantile(v, 1.0), Some(100.0));
        assert_eq!(quantile(vec![], 0.5), None);
        assert_eq!(quantile(vec![3.0], 0.99), Some(3.0));
    }

    #[test]
    fn windows_forget_what_is_before_the_cutoff() {
        let s = Samples::new(3);
        for x in [1.0, 2.0, 3.0, 4.0] {
            s.record(x);
        }
        let before = Instant::now() - Duration::from_secs(1);
        assert_eq!(s.since(before), vec![2.0, 3.0, 4.0]);
        assert!(s.since(Instant::now()).is_empty());

        let t = Tally::new(Duration::from_secs(60));
        t.record(true);
        t.record(false);
        t.record(false);
        assert_eq!(t.since(before), (3, 1));
        assert_eq!(t.since(Instant::now()), (0, 0));
    }
}
