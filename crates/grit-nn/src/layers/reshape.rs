use grit_tensor::{Rng, Tensor};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::flatten::standard_layout;
use super::label;
use crate::{Layer, NnError, Result};

/// Reshapes each sample to `target_shape`, keeping the values in row-major order.
///
/// As in Keras, one entry of the target shape may be `-1`; its size is inferred from the
/// number of values per sample.
///
/// # Shapes
/// - input: `(batch, d1, d2, ...)`
/// - output: `(batch, t1, t2, ...)` with `t1 · t2 · ... = d1 · d2 · ...`
///
/// ```
/// use grit_nn::{Layer, Reshape};
/// use grit_tensor::Rng;
///
/// let mut layer = Reshape::new([28, 28, 1]);
/// assert_eq!(layer.build(&[784], &mut Rng::new(0)).unwrap(), vec![28, 28, 1]);
/// let mut layer = Reshape::new([-1, 4]);
/// assert_eq!(layer.build(&[2, 6], &mut Rng::new(0)).unwrap(), vec![3, 4]);
/// ```
#[derive(Debug, Clone)]
pub struct Reshape {
    config: ReshapeConfig,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

/// The settings of a [`Reshape`] layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReshapeConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// The per-sample output shape; entries are at least 1, except that one may be `-1`
    /// for a size inferred from the input.
    pub target_shape: Vec<isize>,
}

impl Reshape {
    /// Creates a layer that reshapes each sample to `target_shape` (without the batch axis).
    pub fn new(target_shape: impl IntoIterator<Item = isize>) -> Self {
        Reshape::from_config(ReshapeConfig {
            name: String::new(),
            target_shape: target_shape.into_iter().collect(),
        })
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: ReshapeConfig) -> Self {
        Reshape {
            config,
            input_shape: Vec::new(),
            output_shape: Vec::new(),
        }
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &ReshapeConfig {
        &self.config
    }

    /// Returns `tensor` with its per-sample shape replaced by `shape`, copied to standard
    /// layout.
    fn reshape_samples(tensor: &Tensor, shape: &[usize]) -> Tensor {
        let mut full_shape = Vec::with_capacity(shape.len() + 1);
        full_shape.push(tensor.shape()[0]);
        full_shape.extend_from_slice(shape);
        tensor
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&full_shape))
            .expect("build checked that the sizes agree")
    }
}

impl Layer for Reshape {
    fn class_name(&self) -> &'static str {
        "Reshape"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        let layer = label(&self.config.name, "Reshape").to_string();
        let target = &self.config.target_shape;
        let inferred_axes = target.iter().filter(|&&size| size == -1).count();
        let is_valid = !target.is_empty()
            && inferred_axes <= 1
            && target.iter().all(|&size| size >= 1 || size == -1);
        if !is_valid {
            return Err(NnError::InvalidParameter {
                layer,
                name: "target_shape",
                value: format!("{target:?}"),
                expected: "at least one axis, each of size 1 or more, except at most one -1 \
                           for a size inferred from the input",
            });
        }

        let input_size: usize = input_shape.iter().product();
        let known_size = target
            .iter()
            .filter(|&&size| size != -1)
            .try_fold(1usize, |product, &size| product.checked_mul(size as usize));
        let incompatible = |reason: String| NnError::IncompatibleShape {
            layer: layer.clone(),
            input_shape: input_shape.to_vec(),
            reason,
        };
        // A product that overflows would wrap to a wrong size, possibly 0, in a release build.
        let Some(known_size) = known_size else {
            return Err(incompatible(format!(
                "the target shape {target:?} has more values per sample than a usize can count, \
                 but the input has {input_size}"
            )));
        };
        if inferred_axes == 1 && input_size % known_size != 0 {
            return Err(incompatible(format!(
                "the target shape {target:?} needs a multiple of {known_size} values per \
                 sample, but the input has {input_size}"
            )));
        }
        if inferred_axes == 0 && input_size != known_size {
            return Err(incompatible(format!(
                "the target shape {target:?} has {known_size} values per sample, but the \
                 input has {input_size}"
            )));
        }

