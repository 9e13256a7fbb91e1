use grit_tensor::{Initializer, ParamMut, Rng, Tensor};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::buffer::reshape_buffer;
use super::label;
use crate::{Layer, NnError, Result};

/// Batch normalization over the last axis (the features of a `Dense` output, the channels of
/// an NHWC image): `output = gamma · (input − mean) / sqrt(variance + epsilon) + beta`.
///
/// In training, `mean` and `variance` are the statistics of the batch over every axis but
/// the last, and each training pass updates the moving statistics as Keras 3 does:
/// `moving = moving · momentum + batch_statistic · (1 − momentum)`. The variance is the
/// biased one (divided by the number of values, not one less), both for normalizing and for
/// the moving variance. This follows `BatchNormalization.call` in Keras 3
/// (`keras/src/layers/normalization/batch_normalization.py`), which takes both from
/// `ops.moments`. Keras 2 used the unbiased variance for the moving average instead.
/// In inference, `mean` and `variance` are the moving statistics, which stay unchanged.
///
/// # Shapes
/// - input: `(batch, ..., channels)`, any number of axes
/// - `gamma`, `beta`, `moving_mean`, `moving_variance`: `(channels,)`
/// - output: the input's shape
///
/// Defaults as Keras: momentum 0.99, epsilon 1e-3, `gamma` ones, `beta` zeros, moving mean
/// zeros, moving variance ones. [`Layer::weights`] lists `gamma`, `beta`, `moving_mean`,
/// `moving_variance` (without `gamma` when `scale` is off and without `beta` when `center`
/// is off); only `gamma` and `beta` are trainable.
///
/// ```
/// use grit_nn::{BatchNormalization, Layer};
/// use grit_tensor::Rng;
///
/// let mut layer = BatchNormalization::new();
/// assert_eq!(layer.build(&[13, 13, 32], &mut Rng::new(0)).unwrap(), vec![13, 13, 32]);
/// assert_eq!(layer.trainable_count(), 64);
/// ```
#[derive(Debug, Clone)]
pub struct BatchNormalization {
    config: BatchNormalizationConfig,
    input_shape: Vec<usize>,
    gamma: Tensor,
    beta: Tensor,
    moving_mean: Tensor,
    moving_variance: Tensor,
    gamma_grad: Tensor,
    beta_grad: Tensor,
    /// `(input − mean) / sqrt(variance + epsilon)` of the last training pass.
    normalized: Tensor,
    /// `1 / sqrt(variance + epsilon)` per channel of the last training pass.
    inv_std: Vec<f32>,
    /// Whether the last forward pass was a training pass, whose values `normalized` contains.
    has_training_pass: bool,
}

/// The settings of a [`BatchNormalization`] layer, as saved in a model config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchNormalizationConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// The normalized axis, counting the batch axis as 0, as Keras does. Only the last axis
    /// is supported: `-1`, or the input's number of axes minus one.
    pub axis: isize,
    /// Weight of the old value in each moving-statistics update, in `[0, 1]`.
    pub momentum: f32,
    /// Added to the variance before its square root; must be positive.
    pub epsilon: f32,
    /// Whether the layer adds the trainable offset `beta`.
    pub center: bool,
    /// Whether the layer multiplies by the trainable scale `gamma`.
    pub scale: bool,
    /// The initializer of `beta`.
    pub beta_initializer: Initializer,
    /// The initializer of `gamma`.
    pub gamma_initializer: Initializer,
    /// The initializer of the moving mean.
    pub moving_mean_initializer: Initializer,
    /// The initializer of the moving variance.
    pub moving_variance_initializer: Initializer,
}

impl Default for BatchNormalizationConfig {
    fn default() -> Self {
        BatchNormalizationConfig {
            name: String::new(),
            axis: -1,
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Initializer::Zeros,
            gamma_initializer: Initializer::Ones,
            moving_mean_initializer: Initializer::Zeros,
            moving_variance_initializer: Initializer::Ones,
        }
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization::from_config(BatchNormalizationConfig::default())
    }
}

