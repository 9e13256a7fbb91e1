use grit_tensor::{Activation, Rng, Tensor};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::buffer::copy_into_buffer;
use super::label;
use crate::{Layer, Result};

/// Applies an [`Activation`] on its own, as Keras's `Activation` layer does.
///
/// Useful for activations placed after another layer, such as a `BatchNormalization`
/// between a convolution and its ReLU. Softmax acts on the last axis.
///
/// # Shapes
/// - input: any shape
/// - output: the input's shape
///
/// ```
/// use grit_nn::{ActivationLayer, Layer};
/// use grit_tensor::{Activation, Rng, Tensor};
///
/// let mut layer = ActivationLayer::new(Activation::LEAKY_RELU);
/// layer.build(&[2], &mut Rng::new(0)).unwrap();
/// let x = Tensor::from_shape_vec(vec![1, 2], vec![-1.0, 3.0]).unwrap();
/// let y = layer.forward(&x, false, &mut Rng::new(0));
/// assert_eq!(y.iter().copied().collect::<Vec<_>>(), [-0.2, 3.0]);
/// ```
#[derive(Debug, Clone)]
pub struct ActivationLayer {
    config: ActivationConfig,
    /// The input of the last training pass.
    input: Tensor,
    /// The output of the last training pass.
    output: Tensor,
}

/// The settings of an [`ActivationLayer`], saved under Keras's class name `Activation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// The activation applied.
    pub activation: Activation,
}

impl ActivationLayer {
    /// Creates a layer that applies `activation`.
    pub fn new(activation: Activation) -> Self {
        ActivationLayer::from_config(ActivationConfig {
            name: String::new(),
            activation,
        })
    }

    /// Creates the layer from its settings.
    pub fn from_config(config: ActivationConfig) -> Self {
        ActivationLayer {
            config,
            input: Tensor::zeros(IxDyn(&[0])),
            output: Tensor::zeros(IxDyn(&[0])),
        }
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &ActivationConfig {
        &self.config
    }
}

impl Layer for ActivationLayer {
    fn class_name(&self) -> &'static str {
        "Activation"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<Vec<usize>> {
        Ok(input_shape.to_vec())
    }

    fn forward(&mut self, input: &Tensor, training: bool, _rng: &mut Rng) -> Tensor {
        let output = self.config.activation.apply(input);
        if training {
            copy_into_buffer(&mut self.input, input);
            copy_into_buffer(&mut self.output, &output);
        }
        output
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        assert_eq!(
            grad_output.shape(),
            self.output.shape(),
            "activation `{}` backward: gradient shape differs from the last training output's",
            label(&self.config.name, "Activation")
        );
        self.config
            .activation
            .backward(&self.input, &self.output, grad_output)
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "Activation", "config": self.config })
    }

    fn output_activation(&self) -> Option<Activation> {
        match self.config.activation {
            Activation::Softmax | Activation::Sigmoid => Some(self.config.activation),
            _ => None,
        }
    }

    fn logits(&self) -> Option<&Tensor> {
        self.output_activation().map(|_| &self.input)
    }

    /// Returns `grad_logits` unchanged: the logits are this layer's input.
    fn backward_from_logits(&mut self, grad_logits: &Tensor) -> Tensor {
        assert!(
            self.output_activation().is_some(),
            "activation `{}` has no fusable output activation",
            label(&self.config.name, "Activation")
        );
        grad_logits.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;

    const ALL: [Activation; 9] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::LEAKY_RELU,
        Activation::ELU,
        Activation::Gelu,
        Activation::Softplus,
    ];

    #[test]
    fn forward_matches_activation() {
        let x = Tensor::from_shape_fn(IxDyn(&[3, 4]), |i| i[0] as f32 - 1.3 * i[1] as f32);
        for activation in ALL {
            let mut layer = ActivationLayer::new(activation);
            layer.build(&[4], &mut Rng::new(0)).unwrap();
            let y = layer.forward(&x, false, &mut Rng::new(0));
            assert_eq!(y, activation.apply(&x), "{}", activation.name());
        }
    }

    /// Tolerance 1e-2 of `max(1, |gradient|)`, as for `Dense`. ReLU, leaky ReLU and ELU have
    /// a kink at 0, where a central difference is wrong. The seeded input of `check_layer`
    /// has no value within the step (1e-3) of 0.
    #[test]
    fn gradients_match_finite_differences() {
        for activation in ALL {
            check_layer(Box::new(ActivationLayer::new(activation)), &[2, 4], 3, 1e-2);
        }
    }

    #[test]
    fn fused_logits_are_the_input() {
        let mut layer = ActivationLayer::new(Activation::Softmax);
        layer.build(&[3], &mut Rng::new(0)).unwrap();
        let x = Tensor::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] + 2 * i[1]) as f32);
        layer.forward(&x, true, &mut Rng::new(0));
        assert_eq!(layer.output_activation(), Some(Activation::Softmax));
        assert_eq!(layer.logits(), Some(&x));
        let grad = Tensor::ones(IxDyn(&[2, 3]));
        assert_eq!(layer.backward_from_logits(&grad), grad);
        assert_eq!(
            ActivationLayer::new(Activation::Relu).output_activation(),
            None
        );
    }

    #[test]
    fn config_round_trip() {
        for activation in ALL {
            let layer = ActivationLayer::new(activation).name("act");
            let config = layer.config();
            assert_eq!(config["class_name"], "Activation");
            let rebuilt = layer_from_config(&config).unwrap();
            assert_eq!(rebuilt.class_name(), "Activation");
            assert_eq!(rebuilt.config(), config, "{}", activation.name());
        }
    }
}
