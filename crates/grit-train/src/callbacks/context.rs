use std::path::PathBuf;

use grit_tensor::Tensor;

use super::backup_and_restore::BackupRequests;
use super::{Console, RunInfo};
use crate::checkpoint::CallbackState;
use crate::model::Sequential;
use crate::{Result, TrainError};

/// A copy of every weight of a model, by its checkpoint name (`dense/kernel`, ...), in the
/// model's order.
pub type Weights = Vec<(String, Tensor)>;

/// The handle a callback gets on the running training: the learning rate, the weights, a
/// request to stop, the run's settings and the console. Callbacks never own the model.
pub struct Context<'a> {
    pub(crate) model: &'a mut Sequential,
    pub(crate) run: &'a RunInfo,
    pub(crate) stop_training: &'a mut bool,
    pub(crate) console: &'a mut Console,
    pub(crate) resume_epoch: &'a mut Option<usize>,
    pub(crate) backup: &'a mut BackupRequests,
}

impl Context<'_> {
    /// Returns the learning rate the next optimizer update will use.
    pub fn learning_rate(&self) -> f32 {
        self.model
            .optimizer_ref()
            .map(|o| o.learning_rate())
            .unwrap_or(0.0)
    }

    /// Sets the learning rate for the following updates.
    ///
    /// # Errors
    /// A [`TrainError::Optimizer`] error when the optimizer follows a schedule or the rate is
    /// negative or not finite.
    pub fn set_learning_rate(&mut self, rate: f32) -> Result<()> {
        match self.model.optimizer_mut() {
            Some(optimizer) => Ok(optimizer.set_learning_rate(rate)?),
            None => Err(TrainError::NotCompiled("set_learning_rate")),
        }
    }

    /// Returns the number of optimizer updates made so far.
    pub fn iterations(&self) -> u64 {
        self.model
            .optimizer_ref()
            .map(|o| o.iterations())
            .unwrap_or(0)
    }

    /// Returns a copy of every weight.
    pub fn weights(&self) -> Weights {
        self.model.get_weights()
    }

    /// Replaces the weights with a copy from [`Context::weights`].
    ///
    /// # Errors
    /// [`TrainError::ShapeMismatch`] or [`TrainError::InvalidArgument`] when a name or shape
    /// does not match the model.
    pub fn set_weights(&mut self, weights: &Weights) -> Result<()> {
        self.model.set_weights(weights)
    }

    /// Asks `fit` to stop: the current epoch ends after this batch (validation still runs
    /// and `on_epoch_end` is still called), or after this epoch when asked from an epoch hook.
    pub fn stop_training(&mut self) {
        *self.stop_training = true;
    }

    /// Returns whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        *self.stop_training
    }

    /// Returns the run's settings.
    pub fn run(&self) -> &RunInfo {
        self.run
    }

    /// Returns the model being trained, to read its layers, config or summary.
    pub fn model(&self) -> &Sequential {
        self.model
    }

    /// Returns the model for callbacks that must change more than the weights (restoring a
    /// full training state from a backup).
    pub fn model_mut(&mut self) -> &mut Sequential {
        self.model
    }

    /// Starts training at `epoch` instead of the `initial_epoch` argument; only effective
    /// from `on_train_begin` (a restored backup uses it).
    pub fn resume_at_epoch(&mut self, epoch: usize) {
        *self.resume_epoch = Some(epoch);
    }

    /// Prints a line to standard output without breaking the progress bar.
    pub fn println(&mut self, message: &str) {
        self.console.println(message);
    }

    pub(crate) fn console(&mut self) -> &mut Console {
        self.console
    }

    /// Asks `fit` to write a backup to `path` once the current hook has run on every
    /// callback. From `on_epoch_end` the backup holds the state after the epoch; from a
    /// training-batch hook it holds the state at the start of the epoch, which
    /// [`Context::keep_epoch_start_state`] must have asked `fit` to keep.
    pub(crate) fn request_backup(&mut self, path: PathBuf) {
        self.backup.requested = Some(path);
    }

    /// Makes `fit` keep the state at the start of each epoch for backups requested during the
    /// epoch; call from `on_train_begin`.
    pub(crate) fn keep_epoch_start_state(&mut self) {
        self.backup.keep_epoch_start = true;
    }

    /// Hands the callback states of a restored backup to `fit`, which loads them into the
    /// callbacks after every `on_train_begin` has run.
    pub(crate) fn restore_callback_states(&mut self, path: PathBuf, states: Vec<CallbackState>) {
        self.backup.restore = Some((path, states));
    }
}