/// Per-channel sums over the rows of a `(rows, channels)` matrix stored row-major.
fn channel_sums(
    values: &[f32],
    channels: usize,
    mut term: impl FnMut(usize, f32) -> f64,
) -> Vec<f64> {
    let mut sums = vec![0.0f64; channels];
    for row in values.chunks_exact(channels) {
        for (channel, (sum, &value)) in sums.iter_mut().zip(row).enumerate() {
            *sum += term(channel, value);
        }
    }
    sums
}

impl BatchNormalization {
    /// Creates a batch-normalization layer with Keras's defaults.
    pub fn new() -> Self {
        BatchNormalization::default()
    }

    /// Creates the layer from its settings; weights are created by [`Layer::build`].
    pub fn from_config(config: BatchNormalizationConfig) -> Self {
        let empty = || Tensor::zeros(IxDyn(&[0]));
        BatchNormalization {
            config,
            input_shape: Vec::new(),
            gamma: empty(),
            beta: empty(),
            moving_mean: empty(),
            moving_variance: empty(),
            gamma_grad: empty(),
            beta_grad: empty(),
            normalized: empty(),
            inv_std: Vec::new(),
            has_training_pass: false,
        }
    }

    /// Sets the weight of the old value in each moving-statistics update.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.config.momentum = momentum;
        self
    }

    /// Sets the value added to the variance before its square root.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.config.epsilon = epsilon;
        self
    }

    /// Turns the offset `beta` on or off.
    pub fn center(mut self, center: bool) -> Self {
        self.config.center = center;
        self
    }

    /// Turns the scale `gamma` on or off.
    pub fn scale(mut self, scale: bool) -> Self {
        self.config.scale = scale;
        self
    }

    /// Sets the initializer of `gamma`.
    pub fn gamma_initializer(mut self, initializer: Initializer) -> Self {
        self.config.gamma_initializer = initializer;
        self
    }

    /// Sets the initializer of `beta`.
    pub fn beta_initializer(mut self, initializer: Initializer) -> Self {
        self.config.beta_initializer = initializer;
        self
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &BatchNormalizationConfig {
        &self.config
    }

    fn validate_settings(&self, input_shape: &[usize]) -> Result<()> {
        let layer = label(&self.config.name, "BatchNormalization").to_string();
        let BatchNormalizationConfig {
            axis,
            momentum,
            epsilon,
            ..
        } = self.config;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(NnError::InvalidParameter {
                layer,
                name: "momentum",
                value: momentum.to_string(),
                expected: "a value in [0, 1]",
            });
        }
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(NnError::InvalidParameter {
                layer,
                name: "epsilon",
                value: epsilon.to_string(),
                expected: "a positive number",
            });
        }
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(NnError::IncompatibleShape {
                layer,
                input_shape: input_shape.to_vec(),
                reason: "BatchNormalization needs at least one non-empty axis per sample, \
                         the last of which contains the channels"
                    .into(),
            });
        }
        // Keras counts the batch axis, so the last axis of a per-sample shape with n axes is n.
        if axis != -1 && axis != input_shape.len() as isize {
            return Err(NnError::InvalidParameter {
                layer,
                name: "axis",
                value: axis.to_string(),
                expected: "-1 or the index of the last axis; only the last axis is supported",
            });
        }
        Ok(())
    }

    fn channels(&self) -> usize {
        self.input_shape.last().copied().unwrap_or(0)
    }

    /// Normalizes with the batch statistics, keeps what the backward pass needs and updates
    /// the moving statistics.
    fn forward_training(&mut self, input: &[f32], output: &mut [f32]) {
        let channels = self.channels();
        let rows = input.len() / channels;
        let count = rows as f64;
        let means: Vec<f64> = channel_sums(input, channels, |_, x| x as f64)
            .into_iter()
            .map(|sum| sum / count)
            .collect();
        let variances: Vec<f64> = channel_sums(input, channels, |c, x| {
            let deviation = x as f64 - means[c];
            deviation * deviation
        })
        .into_iter()
        .map(|sum| sum / count)
        .collect();
        let epsilon = self.config.epsilon as f64;
        self.inv_std.clear();
        self.inv_std.extend(
            variances
                .iter()
                .map(|&v| (1.0 / (v + epsilon).sqrt()) as f32),
        );
        let means_f32: Vec<f32> = means.iter().map(|&m| m as f32).collect();

        let normalized = self.normalized.as_slice_mut().expect("a contiguous buffer");
        let rows_iter = input
            .chunks_exact(channels)
            .zip(normalized.chunks_exact_mut(channels))
            .zip(output.chunks_exact_mut(channels));
        let gamma = self
            .config
            .scale
            .then(|| self.gamma.as_slice().expect("1-D gamma"));
        let beta = self
            .config
            .center
            .then(|| self.beta.as_slice().expect("1-D beta"));
        for ((x_row, n_row), y_row) in rows_iter {
            for (c, ((&x, n), y)) in x_row.iter().zip(n_row).zip(y_row).enumerate() {
                *n = (x - means_f32[c]) * self.inv_std[c];
                let scaled = gamma.map_or(*n, |g| *n * g[c]);
                *y = beta.map_or(scaled, |b| scaled + b[c]);
            }
        }

        let momentum = self.config.momentum;
        let moving_mean = self.moving_mean.as_slice_mut().expect("1-D moving mean");
        for (moving, &mean) in moving_mean.iter_mut().zip(&means) {
            *moving = *moving * momentum + mean as f32 * (1.0 - momentum);
        }
        let moving_variance = self
            .moving_variance
            .as_slice_mut()
            .expect("1-D moving variance");
        for (moving, &variance) in moving_variance.iter_mut().zip(&variances) {
            *moving = *moving * momentum + variance as f32 * (1.0 - momentum);
        }
    }

    /// Stores `beta`'s gradient, the per-channel sums of the output gradient, and `gamma`'s,
    /// the per-channel sums of the output gradient times the normalized input.
    fn store_parameter_gradients(&mut self, grad_sums: &[f64], weighted_sums: &[f64]) {
        if self.config.center {
            let beta_grad = self.beta_grad.as_slice_mut().expect("1-D beta gradient");
            for (b, &sum) in beta_grad.iter_mut().zip(grad_sums) {
                *b = sum as f32;
            }
        }
        if self.config.scale {
            let gamma_grad = self.gamma_grad.as_slice_mut().expect("1-D gamma gradient");
            for (g, &sum) in gamma_grad.iter_mut().zip(weighted_sums) {
                *g = sum as f32;
            }
        }
    }

    /// Normalizes with the moving statistics: `output = input · a + b` per channel, with
    /// `a = gamma / sqrt(moving_variance + epsilon)` and `b = beta − moving_mean · a`.
    fn forward_inference(&self, input: &[f32], output: &mut [f32]) {
        let channels = self.channels();
        let epsilon = self.config.epsilon;
        let moving_mean = self.moving_mean.as_slice().expect("1-D moving mean");
        let moving_variance = self
            .moving_variance
            .as_slice()
            .expect("1-D moving variance");
        let mut multipliers: Vec<f32> = moving_variance
            .iter()
            .map(|&v| 1.0 / (v + epsilon).sqrt())
            .collect();
        if self.config.scale {
            let gamma = self.gamma.as_slice().expect("1-D gamma");
            for (a, &g) in multipliers.iter_mut().zip(gamma) {
                *a *= g;
            }
        }
        let mut offsets: Vec<f32> = moving_mean
            .iter()
            .zip(&multipliers)
            .map(|(&m, &a)| -m * a)
            .collect();
        if self.config.center {
            let beta = self.beta.as_slice().expect("1-D beta");
            for (b, &beta) in offsets.iter_mut().zip(beta) {
                *b += beta;
            }
        }
        for (x_row, y_row) in input
            .chunks_exact(channels)
            .zip(output.chunks_exact_mut(channels))
        {
            let terms = x_row.iter().zip(y_row).zip(&multipliers).zip(&offsets);
            for (((&x, y), &a), &b) in terms {
                *y = x * a + b;
            }
        }
    }
}

