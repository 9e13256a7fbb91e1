use grit_tensor::activation::relu;
use grit_tensor::ops::{add_bias, gemm};
use grit_tensor::{Activation, Initializer, ParamMut, Rng, Tensor, rayon};
use ndarray::{Array2, Axis, Ix1, Ix2, IxDyn, Zip};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::buffer::{copy_into_buffer, reshape_buffer};
use crate::layer::check_tensor_size;
use crate::{Layer, NnError, Result};

/// A fully connected layer: `output = activation(input · kernel + bias)`.
///
/// # Shapes
/// - input: `(batch, inputs)`
/// - kernel: `(inputs, units)`, Keras's layout; bias: `(units,)`
/// - output: `(batch, units)`
///
/// Defaults as Keras: linear activation, a bias, Glorot-uniform kernel, zero bias.
///
/// ```
/// use grit_nn::{Dense, Layer};
/// use grit_tensor::{Activation, Rng};
///
/// let mut layer = Dense::new(3).activation(Activation::Relu);
/// assert_eq!(layer.build(&[4], &mut Rng::new(0)).unwrap(), vec![3]);
/// assert_eq!(layer.weights()[0].1.shape(), &[4, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct Dense {
    config: DenseConfig,
    kernel: Tensor,
    bias: Tensor,
    kernel_grad: Tensor,
    bias_grad: Tensor,
    input: Array2<f32>,
    /// The pre-activation output of the last training pass (kept for activations other
    /// than linear and ReLU).
    logits: Tensor,
    /// The output of the last training pass (kept for non-linear activations).
    output: Tensor,
    /// The gradient with respect to `logits`, reused across batches.
    grad_logits: Tensor,
    /// Whether the backward pass computes the input gradient (off for a model's first
    /// trainable layer, where it would cost a GEMM for nothing).
    input_gradient_needed: bool,
}

/// The settings of a [`Dense`] layer, as saved in a model config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// Number of outputs.
    pub units: usize,
    /// Activation applied to `input · kernel + bias`.
    pub activation: Activation,
    /// Whether the layer adds a bias.
    pub use_bias: bool,
    /// The kernel initializer.
    pub kernel_initializer: Initializer,
    /// The bias initializer.
    pub bias_initializer: Initializer,
}

impl Dense {
    /// Creates a dense layer with `units` outputs and Keras's defaults.
    pub fn new(units: usize) -> Self {
        Dense::from_config(DenseConfig {
            name: String::new(),
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        })
    }

    /// Creates the layer from its settings; weights are created by [`Layer::build`].
    pub fn from_config(config: DenseConfig) -> Self {
        Dense {
            config,
            kernel: Tensor::zeros(IxDyn(&[0, 0])),
            bias: Tensor::zeros(IxDyn(&[0])),
            kernel_grad: Tensor::zeros(IxDyn(&[0, 0])),
            bias_grad: Tensor::zeros(IxDyn(&[0])),
            input: Array2::zeros((0, 0)),
            logits: Tensor::zeros(IxDyn(&[0, 0])),
            output: Tensor::zeros(IxDyn(&[0, 0])),
            grad_logits: Tensor::zeros(IxDyn(&[0, 0])),
            input_gradient_needed: true,
        }
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.config.activation = activation;
        self
    }

