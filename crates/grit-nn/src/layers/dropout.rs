use grit_tensor::parallel;
use grit_tensor::rayon::prelude::*;
use grit_tensor::{Rng, Tensor};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::buffer::reshape_buffer;
use super::flatten::standard_layout;
use super::label;
use crate::{Layer, NnError, Result};

/// Inverted dropout: in training, each value is kept with probability `1 - rate` and scaled by
/// `1 / (1 - rate)`, or set to zero; in inference, the input passes unchanged.
///
/// The scaling keeps the expected value of each output equal to its input, so inference needs
/// no correction. Masks are drawn from the generator passed to [`Layer::forward`] (the
/// model's seeded generator), one uniform sample per value in row-major order, so a run
/// repeats exactly for the same seed. Keras's `noise_shape` and per-layer `seed` are not
/// supported.
///
/// # Shapes
/// - input: any shape
/// - output: the input's shape
///
/// ```
/// use grit_nn::{Dropout, Layer};
/// use grit_tensor::{Rng, Tensor};
///
/// let mut layer = Dropout::new(0.5);
/// layer.build(&[4], &mut Rng::new(0)).unwrap();
/// let x = Tensor::ones(vec![2, 4]);
/// let y = layer.forward(&x, true, &mut Rng::new(7));
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// assert_eq!(layer.forward(&x, false, &mut Rng::new(7)), x);
/// ```
#[derive(Debug, Clone)]
pub struct Dropout {
    config: DropoutConfig,
    /// The multiplier of each value in the last training pass: 0 for a dropped value,
    /// `1 / (1 - rate)` for a kept one.
    mask: Tensor,
}

/// The settings of a [`Dropout`] layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropoutConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// The probability of dropping each value, in `[0, 1)`.
    pub rate: f32,
}

impl Dropout {
    /// Creates a dropout layer that drops each value with probability `rate`; a rate outside
    /// `[0, 1)` is rejected by [`Layer::build`].
    pub fn new(rate: f32) -> Self {
        Dropout::from_config(DropoutConfig {
            name: String::new(),
            rate,
        })
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: DropoutConfig) -> Self {
        Dropout {
            config,
            mask: Tensor::zeros(IxDyn(&[0])),
        }
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &DropoutConfig {
        &self.config
    }
}

impl Layer for Dropout {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        let rate = self.config.rate;
        if !(0.0..1.0).contains(&rate) {
            return Err(NnError::InvalidParameter {
                layer: label(&self.config.name, "Dropout").to_string(),
                name: "rate",
                value: rate.to_string(),
                expected: "a probability in [0, 1)",
            });
        }
        Ok(input_shape.to_vec())
    }

    fn forward(&mut self, input: &Tensor, training: bool, rng: &mut Rng) -> Tensor {
        self.forward_owned(input.clone(), training, rng)
    }