impl Layer for BatchNormalization {
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<Vec<usize>> {
        self.validate_settings(input_shape)?;
        self.input_shape = input_shape.to_vec();
        let shape = [self.channels()];
        let config = &self.config;
        // Created in Keras's order, so random initializers draw in the same sequence.
        if config.scale {
            self.gamma = config.gamma_initializer.init(&shape, rng);
            self.gamma_grad = Tensor::zeros(IxDyn(&shape));
        }
        if config.center {
            self.beta = config.beta_initializer.init(&shape, rng);
            self.beta_grad = Tensor::zeros(IxDyn(&shape));
        }
        self.moving_mean = config.moving_mean_initializer.init(&shape, rng);
        self.moving_variance = config.moving_variance_initializer.init(&shape, rng);
        self.has_training_pass = false;
        Ok(input_shape.to_vec())
    }

    fn forward(&mut self, input: &Tensor, training: bool, _rng: &mut Rng) -> Tensor {
        assert!(
            input.ndim() >= 1 && input.shape()[1..] == self.input_shape[..],
            "batch_normalization `{}`: input {:?} does not match the built per-sample shape {:?}",
            label(&self.config.name, "BatchNormalization"),
            input.shape(),
            self.input_shape
        );
        let input = input.as_standard_layout();
        let mut output = Tensor::zeros(input.raw_dim());
        let values = input.as_slice().expect("a standard-layout input");
        let outputs = output.as_slice_mut().expect("a new array is contiguous");
        if training {
            reshape_buffer(&mut self.normalized, input.shape());
            if !values.is_empty() {
                self.forward_training(values, outputs);
            }
        } else {
            self.forward_inference(values, outputs);
        }
        self.has_training_pass = training;
        output
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let name = label(&self.config.name, "BatchNormalization");
        assert!(
            self.has_training_pass,
            "batch_normalization `{name}` backward: the last forward pass was not a training pass"
        );
        assert_eq!(
            grad_output.shape(),
            self.normalized.shape(),
            "batch_normalization `{name}` backward: gradient shape differs from the output's"
        );

        let channels = self.channels();
        let grad_output = grad_output.as_standard_layout();
        let grads = grad_output.as_slice().expect("a standard-layout gradient");
        let normalized = self.normalized.as_slice().expect("a contiguous buffer");
        let count = (grads.len() / channels) as f64;
        let grad_sums = channel_sums(grads, channels, |_, g| g as f64);
        let mut rows = normalized.chunks_exact(channels);
        let mut weighted_sums = vec![0.0f64; channels];
        for grad_row in grads.chunks_exact(channels) {
            let n_row = rows.next().expect("as many rows as the gradient");
            for ((sum, &g), &n) in weighted_sums.iter_mut().zip(grad_row).zip(n_row) {
                *sum += g as f64 * n as f64;
            }
        }

        // With n = normalized input and N values per channel:
        // dx = gamma · inv_std · (g − Σg / N − n · Σ(g·n) / N).
        let gamma = self
            .config
            .scale
            .then(|| self.gamma.as_slice().expect("1-D gamma"));
        let factors: Vec<f32> = (0..channels)
            .map(|c| gamma.map_or(1.0, |g| g[c]) * self.inv_std[c])
            .collect();
        let mean_grads: Vec<f32> = grad_sums.iter().map(|&s| (s / count) as f32).collect();
        let mean_weighted: Vec<f32> = weighted_sums.iter().map(|&s| (s / count) as f32).collect();

        let mut grad_input = Tensor::zeros(grad_output.raw_dim());
        let targets = grad_input
            .as_slice_mut()
            .expect("a new array is contiguous");
        let rows_iter = targets
            .chunks_exact_mut(channels)
            .zip(grads.chunks_exact(channels))
            .zip(normalized.chunks_exact(channels));
        for ((dx_row, g_row), n_row) in rows_iter {
            for (c, ((dx, &g), &n)) in dx_row.iter_mut().zip(g_row).zip(n_row).enumerate() {
                *dx = factors[c] * (g - mean_grads[c] - n * mean_weighted[c]);
            }
        }

        self.store_parameter_gradients(&grad_sums, &weighted_sums);
        grad_input
    }

