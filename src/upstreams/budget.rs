//! The retry budget: retries in the last `window_seconds` may not pass
//! `percent` of the requests in it plus `min_per_second` per second. Kept
//! per pool and per process, across reloads.

use parking_lot::Mutex;

use crate::config::RetryBudgetConfig;

/// Per-second counts over the last minute (the longest window).
const SLOTS: usize = 60;

#[derive(Default, Clone, Copy)]
struct Slot {
    second: u64,
    requests: u32,
    retries: u32,
}

pub struct RetryBudget {
    slots: Mutex<[Slot; SLOTS]>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            slots: Mutex::new([Slot::default(); SLOTS]),
        }
    }
}

impl RetryBudget {
    fn slot(slots: &mut [Slot; SLOTS], second: u64) -> &mut Slot {
        let s = &mut slots[(second % SLOTS as u64) as usize];
        if s.second != second {
            *s = Slot {
                second,
                ..Slot::default()
            };
        }
        s
    }

    /// A first try was sent.
    pub fn request(&self, now_ms: u64) {
        let mut slots = self.slots.lock();
        Self::slot(&mut slots, now_ms / 1000).requests += 1;
    }

    /// Whether one more retry fits; if it does, it is counted.
    pub fn try_retry(&self, now_ms: u64, cfg: &RetryBudgetConfig) -> bool {
        let second = now_ms / 1000;
        let window = cfg.window_seconds.clamp(1, SLOTS as u32) as u64;
        let mut slots = self.slots.lock();
        let (mut requests, mut retries) = (0u64, 0u64);
        for s in slots.iter() {
            if s.second + window > second && s.second <= second {
                requests += s.requests as u64;
                retries += s.retries as u64;
            }
        }
        let allowed = requests * cfg.percent as u64 / 100 + cfg.min_per_second as u64 * window;
        if retries >= allowed {
            return false;
        }
        Self::slot(&mut slots, second).retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(percent: u32, min_per_second: u32, window_seconds: u32) -> RetryBudgetConfig {
        RetryBudgetConfig {
            percent,
            min_per_second,
            window_seconds,
        }
    }

    #[test]
    fn retries_are_a_share_of_requests_plus_a_floor() {
        let b = RetryBudget::default();
        let c = cfg(20, 0, 10);
        for _ in 0..100 {
            b.request(5_000);
        }
        let granted = (0..100).filter(|_| b.try_retry(5_500, &c)).count();
        assert_eq!(granted, 20);
        // The floor: 2 per second over 10 s, with no requests at all.
        let b = RetryBudget::default();
        let granted = (0..100)
            .filter(|_| b.try_retry(5_000, &cfg(20, 2, 10)))
            .count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_window_slides() {
        let b = RetryBudget::default();
        let c = cfg(50, 0, 2);
        for _ in 0..10 {
            b.request(1_000);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(1_000, &c)).count(), 5);
        // Still in the window a second on; two on, they are out of it.
        assert!(!b.try_retry(2_999, &c));
        for _ in 0..4 {
            b.request(3_000);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(3_000, &c)).count(), 2);
    }
}
