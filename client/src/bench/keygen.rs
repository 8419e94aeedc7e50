//! Key choosers for `shoalctl bench run`: which key index the next operation uses.
//!
//! - Uniform: every index in `0..n` equally likely.
//! - Scrambled zipfian, as in YCSB: a zipfian rank (rank 0 the most popular) drawn
//!   with the method of Gray et al., "Quickly generating billion-record synthetic
//!   databases" (SIGMOD 1994), with theta 0.99, then hashed (FNV-1a 64) and reduced
//!   modulo the item count, so the popular keys are spread over the key space
//!   instead of being keys 0, 1, 2, ... The hash is not a permutation: a few
//!   indices get two ranks' weight and some none, as in YCSB.
//!
//! The zipfian is built over a fixed item count (its "capacity"); a draw that falls
//! at or beyond the current range `n` is drawn again, so a range that grows with
//! inserts keeps the same hot keys. When `n` passes the capacity, the capacity at
//! least doubles (the zeta sum is extended, not recomputed), which reshuffles the
//! hot set once.

use rand::Rng;

/// YCSB's default zipfian constant.
pub const ZIPFIAN_THETA: f64 = 0.99;

/// Which key-index distribution to draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    Uniform,
    Zipfian,
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
        }
    }
}

/// Zipfian ranks in `0..items` (Gray et al.): P(rank k) is proportional to 1/(k+1)^theta.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    /// zeta(items, theta) = sum over i in 1..=items of 1/i^theta.
    zeta_n: f64,
    /// zeta(2, theta).
    zeta_2: f64,
    alpha: f64,
    eta: f64,
}

impl Zipfian {
    /// Sums `items` terms: O(items) work, so build once and clone. `items` must be at least 1.
    pub fn new(items: u64, theta: f64) -> Zipfian {
        assert!(items >= 1 && theta > 0.0 && theta < 1.0, "zipfian needs items >= 1 and 0 < theta < 1");
        let mut z = Zipfian { items: 0, theta, zeta_n: 0.0, zeta_2: 1.0 + 0.5f64.powf(theta), alpha: 1.0 / (1.0 - theta), eta: 0.0 };
        z.grow(items);
        z
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// Extends the item count to `items` by adding the missing zeta terms.
    pub fn grow(&mut self, items: u64) {
        for i in self.items + 1..=items {
            self.zeta_n += (i as f64).powf(-self.theta);
        }
        self.items = self.items.max(items);
        let n = self.items as f64;
        // With fewer than 3 items the closed form below is never reached (see `rank`).
        self.eta = if self.items > 2 { (1.0 - (2.0 / n).powf(1.0 - self.theta)) / (1.0 - self.zeta_2 / self.zeta_n) } else { 0.0 };
    }

    /// The rank for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let r = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.items - 1)
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        self.rank(rng.random::<f64>())
    }
}

/// FNV-1a, 64 bits, over the 8 little-endian bytes of `x`.
pub fn fnv1a64(x: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    x.to_le_bytes().iter().fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The key index that zipfian rank `rank` lands on among `items`.
pub fn scramble(rank: u64, items: u64) -> u64 {
    fnv1a64(rank) % items
}

/// Draws key indices; each worker owns a clone.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    Uniform,
    ScrambledZipfian(Zipfian),
}

