use grit_tensor::{Rng, Tensor};
use ndarray::IxDyn;
use serde_json::json;

use super::label;
use super::pooling::{PoolGeometry, Pooling2DConfig};
use super::spatial::Padding;
use crate::{Layer, Result};

/// Average pooling over channels-last images: each output value is the mean of its window,
/// per channel.
///
/// # Shapes
/// - input: `(batch, height, width, channels)`
/// - output: `(batch, out_height, out_width, channels)`, with output sizes as in
///   [`Padding`]
///
/// Defaults as Keras: 2 × 2 windows, strides equal to the window, valid padding. With same
/// padding a window that overlaps the padding is divided by the number of input values it
/// covers, not by the window size, as Keras does (padded positions are left out rather than
/// counted as zeros).
///
/// ```
/// use grit_nn::{AveragePooling2D, Layer, Padding};
/// use grit_tensor::Rng;
///
/// let mut layer = AveragePooling2D::new().pool_size((3, 3)).strides((2, 2));
/// assert_eq!(layer.build(&[7, 7, 4], &mut Rng::new(0)).unwrap(), vec![3, 3, 4]);
/// ```
#[derive(Debug, Clone)]
pub struct AveragePooling2D {
    config: Pooling2DConfig,
    geometry: PoolGeometry,
}

impl Default for AveragePooling2D {
    fn default() -> Self {
        AveragePooling2D::from_config(Pooling2DConfig::default())
    }
}

impl AveragePooling2D {
    /// Creates an average-pooling layer with Keras's defaults.
    pub fn new() -> Self {
        AveragePooling2D::default()
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: Pooling2DConfig) -> Self {
        AveragePooling2D {
            config,
            geometry: PoolGeometry::default(),
        }
    }

    /// Sets the window `(height, width)`.
    pub fn pool_size(mut self, pool_size: (usize, usize)) -> Self {
        self.config.pool_size = pool_size;
        self
    }

    /// Sets the step between windows, `(rows, columns)`; by default it equals the window.
    pub fn strides(mut self, strides: (usize, usize)) -> Self {
        self.config.strides = Some(strides);
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.config.padding = padding;
        self
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &Pooling2DConfig {
        &self.config
    }
}

/// Writes the mean of every window into `output`, which must start at zero.
fn average_pool(input: &[f32], output: &mut [f32], geometry: &PoolGeometry) {
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let mut pixels = output.chunks_exact_mut(channels);
    for image in input.chunks_exact(geometry.image_len()) {
        for row_span in &geometry.rows.spans {
            for col_span in &geometry.cols.spans {
                let means = pixels.next().expect("the output has one pixel per window");
                for row in row_span.input_range() {
                    let start = (row * width + col_span.input_start) * channels;
                    let window_row = &image[start..start + col_span.len * channels];
                    for pixel in window_row.chunks_exact(channels) {
                        for (mean, &value) in means.iter_mut().zip(pixel) {
                            *mean += value;
                        }
                    }
                }
                let count = (row_span.len * col_span.len) as f32;
                for mean in means.iter_mut() {
                    *mean /= count;
                }
            }
        }
    }
}

/// Spreads each output gradient evenly over the input values of its window; `grad_input`
/// must start at zero.
fn average_pool_backward(grad_output: &[f32], grad_input: &mut [f32], geometry: &PoolGeometry) {
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let mut pixels = grad_output.chunks_exact(channels);
    let mut shares = vec![0.0f32; channels];
    for image in grad_input.chunks_exact_mut(geometry.image_len()) {
        for row_span in &geometry.rows.spans {
            for col_span in &geometry.cols.spans {
                let grads = pixels
                    .next()
                    .expect("the gradient has one pixel per window");
                let count = (row_span.len * col_span.len) as f32;
                for (share, &grad) in shares.iter_mut().zip(grads) {
                    *share = grad / count;
                }
                for row in row_span.input_range() {
                    let start = (row * width + col_span.input_start) * channels;
                    let window_row = &mut image[start..start + col_span.len * channels];
                    for pixel in window_row.chunks_exact_mut(channels) {
                        for (target, &share) in pixel.iter_mut().zip(&shares) {
                            *target += share;
                        }
                    }
                }
            }
        }
    }
}

impl Layer for AveragePooling2D {
    fn class_name(&self) -> &'static str {
        "AveragePooling2D"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        self.geometry = PoolGeometry::new(&self.config, "AveragePooling2D", input_shape)?;
        Ok(self.geometry.output_shape(0)[1..].to_vec())
    }

    fn forward(&mut self, input: &Tensor, _training: bool, _rng: &mut Rng) -> Tensor {
        let batch = input.shape().first().copied().unwrap_or(0);
        assert_eq!(
            input.shape(),
            self.geometry.input_shape(batch),
            "average_pooling2d `{}`: input shape differs from the built \
             (batch, height, width, channels)",
            label(&self.config.name, "AveragePooling2D")
        );
        let input = input.as_standard_layout();
        let mut output = Tensor::zeros(IxDyn(&self.geometry.output_shape(batch)));
        average_pool(
            input.as_slice().expect("a standard-layout input"),
            output.as_slice_mut().expect("a new array is contiguous"),
            &self.geometry,
        );
        output
    }

