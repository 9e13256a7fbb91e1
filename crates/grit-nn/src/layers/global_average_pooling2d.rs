use grit_tensor::{Rng, Tensor};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::label;
use crate::{Layer, NnError, Result};

/// The mean of each channel over all spatial positions of a channels-last image.
///
/// # Shapes
/// - input: `(batch, height, width, channels)`
/// - output: `(batch, channels)`, or `(batch, 1, 1, channels)` with
///   [`GlobalAveragePooling2D::keepdims`]
///
/// ```
/// use grit_nn::{GlobalAveragePooling2D, Layer};
/// use grit_tensor::Rng;
///
/// let mut layer = GlobalAveragePooling2D::new();
/// assert_eq!(layer.build(&[7, 7, 64], &mut Rng::new(0)).unwrap(), vec![64]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct GlobalAveragePooling2D {
    config: GlobalAveragePooling2DConfig,
    /// The per-sample input shape `[height, width, channels]` fixed by `build`.
    input_shape: [usize; 3],
}

/// The settings of a [`GlobalAveragePooling2D`] layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalAveragePooling2DConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// Whether the output keeps the spatial axes, with size 1 (Keras's default: no).
    #[serde(default)]
    pub keepdims: bool,
}

impl GlobalAveragePooling2D {
    /// Creates the layer with Keras's defaults.
    pub fn new() -> Self {
        GlobalAveragePooling2D::default()
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: GlobalAveragePooling2DConfig) -> Self {
        GlobalAveragePooling2D {
            config,
            input_shape: [0; 3],
        }
    }

    /// Sets whether the output keeps the spatial axes as `(batch, 1, 1, channels)`.
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.config.keepdims = keepdims;
        self
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    fn output_shape(&self, batch: usize) -> Vec<usize> {
        let channels = self.input_shape[2];
        if self.config.keepdims {
            vec![batch, 1, 1, channels]
        } else {
            vec![batch, channels]
        }
    }

    fn full_input_shape(&self, batch: usize) -> [usize; 4] {
        let [height, width, channels] = self.input_shape;
        [batch, height, width, channels]
    }
}

impl Layer for GlobalAveragePooling2D {
    fn class_name(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        let incompatible = |reason: &str| NnError::IncompatibleShape {
            layer: label(&self.config.name, "GlobalAveragePooling2D").to_string(),
            input_shape: input_shape.to_vec(),
            reason: reason.into(),
        };
        let &[height, width, channels] = input_shape else {
            return Err(incompatible(
                "GlobalAveragePooling2D takes (height, width, channels) per sample, \
                 channels last",
            ));
        };
        if height == 0 || width == 0 || channels == 0 {
            return Err(incompatible("the input has an empty axis"));
        }
        self.input_shape = [height, width, channels];
        Ok(self.output_shape(0)[1..].to_vec())
    }

    fn forward(&mut self, input: &Tensor, _training: bool, _rng: &mut Rng) -> Tensor {
        let batch = input.shape().first().copied().unwrap_or(0);
        assert_eq!(
            input.shape(),
            self.full_input_shape(batch),
            "global_average_pooling2d `{}`: input shape differs from the built \
             (batch, height, width, channels)",
            label(&self.config.name, "GlobalAveragePooling2D")
        );
        let [height, width, channels] = self.input_shape;
        let count = (height * width) as f32;
        let input = input.as_standard_layout();
        let values = input.as_slice().expect("a standard-layout input");
        let mut output = Tensor::zeros(IxDyn(&self.output_shape(batch)));
        let means = output.as_slice_mut().expect("a new array is contiguous");
        let images = values.chunks_exact(height * width * channels);
        for (image, image_means) in images.zip(means.chunks_exact_mut(channels)) {
            for pixel in image.chunks_exact(channels) {
                for (mean, &value) in image_means.iter_mut().zip(pixel) {
                    *mean += value;
                }
            }
            for mean in image_means.iter_mut() {
                *mean /= count;
            }
        }
        output
    }

