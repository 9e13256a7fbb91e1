use grit_tensor::parallel;
use grit_tensor::rayon::prelude::*;
use grit_tensor::{Rng, Tensor};
use serde_json::json;

use super::label;
use super::pooling::{PoolGeometry, Pooling2DConfig};
use super::spatial::Padding;
use crate::{Layer, Result};

/// Max pooling over channels-last images: each output value is the maximum of its window,
/// per channel.
///
/// # Shapes
/// - input: `(batch, height, width, channels)`
/// - output: `(batch, out_height, out_width, channels)`, with output sizes as in
///   [`Padding`]
///
/// Defaults as Keras: 2 × 2 windows, strides equal to the window, valid padding. With same
/// padding the padded positions never win (they act as −∞). The gradient of each output goes
/// to the input value that won its window. In a tie, the first maximum in row-major order
/// within the window wins.
///
/// A model skips this layer when the [`Conv2D`](super::Conv2D) before it computes the pooling
/// itself, which gives the same results (see [`Layer::fuse_next`]).
///
/// ```
/// use grit_nn::{Layer, MaxPooling2D};
/// use grit_tensor::Rng;
///
/// let mut layer = MaxPooling2D::new();
/// assert_eq!(layer.build(&[26, 26, 32], &mut Rng::new(0)).unwrap(), vec![13, 13, 32]);
/// ```
#[derive(Debug, Clone)]
pub struct MaxPooling2D {
    config: Pooling2DConfig,
    geometry: PoolGeometry,
    /// For each output value of the last forward pass, the input pixel that won its window
    /// (see [`max_pool`]).
    winners: Vec<u32>,
    /// The batch size of the last forward pass when it was a training pass.
    training_batch: Option<usize>,
}

impl Default for MaxPooling2D {
    fn default() -> Self {
        MaxPooling2D::from_config(Pooling2DConfig::default())
    }
}

