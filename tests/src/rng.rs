//! xorshift64*: one seed, one reproducible stream of choices (the nemesis's
//! keys, operations and faults; the bank's transfers).

pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value: zero is avoided).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
