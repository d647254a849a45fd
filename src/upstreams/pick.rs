//! Choosing an endpoint: the five `balance` algorithms over the endpoints
//! that may take a request now (active checks pass, not ejected, not tried
//! yet for this request, not full), with slow start scaling weights.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use pingora_ketama::{Bucket, Continuum};
use rand::Rng;

use crate::config::{Balance, HashOn};

use super::{Member, Upstream};

/// What a request offers `consistent_hash` to hash.
#[derive(Default, Clone, Copy)]
pub struct Affinity<'a> {
    pub client_ip: Option<IpAddr>,
    pub path: Option<&'a str>,
    /// The authenticated key (its reference, never the secret).
    pub key: Option<&'a str>,
    pub headers: Option<&'a http::HeaderMap>,
}

/// The per-algorithm part of a pool, built once.
pub(super) enum Picker {
    /// Smooth weighted round robin, as a sequence of endpoint indexes.
    RoundRobin(Vec<u16>),
    Random,
    LeastConn,
    PeakEwma,
    Hash {
        on: HashOn,
        ring: Continuum,
        /// The endpoint index of each ring point.
        points: Vec<u16>,
    },
}

/// Why no endpoint was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    /// None is available (or all were tried).
    NoEndpoint,
    /// The circuit breaker is full.
    Full,
}

/// Longest round-robin sequence kept (weights are reduced by their GCD first).
const MAX_SEQUENCE: u64 = 4096;

impl Picker {
    pub(super) fn build(balance: Balance, hash_on: Option<&HashOn>, members: &[Member]) -> Picker {
        match balance {
            Balance::RoundRobin => Picker::RoundRobin(smooth_sequence(
                &members.iter().map(|m| m.weight as u64).collect::<Vec<_>>(),
            )),
            Balance::Random => Picker::Random,
            Balance::LeastConn => Picker::LeastConn,
            Balance::PeakEwma => Picker::PeakEwma,
            Balance::ConsistentHash => {
                let buckets: Vec<Bucket> = members
                    .iter()
                    .map(|m| Bucket::new(m.endpoint.addr, m.weight))
                    .collect();
                let ring = Continuum::new(&buckets);
                let mut points = Vec::new();
                let mut idx = 0;
                // One full turn of the ring (get_addr wraps around).
                if let Some(first) = ring.get_addr(&mut idx).copied() {
                    let find = |a: std::net::SocketAddr| {
                        members
                            .iter()
                            .position(|m| m.endpoint.addr == a)
                            .unwrap_or(0) as u16
                    };
                    points.push(find(first));
                    while idx != 0 {
                        let Some(a) = ring.get_addr(&mut idx).copied() else {
                            break;
                        };
                        points.push(find(a));
                    }
                }
                Picker::Hash {
                    on: hash_on.cloned().unwrap_or(HashOn::ClientIp),
                    ring,
                    points,
                }
            }
        }
    }
}

/// nginx's smooth weighted round robin, unrolled: each endpoint appears
/// `weight` times per turn, spread out.
fn smooth_sequence(weights: &[u64]) -> Vec<u16> {
    let g = weights.iter().fold(0, |a, &w| gcd(a, w)).max(1);
    let w: Vec<i64> = weights.iter().map(|x| (x / g) as i64).collect();
    let total: i64 = w.iter().sum();
    let len = (total as u64).min(MAX_SEQUENCE) as usize;
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(len);
    for _ in 0..len {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        seq.push(best as u16);
    }
    seq
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The view of one pick: what is eligible now.
pub(super) struct Candidates<'a> {
    pub up: &'a Upstream,
    pub now: u64,
    pub tried: &'a [usize],
}

