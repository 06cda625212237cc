//! A small deterministic generator (splitmix64): each case gets its own seed, so a failing case
//! is reproduced by its seed alone, whatever ran before it.

pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub(super) fn below(&mut self, bound: usize) -> usize {
        // The modulo bias is irrelevant for fuzzing.
        (self.next_u64() % bound as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub(super) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The seed of case `index` of a run: distinct for every (base, macro, kind, index).
pub(super) fn case_seed(base: u64, stream: u64, index: u64) -> u64 {
    let mut rng =
        Rng::new(base ^ stream.rotate_left(32) ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d));
    rng.next_u64()
}