    /// Needs nothing from the forward pass but the batch size, which it takes from
    /// `grad_output`.
    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let batch = grad_output.shape().first().copied().unwrap_or(0);
        assert_eq!(
            grad_output.shape(),
            self.geometry.output_shape(batch),
            "average_pooling2d `{}` backward: gradient shape differs from the output's",
            label(&self.config.name, "AveragePooling2D")
        );
        let grad_output = grad_output.as_standard_layout();
        let mut grad_input = Tensor::zeros(IxDyn(&self.geometry.input_shape(batch)));
        average_pool_backward(
            grad_output.as_slice().expect("a standard-layout gradient"),
            grad_input
                .as_slice_mut()
                .expect("a new array is contiguous"),
            &self.geometry,
        );
        grad_input
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "AveragePooling2D", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NnError;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;

    /// Returns a `(1, height, width, 2)` tensor of channel 0 equal to `values` (row-major)
    /// and channel 1 equal to their negatives.
    fn two_channel_image(height: usize, width: usize, values: &[f32]) -> Tensor {
        Tensor::from_shape_fn(IxDyn(&[1, height, width, 2]), |i| {
            let value = values[i[1] * width + i[2]];
            if i[3] == 0 { value } else { -value }
        })
    }

    fn channel(output: &Tensor, channel: usize) -> Vec<f32> {
        output
            .index_axis(ndarray::Axis(3), channel)
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn same_padding_divides_by_covered_values() {
        // 1 2 3
        // 4 5 6    2 × 2 windows, stride 2, same padding: one padded row and column at the
        // 7 8 9    bottom and right, so the windows contain {1,2,4,5} {3,6} {7,8} {9}.
        let input = two_channel_image(3, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let mut layer = AveragePooling2D::new().padding(Padding::Same);
        assert_eq!(
            layer.build(&[3, 3, 2], &mut Rng::new(0)).unwrap(),
            [2, 2, 2]
        );
        let output = layer.forward(&input, false, &mut Rng::new(0));
        assert_eq!(channel(&output, 0), [3.0, 4.5, 7.5, 9.0]);
        assert_eq!(channel(&output, 1), [-3.0, -4.5, -7.5, -9.0]);
        // Each window passes a gradient of 1 as 1 / (values covered) to each of its values.
        let grad = layer.backward(&Tensor::ones(IxDyn(&[1, 2, 2, 2])));
        assert_eq!(
            channel(&grad, 0),
            [0.25, 0.25, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 1.0]
        );
    }

    #[test]
    fn overlapping_windows_by_hand() {
        // x[i][j] = 5i + j on a 5 × 5 image is linear, so each 3 × 3 window's mean is its
        // centre value: the windows (stride 2) are centred on (1, 1), (1, 3), (3, 1), (3, 3).
        let values: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let input = two_channel_image(5, 5, &values);
        let mut layer = AveragePooling2D::new().pool_size((3, 3)).strides((2, 2));
        assert_eq!(
            layer.build(&[5, 5, 2], &mut Rng::new(0)).unwrap(),
            [2, 2, 2]
        );
        let output = layer.forward(&input, true, &mut Rng::new(0));
        assert_eq!(channel(&output, 0), [6.0, 8.0, 16.0, 18.0]);
        assert_eq!(channel(&output, 1), [-6.0, -8.0, -16.0, -18.0]);
        // (2, 2) lies in all four windows and gets 4 · 1/9 of a unit gradient.
        let grad = layer.backward(&Tensor::ones(IxDyn(&[1, 2, 2, 2])));
        assert!((grad[[0, 2, 2, 0]] - 4.0 / 9.0).abs() < 1e-6);
        assert!((grad[[0, 0, 0, 0]] - 1.0 / 9.0).abs() < 1e-6);
        assert_eq!(grad[[0, 0, 3, 0]], grad[[0, 0, 1, 0]]);
    }

    /// Tolerance 1e-2 of `max(1, |gradient|)`; the layer is linear, so the central
    /// difference differs from the gradient only by f32 rounding.
    #[test]
    fn gradients_match_finite_differences() {
        let cases = [
            ([4, 6, 2], (2, 2), None, Padding::Valid),
            ([5, 7, 2], (3, 3), Some((2, 2)), Padding::Valid),
            ([5, 7, 2], (3, 3), Some((2, 2)), Padding::Same),
            ([5, 7, 1], (2, 2), None, Padding::Same),
            ([5, 5, 3], (4, 2), Some((1, 3)), Padding::Same),
        ];
        for (input_shape, pool_size, strides, padding) in cases {
            let mut layer = AveragePooling2D::new()
                .pool_size(pool_size)
                .padding(padding);
            layer.config.strides = strides;
            check_layer(Box::new(layer), &input_shape, 2, 1e-2);
        }
    }

    #[test]
    fn pool_larger_than_input_is_rejected() {
        let error = AveragePooling2D::new()
            .pool_size((2, 6))
            .name("average")
            .build(&[4, 5, 3], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NnError::IncompatibleShape { .. }),
            "{message}"
        );
        assert!(message.contains("`average`"), "{message}");
        assert!(message.contains("[4, 5, 3]"), "{message}");
        assert!(message.contains("no window fits"), "{message}");
    }

    #[test]
    fn wrong_rank_is_rejected() {
        let error = AveragePooling2D::new()
            .build(&[28, 28], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`AveragePooling2D`"), "{message}");
        assert!(message.contains("[28, 28]"), "{message}");
    }

    #[test]
    fn config_round_trip() {
        let layer = AveragePooling2D::new()
            .pool_size((3, 3))
            .strides((2, 2))
            .padding(Padding::Same)
            .name("average");
        let config = layer.config();
        assert_eq!(config["class_name"], "AveragePooling2D");
        assert_eq!(config["config"]["strides"], json!([2, 2]));
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "AveragePooling2D");
        assert_eq!(rebuilt.config(), config);
    }
}
