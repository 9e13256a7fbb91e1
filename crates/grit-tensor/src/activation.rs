//! Element-wise activations and their derivatives.
//!
//! Names and defaults follow `keras.activations`: `leaky_relu` has a negative slope of 0.2,
//! `elu` an alpha of 1.0, and `gelu` is the exact form `x · Φ(x)` with the normal CDF.

use ndarray::{Axis, Zip};
use serde::{Deserialize, Serialize};

use crate::Tensor;
use crate::softmax::softmax_in_place;

/// An activation function, applied element-wise (softmax: over the last axis).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "name")]
pub enum Activation {
    /// The identity, `f(x) = x`.
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`, computed without overflow for large |x|.
    Sigmoid,
    /// The hyperbolic tangent.
    Tanh,
    /// `e^x / Σ e^x` over the last axis, computed with the row maximum subtracted.
    Softmax,
    /// `x` for `x ≥ 0`, `negative_slope · x` otherwise.
    LeakyRelu {
        /// Slope for negative inputs (Keras's default is 0.2).
        negative_slope: f32,
    },
    /// `x` for `x > 0`, `alpha · (e^x - 1)` otherwise.
    Elu {
        /// Scale of the negative part (Keras's default is 1.0).
        alpha: f32,
    },
    /// The Gaussian error linear unit `x · Φ(x)`, exact form with `erf`.
    Gelu,
    /// `ln(1 + e^x)`, computed as `max(x, 0) + ln(1 + e^-|x|)`.
    Softplus,
}

impl Activation {
    /// Leaky ReLU with Keras's default negative slope of 0.2.
    pub const LEAKY_RELU: Activation = Activation::LeakyRelu {
        negative_slope: 0.2,
    };
    /// ELU with Keras's default alpha of 1.0.
    pub const ELU: Activation = Activation::Elu { alpha: 1.0 };

    /// Returns Keras's name for this activation (`"relu"`, `"softmax"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Gelu => "gelu",
            Activation::Softplus => "softplus",
        }
    }

    /// Applies the activation to `x` in place.
    pub fn apply_in_place(&self, x: &mut Tensor) {
        match *self {
            Activation::Linear => {}
            Activation::Relu => x.mapv_inplace(relu),
            Activation::Sigmoid => x.mapv_inplace(sigmoid),
            Activation::Tanh => x.mapv_inplace(f32::tanh),
            Activation::Softmax => softmax_in_place(x),
            Activation::LeakyRelu { negative_slope } => {
                x.mapv_inplace(|v| if v >= 0.0 { v } else { negative_slope * v })
            }
            Activation::Elu { alpha } => {
                x.mapv_inplace(|v| if v > 0.0 { v } else { alpha * v.exp_m1() })
            }
            Activation::Gelu => x.mapv_inplace(|v| 0.5 * v * (1.0 + libm::erff(v / SQRT_2))),
            Activation::Softplus => x.mapv_inplace(softplus),
        }
    }

    /// Returns the activation of `x` as a new tensor.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let mut y = x.clone();
        self.apply_in_place(&mut y);
        y
    }

    /// Returns the gradient with respect to the input, given the input `x`, the output `y`
    /// and the gradient `grad_y` with respect to the output. All three have the same shape.
    ///
    /// # Panics
    /// Panics when the shapes differ.
    #[track_caller]
    pub fn backward(&self, x: &Tensor, y: &Tensor, grad_y: &Tensor) -> Tensor {
        assert!(
            x.shape() == y.shape() && y.shape() == grad_y.shape(),
            "activation backward: shapes differ: x {:?}, y {:?}, grad {:?}",
            x.shape(),
            y.shape(),
            grad_y.shape()
        );
        let mut grad = grad_y.clone();
        self.backward_in_place(x, y, &mut grad);
        grad
    }

    /// Multiplies `grad` (the gradient with respect to the output) by the derivative, in place.
    pub fn backward_in_place(&self, x: &Tensor, y: &Tensor, grad: &mut Tensor) {
        match *self {
            Activation::Linear => {}
            Activation::Relu => Zip::from(grad).and(x).for_each(|g, &v| {
                if v <= 0.0 {
                    *g = 0.0;
                }
            }),
            Activation::Sigmoid => Zip::from(grad).and(y).for_each(|g, &s| *g *= s * (1.0 - s)),
            Activation::Tanh => Zip::from(grad).and(y).for_each(|g, &t| *g *= 1.0 - t * t),
            Activation::Softmax => {
                // The Jacobian-vector product of softmax: dx = y · (dy - Σ dy·y) per row.
                let last = Axis(y.ndim().saturating_sub(1));
                for (mut g, y_lane) in grad.lanes_mut(last).into_iter().zip(y.lanes(last)) {
                    let dot: f32 = g.iter().zip(y_lane.iter()).map(|(a, b)| a * b).sum();
                    Zip::from(&mut g)
                        .and(&y_lane)
                        .for_each(|g, &s| *g = s * (*g - dot));
                }
            }
            Activation::LeakyRelu { negative_slope } => Zip::from(grad).and(x).for_each(|g, &v| {
                if v < 0.0 {
                    *g *= negative_slope;
                }
            }),
            Activation::Elu { alpha } => Zip::from(grad).and(x).for_each(|g, &v| {
                if v <= 0.0 {
                    *g *= alpha * v.exp();
                }
            }),
            Activation::Gelu => Zip::from(grad).and(x).for_each(|g, &v| {
                let cdf = 0.5 * (1.0 + libm::erff(v / SQRT_2));
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f32::consts::PI).sqrt();
                *g *= cdf + v * pdf;
            }),
            Activation::Softplus => Zip::from(grad).and(x).for_each(|g, &v| *g *= sigmoid(v)),
        }
    }
}

