//! The [`Callback`] trait, the handle callbacks get on training, and the built-in callbacks.
//!
//! Hooks run in Keras's order (see [`crate::Sequential::fit`]). Each hook call gets one
//! mutable [`Logs`] map, shared by every callback of that call in list order, so a key that
//! one callback adds (such as `learning_rate`) reaches the callbacks after it, and the
//! [`History`] and progress display that `fit` appends last.

use std::collections::BTreeMap;

use grit_nn::Direction;

use crate::Result;

mod backup_and_restore;
mod context;
mod csv_logger;
mod early_stopping;
mod filepath;
mod history;
mod lambda;
mod learning_rate_scheduler;
mod model_checkpoint;
mod monitor;
mod progress;
mod reduce_lr_on_plateau;
mod save_freq;
mod terminate_on_nan;

pub use backup_and_restore::{BACKUP_FILE_NAME, BackupAndRestore};
pub(crate) use backup_and_restore::{BackupRequests, check_callback_states};
pub use context::{Context, Weights};
pub use csv_logger::CsvLogger;
pub use early_stopping::EarlyStopping;
pub use history::History;
pub use lambda::LambdaCallback;
pub use learning_rate_scheduler::LearningRateScheduler;
pub use model_checkpoint::ModelCheckpoint;
pub(crate) use monitor::weights_are_finite;
pub use monitor::{Mode, Monitor};
pub(crate) use progress::{Console, ProgressLogger};
pub use reduce_lr_on_plateau::ReduceLROnPlateau;
pub use save_freq::SaveFrequency;
pub use terminate_on_nan::TerminateOnNaN;

/// Values logged at a hook: loss, metrics and `val_*` values by key, in sorted key order.
pub type Logs = BTreeMap<String, f64>;

/// The settings of a run, as callbacks see them before the first batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The `epochs` argument: the 0-based index one past the last epoch.
    pub epochs: usize,
    /// The first epoch index to run.
    pub initial_epoch: usize,
    /// Training batches per epoch.
    pub steps_per_epoch: usize,
    /// 0 silent, 1 progress bar, 2 one line per epoch.
    pub verbose: u8,
    /// Whether validation runs in this `fit`.
    pub has_validation: bool,
    /// Keys every epoch's logs will contain, `val_*` included when validation runs, and the
    /// keys callbacks declared with [`Callback::provided_keys`].
    pub epoch_keys: Vec<String>,
    /// Keys of the running values logged after each training batch.
    pub batch_keys: Vec<String>,
    /// Direction of improvement of every key that has one (`loss`, metrics, their `val_*`).
    pub directions: BTreeMap<String, Direction>,
}

impl RunInfo {
    /// Returns an error naming `key` and the available keys unless epoch logs will hold it.
    ///
    /// # Errors
    /// [`crate::TrainError::UnknownMonitor`].
    pub fn require_epoch_key(&self, callback: &str, key: &str) -> Result<()> {
        if self.epoch_keys.iter().any(|k| k == key) {
            Ok(())
        } else {
            Err(crate::TrainError::UnknownMonitor {
                callback: callback.to_string(),
                key: key.to_string(),
                available: self.epoch_keys.clone(),
            })
        }
    }
}

/// A set of hooks that `fit` calls while it runs.
///
/// Every hook has an empty default, so a callback implements only what it needs. A hook that
/// returns an error ends `fit` with that error at once; `on_train_end` then does not run.
#[allow(unused_variables)]
pub trait Callback {
    /// Returns the callback's name for messages and errors.
    fn name(&self) -> &str {
        "callback"
    }

    /// Returns keys this callback adds to every epoch's logs (`learning_rate`), so callbacks
    /// later in the list may monitor them.
    fn provided_keys(&self) -> Vec<String> {
        Vec::new()
    }

    /// Checks the callback's settings against the run before any hook runs, for example that
    /// a monitored key will be logged.
    ///
    /// # Errors
    /// An error that names the setting and what this run offers.
    fn validate(&mut self, run: &RunInfo) -> Result<()> {
        Ok(())
    }

    /// Returns what resuming this callback needs (best value so far, wait counters) as JSON;
    /// a full checkpoint stores it. `None` for callbacks without such state.
    fn state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Restores a value returned by [`Callback::state`]. When training resumes from a
    /// backup, `fit` calls this after every `on_train_begin` has run.
    ///
    /// # Errors
    /// An error when the value is not a state of this callback.
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// Called once before the first epoch.
    fn on_train_begin(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        Ok(())
    }

    /// Called once after the last epoch with the last epoch's logs, unless an error ended
    /// training.
    fn on_train_end(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        Ok(())
    }

    /// Called before each epoch with its 0-based absolute index.
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        Ok(())
    }

    /// Called after each epoch, validation included, with the epoch's logs.
    fn on_epoch_end(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        Ok(())
    }

    /// Called before each training batch with its 0-based index within the epoch.
    fn on_train_batch_begin(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        Ok(())
    }

    /// Called after each training batch with the running means since the epoch began.
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        Ok(())
    }

    /// Called before validation or evaluation.
    fn on_test_begin(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        Ok(())
    }

    /// Called after validation or evaluation with its results (keys without `val_`).
    fn on_test_end(&mut self, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        Ok(())
    }

    /// Called before each validation or evaluation batch.
    fn on_test_batch_begin(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        Ok(())
    }

    /// Called after each validation or evaluation batch with running means.
    fn on_test_batch_end(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        Ok(())
    }
}