impl KeyChooser {
    /// `capacity`: how many items the zipfian covers up front (at least 1); ignored for uniform.
    pub fn new(distribution: Distribution, capacity: u64) -> KeyChooser {
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Zipfian => KeyChooser::ScrambledZipfian(Zipfian::new(capacity.max(1), ZIPFIAN_THETA)),
        }
    }

    /// A key index in `0..n` (`n` at least 1). Always returns, whatever `n` is.
    pub fn next(&mut self, rng: &mut impl Rng, n: u64) -> u64 {
        match self {
            KeyChooser::Uniform => rng.random_range(0..n),
            KeyChooser::ScrambledZipfian(z) => {
                if n > z.items() {
                    z.grow(n.max(z.items().saturating_mul(2)));
                }
                // At least half the capacity is in range when it was sized for the loaded
                // keys, so this rarely takes more than a few tries.
                for _ in 0..64 {
                    let i = scramble(z.sample(rng), z.items());
                    if i < n {
                        return i;
                    }
                }
                // `n` far below the capacity (or no rank hashing into it): fold into range.
                scramble(z.sample(rng), n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn counts(chooser: &mut KeyChooser, n: u64, draws: usize, seed: u64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut c = vec![0u64; n as usize];
        for _ in 0..draws {
            let i = chooser.next(&mut rng, n);
            assert!(i < n, "drew {i}, not below {n}");
            c[i as usize] += 1;
        }
        c
    }

    #[test]
    fn uniform_stays_in_range_and_covers_it() {
        let c = counts(&mut KeyChooser::new(Distribution::Uniform, 100), 100, 20_000, 1);
        assert!(c.iter().all(|&k| k > 0), "some index never drawn: {c:?}");
        // Flat: no index near the skew a zipfian gives (expected 200 each).
        assert!(c.iter().all(|&k| k < 400), "uniform looks skewed: {c:?}");
    }

    #[test]
    fn zipfian_ranks_follow_the_zipf_law_at_the_head() {
        let (n, draws) = (1000u64, 200_000usize);
        let z = Zipfian::new(n, ZIPFIAN_THETA);
        let zeta: f64 = (1..=n).map(|i| (i as f64).powf(-ZIPFIAN_THETA)).sum();
        let mut rng = StdRng::seed_from_u64(2);
        let mut c = vec![0u64; n as usize];
        for _ in 0..draws {
            let r = z.sample(&mut rng);
            assert!(r < n);
            c[r as usize] += 1;
        }
        // The first ranks are exact in Gray's method: P(k) = (k+1)^-theta / zeta(n).
        for (k, &count) in c.iter().enumerate().take(2) {
            let want = ((k + 1) as f64).powf(-ZIPFIAN_THETA) / zeta;
            let got = count as f64 / draws as f64;
            assert!((got - want).abs() < 0.01, "rank {k}: frequency {got}, expected {want}");
        }
        assert!(
            c[0] > c[1] && c[1] > c[9] && c[9] > c[99] && c[99] > c[999],
            "not decreasing: {} {} {} {} {}",
            c[0],
            c[1],
            c[9],
            c[99],
            c[999]
        );
    }

    #[test]
    fn scrambled_zipfian_is_skewed_and_in_range() {
        let n = 1000;
        let draws = 100_000;
        let c = counts(&mut KeyChooser::new(Distribution::Zipfian, n), n, draws, 3);
        let (hot, top) = c.iter().enumerate().max_by_key(|(_, k)| **k).map(|(i, k)| (i as u64, *k)).unwrap();
        assert!(top as f64 > 0.03 * draws as f64, "hottest key got only {top} of {draws} draws");
        assert_ne!(hot, 0, "the hot key should be scrambled away from key 0");
        assert_eq!(hot, scramble(0, n), "the hottest key should be rank 0's");
    }

    #[test]
    fn scramble_moves_rank_zero_off_key_zero_for_most_sizes() {
        let off_zero = (2..=2000u64).filter(|&n| scramble(0, n) != 0).count();
        assert!(off_zero * 10 > 1999 * 9, "rank 0 lands on key 0 for {} of 1999 sizes", 1999 - off_zero);
        let hot: std::collections::HashSet<u64> = (0..10).map(|r| scramble(r, 1000)).collect();
        assert!(hot.len() >= 8, "ranks 0..10 collapse onto {} keys", hot.len());
    }

    #[test]
    fn fnv1a64_matches_the_reference_offset_basis_and_prime() {
        // One byte by hand: (basis ^ b) * prime, eight times, with b the bytes of 1 (LE).
        let mut h: u64 = 0xcbf29ce484222325;
        for b in [1u8, 0, 0, 0, 0, 0, 0, 0] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        assert_eq!(fnv1a64(1), h);
        assert_ne!(fnv1a64(0), fnv1a64(1));
    }

    #[test]
    fn growing_the_zipfian_equals_building_it_at_the_larger_size() {
        let mut grown = Zipfian::new(100, ZIPFIAN_THETA);
        grown.grow(5000);
        let fresh = Zipfian::new(5000, ZIPFIAN_THETA);
        assert_eq!(grown.items(), 5000);
        assert!((grown.zeta_n - fresh.zeta_n).abs() < 1e-9 && (grown.eta - fresh.eta).abs() < 1e-12);
    }

    #[test]
    fn zipfian_chooser_follows_a_growing_range() {
        let mut chooser = KeyChooser::new(Distribution::Zipfian, 50);
        let mut rng = StdRng::seed_from_u64(4);
        for n in [1u64, 2, 3, 30, 50, 51, 120, 1000] {
            for _ in 0..2000 {
                let i = chooser.next(&mut rng, n);
                assert!(i < n, "drew {i} for a range of {n}");
            }
        }
        // Grown from 50 to (at least) 1000 items: the new upper half is reachable too.
        let upper = (0..5000).filter(|_| chooser.next(&mut rng, 1000) >= 500).count();
        assert!(upper > 1000, "only {upper} of 5000 draws in 500..1000 after growing");
        // A range of 1 key: every draw must be key 0.
        let mut fresh = KeyChooser::new(Distribution::Zipfian, 10);
        assert!((0..100).all(|_| fresh.next(&mut rng, 1) == 0));
    }

    #[test]
    fn tiny_zipfians_do_not_break() {
        for items in 1..=3 {
            let z = Zipfian::new(items, ZIPFIAN_THETA);
            for u in [0.0, 0.3, 0.6, 0.999_999] {
                assert!(z.rank(u) < items);
            }
        }
    }
}
