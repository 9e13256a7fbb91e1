use serde_json::json;

use super::{Callback, Context, Logs, Mode, Monitor, RunInfo, Weights, weights_are_finite};
use crate::{Result, TrainError};

/// Stops training when a monitored value has stopped improving (Keras's `EarlyStopping`).
///
/// Each monitored epoch that is not an improvement adds one to a wait counter, and training
/// stops on the epoch where it reaches `patience` (a patience of 0 acts like 1). An
/// improvement resets the counter, unless a `baseline` is set and not yet beaten. Epochs
/// before `start_from_epoch` are ignored. With `restore_best_weights`, the weights of the
/// best epoch come back at the end of training, whichever callback stopped it.
///
/// Beyond Keras: the monitored key is checked before the first batch, and with
/// `check_finite` (on by default) a NaN or infinite monitored value stops training at once.
/// A non-finite value never becomes the best, and neither does an epoch that ends with a NaN
/// or infinite weight.
///
/// ```
/// use grit_train::callbacks::EarlyStopping;
///
/// let early_stopping = EarlyStopping::new("val_loss").patience(3).restore_best_weights(true);
/// assert_eq!(early_stopping.stopped_epoch(), 0);
/// ```
pub struct EarlyStopping {
    monitor: Monitor,
    patience: usize,
    baseline: Option<f64>,
    restore_best_weights: bool,
    start_from_epoch: usize,
    verbose: u8,
    check_finite: bool,
    wait: usize,
    stopped_epoch: usize,
    best: Option<f64>,
    best_epoch: usize,
    best_weights: Option<Weights>,
    mode: Mode,
    min_delta: f64,
}

impl EarlyStopping {
    /// Monitors `key` (Keras's default is `val_loss`) with patience 0, min_delta 0 and mode
    /// [`Mode::Auto`].
    pub fn new(key: impl Into<String>) -> Self {
        EarlyStopping {
            monitor: Monitor::new(key, Mode::Auto, 0.0),
            patience: 0,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            verbose: 0,
            check_finite: true,
            wait: 0,
            stopped_epoch: 0,
            best: None,
            best_epoch: 0,
            best_weights: None,
            mode: Mode::Auto,
            min_delta: 0.0,
        }
    }

    /// Sets the smallest change that counts as an improvement (its sign is ignored). It must
    /// be finite.
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self.monitor = Monitor::new(self.monitor.key().to_string(), self.mode, min_delta);
        self
    }

    /// Sets how many non-improving monitored epochs stop training.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets whether smaller or larger values are better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.monitor = Monitor::new(self.monitor.key().to_string(), mode, self.min_delta);
        self
    }

    /// Sets a value that must be beaten before the wait counter resets. It must be finite.
    pub fn baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// Restores the best epoch's weights at the end of training.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// Ignores epochs with a lower 0-based index.
    pub fn start_from_epoch(mut self, epoch: usize) -> Self {
        self.start_from_epoch = epoch;
        self
    }

    /// Prints the stop and the restore when above 0.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// Stops training at a NaN or infinite monitored value (on by default).
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Returns the 0-based index of the epoch where this callback stopped training, or 0.
    pub fn stopped_epoch(&self) -> usize {
        self.stopped_epoch
    }

    /// Returns the 0-based index of the best epoch so far.
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }

    /// Returns the best monitored value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Returns the number of monitored epochs since the last counted improvement.
    pub fn wait(&self) -> usize {
        self.wait
    }

    fn snapshot(&mut self, epoch: usize, ctx: &Context) {
        if self.restore_best_weights {
            self.best_weights = Some(ctx.weights());
            self.best_epoch = epoch;
        }
    }
}

impl Callback for EarlyStopping {
    fn name(&self) -> &str {
        "EarlyStopping"
    }

    fn validate(&mut self, run: &RunInfo) -> Result<()> {
        if let Some(baseline) = self.baseline.filter(|baseline| !baseline.is_finite()) {
            return Err(TrainError::InvalidCallback {
                callback: "EarlyStopping",
                message: format!("baseline = {baseline} must be finite"),
            });
        }
        self.monitor.resolve("EarlyStopping", run)
    }

