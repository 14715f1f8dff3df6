//! How many warm containers recent traffic asks for. A model's tool calls come back to
//! back, faster than a container warms (about a second of imports), so a pool of the
//! configured size runs dry inside one conversation turn. The pool therefore aims at the
//! busiest burst seen lately: the most requests that came within one warm-up time of each
//! other in the last `MEMORY`, bounded by the configured size below and a maximum above.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a burst keeps the pool large after it.
pub const MEMORY: Duration = Duration::from_secs(600);
/// Requests remembered at most: enough for any burst the maximum can serve.
const REMEMBERED: usize = 4096;
/// The shortest burst window, whatever warm-ups measured (a warm-up never takes less).
const LEAST_WINDOW: Duration = Duration::from_millis(500);

/// Warm-up times remembered at most.
const WARM_UPS_REMEMBERED: usize = 64;

#[derive(Debug, Default)]
pub struct Demand {
    requests: VecDeque<Instant>,
    /// How long recent warm-ups took: requests closer than the slowest of them cannot be
    /// refilled for. The slowest, not the latest, so one quick warm-up does not shrink the
    /// pool and the next slow one grow it again.
    warm_ups: VecDeque<(Instant, Duration)>,
}

impl Demand {
    pub fn request(&mut self, at: Instant) {
        if self.requests.len() == REMEMBERED {
            self.requests.pop_front();
        }
        self.requests.push_back(at);
    }

    /// Whether a request started within `quiet` of `now`: calls are coming back to back.
    pub fn busy_within(&self, now: Instant, quiet: Duration) -> bool {
        self.requests
            .back()
            .is_some_and(|t| now.saturating_duration_since(*t) < quiet)
    }

    pub fn warmed_in(&mut self, took: Duration) {
        if self.warm_ups.len() == WARM_UPS_REMEMBERED {
            self.warm_ups.pop_front();
        }
        self.warm_ups.push_back((Instant::now(), took));
    }

    /// The pool's size now: the busiest burst within `MEMORY`, never below `size` nor
    /// above `max` (a `max` below `size` means `size`).
    pub fn target(&mut self, now: Instant, size: usize, max: usize) -> usize {
        while self
            .requests
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > MEMORY)
        {
            self.requests.pop_front();
        }
        while self
            .warm_ups
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > MEMORY)
        {
            self.warm_ups.pop_front();
        }
        let max = max.max(size);
        if size == max {
            return size;
        }
        let window = self
            .warm_ups
            .iter()
            .map(|(_, took)| *took)
            .max()
            .unwrap_or(Duration::from_secs(1))
            .max(LEAST_WINDOW);
        let mut busiest = 0;
        let mut first = 0;
        for (last, at) in self.requests.iter().enumerate() {
            while at.saturating_duration_since(self.requests[first]) >= window {
                first += 1;
            }
            busiest = busiest.max(last - first + 1);
        }
        busiest.clamp(size, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand_at(start: Instant, offsets_ms: &[u64]) -> Demand {
        let mut demand = Demand::default();
        demand.warmed_in(Duration::from_millis(1000));
        for ms in offsets_ms {
            demand.request(start + Duration::from_millis(*ms));
        }
        demand
    }

    #[test]
    fn no_traffic_keeps_the_configured_size() {
        let now = Instant::now();
        assert_eq!(Demand::default().target(now, 2, 6), 2);
    }

    #[test]
    fn five_calls_back_to_back_ask_for_five() {
        let start = Instant::now();
        let mut demand = demand_at(start, &[0, 40, 80, 120, 160]);
        assert_eq!(demand.target(start + Duration::from_secs(1), 2, 6), 5);
    }

    #[test]
    fn calls_slower_than_a_warm_up_ask_for_no_more() {
        let start = Instant::now();
        let mut demand = demand_at(start, &[0, 1200, 2400, 3600, 4800]);
        assert_eq!(demand.target(start + Duration::from_secs(5), 2, 6), 2);
    }

    #[test]
    fn the_maximum_bounds_a_large_burst() {
        let start = Instant::now();
        let burst: Vec<u64> = (0..20).map(|i| i * 10).collect();
        let mut demand = demand_at(start, &burst);
        assert_eq!(demand.target(start + Duration::from_secs(1), 2, 6), 6);
    }

    #[test]
    fn a_maximum_below_the_size_means_the_size() {
        let start = Instant::now();
        let mut demand = demand_at(start, &[0, 10, 20, 30]);
        assert_eq!(demand.target(start, 3, 1), 3);
    }

    #[test]
    fn a_burst_is_forgotten_after_the_memory() {
        let start = Instant::now();
        let mut demand = demand_at(start, &[0, 10, 20, 30, 40]);
        assert_eq!(demand.target(start + Duration::from_secs(60), 2, 6), 5);
        assert_eq!(
            demand.target(start + MEMORY + Duration::from_secs(1), 2, 6),
            2
        );
    }

    #[test]
    fn calls_are_busy_until_a_quiet_gap() {
        let start = Instant::now();
        let demand = demand_at(start, &[0, 40]);
        let quiet = Duration::from_millis(300);
        assert!(demand.busy_within(start + Duration::from_millis(200), quiet));
        assert!(!demand.busy_within(start + Duration::from_millis(400), quiet));
        assert!(!Demand::default().busy_within(start, quiet));
    }

    #[test]
    fn a_quicker_warm_up_does_not_narrow_the_burst() {
        let start = Instant::now();
        let mut demand = demand_at(start, &[0, 700, 1400]);
        demand.warmed_in(Duration::from_millis(1500));
        assert_eq!(demand.target(start + Duration::from_secs(2), 1, 6), 3);
        demand.warmed_in(Duration::from_millis(900));
        assert_eq!(demand.target(start + Duration::from_secs(3), 1, 6), 3);
    }

    #[test]
    fn a_slower_warm_up_widens_the_burst() {
        let start = Instant::now();
        let mut demand = demand_at(start, &[0, 1200, 2400]);
        demand.warmed_in(Duration::from_millis(3000));
        assert_eq!(demand.target(start + Duration::from_secs(3), 1, 6), 3);
    }
}