    /// Needs nothing from the forward pass but the batch size, which it takes from
    /// `grad_output`.
    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let batch = grad_output.shape().first().copied().unwrap_or(0);
        assert_eq!(
            grad_output.shape(),
            self.output_shape(batch),
            "global_average_pooling2d `{}` backward: gradient shape differs from the output's",
            label(&self.config.name, "GlobalAveragePooling2D")
        );
        let [height, width, channels] = self.input_shape;
        let count = (height * width) as f32;
        let grad_output = grad_output.as_standard_layout();
        let grads = grad_output.as_slice().expect("a standard-layout gradient");
        let mut grad_input = Tensor::zeros(IxDyn(&self.full_input_shape(batch)));
        let targets = grad_input
            .as_slice_mut()
            .expect("a new array is contiguous");
        let mut shares = vec![0.0f32; channels];
        let images = targets.chunks_exact_mut(height * width * channels);
        for (image, image_grads) in images.zip(grads.chunks_exact(channels)) {
            for (share, &grad) in shares.iter_mut().zip(image_grads) {
                *share = grad / count;
            }
            for pixel in image.chunks_exact_mut(channels) {
                pixel.copy_from_slice(&shares);
            }
        }
        grad_input
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "GlobalAveragePooling2D", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;

    #[test]
    fn channel_means_by_hand() {
        // Two samples of 2 × 2 × 2. Channel 0 of sample 0 is 1, 2, 3, 4 (mean 2.5) and
        // channel 1 is ten times that. Sample 1 is sample 0 negated.
        let input = Tensor::from_shape_fn(IxDyn(&[2, 2, 2, 2]), |i| {
            let value = (i[1] * 2 + i[2] + 1) as f32 * if i[3] == 0 { 1.0 } else { 10.0 };
            if i[0] == 0 { value } else { -value }
        });
        let mut layer = GlobalAveragePooling2D::new();
        assert_eq!(layer.build(&[2, 2, 2], &mut Rng::new(0)).unwrap(), [2]);
        let output = layer.forward(&input, true, &mut Rng::new(0));
        let values: Vec<f32> = output.iter().copied().collect();
        assert_eq!(values, [2.5, 25.0, -2.5, -25.0]);
        let grad = layer.backward(&Tensor::ones(IxDyn(&[2, 2])));
        assert!(grad.iter().all(|&g| g == 0.25));
    }

    #[test]
    fn keepdims_keeps_spatial_axes() {
        let mut layer = GlobalAveragePooling2D::new().keepdims(true);
        assert_eq!(
            layer.build(&[3, 5, 4], &mut Rng::new(0)).unwrap(),
            [1, 1, 4]
        );
        let output = layer.forward(&Tensor::ones(IxDyn(&[2, 3, 5, 4])), false, &mut Rng::new(0));
        assert_eq!(output.shape(), &[2, 1, 1, 4]);
        assert!(output.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }

    /// Tolerance 1e-2 of `max(1, |gradient|)`; the layer is linear, so the central
    /// difference differs from the gradient only by f32 rounding.
    #[test]
    fn gradients_match_finite_differences() {
        check_layer(Box::new(GlobalAveragePooling2D::new()), &[5, 7, 3], 2, 1e-2);
        check_layer(
            Box::new(GlobalAveragePooling2D::new().keepdims(true)),
            &[3, 2, 2],
            3,
            1e-2,
        );
    }

    #[test]
    fn wrong_rank_is_rejected() {
        let error = GlobalAveragePooling2D::new()
            .name("gap")
            .build(&[10], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`gap`"), "{message}");
        assert!(message.contains("[10]"), "{message}");
        assert!(message.contains("(height, width, channels)"), "{message}");
    }

    #[test]
    fn config_round_trip() {
        let layer = GlobalAveragePooling2D::new().keepdims(true).name("gap");
        let config = layer.config();
        assert_eq!(config["class_name"], "GlobalAveragePooling2D");
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "GlobalAveragePooling2D");
        assert_eq!(rebuilt.config(), config);
    }
}