impl MaxPooling2D {
    /// Creates a max-pooling layer with Keras's defaults.
    pub fn new() -> Self {
        MaxPooling2D::default()
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: Pooling2DConfig) -> Self {
        MaxPooling2D {
            config,
            geometry: PoolGeometry::default(),
            winners: Vec::new(),
            training_batch: None,
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

/// Writes the maximum of every window into `output` and, for each output value, the index
/// of the input pixel that won into `winners`. Pixels are counted across the batch
/// (`(sample · height + row) · width + column`), so the winning input value is
/// `winner · channels + channel`.
/// `first_image` is the index in the batch of the first image in `input`.
fn max_pool(
    input: &[f32],
    output: &mut [f32],
    winners: &mut [u32],
    geometry: &PoolGeometry,
    first_image: usize,
) {
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let pixels_per_image = geometry.rows.input * width;
    let mut output_pixels = output
        .chunks_exact_mut(channels)
        .zip(winners.chunks_exact_mut(channels));
    for (index, image) in input.chunks_exact(geometry.image_len()).enumerate() {
        let image_offset = (first_image + index) * pixels_per_image;
        for row_span in &geometry.rows.spans {
            for col_span in &geometry.cols.spans {
                let (maxima, pixel_winners) = output_pixels
                    .next()
                    .expect("the output has one pixel per window");
                let mut first = true;
                for row in row_span.input_range() {
                    for col in col_span.input_range() {
                        let pixel = row * width + col;
                        let values = &image[pixel * channels..(pixel + 1) * channels];
                        // Fits: `forward` checks that the batch has fewer than 2^32 pixels.
                        let pixel_index = (image_offset + pixel) as u32;
                        if first {
                            maxima.copy_from_slice(values);
                            pixel_winners.fill(pixel_index);
                            first = false;
                            continue;
                        }
                        // A strict comparison keeps the first maximum in a tie. The updates
                        // blend with a bit mask because written as `if`, they compiled to
                        // one conditional store per channel, about 6 times slower
                        // (measured on x86-64 for a 128 × 26 × 26 × 32 batch).
                        let lanes = maxima.iter_mut().zip(pixel_winners.iter_mut()).zip(values);
                        for ((maximum, winner), &value) in lanes {
                            let mask = ((value > *maximum) as u32).wrapping_neg();
                            *maximum = f32::from_bits(
                                (value.to_bits() & mask) | (maximum.to_bits() & !mask),
                            );
                            *winner = (pixel_index & mask) | (*winner & !mask);
                        }
                    }
                }
            }
        }
    }
}

/// Returns how many images one parallel block of a batch of `batch` images holds: the batch
/// in about 16 blocks, a count that does not depend on the threads.
fn images_per_block(batch: usize) -> usize {
    batch.div_ceil(16).max(1)
}

impl Layer for MaxPooling2D {
    fn class_name(&self) -> &'static str {
        "MaxPooling2D"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        self.geometry = PoolGeometry::new(&self.config, "MaxPooling2D", input_shape)?;
        self.training_batch = None;
        Ok(self.geometry.output_shape(0)[1..].to_vec())
    }

    fn forward(&mut self, input: &Tensor, training: bool, _rng: &mut Rng) -> Tensor {
        let batch = input.shape().first().copied().unwrap_or(0);
        assert_eq!(
            input.shape(),
            self.geometry.input_shape(batch),
            "max_pooling2d `{}`: input shape differs from the built \
             (batch, height, width, channels)",
            label(&self.config.name, "MaxPooling2D")
        );
        let pixels = batch * self.geometry.rows.input * self.geometry.cols.input;
        assert!(
            u32::try_from(pixels).is_ok(),
            "max_pooling2d `{}`: a batch of {pixels} pixels is more than 2^32 - 1; use smaller \
             batches",
            label(&self.config.name, "MaxPooling2D")
        );
        let input = input.as_standard_layout();
        let mut output = parallel::zeros(&self.geometry.output_shape(batch));
        self.winners.resize(output.len(), 0);
        // Blocks of whole images, one per task. Each image is pooled the same way in any
        // block, so the result does not depend on the threads.
        let per_block = images_per_block(batch);
        let geometry = &self.geometry;
        let output_len = geometry.output_shape(1).iter().product::<usize>();
        input
            .as_slice()
            .expect("a standard-layout input")
            .par_chunks(per_block * geometry.image_len())
            .zip(
                output
                    .as_slice_mut()
                    .expect("a new array is contiguous")
                    .par_chunks_mut(per_block * output_len),
            )
            .zip(self.winners.par_chunks_mut(per_block * output_len))
            .enumerate()
            .for_each(|(block, ((input, output), winners))| {
                max_pool(input, output, winners, geometry, block * per_block);
            });
        self.training_batch = training.then_some(batch);
        output
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let name = label(&self.config.name, "MaxPooling2D");
        let batch = self.training_batch.unwrap_or_else(|| {
            panic!("max_pooling2d `{name}` backward: the last forward pass was not a training pass")
        });
        assert_eq!(
            grad_output.shape(),
            self.geometry.output_shape(batch),
            "max_pooling2d `{name}` backward: gradient shape differs from the output's"
        );
        let grad_output = grad_output.as_standard_layout();
        let mut grad_input = parallel::zeros(&self.geometry.input_shape(batch));
        let channels = self.geometry.channels;
        let grad_values = grad_input
            .as_slice_mut()
            .expect("a new array is contiguous");
        let grads = grad_output.as_slice().expect("a standard-layout gradient");
        let per_block = images_per_block(batch);
        let pixels_per_image = self.geometry.rows.input * self.geometry.cols.input;
        let output_len = self.geometry.output_shape(1).iter().product::<usize>();
        // A window's winner lies in the window's own image, so each block of images takes
        // its gradients from its own windows only.
        grad_values
            .par_chunks_mut(per_block * self.geometry.image_len())
            .zip(grads.par_chunks(per_block * output_len))
            .zip(self.winners.par_chunks(per_block * output_len))
            .enumerate()
            .for_each(|(block, ((grad_values, grads), winners))| {
                let first_pixel = block * per_block * pixels_per_image;
                let output_pixels = grads
                    .chunks_exact(channels)
                    .zip(winners.chunks_exact(channels));
                for (pixel_grads, pixel_winners) in output_pixels {
                    let lanes = pixel_grads.iter().zip(pixel_winners).enumerate();
                    for (channel, (&grad, &winner)) in lanes {
                        grad_values[(winner as usize - first_pixel) * channels + channel] += grad;
                    }
                }
            });
        grad_input
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "MaxPooling2D", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NnError;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;
    use ndarray::IxDyn;

    /// Returns a `(1, height, width, channels)` tensor of channel 0 equal to `values`
    /// (row-major) and channel 1 equal to their negatives.
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
    fn same_padding_by_hand() {
        // 1 2 3
        // 4 5 6    2 × 2 windows, stride 2, same padding: one padded row and column at the
        // 7 8 9    bottom and right, so the windows contain {1,2,4,5} {3,6} {7,8} {9}.
        let input = two_channel_image(3, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let mut layer = MaxPooling2D::new().padding(Padding::Same);
        assert_eq!(
            layer.build(&[3, 3, 2], &mut Rng::new(0)).unwrap(),
            [2, 2, 2]
        );
        let output = layer.forward(&input, false, &mut Rng::new(0));
        assert_eq!(channel(&output, 0), [5.0, 6.0, 8.0, 9.0]);
        assert_eq!(channel(&output, 1), [-1.0, -3.0, -7.0, -9.0]);
    }

    #[test]
    fn overlapping_windows_by_hand() {
        // x[i][j] = 5i + j on a 5 × 5 image, except x[2][2] = 100. The 3 × 3 windows with
        // stride 2 start at rows and columns 0 and 2, so all four share (2, 2).
        let mut values: Vec<f32> = (0..25).map(|v| v as f32).collect();
        values[12] = 100.0;
        let input = two_channel_image(5, 5, &values);
        let mut layer = MaxPooling2D::new().pool_size((3, 3)).strides((2, 2));
        assert_eq!(
            layer.build(&[5, 5, 2], &mut Rng::new(0)).unwrap(),
            [2, 2, 2]
        );
        let output = layer.forward(&input, true, &mut Rng::new(0));
        assert_eq!(channel(&output, 0), [100.0, 100.0, 100.0, 100.0]);
        // The negated channel's maximum is each window's smallest x, never the shared 100.
        assert_eq!(channel(&output, 1), [0.0, -2.0, -10.0, -13.0]);
        let grad = layer.backward(&Tensor::ones(IxDyn(&[1, 2, 2, 2])));
        assert_eq!(
            grad[[0, 2, 2, 0]],
            4.0,
            "the shared winner sums four gradients"
        );
        for (row, col) in [(0, 0), (0, 2), (2, 0), (2, 3)] {
            assert_eq!(grad[[0, row, col, 1]], 1.0, "channel 1 at ({row}, {col})");
        }
        assert_eq!(grad.sum(), 8.0);
    }

    #[test]
    fn tie_sends_gradient_to_first_maximum() {
        let mut layer = MaxPooling2D::new();
        layer.build(&[2, 2, 1], &mut Rng::new(0)).unwrap();
        let input = Tensor::ones(IxDyn(&[1, 2, 2, 1]));
        layer.forward(&input, true, &mut Rng::new(0));
        let grad = layer.backward(&Tensor::from_elem(IxDyn(&[1, 1, 1, 1]), 3.0));
        let values: Vec<f32> = grad.iter().copied().collect();
        assert_eq!(values, [3.0, 0.0, 0.0, 0.0]);
    }

    /// Tolerance 1e-2 of `max(1, |gradient|)`. Max pooling is piecewise linear, so the
    /// central difference is exact up to f32 rounding unless a step of 1e-3 changes a
    /// window's winner. The seeded input of `check_layer` has no such near tie in these
    /// cases. `gradients_on_tie_free_input` checks inputs built to have none.
    #[test]
    fn gradients_match_finite_differences() {
        let cases = [
            ([4, 6, 2], (2, 2), None, Padding::Valid),
            ([5, 7, 2], (3, 3), Some((2, 2)), Padding::Valid),
            ([5, 7, 2], (3, 3), Some((2, 2)), Padding::Same),
            ([5, 7, 1], (2, 2), None, Padding::Same),
        ];
        for (input_shape, pool_size, strides, padding) in cases {
            let mut layer = MaxPooling2D::new().pool_size(pool_size).padding(padding);
            layer.config.strides = strides;
            check_layer(Box::new(layer), &input_shape, 2, 1e-2);
        }
    }

    /// Checks central differences (step 1e-3, absolute tolerance 1e-3) on inputs whose values
    /// are a shuffled grid with spacing 0.01, so no step can change a window's winner.
    #[test]
    fn gradients_on_tie_free_input() {
        let cases = [
            ([5, 7, 3], (3, 3), (2, 2), Padding::Valid),
            ([5, 7, 3], (3, 3), (2, 2), Padding::Same),
            ([6, 6, 2], (2, 2), (2, 2), Padding::Same),
            ([5, 5, 1], (2, 3), (1, 2), Padding::Same),
        ];
        let mut rng = Rng::new(21);
        for (input_shape, pool_size, strides, padding) in cases {
            let mut layer = MaxPooling2D::new()
                .pool_size(pool_size)
                .strides(strides)
                .padding(padding);
            let output_shape = layer.build(&input_shape, &mut rng).unwrap();
            let shape = [2, input_shape[0], input_shape[1], input_shape[2]];
            let len: usize = shape.iter().product();
            let mut grid: Vec<f32> = (0..len).map(|i| i as f32 * 0.01).collect();
            rng.shuffle(&mut grid);
            let input = Tensor::from_shape_vec(IxDyn(&shape), grid).unwrap();
            let mut weight_shape = vec![2];
            weight_shape.extend_from_slice(&output_shape);
            let weights = Tensor::from_shape_fn(IxDyn(&weight_shape), |_| rng.uniform(-1.0, 1.0));
            layer.forward(&input, true, &mut rng);
            let analytic = layer.backward(&weights);
            let mut objective = |x: &Tensor| -> f64 {
                let y = layer.forward(x, false, &mut Rng::new(0));
                y.iter()
                    .zip(&weights)
                    .map(|(&a, &w)| a as f64 * w as f64)
                    .sum()
            };
            let step = 1e-3f32;
            for index in 0..len {
                let mut plus = input.clone();
                let mut minus = input.clone();
                plus.as_slice_mut().unwrap()[index] += step;
                minus.as_slice_mut().unwrap()[index] -= step;
                let numeric = (objective(&plus) - objective(&minus)) / (2.0 * step as f64);
                let got = analytic.as_slice().unwrap()[index] as f64;
                assert!(
                    (numeric - got).abs() < 1e-3,
                    "{pool_size:?} {strides:?} {padding:?}: input {index}: analytic {got}, \
                     numeric {numeric}"
                );
            }
        }
    }

    #[test]
    fn pool_larger_than_input_is_rejected() {
        let error = MaxPooling2D::new()
            .pool_size((3, 3))
            .name("pool")
            .build(&[2, 5, 4], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NnError::IncompatibleShape { .. }),
            "{message}"
        );
        assert!(message.contains("`pool`"), "{message}");
        assert!(message.contains("[2, 5, 4]"), "{message}");
        assert!(message.contains("no window fits"), "{message}");
    }

    #[test]
    fn wrong_rank_is_rejected() {
        let error = MaxPooling2D::new()
            .build(&[784], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`MaxPooling2D`"), "{message}");
        assert!(message.contains("[784]"), "{message}");
        assert!(message.contains("(height, width, channels)"), "{message}");
    }

    #[test]
    fn zero_strides_are_rejected() {
        let error = MaxPooling2D::new()
            .strides((0, 1))
            .build(&[4, 4, 1], &mut Rng::new(0))
            .unwrap_err();
        assert!(
            matches!(
                error,
                NnError::InvalidParameter {
                    name: "strides",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn config_round_trip() {
        let layer = MaxPooling2D::new()
            .pool_size((3, 2))
            .strides((1, 2))
            .padding(Padding::Same)
            .name("pool");
        let config = layer.config();
        assert_eq!(config["class_name"], "MaxPooling2D");
        assert_eq!(config["config"]["pool_size"], json!([3, 2]));
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "MaxPooling2D");
        assert_eq!(rebuilt.config(), config);
        let defaults = layer_from_config(&MaxPooling2D::new().config()).unwrap();
        assert_eq!(defaults.config()["config"]["strides"], json!(null));
    }
}