impl Candidates<'_> {
    fn member(&self, i: usize) -> &Member {
        &self.up.members[i]
    }

    /// Available, not yet tried, and with room (`None`: full).
    fn open(&self, i: usize) -> Option<bool> {
        if self.tried.contains(&i) || !self.member(i).state.available(self.now) {
            return Some(false);
        }
        match self.up.config.limits.max_in_flight_per_endpoint {
            Some(max) if self.member(i).state.in_flight.load(Relaxed) >= max => None,
            _ => Some(true),
        }
    }

    fn ok(&self, i: usize) -> bool {
        self.open(i) == Some(true)
    }

    /// Its weight now, slow start applied.
    fn weight(&self, i: usize) -> f64 {
        let m = self.member(i);
        m.weight as f64
            * m.state
                .slow_start_factor(self.now, self.up.config.slow_start_ms)
    }

    pub fn pick(
        &self,
        picker: &Picker,
        turn: &AtomicUsize,
        aff: &Affinity,
    ) -> Result<usize, PickError> {
        let n = self.up.members.len();
        let (mut open, mut full) = (0, false);
        for i in 0..n {
            match self.open(i) {
                Some(true) => open += 1,
                None => full = true,
                Some(false) => {}
            }
        }
        if open == 0 {
            return Err(if full {
                PickError::Full
            } else {
                PickError::NoEndpoint
            });
        }
        let found = match picker {
            Picker::RoundRobin(seq) => self.round_robin(seq, turn),
            Picker::Random => self.random(),
            Picker::LeastConn => self.least_conn(turn),
            Picker::PeakEwma => self.peak_ewma(open),
            Picker::Hash { on, ring, points } => match hash_input(on, aff, &mut [0; 16]) {
                Some(key) => self.on_ring(ring.node_idx(key), points),
                None => self.in_turn(turn),
            },
        };
        Ok(found.unwrap_or_else(|| self.in_turn(turn).unwrap_or(0)))
    }

    fn round_robin(&self, seq: &[u16], turn: &AtomicUsize) -> Option<usize> {
        // A retry walks on from where the turn stands without moving it:
        // were it moved, the endpoint after the failed one would be skipped
        // by the next request, and with two endpoints every request would
        // start on the failing one.
        let start = if self.tried.is_empty() {
            turn.fetch_add(1, Relaxed)
        } else {
            turn.load(Relaxed)
        };
        let mut rng = None;
        for step in 0..seq.len() {
            let i = seq[(start + step) % seq.len()] as usize;
            if !self.ok(i) {
                continue;
            }
            let f = self
                .member(i)
                .state
                .slow_start_factor(self.now, self.up.config.slow_start_ms);
            if f < 1.0 && rng.get_or_insert_with(rand::thread_rng).gen::<f64>() >= f {
                continue; // ramping up: takes only its share of turns
            }
            return Some(i);
        }
        None
    }

    fn random(&self) -> Option<usize> {
        let n = self.up.members.len();
        let total: f64 = (0..n).filter(|&i| self.ok(i)).map(|i| self.weight(i)).sum();
        let mut r = rand::thread_rng().gen::<f64>() * total;
        for i in (0..n).filter(|&i| self.ok(i)) {
            r -= self.weight(i);
            if r < 0.0 {
                return Some(i);
            }
        }
        None
    }

    fn least_conn(&self, turn: &AtomicUsize) -> Option<usize> {
        let n = self.up.members.len();
        let start = turn.fetch_add(1, Relaxed);
        let mut best: Option<(usize, f64)> = None;
        for step in 0..n {
            let i = (start + step) % n;
            if !self.ok(i) {
                continue;
            }
            let load = (self.member(i).state.in_flight.load(Relaxed) as f64 + 1.0) / self.weight(i);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Power of two choices by cost: decayed peak latency × (in flight + 1)
    /// over the weight.
    fn peak_ewma(&self, open: usize) -> Option<usize> {
        let nth_open = |k: usize| (0..self.up.members.len()).filter(|&i| self.ok(i)).nth(k);
        if open == 1 {
            return nth_open(0);
        }
        let mut rng = rand::thread_rng();
        let a = rng.gen_range(0..open);
        let mut b = rng.gen_range(0..open - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (nth_open(a)?, nth_open(b)?);
        let tau = self.up.config.ewma_decay_ms;
        let cost = |i: usize| {
            let s = &self.member(i).state;
            s.ewma(self.now, tau) * (s.in_flight.load(Relaxed) as f64 + 1.0) / self.weight(i)
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }

    /// The first eligible endpoint from this point of the ring on.
    fn on_ring(&self, start: usize, points: &[u16]) -> Option<usize> {
        (0..points.len())
            .map(|step| points[(start + step) % points.len()] as usize)
            .find(|&i| self.ok(i))
    }

    /// Plain turns over the eligible endpoints (requests without a hash input).
    fn in_turn(&self, turn: &AtomicUsize) -> Option<usize> {
        let n = self.up.members.len();
        let start = turn.fetch_add(1, Relaxed);
        (0..n).map(|s| (start + s) % n).find(|&i| self.ok(i))
    }
}

/// The bytes `consistent_hash` hashes, or `None` when the request has none.
fn hash_input<'a>(on: &HashOn, aff: &Affinity<'a>, buf: &'a mut [u8; 16]) -> Option<&'a [u8]> {
    match on {
        HashOn::ClientIp => match aff.client_ip? {
            IpAddr::V4(a) => {
                buf[..4].copy_from_slice(&a.octets());
                Some(&buf[..4])
            }
            IpAddr::V6(a) => {
                *buf = a.octets();
                Some(&buf[..])
            }
        },
        HashOn::Path => aff.path.map(str::as_bytes),
        HashOn::Key => aff.key.map(str::as_bytes),
        HashOn::Header(name) => aff.headers?.get(name.as_str()).map(|v| v.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pool(extra: &str) -> Arc<Upstream> {
        let yaml = format!(
            "endpoints: [{{address: '127.0.0.1:1'}}, {{address: '127.0.0.1:2'}}, {{address: '127.0.0.1:3'}}]\n{extra}"
        );
        let cfg = serde_yaml::from_str(&yaml).unwrap();
        Arc::new(Upstream::build("t", &cfg, None).unwrap())
    }

    fn picks(up: &Arc<Upstream>, n: usize, aff: &Affinity) -> Vec<usize> {
        (0..n).map(|_| up.pick(aff, &[]).unwrap().index()).collect()
    }

    #[test]
    fn a_retry_does_not_move_round_robins_turn() {
        let up = pool("");
        let first = up.pick(&Affinity::default(), &[]).unwrap();
        assert_eq!(first.index(), 0);
        // The retry after 0 goes to 1, and the next request still gets 1.
        assert_eq!(up.pick(&Affinity::default(), &[0]).unwrap().index(), 1);
        assert_eq!(picks(&up, 3, &Affinity::default()), [1, 2, 0]);
    }

    #[test]
    fn least_conn_takes_the_least_loaded() {
        let up = pool("balance: least_conn");
        let aff = Affinity::default();
        let held: Vec<_> = (0..3).map(|_| up.pick(&aff, &[]).unwrap()).collect();
        let mut busy: Vec<usize> = held.iter().map(|a| a.index()).collect();
        busy.sort();
        assert_eq!(busy, [0, 1, 2], "one each first");
        let extra = up.pick(&aff, &[]).unwrap();
        let loaded = extra.index();
        // Two on `loaded` now: the next goes elsewhere, whatever the turn.
        for _ in 0..5 {
            assert_ne!(up.pick(&aff, &[]).unwrap().index(), loaded);
        }
    }

    #[test]
    fn consistent_hash_walks_on_past_a_tried_endpoint() {
        let up = pool("balance: consistent_hash\nhash_on: key");
        let aff = Affinity {
            key: Some("customer-7"),
            ..Affinity::default()
        };
        let home = picks(&up, 1, &aff)[0];
        assert_eq!(picks(&up, 20, &aff), vec![home; 20]);
        let next = up.pick(&aff, &[home]).unwrap().index();
        assert_ne!(next, home);
        assert_eq!(up.pick(&aff, &[home]).unwrap().index(), next);
        // No key: spread in turn.
        let spread = picks(&up, 3, &Affinity::default());
        let mut sorted = spread.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
    }

    #[test]
    fn the_breaker_counts_places_until_they_are_given_back() {
        let up = pool("limits: {max_in_flight: 2}");
        let aff = Affinity::default();
        let (a, b) = (up.pick(&aff, &[]).unwrap(), up.pick(&aff, &[]).unwrap());
        assert_eq!(up.pick(&aff, &[]).err(), Some(PickError::Full));
        drop(a);
        let c = up.pick(&aff, &[]).unwrap();
        drop((b, c));
        let up = pool("limits: {max_in_flight_per_endpoint: 1}");
        let held: Vec<_> = (0..3).map(|_| up.pick(&aff, &[]).unwrap()).collect();
        assert_eq!(up.pick(&aff, &[]).err(), Some(PickError::Full));
        drop(held);
        assert!(up.pick(&aff, &[]).is_ok());
    }

    #[test]
    fn smooth_round_robin_spreads_by_weight() {
        assert_eq!(smooth_sequence(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_sequence(&[2, 2]), vec![0, 1]);
        assert_eq!(smooth_sequence(&[3]), vec![0]);
        assert_eq!(smooth_sequence(&[10_000, 1]).len(), MAX_SEQUENCE as usize);
    }
}
