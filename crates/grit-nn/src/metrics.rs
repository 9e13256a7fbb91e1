//! Metrics reported during training and evaluation.
//!
//! A metric is summed over the samples of each batch; the training loop divides the running
//! sums by the sample count, so every reported value is a sample-weighted mean.

use grit_tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Whether larger or smaller values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Smaller is better (losses, errors).
    Min,
    /// Larger is better (accuracies).
    Max,
}

/// A metric as the user names it when compiling a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Keras's `"accuracy"`: binary for one output column, sparse categorical for one label
    /// per sample, categorical for one-hot targets. Reported as `accuracy`.
    Accuracy,
    /// The fraction of outputs on the same side of 0.5 as their 0/1 targets.
    BinaryAccuracy,
    /// The fraction of samples whose largest output matches the one-hot target's.
    CategoricalAccuracy,
    /// The fraction of samples whose largest output is at the integer label.
    SparseCategoricalAccuracy,
    /// Mean squared error.
    MeanSquaredError,
    /// Mean absolute error.
    MeanAbsoluteError,
}

/// A metric with its computation fixed for one model and its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedMetric {
    /// Binary accuracy at threshold 0.5.
    BinaryAccuracy,
    /// Argmax of outputs equals argmax of one-hot targets.
    CategoricalAccuracy,
    /// Argmax of outputs equals the integer label.
    SparseCategoricalAccuracy,
    /// Mean squared error per sample.
    MeanSquaredError,
    /// Mean absolute error per sample.
    MeanAbsoluteError,
}

impl Metric {
    /// Returns the key the metric has in logs and History (`"accuracy"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::MeanSquaredError => "mean_squared_error",
            Metric::MeanAbsoluteError => "mean_absolute_error",
        }
    }

    /// Returns the direction of improvement.
    pub fn direction(&self) -> Direction {
        match self {
            Metric::MeanSquaredError | Metric::MeanAbsoluteError => Direction::Min,
            _ => Direction::Max,
        }
    }

    /// Fixes the computation for a model with `output_width` outputs per sample and targets
    /// of `target_width` values per sample.
    pub fn resolve(&self, output_width: usize, target_width: usize) -> ResolvedMetric {
        match self {
            Metric::Accuracy if output_width == 1 => ResolvedMetric::BinaryAccuracy,
            Metric::Accuracy if target_width == 1 => ResolvedMetric::SparseCategoricalAccuracy,
            Metric::Accuracy => ResolvedMetric::CategoricalAccuracy,
            Metric::BinaryAccuracy => ResolvedMetric::BinaryAccuracy,
            Metric::CategoricalAccuracy => ResolvedMetric::CategoricalAccuracy,
            Metric::SparseCategoricalAccuracy => ResolvedMetric::SparseCategoricalAccuracy,
            Metric::MeanSquaredError => ResolvedMetric::MeanSquaredError,
            Metric::MeanAbsoluteError => ResolvedMetric::MeanAbsoluteError,
        }
    }
}

impl ResolvedMetric {
    /// Returns the sum over the batch of the per-sample metric values.
    ///
    /// # Panics
    /// Panics when the targets' size does not fit the predictions.
    pub fn batch_sum(&self, y_pred: &Tensor, y_true: &Tensor) -> f64 {
        let batch = y_pred.shape()[0];
        if batch == 0 {
            return 0.0;
        }
        let width = y_pred.len() / batch;
        let pred = y_pred.as_standard_layout();
        let pred = pred.as_slice().expect("standard layout");
        let target = y_true.as_standard_layout();
        let target = target.as_slice().expect("standard layout");
        let rows = pred.chunks_exact(width);
        match self {
            ResolvedMetric::BinaryAccuracy => {
                assert_eq!(
                    pred.len(),
                    target.len(),
                    "binary accuracy: targets do not match outputs"
                );
                let hits = pred
                    .iter()
                    .zip(target)
                    .filter(|&(&p, &t)| (p > 0.5) == (t > 0.5))
                    .count();
                hits as f64 / width as f64
            }
            ResolvedMetric::SparseCategoricalAccuracy => {
                assert_eq!(
                    target.len(),
                    batch,
                    "sparse accuracy: one label per sample expected"
                );
                rows.zip(target)
                    .filter(|&(row, &t)| argmax(row) == t as usize)
                    .count() as f64
            }
            ResolvedMetric::CategoricalAccuracy => {
                assert_eq!(
                    pred.len(),
                    target.len(),
                    "categorical accuracy: targets do not match outputs"
                );
                rows.zip(target.chunks_exact(width))
                    .filter(|(row, t)| argmax(row) == argmax(t))
                    .count() as f64
            }
            ResolvedMetric::MeanSquaredError | ResolvedMetric::MeanAbsoluteError => {
                assert_eq!(
                    pred.len(),
                    target.len(),
                    "error metric: targets do not match outputs"
                );
                let squared = *self == ResolvedMetric::MeanSquaredError;
                let total: f64 = pred
                    .iter()
                    .zip(target)
                    .map(|(&p, &t)| {
                        let d = (p - t) as f64;
                        if squared { d * d } else { d.abs() }
                    })
                    .sum();
                total / width as f64
            }
        }
    }
}

/// Index of the largest value; the first wins a tie.
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn accuracy_resolves_like_keras() {
        assert_eq!(
            Metric::Accuracy.resolve(1, 1),
            ResolvedMetric::BinaryAccuracy
        );
        assert_eq!(
            Metric::Accuracy.resolve(10, 1),
            ResolvedMetric::SparseCategoricalAccuracy
        );
        assert_eq!(
            Metric::Accuracy.resolve(10, 10),
            ResolvedMetric::CategoricalAccuracy
        );
    }

    #[test]
    fn batch_sums_by_hand() {
        let pred = array![[0.1f32, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]].into_dyn();
        let labels = array![1.0f32, 1.0, 2.0].into_dyn();
        assert_eq!(
            ResolvedMetric::SparseCategoricalAccuracy.batch_sum(&pred, &labels),
            2.0
        );
        let one_hot = array![[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]].into_dyn();
        assert_eq!(
            ResolvedMetric::CategoricalAccuracy.batch_sum(&pred, &one_hot),
            2.0
        );
        let binary = array![[0.2f32], [0.7], [0.5]].into_dyn();
        let targets = array![[0.0f32], [1.0], [1.0]].into_dyn();
        assert_eq!(
            ResolvedMetric::BinaryAccuracy.batch_sum(&binary, &targets),
            2.0
        );
        let mse = ResolvedMetric::MeanSquaredError.batch_sum(
            &array![[1.0f32, 3.0]].into_dyn(),
            &array![[0.0f32, 0.0]].into_dyn(),
        );
        assert_eq!(mse, 5.0);
    }

    #[test]
    fn directions() {
        assert_eq!(Metric::Accuracy.direction(), Direction::Max);
        assert_eq!(Metric::MeanSquaredError.direction(), Direction::Min);
    }
}
