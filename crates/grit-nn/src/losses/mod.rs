//! Loss functions with their gradients.
//!
//! Every loss returns the mean over the batch of a per-sample loss, as Keras's default
//! reduction does, and the gradient of that mean with respect to the predictions.
//!
//! Probabilities are clipped to `[1e-7, 1 − 1e-7]` before a logarithm, as Keras does, so a
//! probability of exactly 0 or 1 gives a finite loss and a finite (zero) gradient through the
//! clipped value. From logits, the losses use log-sum-exp and stay finite for any finite logit.
//! When a model's last layer ends in softmax (or sigmoid) and the loss is a categorical (or
//! binary) cross-entropy on probabilities, training calls [`Loss::logits_value_and_grad`]
//! on the layer's logits instead: the fused gradient `p − y` is exact and stable.

use grit_tensor::activation::sigmoid;
use grit_tensor::{Activation, Tensor, softmax_rows_with_shifts};
use ndarray::{Array2, ArrayView2, CowArray, Ix2, IxDyn};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Keras's clipping constant for probabilities.
pub const EPSILON: f32 = 1e-7;

/// A loss function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "name")]
pub enum Loss {
    /// Mean over the last axis of `(prediction − target)²`. Targets have the predictions'
    /// shape.
    MeanSquaredError,
    /// Mean over the last axis of `|prediction − target|`.
    MeanAbsoluteError,
    /// `−(t·ln p + (1 − t)·ln(1 − p))`, averaged over the last axis. Targets in [0, 1] have
    /// the predictions' shape.
    BinaryCrossentropy {
        /// Whether predictions are logits rather than probabilities.
        from_logits: bool,
    },
    /// `−Σ t·ln p` over the last axis, for one-hot (or soft) targets of the predictions'
    /// shape. Probabilities are divided by their sum first, as Keras does.
    CategoricalCrossentropy {
        /// Whether predictions are logits rather than probabilities.
        from_logits: bool,
    },
    /// `−ln p[label]` for integer class labels, one per sample (shape `(batch,)` or
    /// `(batch, 1)`).
    SparseCategoricalCrossentropy {
        /// Whether predictions are logits rather than probabilities.
        from_logits: bool,
    },
}

/// The form of target a loss expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Targets have the same shape as the predictions.
    SameShape,
    /// One integer class index per sample.
    ClassIndex,
}

impl Loss {
    /// Sparse categorical cross-entropy on probabilities (a softmax output).
    pub const SPARSE_CATEGORICAL_CROSSENTROPY: Loss =
        Loss::SparseCategoricalCrossentropy { from_logits: false };
    /// Categorical cross-entropy on probabilities (a softmax output).
    pub const CATEGORICAL_CROSSENTROPY: Loss = Loss::CategoricalCrossentropy { from_logits: false };
    /// Binary cross-entropy on probabilities (a sigmoid output).
    pub const BINARY_CROSSENTROPY: Loss = Loss::BinaryCrossentropy { from_logits: false };

