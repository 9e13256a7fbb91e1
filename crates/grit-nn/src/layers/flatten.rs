use grit_tensor::{Rng, Tensor};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Layer, Result};

/// Flattens each sample to one axis: `(batch, d1, d2, ...)` → `(batch, d1·d2·...)`.
#[derive(Debug, Clone, Default)]
pub struct Flatten {
    config: FlattenConfig,
    input_shape: Vec<usize>,
}

/// The settings of a [`Flatten`] layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlattenConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
}

impl Flatten {
    /// Creates a flatten layer.
    pub fn new() -> Self {
        Flatten::default()
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: FlattenConfig) -> Self {
        Flatten {
            config,
            input_shape: Vec::new(),
        }
    }
}

/// Returns `tensor` itself when it is in standard layout, which then reshapes without a
/// copy, or a standard-layout copy of it.
pub(crate) fn standard_layout(tensor: Tensor) -> Tensor {
    if tensor.is_standard_layout() {
        tensor
    } else {
        tensor.as_standard_layout().into_owned()
    }
}

impl Layer for Flatten {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        self.input_shape = input_shape.to_vec();
        Ok(vec![input_shape.iter().product()])
    }

    fn forward(&mut self, input: &Tensor, _training: bool, _rng: &mut Rng) -> Tensor {
        let batch = input.shape()[0];
        let size: usize = input.shape()[1..].iter().product();
        input
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[batch, size]))
            .expect("flatten: a standard-layout array reshapes to (batch, size)")
    }

    fn forward_owned(&mut self, input: Tensor, _training: bool, _rng: &mut Rng) -> Tensor {
        let batch = input.shape()[0];
        let size: usize = input.shape()[1..].iter().product();
        standard_layout(input)
            .into_shape_with_order(IxDyn(&[batch, size]))
            .expect("flatten: a standard-layout array reshapes to (batch, size)")
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let mut shape = vec![grad_output.shape()[0]];
        shape.extend_from_slice(&self.input_shape);
        grad_output
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .unwrap_or_else(|_| {
                panic!(
                    "flatten backward: gradient {:?} does not fit input {:?}",
                    grad_output.shape(),
                    shape
                )
            })
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "Flatten", "config": self.config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    /// Flatten only moves values, so its gradient matches to a tolerance of 1e-3.
    #[test]
    fn gradient_matches_finite_differences() {
        crate::gradcheck::check_layer(Box::new(Flatten::new()), &[2, 3, 2], 3, 1e-3);
    }

    #[test]
    fn flattens_and_restores_shape() {
        let mut layer = Flatten::new();
        assert_eq!(layer.build(&[2, 3], &mut Rng::new(0)).unwrap(), vec![6]);
        let x = Array::from_shape_fn(IxDyn(&[4, 2, 3]), |i| (i[0] * 6 + i[1] * 3 + i[2]) as f32);
        let y = layer.forward(&x, true, &mut Rng::new(0));
        assert_eq!(y.shape(), &[4, 6]);
        assert_eq!(y[[1, 4]], 10.0);
        let back = layer.backward(&y);
        assert_eq!(back, x);
    }

    #[test]
    fn owned_input_reshapes_without_copy() {
        let mut layer = Flatten::new();
        layer.build(&[3, 2], &mut Rng::new(0)).unwrap();
        let input =
            Tensor::from_shape_fn(IxDyn(&[4, 3, 2]), |i| (i[0] * 6 + i[1] * 2 + i[2]) as f32);
        let expected = layer.forward(&input, true, &mut Rng::new(0));
        let pointer = input.as_ptr();
        let owned = layer.forward_owned(input.clone(), true, &mut Rng::new(0));
        assert_eq!(owned, expected);
        let reshaped = layer.forward_owned(input, true, &mut Rng::new(0));
        assert_eq!(
            reshaped.as_ptr(),
            pointer,
            "a standard-layout input is not copied"
        );
        // A permuted input is copied into standard layout first.
        let permuted =
            Tensor::from_shape_fn(IxDyn(&[4, 2, 3]), |i| (i[0] * 6 + i[2] * 2 + i[1]) as f32)
                .permuted_axes(IxDyn(&[0, 2, 1]));
        assert_eq!(
            layer.forward_owned(permuted.clone(), true, &mut Rng::new(0)),
            expected
        );
        assert_eq!(layer.forward(&permuted, true, &mut Rng::new(0)), expected);
    }
}
