use std::path::PathBuf;

use grit_nn::NnError;
use grit_optim::OptimError;
use thiserror::Error;

/// An error from building, compiling, training, evaluating or saving a model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrainError {
    /// `fit`, `evaluate` or `predict` was called before `compile`.
    #[error("the model is not compiled: call `compile(optimizer, loss, metrics)` before `{0}`")]
    NotCompiled(&'static str),
    /// A layer or loss setting is invalid, or the layers do not fit together.
    #[error(transparent)]
    Layer(#[from] NnError),
    /// An optimizer or schedule setting is invalid.
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    /// An argument is outside its valid range.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// A description of the valid values.
        expected: String,
    },
    /// Inputs or targets do not have the shape the model needs.
    #[error("{what} have per-sample shape {actual:?}, but the model expects {expected:?}")]
    ShapeMismatch {
        /// The data concerned (`"inputs"`, `"targets"`, `"validation inputs"`, ...).
        what: &'static str,
        /// The per-sample shape given.
        actual: Vec<usize>,
        /// The per-sample shape expected.
        expected: Vec<usize>,
    },
    /// Inputs and targets have different numbers of samples.
    #[error("{what}: {inputs} input samples but {targets} target samples; both must be equal")]
    SampleCountMismatch {
        /// Which data.
        what: &'static str,
        /// Number of input samples.
        inputs: usize,
        /// Number of target samples.
        targets: usize,
    },
    /// A data set has no samples.
    #[error("{0} contain no samples")]
    EmptyData(&'static str),
    /// A target is not a valid class label.
    #[error(
        "{what}: sample {index} has label {label}, but the model has {classes} classes \
         (expected an integer in 0..{classes})"
    )]
    InvalidLabel {
        /// Which data.
        what: &'static str,
        /// Index of the sample.
        index: usize,
        /// The label found.
        label: f32,
        /// Number of classes of the model's output.
        classes: usize,
    },
    /// A callback monitors a key that no log of this run will contain.
    #[error(
        "{callback} monitors `{key}`, which this run never logs; available keys: {}",
        available.join(", ")
    )]
    UnknownMonitor {
        /// The callback.
        callback: String,
        /// The key it monitors.
        key: String,
        /// The keys this run will log.
        available: Vec<String>,
    },
    /// A callback's setting is invalid.
    #[error("invalid {callback} setting: {message}")]
    InvalidCallback {
        /// The callback.
        callback: &'static str,
        /// The problem and how to fix it.
        message: String,
    },
    /// Training produced a non-finite loss and the run was asked to fail on it.
    #[error("NaN or Inf loss encountered at batch {batch} of epoch {epoch}: the loss is {loss}")]
    NonFiniteLoss {
        /// 0-based epoch index.
        epoch: usize,
        /// 0-based batch index within the epoch.
        batch: usize,
        /// The running loss.
        loss: f64,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// The failed action (`"failed to write"`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A callback failed for a reason of its own.
    #[error("{callback}: {message}")]
    Callback {
        /// The callback.
        callback: String,
        /// The failure.
        message: String,
    },
    /// A checkpoint file is truncated or corrupt, of another format or version, or lacks what
    /// the caller asked for.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// The problem and how to fix it.
        message: String,
    },
    /// A checkpoint tensor has another shape than the model's weight of the same name.
    #[error(
        "checkpoint {path} does not fit the model: `{name}` has shape {found:?} in the file, \
         but the model expects {expected:?}"
    )]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name (`dense_1/kernel`, `optimizer/m/0`, ...).
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
}