    /// Turns the bias on or off.
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.config.use_bias = use_bias;
        self
    }

    /// Sets the kernel initializer.
    pub fn kernel_initializer(mut self, initializer: Initializer) -> Self {
        self.config.kernel_initializer = initializer;
        self
    }

    /// Sets the bias initializer.
    pub fn bias_initializer(mut self, initializer: Initializer) -> Self {
        self.config.bias_initializer = initializer;
        self
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &DenseConfig {
        &self.config
    }

    /// Computes the parameter gradients and the input gradient from the gradient with
    /// respect to the logits.
    fn backward_logits(&mut self, grad_logits: &Tensor) -> Tensor {
        let grad = grad_logits
            .view()
            .into_dimensionality::<Ix2>()
            .expect("dense backward: the gradient must be (batch, units)");
        assert_eq!(
            grad.nrows(),
            self.input.nrows(),
            "dense backward: gradient batch {} but forward batch {}",
            grad.nrows(),
            self.input.nrows()
        );
        let mut kernel_grad = self
            .kernel_grad
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("2-D kernel");
        let kernel = self
            .kernel
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D kernel");
        let (input, bias_grad) = (&self.input, &mut self.bias_grad);
        let use_bias = self.config.use_bias;
        let mut parameter_grads = || {
            gemm(1.0, &input.t(), &grad, 0.0, &mut kernel_grad);
            if use_bias {
                bias_grad.assign(&grad.sum_axis(Axis(0)).into_dyn());
            }
        };
        let grad_input = if self.input_gradient_needed {
            // The two products are independent, so two threads compute them at once. In a
            // small layer neither is large enough to be split among threads.
            let input_grad = || {
                let mut grad_input = Array2::zeros((grad.nrows(), kernel.nrows()));
                gemm(1.0, &grad, &kernel.t(), 0.0, &mut grad_input.view_mut());
                grad_input.into_dyn()
            };
            rayon::join(parameter_grads, input_grad).1
        } else {
            parameter_grads();
            Tensor::zeros(IxDyn(&[0]))
        };
        // The input is not needed again. Dropping it now lets the next batch reuse its memory
        // instead of both being held at once.
        self.input = Array2::zeros((0, 0));
        grad_input
    }

    /// Computes the output, keeping the logits and output when `training` is set (the
    /// caller keeps the input).
    fn compute_output(&mut self, input: &Tensor, training: bool) -> Tensor {
        let x = input
            .view()
            .into_dimensionality::<Ix2>()
            .unwrap_or_else(|_| {
                panic!(
                    "dense `{}`: input {:?} is not (batch, features)",
                    self.config.name,
                    input.shape()
                )
            });
        let kernel = self
            .kernel
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D kernel");
        assert_eq!(
            x.ncols(),
            kernel.nrows(),
            "dense `{}`: input has {} features, kernel expects {}",
            self.config.name,
            x.ncols(),
            kernel.nrows()
        );
        let mut z = Array2::zeros((x.nrows(), kernel.ncols()));
        gemm(1.0, &x, &kernel, 0.0, &mut z.view_mut());
        if self.config.use_bias {
            let bias = self
                .bias
                .view()
                .into_dimensionality::<Ix1>()
                .expect("1-D bias");
            add_bias(&mut z.view_mut(), &bias);
        }
        let mut output = z.into_dyn();
        let activation = self.config.activation;
        match activation {
            Activation::Linear => {}
            // ReLU's derivative reads the output, so the logits are not kept.
            Activation::Relu => output.mapv_inplace(relu),
            _ => {
                if training {
                    copy_into_buffer(&mut self.logits, &output);
                }
                activation.apply_in_place(&mut output);
            }
        }
        if training && activation != Activation::Linear {
            copy_into_buffer(&mut self.output, &output);
        }
        output
    }
}