    /// Returns Keras's name for the loss.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
        }
    }

    /// Returns how the loss expects its targets.
    pub fn target_kind(&self) -> TargetKind {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => TargetKind::ClassIndex,
            _ => TargetKind::SameShape,
        }
    }

    /// Returns whether the loss computes from the logits when the model's last activation is
    /// `activation`.
    pub fn fuses_with(&self, activation: Activation) -> bool {
        matches!(
            (self, activation),
            (
                Loss::CategoricalCrossentropy { from_logits: false },
                Activation::Softmax
            ) | (
                Loss::SparseCategoricalCrossentropy { from_logits: false },
                Activation::Softmax
            ) | (
                Loss::BinaryCrossentropy { from_logits: false },
                Activation::Sigmoid
            )
        )
    }

    /// Returns the mean loss over the batch.
    ///
    /// # Panics
    /// Panics when the targets do not fit the predictions (see [`Loss::target_kind`]).
    pub fn value(&self, y_pred: &Tensor, y_true: &Tensor) -> f32 {
        self.value_and_grad(y_pred, y_true).0
    }

    /// Returns the mean loss over the batch and its gradient with respect to `y_pred`.
    ///
    /// # Panics
    /// Panics when the targets do not fit the predictions (see [`Loss::target_kind`]).
    pub fn value_and_grad(&self, y_pred: &Tensor, y_true: &Tensor) -> (f32, Tensor) {
        let pred = as_matrix(y_pred);
        let pred = pred.view();
        let (value, grad) = match *self {
            Loss::MeanSquaredError => mean_squared_error(&pred, &as_matrix(y_true).view()),
            Loss::MeanAbsoluteError => mean_absolute_error(&pred, &as_matrix(y_true).view()),
            Loss::BinaryCrossentropy { from_logits: true } => {
                binary_from_logits(&pred, &as_matrix(y_true).view())
            }
            Loss::BinaryCrossentropy { from_logits: false } => {
                binary_from_probabilities(&pred, &as_matrix(y_true).view())
            }
            Loss::CategoricalCrossentropy { from_logits: true } => {
                categorical_from_logits(&pred, Targets::Dense(as_matrix(y_true).into_owned()))
            }
            Loss::CategoricalCrossentropy { from_logits: false } => categorical_from_probabilities(
                &pred,
                Targets::Dense(as_matrix(y_true).into_owned()),
            ),
            Loss::SparseCategoricalCrossentropy { from_logits: true } => {
                categorical_from_logits(&pred, Targets::Labels(labels(y_true, pred.nrows())))
            }
            Loss::SparseCategoricalCrossentropy { from_logits: false } => {
                categorical_from_probabilities(&pred, Targets::Labels(labels(y_true, pred.nrows())))
            }
        };
        // Column-major predictions (a transposed tensor) give a column-major gradient,
        // which the row-major reshape below rejects.
        let grad = if grad.is_standard_layout() {
            grad
        } else {
            grad.as_standard_layout().into_owned()
        };
        (
            value,
            grad.into_shape_with_order(IxDyn(y_pred.shape()))
                .expect("gradient has the prediction's size"),
        )
    }

    /// Returns the mean loss and its gradient with respect to the logits of the final
    /// activation, for a loss that [`Loss::fuses_with`] it. The loss value equals the
    /// from-logits form of the same loss.
    ///
    /// # Panics
    /// Panics when the targets do not fit the predictions.
    pub fn logits_value_and_grad(&self, logits: &Tensor, y_true: &Tensor) -> (f32, Tensor) {
        let from_logits = match *self {
            Loss::BinaryCrossentropy { .. } => Loss::BinaryCrossentropy { from_logits: true },
            Loss::CategoricalCrossentropy { .. } => {
                Loss::CategoricalCrossentropy { from_logits: true }
            }
            Loss::SparseCategoricalCrossentropy { .. } => {
                Loss::SparseCategoricalCrossentropy { from_logits: true }
            }
            other => other,
        };
        from_logits.value_and_grad(logits, y_true)
    }
}

/// Views a tensor as (batch, values per sample), copying only when it is not in standard
/// layout.
fn as_matrix(tensor: &Tensor) -> CowArray<'_, f32, Ix2> {
    let batch = tensor.shape().first().copied().unwrap_or(1);
    let width = tensor.len().checked_div(batch).unwrap_or(0);
    tensor
        .to_shape((batch, width))
        .expect("any tensor reshapes to (batch, values)")
}

/// Reads one integer label per sample.
#[track_caller]
fn labels(y_true: &Tensor, batch: usize) -> Vec<usize> {
    assert_eq!(
        y_true.len(),
        batch,
        "sparse labels: {} values for a batch of {batch}",
        y_true.len()
    );
    y_true.iter().map(|&v| v as usize).collect()
}

enum Targets {
    Dense(Array2<f32>),
    Labels(Vec<usize>),
}

#[track_caller]
fn check_same_shape(pred: &ArrayView2<f32>, target: &ArrayView2<f32>) {
    assert_eq!(
        pred.shape(),
        target.shape(),
        "loss: targets {:?} do not match predictions {:?}",
        target.shape(),
        pred.shape()
    );
}

fn mean_squared_error(pred: &ArrayView2<f32>, target: &ArrayView2<f32>) -> (f32, Array2<f32>) {
    check_same_shape(pred, target);
    let (batch, width) = pred.dim();
    let count = (batch * width).max(1) as f32;
    let diff = pred - target;
    let value = diff.iter().map(|&d| (d as f64) * (d as f64)).sum::<f64>() / count as f64;
    (value as f32, diff.mapv(|d| 2.0 * d / count))
}

fn mean_absolute_error(pred: &ArrayView2<f32>, target: &ArrayView2<f32>) -> (f32, Array2<f32>) {
    check_same_shape(pred, target);
    let (batch, width) = pred.dim();
    let count = (batch * width).max(1) as f32;
    let diff = pred - target;
    let value = diff.iter().map(|&d| d.abs() as f64).sum::<f64>() / count as f64;
    (
        value as f32,
        diff.mapv(|d| d.signum() * (d != 0.0) as u8 as f32 / count),
    )
}

