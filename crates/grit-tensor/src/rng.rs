//! The seeded random-number generator of a training run.
//!
//! One [`Rng`] drives everything random in a run (weight initialisation, the shuffled order
//! of each epoch, dropout masks), so the same seed gives the same run bit for bit. It is
//! ChaCha8, whose output is fixed by its seed and position: [`Rng::state`] captures both, and
//! [`Rng::from_state`] continues the stream exactly where a checkpoint left it.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::parallel;

/// A seeded, restorable random-number generator.
#[derive(Debug, Clone)]
pub struct Rng {
    seed: u64,
    inner: ChaCha8Rng,
}

/// The position of an [`Rng`] in its stream: enough to continue it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The seed the generator was created from.
    pub seed: u64,
    /// How many 32-bit words of the stream have been used.
    pub word_pos: u128,
}

impl Rng {
    /// Creates a generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng {
            seed,
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Returns the seed and the position in the stream.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.seed,
            word_pos: self.inner.get_word_pos(),
        }
    }

    /// Recreates a generator at a saved position.
    pub fn from_state(state: RngState) -> Self {
        let mut rng = Rng::new(state.seed);
        rng.inner.set_word_pos(state.word_pos);
        rng
    }

    /// Returns a uniform sample from `[low, high)`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.unit()
    }

    /// Returns a uniform sample from `[0, 1)` with 24 random bits.
    pub fn unit(&mut self) -> f32 {
        (self.inner.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Fills `units` with the next `units.len()` samples of [`Rng::unit`], in blocks on the
    /// threads of the current pool. Each block starts the stream at its own position, so the
    /// values, and the generator's position afterwards, are those of calling `unit` once per
    /// value, whatever the number of threads.
    pub fn fill_units(&mut self, units: &mut [f32]) {
        let start = self.inner.get_word_pos();
        let block = parallel::block_len(units.len());
        let inner = &self.inner;
        units
            .par_chunks_mut(block)
            .enumerate()
            .for_each(|(index, chunk)| {
                let mut stream = inner.clone();
                stream.set_word_pos(start + (index * block) as u128);
                let mut words = [0u32; 256];
                for part in chunk.chunks_mut(words.len()) {
                    let words = &mut words[..part.len()];
                    // Consumes the stream's words in order, as `next_u32` does.
                    rand::Rng::fill(&mut stream, words);
                    for (unit, &word) in part.iter_mut().zip(words.iter()) {
                        *unit = (word >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
                    }
                }
            });
        self.inner.set_word_pos(start + units.len() as u128);
    }

    /// Returns a standard normal sample (Box-Muller on two uniform draws).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.unit() as f64; // in (0, 1], so the logarithm is finite
        let u2 = self.unit() as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Returns a uniform integer from `0..n`, for `n > 0`, without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.inner.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn restored_state_continues_the_stream() {
        let mut rng = Rng::new(3);
        for _ in 0..37 {
            rng.unit();
        }
        let state = rng.state();
        let expected: Vec<u32> = (0..10).map(|_| rng.next_u32()).collect();
        let mut restored = Rng::from_state(state);
        let actual: Vec<u32> = (0..10).map(|_| restored.next_u32()).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn fill_units_continues_like_unit() {
        // Lengths below and above the parallel threshold, from a position inside a block of
        // the ChaCha stream, on one and on three threads.
        for len in [5, 3 * parallel::MIN_PARALLEL_VALUES + 7] {
            for threads in [1, 3] {
                let mut expected_rng = Rng::new(11);
                expected_rng.next_u32();
                let mut rng = expected_rng.clone();
                let expected: Vec<f32> = (0..len).map(|_| expected_rng.unit()).collect();
                let mut units = vec![0.0; len];
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| rng.fill_units(&mut units));
                assert!(
                    units == expected,
                    "{len} values on {threads} threads differ"
                );
                assert_eq!(rng.state(), expected_rng.state(), "{len} values: position");
            }
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<usize> = (0..50).collect();
        Rng::new(1).shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut rng = Rng::new(11);
        let n = 20_000;
        let uniform: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        assert!(uniform.iter().all(|&v| (-1.0..1.0).contains(&v)));
        let mean = uniform.iter().sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.02, "uniform mean {mean}");
        let normal: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let mean = normal.iter().sum::<f32>() / n as f32;
        let variance = normal.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.03, "normal mean {mean}");
        assert!((variance - 1.0).abs() < 0.05, "normal variance {variance}");
    }
}