impl Layer for Dense {
    fn class_name(&self) -> &'static str {
        "Dense"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<Vec<usize>> {
        let units = self.config.units;
        if units == 0 {
            return Err(NnError::InvalidParameter {
                layer: self.config.name.clone(),
                name: "units",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        let &[inputs] = input_shape else {
            return Err(NnError::IncompatibleShape {
                layer: self.config.name.clone(),
                input_shape: input_shape.to_vec(),
                reason:
                    "Dense takes one axis of features per sample; put a Flatten layer before it"
                        .into(),
            });
        };
        if inputs == 0 {
            return Err(NnError::IncompatibleShape {
                layer: self.config.name.clone(),
                input_shape: input_shape.to_vec(),
                reason: "the input has no features".into(),
            });
        }
        check_tensor_size(&self.config.name, input_shape, "kernel", &[inputs, units])?;
        self.kernel = self.config.kernel_initializer.init(&[inputs, units], rng);
        self.kernel_grad = Tensor::zeros(IxDyn(&[inputs, units]));
        if self.config.use_bias {
            self.bias = self.config.bias_initializer.init(&[units], rng);
            self.bias_grad = Tensor::zeros(IxDyn(&[units]));
        }
        Ok(vec![units])
    }

    fn forward(&mut self, input: &Tensor, training: bool, _rng: &mut Rng) -> Tensor {
        let output = self.compute_output(input, training);
        if training {
            let x = input.view().into_dimensionality::<Ix2>().expect("checked");
            if self.input.shape() == x.shape() {
                self.input.assign(&x);
            } else {
                self.input = x.to_owned();
            }
        }
        output
    }

    fn forward_owned(&mut self, input: Tensor, training: bool, _rng: &mut Rng) -> Tensor {
        let output = self.compute_output(&input, training);
        if training {
            // The input itself is kept, not a copy.
            self.input = input.into_dimensionality::<Ix2>().expect("checked");
        }
        output
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let activation = self.config.activation;
        if activation == Activation::Linear {
            return self.backward_logits(grad_output);
        }
        assert_eq!(
            grad_output.shape(),
            self.output.shape(),
            "dense `{}` backward: gradient shape differs from the output's",
            self.config.name
        );
        let mut grad_logits = std::mem::take(&mut self.grad_logits);
        if activation == Activation::Relu {
            reshape_buffer(&mut grad_logits, grad_output.shape());
            Zip::from(&mut grad_logits)
                .and(grad_output)
                .and(&self.output)
                .for_each(|target, &grad, &output| {
                    *target = if output > 0.0 { grad } else { 0.0 };
                });
        } else {
            copy_into_buffer(&mut grad_logits, grad_output);
            activation.backward_in_place(&self.logits, &self.output, &mut grad_logits);
        }
        let grad_input = self.backward_logits(&grad_logits);
        self.grad_logits = grad_logits;
        grad_input
    }

    fn set_input_gradient_needed(&mut self, needed: bool) {
        self.input_gradient_needed = needed;
    }

    fn weights(&self) -> Vec<(&'static str, &Tensor)> {
        let mut weights = vec![("kernel", &self.kernel)];
        if self.config.use_bias {
            weights.push(("bias", &self.bias));
        }
        weights
    }

    fn weights_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        let mut weights = vec![("kernel", &mut self.kernel)];
        if self.config.use_bias {
            weights.push(("bias", &mut self.bias));
        }
        weights
    }

    fn trainable_params(&mut self) -> Vec<ParamMut<'_>> {
        // Room for the bias too: growing a vector on a pool thread during a training step
        // can take space from the calling thread's heap.
        let mut params = Vec::with_capacity(2);
        params.push(ParamMut {
            value: &mut self.kernel,
            grad: &self.kernel_grad,
        });
        if self.config.use_bias {
            params.push(ParamMut {
                value: &mut self.bias,
                grad: &self.bias_grad,
            });
        }
        params
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "Dense", "config": self.config })
    }

    fn output_activation(&self) -> Option<Activation> {
        match self.config.activation {
            Activation::Softmax | Activation::Sigmoid => Some(self.config.activation),
            _ => None,
        }
    }

    fn logits(&self) -> Option<&Tensor> {
        self.output_activation().map(|_| &self.logits)
    }

    fn backward_from_logits(&mut self, grad_logits: &Tensor) -> Tensor {
        self.backward_logits(grad_logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use ndarray::array;

    #[test]
    fn forward_by_hand() {
        let mut layer = Dense::new(2).kernel_initializer(Initializer::Ones);
        layer.build(&[3], &mut Rng::new(0)).unwrap();
        layer.weights_mut()[1]
            .1
            .assign(&array![0.5f32, -1.0].into_dyn());
        let x = array![[1.0f32, 2.0, 3.0]].into_dyn();
        let y = layer.forward(&x, false, &mut Rng::new(0));
        assert_eq!(y, array![[6.5f32, 5.0]].into_dyn());
    }

    #[test]
    fn kernel_over_size_limit_rejected() {
        let mut layer = Dense::new(1_000_000_000_000).name("huge");
        let error = layer.build(&[6], &mut Rng::new(0)).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NnError::IncompatibleShape { .. }),
            "{error:?}"
        );
        assert!(message.contains("[6, 1000000000000]"), "{message}");
        assert!(message.contains("2147483648"), "{message}");
        assert_eq!(layer.weights()[0].1.len(), 0, "no kernel was allocated");
    }

    #[test]
    fn gradients_match_finite_differences() {
        for activation in [
            Activation::Linear,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softmax,
        ] {
            for use_bias in [true, false] {
                let layer = Dense::new(4).activation(activation).use_bias(use_bias);
                check_layer(Box::new(layer), &[5], 3, 1e-2);
            }
        }
    }

    #[test]
    fn rejects_multi_axis_input_and_zero_units() {
        let error = Dense::new(3)
            .name("dense")
            .build(&[28, 28], &mut Rng::new(0))
            .unwrap_err();
        assert!(error.to_string().contains("Flatten"), "{error}");
        assert!(error.to_string().contains("[28, 28]"), "{error}");
        let error = Dense::new(0).build(&[4], &mut Rng::new(0)).unwrap_err();
        assert!(error.to_string().contains("units"), "{error}");
    }

    fn batch(rows: usize, cols: usize) -> Tensor {
        Tensor::from_shape_fn(IxDyn(&[rows, cols]), |i| {
            ((i[0] * 5 + i[1] * 3) % 7) as f32 - 3.0
        })
    }

    #[test]
    fn owned_input_matches_borrowed_input() {
        let mut borrowed = Dense::new(3).activation(Activation::Relu);
        borrowed.build(&[4], &mut Rng::new(5)).unwrap();
        let mut owned = borrowed.clone();
        let x = batch(6, 4);
        let grad = batch(6, 3);
        let y_borrowed = borrowed.forward(&x, true, &mut Rng::new(0));
        let y_owned = owned.forward_owned(x.clone(), true, &mut Rng::new(0));
        assert_eq!(y_borrowed, y_owned);
        assert_eq!(borrowed.backward(&grad), owned.backward(&grad));
        assert_eq!(borrowed.kernel_grad, owned.kernel_grad);
        assert_eq!(borrowed.bias_grad, owned.bias_grad);
    }

    #[test]
    fn skipped_input_gradient_keeps_kernel_gradient() {
        let mut full = Dense::new(3).activation(Activation::Tanh);
        full.build(&[4], &mut Rng::new(9)).unwrap();
        let mut first = full.clone();
        first.set_input_gradient_needed(false);
        let x = batch(5, 4);
        let grad = batch(5, 3);
        full.forward(&x, true, &mut Rng::new(0));
        first.forward(&x, true, &mut Rng::new(0));
        assert_eq!(full.backward(&grad).shape(), &[5, 4]);
        assert_eq!(
            first.backward(&grad).len(),
            0,
            "no input gradient is computed"
        );
        assert_eq!(full.kernel_grad, first.kernel_grad);
        assert_eq!(full.bias_grad, first.bias_grad);
    }
}
