use std::path::PathBuf;

use thiserror::Error;

use crate::TrainError;

/// An error from a schedule comparison or from writing its report or charts.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CompareError {
    /// The comparison has no runs.
    #[error("no schedules to compare: add at least one ScheduleRun")]
    NoRuns,
    /// A run's name cannot name a run.
    #[error("invalid run name {name:?}: {reason}")]
    InvalidRunName {
        /// The rejected name.
        name: String,
        /// The reason for the rejection.
        reason: &'static str,
    },
    /// Two runs have the same name.
    #[error("two runs are named {0:?}: give each run its own name")]
    DuplicateName(String),
    /// A comparison setting is outside its valid range.
    #[error("invalid comparison setting {name} = {value}: expected {expected}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// A description of a valid value.
        expected: &'static str,
    },
    /// The model builder returned an error.
    #[error("the model builder failed for run {run:?}: {source}")]
    Build {
        /// The run whose learning rate the builder was given.
        run: String,
        /// The builder's error.
        source: TrainError,
    },
    /// The model builder returned a model without an optimizer.
    #[error(
        "the model builder returned an uncompiled model for run {run:?}: call `compile` with \
         the learning rate it receives before returning the model"
    )]
    NotCompiled {
        /// The run.
        run: String,
    },
    /// A run's model has other weights than the model built first, so the initial weights
    /// cannot be copied into it.
    #[error(
        "run {run:?}: the builder returned a model whose weights differ in name or shape from \
         the first model it built; the builder must build the same architecture every time: \
         {source}"
    )]
    WeightsMismatch {
        /// The run.
        run: String,
        /// The error of `set_weights`.
        source: TrainError,
    },
    /// Training a run failed.
    #[error("run {run:?} failed: {source}")]
    Run {
        /// The run.
        run: String,
        /// The error of `fit` or of a callback.
        source: TrainError,
    },
    /// A run panicked, in the builder, a callback or `fit`.
    #[error("run {run:?} panicked: {message}")]
    Panicked {
        /// The run.
        run: String,
        /// The panic message.
        message: String,
    },
    /// A report or chart file could not be written.
    #[error("{action} {path}: {source}")]
    Io {
        /// The failed action (`"failed to write"`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The chart library failed to draw a chart.
    #[error("failed to draw the chart {path}: {message}")]
    Chart {
        /// The chart's file.
        path: PathBuf,
        /// The chart library's message.
        message: String,
    },
}
