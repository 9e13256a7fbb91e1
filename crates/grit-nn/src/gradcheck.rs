//! Finite-difference checks of hand-written gradients.
//!
//! The objective is `L = Σ wᵢ·outputᵢ` with fixed random weights `w`, so the gradient of `L`
//! with respect to the output is `w`. Each input value and each trainable parameter is moved
//! by `±h` (h = 1e-3) and the central difference of `L`, summed in f64 over the f32 forward
//! pass, is compared with the analytic gradient. A value passes when
//! `|analytic − numeric| ≤ tolerance · max(1, |analytic|, |numeric|)`.

use grit_tensor::{Rng, Tensor};
use ndarray::IxDyn;

use crate::{Layer, Loss};

const STEP: f32 = 1e-3;
const SEED: u64 = 1234;

fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform(-1.0, 1.0))
}

fn objective(output: &Tensor, weights: &Tensor) -> f64 {
    output
        .iter()
        .zip(weights.iter())
        .map(|(&a, &w)| a as f64 * w as f64)
        .sum()
}

fn assert_close(what: &str, analytic: f32, numeric: f64, tolerance: f64) {
    let analytic = analytic as f64;
    let scale = 1.0f64.max(analytic.abs()).max(numeric.abs());
    assert!(
        (analytic - numeric).abs() <= tolerance * scale,
        "{what}: analytic {analytic}, numeric {numeric}, tolerance {tolerance}"
    );
}

/// Builds `layer` for a per-sample `input_shape`, then checks its input gradient and every
/// parameter gradient on a batch of `batch` random samples in [-1, 1).
///
/// Randomness inside the layer (dropout) is drawn from a generator reset to the same seed
/// before every forward pass, so all passes see the same mask.
///
/// # Panics
/// Panics, naming the value, when a gradient is off by more than `tolerance`.
pub fn check_layer(mut layer: Box<dyn Layer>, input_shape: &[usize], batch: usize, tolerance: f64) {
    let mut rng = Rng::new(SEED);
    let output_shape = layer
        .build(input_shape, &mut rng)
        .expect("gradient check: layer builds");
    let mut shape = vec![batch];
    shape.extend_from_slice(input_shape);
    let input = random_tensor(&shape, &mut rng);
    let mut out_shape = vec![batch];
    out_shape.extend_from_slice(&output_shape);
    let weights = random_tensor(&out_shape, &mut rng);
    let name = layer.class_name();

    let output = layer.forward(&input, true, &mut Rng::new(SEED));
    assert_eq!(output.shape(), out_shape.as_slice(), "{name}: output shape");
    let grad_input = layer.backward(&weights);
    let param_grads: Vec<Tensor> = layer
        .trainable_params()
        .iter()
        .map(|p| p.grad.clone())
        .collect();

    let evaluate = |layer: &mut Box<dyn Layer>, x: &Tensor| -> f64 {
        objective(&layer.forward(x, true, &mut Rng::new(SEED)), &weights)
    };
    for index in 0..input.len() {
        let mut plus = input.clone();
        let mut minus = input.clone();
        plus.as_slice_mut().expect("contiguous")[index] += STEP;
        minus.as_slice_mut().expect("contiguous")[index] -= STEP;
        let numeric =
            (evaluate(&mut layer, &plus) - evaluate(&mut layer, &minus)) / (2.0 * STEP as f64);
        let analytic = grad_input.as_slice().expect("contiguous")[index];
        assert_close(
            &format!("{name}: input gradient {index}"),
            analytic,
            numeric,
            tolerance,
        );
    }
    for (param, grad) in param_grads.iter().enumerate() {
        for index in 0..grad.len() {
            let original = param_value(&mut layer, param, index);
            set_param_value(&mut layer, param, index, original + STEP);
            let plus = evaluate(&mut layer, &input);
            set_param_value(&mut layer, param, index, original - STEP);
            let minus = evaluate(&mut layer, &input);
            set_param_value(&mut layer, param, index, original);
            let numeric = (plus - minus) / (2.0 * STEP as f64);
            let analytic = grad.iter().nth(index).copied().expect("index in range");
            let what = format!("{name}: parameter {param} value {index}");
            assert_close(&what, analytic, numeric, tolerance);
        }
    }
}

fn param_value(layer: &mut Box<dyn Layer>, param: usize, index: usize) -> f32 {
    let params = layer.trainable_params();
    params[param]
        .value
        .iter()
        .nth(index)
        .copied()
        .expect("index in range")
}

fn set_param_value(layer: &mut Box<dyn Layer>, param: usize, index: usize, value: f32) {
    let mut params = layer.trainable_params();
    *params[param]
        .value
        .iter_mut()
        .nth(index)
        .expect("index in range") = value;
}

/// Checks the gradient that `loss` returns for `y_pred` against central differences of its
/// value, with the same tolerance rule as [`check_layer`].
///
/// # Panics
/// Panics, naming the value, when a gradient is off by more than `tolerance`.
pub fn check_loss(loss: Loss, y_pred: &Tensor, y_true: &Tensor, tolerance: f64) {
    let (_, grad) = loss.value_and_grad(y_pred, y_true);
    for index in 0..y_pred.len() {
        let mut plus = y_pred.clone();
        let mut minus = y_pred.clone();
        plus.as_slice_mut().expect("contiguous")[index] += STEP;
        minus.as_slice_mut().expect("contiguous")[index] -= STEP;
        let numeric = (loss.value(&plus, y_true) as f64 - loss.value(&minus, y_true) as f64)
            / (2.0 * STEP as f64);
        let analytic = grad.as_slice().expect("contiguous")[index];
        assert_close(
            &format!("{loss:?}: prediction {index}"),
            analytic,
            numeric,
            tolerance,
        );
    }
}