    fn on_train_begin(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.wait = 0;
        self.stopped_epoch = 0;
        self.best = None;
        self.best_epoch = 0;
        self.best_weights = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        // A key can be missing on epochs that do not validate (validation frequency above 1).
        let Some(current) = self.monitor.read("EarlyStopping", logs) else {
            return Ok(());
        };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.check_finite && !current.is_finite() {
            self.stopped_epoch = epoch;
            ctx.stop_training();
            if self.verbose > 0 {
                ctx.println(&format!(
                    "Epoch {}: early stopping: monitored `{}` is {current}",
                    epoch + 1,
                    self.monitor.key()
                ));
            }
            return Ok(());
        }
        // Weights that this epoch's updates overflowed are never the best, even when the loss,
        // computed before those updates, improved.
        let finite_weights = weights_are_finite(ctx.model());
        if self.best_weights.is_none() && finite_weights {
            self.snapshot(epoch, ctx);
        }
        self.wait += 1;
        if finite_weights && self.monitor.is_improvement(current, self.best) {
            self.best = Some(current);
            self.best_epoch = epoch;
            self.snapshot(epoch, ctx);
            if self
                .baseline
                .is_none_or(|baseline| self.monitor.is_improvement(current, Some(baseline)))
            {
                self.wait = 0;
            }
            return Ok(());
        }
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = epoch;
            ctx.stop_training();
        }
        Ok(())
    }

    fn on_train_end(&mut self, ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        if self.stopped_epoch > 0 && self.verbose > 0 {
            ctx.println(&format!("Epoch {}: early stopping", self.stopped_epoch + 1));
        }
        if self.restore_best_weights {
            if let Some(weights) = &self.best_weights {
                if self.verbose > 0 {
                    ctx.println(&format!(
                        "Restoring model weights from the end of the best epoch: {}.",
                        self.best_epoch + 1
                    ));
                }
                ctx.set_weights(weights)?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Option<serde_json::Value> {
        // The best weights go along so that a resumed run restores the same epoch's weights.
        // JSON keeps every f32 exactly: it is written in its shortest form that reads back
        // to the same f32.
        // NOTE: this adds about 10 bytes per weight value to the checkpoint header. That is
        // fine for small models, but a large model would want these stored as tensors.
        let best_weights = self.best_weights.as_ref().map(|weights| {
            weights
                .iter()
                .map(|(name, tensor)| {
                    json!({ "name": name, "shape": tensor.shape(), "values": tensor.iter().collect::<Vec<_>>() })
                })
                .collect::<Vec<_>>()
        });
        Some(json!({
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": best_weights,
        }))
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let invalid = || TrainError::InvalidCallback {
            callback: "EarlyStopping",
            message: format!("saved state {state} is not an EarlyStopping state"),
        };
        self.best = match state.get("best") {
            Some(serde_json::Value::Null) => None,
            Some(value) => Some(value.as_f64().ok_or_else(invalid)?),
            None => return Err(invalid()),
        };
        self.best_epoch = state
            .get("best_epoch")
            .and_then(|v| v.as_u64())
            .ok_or_else(invalid)? as usize;
        self.wait = state
            .get("wait")
            .and_then(|v| v.as_u64())
            .ok_or_else(invalid)? as usize;
        self.stopped_epoch = state
            .get("stopped_epoch")
            .and_then(|v| v.as_u64())
            .ok_or_else(invalid)? as usize;
        self.best_weights = match state.get("best_weights") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(entries)) => {
                let mut weights = Weights::new();
                for entry in entries {
                    weights.push(weight_from_json(entry).ok_or_else(invalid)?);
                }
                Some(weights)
            }
            Some(_) => return Err(invalid()),
        };
        Ok(())
    }
}

/// Reads one `{"name", "shape", "values"}` entry of a saved state.
fn weight_from_json(entry: &serde_json::Value) -> Option<(String, grit_tensor::Tensor)> {
    let name = entry.get("name")?.as_str()?.to_string();
    let shape: Vec<usize> = entry
        .get("shape")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()?;
    let values: Vec<f32> = entry
        .get("values")?
        .as_array()?
        .iter()
        .map(|v| v.as_f64().map(|v| v as f32))
        .collect::<Option<_>>()?;
    let tensor = grit_tensor::Tensor::from_shape_vec(ndarray::IxDyn(&shape), values).ok()?;
    Some((name, tensor))
}