    fn forward_owned(&mut self, input: Tensor, training: bool, rng: &mut Rng) -> Tensor {
        if !training {
            return input;
        }
        let rate = self.config.rate;
        reshape_buffer(&mut self.mask, input.shape());
        if rate == 0.0 {
            // Keras draws nothing for a zero rate, and neither does this layer.
            self.mask.fill(1.0);
            return input;
        }
        let scale = 1.0 / (1.0 - rate);
        let mut output = standard_layout(input);
        let mask = self.mask.as_slice_mut().expect("a standard-layout buffer");
        // The draws are uniform in [0, 1), so each value is kept with probability 1 - rate.
        rng.fill_units(mask);
        let values = output.as_slice_mut().expect("a standard-layout tensor");
        let block = parallel::block_len(values.len());
        mask.par_chunks_mut(block)
            .zip(values.par_chunks_mut(block))
            // `move` copies `rate` and `scale` into the closure. Read through references, they
            // were loaded again for every value, which kept the loop from vectorising.
            .for_each(move |(mask, values)| {
                for (multiplier, value) in mask.iter_mut().zip(values) {
                    *multiplier = if *multiplier >= rate { scale } else { 0.0 };
                    *value *= *multiplier;
                }
            });
        output
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        assert_eq!(
            grad_output.shape(),
            self.mask.shape(),
            "dropout `{}` backward: gradient shape differs from the last training output's",
            label(&self.config.name, "Dropout")
        );
        grad_output * &self.mask
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "Dropout", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;

    fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform(0.0, 2.0))
    }

    #[test]
    fn inference_returns_input() {
        let mut layer = Dropout::new(0.5);
        layer.build(&[3, 4], &mut Rng::new(0)).unwrap();
        let input = random_tensor(&[5, 3, 4], &mut Rng::new(1));
        let mut rng = Rng::new(2);
        let before = rng.state();
        assert_eq!(layer.forward(&input, false, &mut rng), input);
        assert_eq!(rng.state(), before, "inference draws no random numbers");
    }

    /// Uses 200 000 values with rate 0.3. The kept fraction has a standard deviation of about
    /// 0.001, so the bound of ±0.01 is about ten standard deviations. The output mean of
    /// inputs in [0, 2) has a standard deviation of about 0.002, against a bound of ±0.02.
    #[test]
    fn training_keeps_expected_fraction_and_mean() {
        let rate = 0.3f32;
        let mut layer = Dropout::new(rate);
        layer.build(&[1000], &mut Rng::new(0)).unwrap();
        let input = random_tensor(&[200, 1000], &mut Rng::new(1));
        let output = layer.forward(&input, true, &mut Rng::new(42));
        let n = input.len() as f64;
        let kept = output.iter().filter(|&&v| v != 0.0).count() as f64 / n;
        assert!((kept - 0.7).abs() < 0.01, "kept fraction {kept}");
        let input_mean = input.iter().map(|&v| v as f64).sum::<f64>() / n;
        let output_mean = output.iter().map(|&v| v as f64).sum::<f64>() / n;
        assert!(
            (output_mean - input_mean).abs() < 0.02,
            "output mean {output_mean}, input mean {input_mean}"
        );
        for (&x, &y) in input.iter().zip(&output) {
            let scaled = x / (1.0 - rate);
            let is_kept = (y - scaled).abs() <= 1e-6 * scaled;
            assert!(y == 0.0 || is_kept, "input {x}, output {y}");
        }
    }

    #[test]
    fn same_seed_gives_same_mask() {
        let mut layer = Dropout::new(0.5);
        layer.build(&[64], &mut Rng::new(0)).unwrap();
        let input = Tensor::ones(IxDyn(&[8, 64]));
        let first = layer.forward(&input, true, &mut Rng::new(9));
        let second = layer.forward(&input, true, &mut Rng::new(9));
        let other_seed = layer.forward(&input, true, &mut Rng::new(10));
        assert_eq!(first, second);
        assert_ne!(first, other_seed);
    }

    #[test]
    fn backward_applies_the_mask() {
        let mut layer = Dropout::new(0.25);
        layer.build(&[10], &mut Rng::new(0)).unwrap();
        let input = Tensor::ones(IxDyn(&[4, 10]));
        let output = layer.forward(&input, true, &mut Rng::new(3));
        let grad = layer.backward(&Tensor::from_elem(IxDyn(&[4, 10]), 2.0));
        assert_eq!(grad, output * 2.0);
    }

    #[test]
    fn zero_rate_keeps_everything() {
        let mut layer = Dropout::new(0.0);
        layer.build(&[3], &mut Rng::new(0)).unwrap();
        let input = random_tensor(&[2, 3], &mut Rng::new(1));
        assert_eq!(layer.forward(&input, true, &mut Rng::new(2)), input);
        assert_eq!(layer.backward(&input), input);
    }

    /// Tolerance 1e-3 of `max(1, |gradient|)`: with the mask fixed the layer is linear, so
    /// only the f32 rounding of the perturbed input separates the two.
    #[test]
    fn gradients_match_finite_differences() {
        check_layer(Box::new(Dropout::new(0.5)), &[4, 3], 3, 1e-3);
        check_layer(Box::new(Dropout::new(0.2)), &[7], 4, 1e-3);
    }

    #[test]
    fn rate_outside_unit_interval_is_rejected() {
        for rate in [1.0f32, 1.5, -0.1, f32::NAN] {
            let error = Dropout::new(rate)
                .name("drop")
                .build(&[4], &mut Rng::new(0))
                .unwrap_err();
            let message = error.to_string();
            assert!(message.contains("`drop`"), "{message}");
            assert!(message.contains("`rate`"), "{message}");
            assert!(message.contains(&rate.to_string()), "{message}");
        }
    }

    #[test]
    fn config_round_trip() {
        let layer = Dropout::new(0.25).name("drop");
        let config = layer.config();
        assert_eq!(config["class_name"], "Dropout");
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "Dropout");
        assert_eq!(rebuilt.config(), config);
    }
}