const SQRT_2: f32 = std::f32::consts::SQRT_2;

/// Computes the logistic sigmoid without overflow for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)`, computed without overflow for large |x|.
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Returns `max(v, 0)`, and NaN for NaN as TensorFlow's ReLU does (`f32::max` would return
/// 0 and hide a NaN from the loss).
pub fn relu(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

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

    /// Compares each derivative with central differences in f64 of the f32 forward pass,
    /// with a step of 1e-3 and an absolute tolerance of 2e-3.
    #[test]
    fn derivatives_match_finite_differences() {
        let x = array![
            [-1.3f32, -0.4, 0.3, 0.9, 2.1],
            [0.7, -2.2, 1.5, -0.05, 0.45]
        ]
        .into_dyn();
        let weights =
            array![[0.3f32, -1.1, 0.8, 0.25, -0.6], [1.2, 0.4, -0.7, 0.9, 0.1]].into_dyn();
        for activation in ALL {
            let y = activation.apply(&x);
            let analytic = activation.backward(&x, &y, &weights);
            let objective = |x: &Tensor| -> f64 {
                let y = activation.apply(x);
                y.iter()
                    .zip(weights.iter())
                    .map(|(&a, &w)| a as f64 * w as f64)
                    .sum()
            };
            let h = 1e-3f32;
            for index in 0..x.len() {
                let mut plus = x.clone();
                let mut minus = x.clone();
                plus.as_slice_mut().unwrap()[index] += h;
                minus.as_slice_mut().unwrap()[index] -= h;
                let numeric = (objective(&plus) - objective(&minus)) / (2.0 * h as f64);
                let got = analytic.as_slice().unwrap()[index] as f64;
                assert!(
                    (numeric - got).abs() < 2e-3,
                    "{}: input {index}: analytic {got}, numeric {numeric}",
                    activation.name()
                );
            }
        }
    }

    #[test]
    fn relu_keeps_nan() {
        let x = array![f32::NAN, -1.0, 2.0].into_dyn();
        let y = Activation::Relu.apply(&x);
        assert!(y[0].is_nan(), "a NaN must reach the loss");
        assert_eq!(y[1], 0.0);
        assert_eq!(y[2], 2.0);
    }

    #[test]
    fn forward_hand_values() {
        let x = array![-2.0f32, 0.0, 3.0].into_dyn();
        assert_eq!(Activation::Relu.apply(&x), array![0.0, 0.0, 3.0].into_dyn());
        assert_eq!(
            Activation::LEAKY_RELU.apply(&x),
            array![-0.4, 0.0, 3.0].into_dyn()
        );
        assert!((Activation::ELU.apply(&x)[0] - (-2f32).exp_m1()).abs() < 1e-7);
        assert!((Activation::Gelu.apply(&x)[2] - 2.995_950_2).abs() < 1e-5);
        assert!((Activation::Softplus.apply(&x)[2] - 3.048_587_4).abs() < 1e-6);
        assert_eq!(Activation::Sigmoid.apply(&x)[1], 0.5);
    }

    #[test]
    fn sigmoid_and_softplus_extremes_are_finite() {
        assert_eq!(sigmoid(1e4), 1.0);
        assert_eq!(sigmoid(-1e4), 0.0);
        assert_eq!(softplus(1e4), 1e4);
        assert_eq!(softplus(-1e4), 0.0);
    }
}