fn binary_from_logits(logits: &ArrayView2<f32>, target: &ArrayView2<f32>) -> (f32, Array2<f32>) {
    check_same_shape(logits, target);
    let count = logits.len().max(1) as f32;
    let mut total = 0.0f64;
    let mut grad = Array2::zeros(logits.dim());
    ndarray::Zip::from(&mut grad)
        .and(logits)
        .and(target)
        .for_each(|g, &x, &t| {
            // max(x, 0) − x·t + ln(1 + e^−|x|) equals −(t ln σ(x) + (1 − t) ln(1 − σ(x))).
            total += (x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()) as f64;
            *g = (sigmoid(x) - t) / count;
        });
    ((total / count as f64) as f32, grad)
}

fn binary_from_probabilities(
    pred: &ArrayView2<f32>,
    target: &ArrayView2<f32>,
) -> (f32, Array2<f32>) {
    check_same_shape(pred, target);
    let count = pred.len().max(1) as f32;
    let mut total = 0.0f64;
    let mut grad = Array2::zeros(pred.dim());
    ndarray::Zip::from(&mut grad)
        .and(pred)
        .and(target)
        .for_each(|g, &p, &t| {
            let clipped = p.clamp(EPSILON, 1.0 - EPSILON);
            total -=
                (t as f64) * (clipped as f64).ln() + (1.0 - t as f64) * (1.0 - clipped as f64).ln();
            *g = if p > EPSILON && p < 1.0 - EPSILON {
                (-t / clipped + (1.0 - t) / (1.0 - clipped)) / count
            } else {
                0.0
            };
        });
    ((total / count as f64) as f32, grad)
}

fn categorical_from_logits(logits: &ArrayView2<f32>, targets: Targets) -> (f32, Array2<f32>) {
    let batch = logits.nrows();
    let scale = 1.0 / batch.max(1) as f32;
    // The gradient starts as the softmax. A logit minus its row's shift is its log-softmax.
    let mut grad = logits.to_owned();
    let shifts = softmax_rows_with_shifts(&mut grad.view_mut());
    let mut total = 0.0f64;
    match targets {
        Targets::Labels(labels) => {
            for (row, &label) in labels.iter().enumerate() {
                assert!(
                    label < logits.ncols(),
                    "sparse label {label} out of range for {} classes",
                    logits.ncols()
                );
                total -= (logits[[row, label]] - shifts[row]) as f64;
                grad[[row, label]] -= 1.0;
            }
        }
        Targets::Dense(target) => {
            check_same_shape(logits, &target.view());
            for (((z, shift), t), g) in logits
                .rows()
                .into_iter()
                .zip(&shifts)
                .zip(target.rows())
                .zip(grad.rows_mut())
            {
                let target_sum: f32 = t.sum();
                total -= z
                    .iter()
                    .zip(t.iter())
                    .map(|(&z, &t)| ((z - shift) * t) as f64)
                    .sum::<f64>();
                // d/dz of −Σ t·log_softmax(z) is p·Σt − t.
                ndarray::Zip::from(g)
                    .and(&t)
                    .for_each(|g, &t| *g = *g * target_sum - t);
            }
        }
    }
    grad *= scale;
    ((total / batch.max(1) as f64) as f32, grad)
}

fn categorical_from_probabilities(pred: &ArrayView2<f32>, targets: Targets) -> (f32, Array2<f32>) {
    let (batch, classes) = pred.dim();
    let scale = 1.0 / batch.max(1) as f32;
    let mut grad = Array2::zeros(pred.dim());
    let mut total = 0.0f64;
    let target = match targets {
        Targets::Dense(target) => {
            check_same_shape(pred, &target.view());
            target
        }
        Targets::Labels(labels) => {
            let mut one_hot = Array2::zeros((batch, classes));
            for (row, &label) in labels.iter().enumerate() {
                assert!(
                    label < classes,
                    "sparse label {label} out of range for {classes} classes"
                );
                one_hot[[row, label]] = 1.0;
            }
            one_hot
        }
    };
    for ((p, t), mut g) in pred
        .rows()
        .into_iter()
        .zip(target.rows())
        .zip(grad.rows_mut())
    {
        // q = p / Σp, clipped; L = −Σ t·ln q. For unclipped j: ∂L/∂p_k = −t_k/p_k + T/S,
        // with S = Σp and T the target mass on unclipped classes.
        let sum = p.sum().max(f32::MIN_POSITIVE);
        let mut unclipped_target = 0.0f32;
        for (k, (&pk, &tk)) in p.iter().zip(t.iter()).enumerate() {
            let q = pk / sum;
            let clipped = q.clamp(EPSILON, 1.0 - EPSILON);
            total -= (tk as f64) * (clipped as f64).ln();
            if q > EPSILON && q < 1.0 - EPSILON {
                unclipped_target += tk;
                g[k] = -tk / pk;
            }
        }
        g.mapv_inplace(|v| (v + unclipped_target / sum) * scale);
    }
    ((total / batch.max(1) as f64) as f32, grad)
}