    fn weights(&self) -> Vec<(&'static str, &Tensor)> {
        let mut weights = Vec::with_capacity(4);
        if self.config.scale {
            weights.push(("gamma", &self.gamma));
        }
        if self.config.center {
            weights.push(("beta", &self.beta));
        }
        weights.push(("moving_mean", &self.moving_mean));
        weights.push(("moving_variance", &self.moving_variance));
        weights
    }

    fn weights_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        let mut weights = Vec::with_capacity(4);
        if self.config.scale {
            weights.push(("gamma", &mut self.gamma));
        }
        if self.config.center {
            weights.push(("beta", &mut self.beta));
        }
        weights.push(("moving_mean", &mut self.moving_mean));
        weights.push(("moving_variance", &mut self.moving_variance));
        weights
    }

    fn trainable_params(&mut self) -> Vec<ParamMut<'_>> {
        let mut params = Vec::with_capacity(2);
        if self.config.scale {
            params.push(ParamMut {
                value: &mut self.gamma,
                grad: &self.gamma_grad,
            });
        }
        if self.config.center {
            params.push(ParamMut {
                value: &mut self.beta,
                grad: &self.beta_grad,
            });
        }
        params
    }

    fn trainable_count(&self) -> usize {
        let gamma = if self.config.scale {
            self.gamma.len()
        } else {
            0
        };
        let beta = if self.config.center {
            self.beta.len()
        } else {
            0
        };
        gamma + beta
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "BatchNormalization", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;
    use ndarray::array;

    fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform(-2.0, 3.0))
    }

    /// Returns the per-channel mean and biased variance over all axes but the last, in f64.
    fn batch_statistics(input: &Tensor) -> (Vec<f64>, Vec<f64>) {
        let channels = *input.shape().last().unwrap();
        let values: Vec<f64> = input.iter().map(|&v| v as f64).collect();
        let count = (values.len() / channels) as f64;
        let mut means = vec![0.0; channels];
        for (i, v) in values.iter().enumerate() {
            means[i % channels] += v / count;
        }
        let mut variances = vec![0.0; channels];
        for (i, v) in values.iter().enumerate() {
            variances[i % channels] += (v - means[i % channels]).powi(2) / count;
        }
        (means, variances)
    }

    #[test]
    fn moving_statistics_follow_momentum_formula() {
        let mut layer = BatchNormalization::new();
        let mut rng = Rng::new(5);
        layer.build(&[3], &mut rng).unwrap();
        let mut expected_mean = [0.0f64; 3];
        let mut expected_variance = [1.0f64; 3];
        for _ in 0..7 {
            let input = random_tensor(&[16, 3], &mut rng);
            layer.forward(&input, true, &mut rng);
            let (means, variances) = batch_statistics(&input);
            for c in 0..3 {
                expected_mean[c] = expected_mean[c] * 0.99 + means[c] * 0.01;
                expected_variance[c] = expected_variance[c] * 0.99 + variances[c] * 0.01;
            }
        }
        for c in 0..3 {
            let mean = layer.moving_mean[c] as f64;
            let variance = layer.moving_variance[c] as f64;
            assert!(
                (mean - expected_mean[c]).abs() < 1e-6,
                "channel {c}: moving mean {mean}"
            );
            assert!(
                (variance - expected_variance[c]).abs() < 1e-6,
                "channel {c}: moving variance {variance}"
            );
        }

        // Inference normalizes with the moving statistics and leaves them unchanged.
        layer.gamma.assign(&array![1.5f32, -0.5, 2.0].into_dyn());
        layer.beta.assign(&array![0.1f32, 0.2, -0.3].into_dyn());
        let input = random_tensor(&[4, 3], &mut rng);
        let output = layer.forward(&input, false, &mut rng);
        for ((index, &y), &x) in output.indexed_iter().zip(&input) {
            let c = index[1];
            let gamma = layer.gamma[c] as f64;
            let beta = layer.beta[c] as f64;
            let expected =
                gamma * (x as f64 - expected_mean[c]) / (expected_variance[c] + 1e-3).sqrt() + beta;
            assert!(
                (y as f64 - expected).abs() < 1e-5,
                "{index:?}: output {y}, expected {expected}"
            );
        }
        assert!((layer.moving_mean[0] as f64 - expected_mean[0]).abs() < 1e-6);
    }

    #[test]
    fn training_uses_batch_statistics() {
        let mut layer = BatchNormalization::new()
            .gamma_initializer(Initializer::Constant { value: 2.0 })
            .beta_initializer(Initializer::Constant { value: 0.5 });
        let mut rng = Rng::new(6);
        layer.build(&[4, 5, 3], &mut rng).unwrap();
        let input = random_tensor(&[2, 4, 5, 3], &mut rng);
        let output = layer.forward(&input, true, &mut rng);
        let (means, variances) = batch_statistics(&input);
        for ((index, &y), &x) in output.indexed_iter().zip(&input) {
            let c = index[3];
            let expected = 2.0 * (x as f64 - means[c]) / (variances[c] + 1e-3).sqrt() + 0.5;
            assert!(
                (y as f64 - expected).abs() < 1e-5,
                "{index:?}: output {y}, expected {expected}"
            );
        }
    }

    /// Tolerance 1e-2 of `max(1, |gradient|)`: the input gradient subtracts two per-channel
    /// means from the gradient, and rounding in the f32 forward pass moves the central
    /// difference (step 1e-3) by up to about 1e-3.
    #[test]
    fn gradients_match_finite_differences() {
        let layer = || {
            BatchNormalization::new()
                .gamma_initializer(Initializer::Constant { value: 1.5 })
                .beta_initializer(Initializer::Constant { value: -0.2 })
        };
        check_layer(Box::new(layer()), &[4], 6, 1e-2);
        check_layer(Box::new(layer()), &[3, 3, 2], 2, 1e-2);
        check_layer(Box::new(layer().center(false)), &[5], 4, 1e-2);
        check_layer(Box::new(layer().scale(false)), &[2, 3], 3, 1e-2);
    }

    #[test]
    fn weights_in_keras_order() {
        let mut layer = BatchNormalization::new();
        layer.build(&[6, 6, 4], &mut Rng::new(0)).unwrap();
        let names: Vec<&str> = layer.weights().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["gamma", "beta", "moving_mean", "moving_variance"]);
        let values: Vec<f32> = layer.weights().iter().map(|(_, w)| w[0]).collect();
        assert_eq!(values, [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(layer.trainable_params().len(), 2);
        assert_eq!(layer.trainable_count(), 8);

        let mut layer = BatchNormalization::new().scale(false);
        layer.build(&[4], &mut Rng::new(0)).unwrap();
        let names: Vec<&str> = layer.weights_mut().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["beta", "moving_mean", "moving_variance"]);
        assert_eq!(layer.trainable_count(), 4);
    }

    #[test]
    #[should_panic(expected = "not a training pass")]
    fn backward_after_inference_panics() {
        let mut layer = BatchNormalization::new();
        layer.build(&[2], &mut Rng::new(0)).unwrap();
        let input = Tensor::ones(IxDyn(&[3, 2]));
        layer.forward(&input, false, &mut Rng::new(0));
        layer.backward(&input);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let mut rng = Rng::new(0);
        let error = BatchNormalization::new()
            .name("norm")
            .build(&[], &mut rng)
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NnError::IncompatibleShape { .. }),
            "{message}"
        );
        assert!(message.contains("`norm`"), "{message}");
        assert!(message.contains("[]"), "{message}");
        let cases = [
            (BatchNormalization::new().momentum(1.5), "momentum"),
            (BatchNormalization::new().epsilon(0.0), "epsilon"),
            (
                BatchNormalization::from_config(BatchNormalizationConfig {
                    axis: 1,
                    ..BatchNormalizationConfig::default()
                }),
                "axis",
            ),
        ];
        for (mut layer, parameter) in cases {
            let error = layer.build(&[4, 4, 3], &mut rng).unwrap_err();
            assert!(
                matches!(error, NnError::InvalidParameter { name, .. } if name == parameter),
                "{error}"
            );
        }
        let mut last_axis = BatchNormalization::from_config(BatchNormalizationConfig {
            axis: 3,
            ..BatchNormalizationConfig::default()
        });
        assert!(last_axis.build(&[4, 4, 3], &mut rng).is_ok());
    }

    #[test]
    fn config_round_trip() {
        let layer = BatchNormalization::new()
            .momentum(0.9)
            .epsilon(1e-5)
            .center(false)
            .name("norm");
        let config = layer.config();
        assert_eq!(config["class_name"], "BatchNormalization");
        assert_eq!(config["config"]["axis"], -1);
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "BatchNormalization");
        assert_eq!(rebuilt.config(), config);
    }
}