        let inferred = input_size / known_size;
        self.output_shape = target
            .iter()
            .map(|&size| if size == -1 { inferred } else { size as usize })
            .collect();
        self.input_shape = input_shape.to_vec();
        Ok(self.output_shape.clone())
    }

    fn forward(&mut self, input: &Tensor, _training: bool, _rng: &mut Rng) -> Tensor {
        assert!(
            input.ndim() >= 1 && input.shape()[1..] == self.input_shape[..],
            "reshape `{}`: input {:?} does not match the built per-sample shape {:?}",
            label(&self.config.name, "Reshape"),
            input.shape(),
            self.input_shape
        );
        Reshape::reshape_samples(input, &self.output_shape)
    }

    fn forward_owned(&mut self, input: Tensor, training: bool, rng: &mut Rng) -> Tensor {
        if input.ndim() == 0 || input.shape()[1..] != self.input_shape[..] {
            // The shape check and its message are `forward`'s.
            return self.forward(&input, training, rng);
        }
        let mut shape = vec![input.shape()[0]];
        shape.extend_from_slice(&self.output_shape);
        standard_layout(input)
            .into_shape_with_order(IxDyn(&shape))
            .expect("build checked that the sizes agree")
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        assert!(
            grad_output.ndim() >= 1 && grad_output.shape()[1..] == self.output_shape[..],
            "reshape `{}` backward: gradient {:?} does not match the output shape {:?}",
            label(&self.config.name, "Reshape"),
            grad_output.shape(),
            self.output_shape
        );
        Reshape::reshape_samples(grad_output, &self.input_shape)
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "Reshape", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;

    #[test]
    fn reshapes_and_restores() {
        let mut layer = Reshape::new([3, 2]);
        assert_eq!(layer.build(&[6], &mut Rng::new(0)).unwrap(), [3, 2]);
        let input = Tensor::from_shape_fn(IxDyn(&[2, 6]), |i| (i[0] * 6 + i[1]) as f32);
        let output = layer.forward(&input, true, &mut Rng::new(0));
        assert_eq!(output.shape(), &[2, 3, 2]);
        assert_eq!(output[[1, 2, 0]], 10.0);
        assert_eq!(layer.backward(&output), input);
    }

    #[test]
    fn infers_one_axis() {
        let mut layer = Reshape::new([2, -1, 3]);
        assert_eq!(
            layer.build(&[4, 3, 2], &mut Rng::new(0)).unwrap(),
            [2, 4, 3]
        );
    }

    #[test]
    fn transposed_input_is_read_in_logical_order() {
        let mut layer = Reshape::new([4]);
        layer.build(&[2, 2], &mut Rng::new(0)).unwrap();
        let input = Tensor::from_shape_fn(IxDyn(&[1, 2, 2]), |i| (i[1] * 2 + i[2]) as f32);
        let mut transposed = input.clone();
        transposed.swap_axes(1, 2);
        let output = layer.forward(&transposed, false, &mut Rng::new(0));
        let values: Vec<f32> = output.iter().copied().collect();
        assert_eq!(values, [0.0, 2.0, 1.0, 3.0]);
    }

    /// Tolerance 1e-3 of `max(1, |gradient|)`: the layer moves values without arithmetic.
    #[test]
    fn gradients_match_finite_differences() {
        check_layer(Box::new(Reshape::new([3, -1])), &[2, 3], 2, 1e-3);
    }

    #[test]
    fn size_mismatch_is_rejected() {
        let error = Reshape::new([5, 5])
            .name("reshape")
            .build(&[4, 6], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NnError::IncompatibleShape { .. }),
            "{message}"
        );
        assert!(message.contains("`reshape`"), "{message}");
        assert!(message.contains("[4, 6]"), "{message}");
        assert!(message.contains("[5, 5]"), "{message}");
        let error = Reshape::new([-1, 5])
            .build(&[4, 6], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`Reshape`"), "{message}");
        assert!(message.contains("multiple of 5"), "{message}");
    }

    #[test]
    fn invalid_target_shape_is_rejected() {
        for target in [vec![-1, -1], vec![0, 4], vec![-2, 2], vec![]] {
            let error = Reshape::new(target.clone())
                .build(&[4], &mut Rng::new(0))
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    NnError::InvalidParameter {
                        name: "target_shape",
                        ..
                    }
                ),
                "{target:?}: {error}"
            );
        }
    }

    #[test]
    fn config_round_trip() {
        let layer = Reshape::new([7, 7, -1]).name("to_image");
        let config = layer.config();
        assert_eq!(config["class_name"], "Reshape");
        assert_eq!(config["config"]["target_shape"], json!([7, 7, -1]));
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "Reshape");
        assert_eq!(rebuilt.config(), config);
    }
}
