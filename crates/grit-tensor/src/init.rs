//! Weight initializers with Keras's formulas.
//!
//! Fans follow Keras's `compute_fans`: a matrix (inputs × units) has fan-in `shape[0]` and
//! fan-out `shape[1]`; a convolution kernel (height × width × in × out) multiplies both by the
//! receptive field `height · width`; a vector uses its length for both.

use serde::{Deserialize, Serialize};

use crate::{Rng, Tensor};

/// Correction that keeps the standard deviation of a normal truncated at two standard
/// deviations equal to the requested one (Keras's constant `.87962566103423978`).
const TRUNCATED_NORMAL_STDDEV: f32 = 0.879_625_7;

/// The rule that fills a weight tensor before training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "name")]
pub enum Initializer {
    /// All zeros (Keras's default for biases).
    Zeros,
    /// All ones.
    Ones,
    /// Every element set to `value`.
    Constant {
        /// The value.
        value: f32,
    },
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))` (Keras's default for kernels).
    GlorotUniform,
    /// Truncated normal with standard deviation `sqrt(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// Truncated normal with standard deviation `sqrt(2 / fan_in)`.
    HeNormal,
    /// Uniform in `±sqrt(6 / fan_in)`.
    HeUniform,
}

impl Initializer {
    /// Returns a tensor of `shape` filled by this initializer.
    pub fn init(&self, shape: &[usize], rng: &mut Rng) -> Tensor {
        let (fan_in, fan_out) = fans(shape);
        let mut tensor = Tensor::zeros(shape);
        match *self {
            Initializer::Zeros => {}
            Initializer::Ones => tensor.fill(1.0),
            Initializer::Constant { value } => tensor.fill(value),
            Initializer::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
                tensor.mapv_inplace(|_| rng.uniform(-limit, limit));
            }
            Initializer::HeUniform => {
                let limit = (6.0 / fan_in as f32).sqrt();
                tensor.mapv_inplace(|_| rng.uniform(-limit, limit));
            }
            Initializer::GlorotNormal => {
                let stddev = (2.0 / (fan_in + fan_out) as f32).sqrt() / TRUNCATED_NORMAL_STDDEV;
                tensor.mapv_inplace(|_| truncated_normal(rng) * stddev);
            }
            Initializer::HeNormal => {
                let stddev = (2.0 / fan_in as f32).sqrt() / TRUNCATED_NORMAL_STDDEV;
                tensor.mapv_inplace(|_| truncated_normal(rng) * stddev);
            }
        }
        tensor
    }
}

/// Returns `(fan_in, fan_out)` for a weight of `shape`, each at least 1.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let (fan_in, fan_out) = match shape.len() {
        0 => (1, 1),
        1 => (shape[0], shape[0]),
        2 => (shape[0], shape[1]),
        n => {
            let receptive: usize = shape[..n - 2].iter().product();
            (shape[n - 2] * receptive, shape[n - 1] * receptive)
        }
    };
    (fan_in.max(1), fan_out.max(1))
}

/// Draws a standard normal sample, again until it lies within two standard deviations.
fn truncated_normal(rng: &mut Rng) -> f32 {
    loop {
        let v = rng.normal();
        if v.abs() <= 2.0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_follow_keras() {
        assert_eq!(fans(&[784, 128]), (784, 128));
        assert_eq!(fans(&[3, 3, 1, 32]), (9, 288));
        assert_eq!(fans(&[10]), (10, 10));
    }

    #[test]
    fn glorot_uniform_stays_within_its_limit() {
        let w = Initializer::GlorotUniform.init(&[100, 50], &mut Rng::new(0));
        let limit = (6.0f32 / 150.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= limit));
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max > 0.9 * limit,
            "samples should reach near the limit, max {max}"
        );
    }

    #[test]
    fn he_normal_has_the_requested_spread() {
        let w = Initializer::HeNormal.init(&[400, 300], &mut Rng::new(5));
        let n = w.len() as f32;
        let mean = w.sum() / n;
        let stddev = (w.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
        let expected = (2.0f32 / 400.0).sqrt();
        assert!(
            (stddev - expected).abs() / expected < 0.03,
            "stddev {stddev}, expected {expected}"
        );
        let bound = 2.0 * expected / TRUNCATED_NORMAL_STDDEV;
        assert!(w.iter().all(|v| v.abs() <= bound * 1.0001));
    }

    #[test]
    fn constants() {
        assert!(
            Initializer::Zeros
                .init(&[3, 2], &mut Rng::new(0))
                .iter()
                .all(|&v| v == 0.0)
        );
        let c = Initializer::Constant { value: 0.5 }.init(&[4], &mut Rng::new(0));
        assert!(c.iter().all(|&v| v == 0.5));
    }
}
