use serde_json::json;

use super::{Callback, Context, Logs, Mode, Monitor, RunInfo};
use crate::{Result, TrainError};

/// Multiplies the learning rate by `factor` when a monitored value stops improving (Keras's
/// `ReduceLROnPlateau`).
///
/// After `patience` non-improving epochs the rate becomes `max(rate · factor, min_lr)`, and
/// `cooldown` epochs pass before counting starts again. The rate in effect during the epoch,
/// before any reduction, is written to the logs as `learning_rate`. Defaults as Keras:
/// monitor `val_loss`, factor 0.1, patience 10, min_delta 1e-4, cooldown 0, min_lr 0.
///
/// ```
/// use grit_train::callbacks::ReduceLROnPlateau;
///
/// let plateau = ReduceLROnPlateau::new("val_loss").factor(0.5).patience(2).min_lr(1e-5);
/// ```
pub struct ReduceLROnPlateau {
    monitor: Monitor,
    key: String,
    mode: Mode,
    min_delta: f64,
    factor: f32,
    patience: usize,
    cooldown: usize,
    min_lr: f32,
    verbose: u8,
    best: Option<f64>,
    wait: usize,
    cooldown_counter: usize,
}

impl ReduceLROnPlateau {
    /// Monitors `key` with Keras's defaults.
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        ReduceLROnPlateau {
            monitor: Monitor::new(key.clone(), Mode::Auto, 1e-4),
            key,
            mode: Mode::Auto,
            min_delta: 1e-4,
            factor: 0.1,
            patience: 10,
            cooldown: 0,
            min_lr: 0.0,
            verbose: 0,
            best: None,
            wait: 0,
            cooldown_counter: 0,
        }
    }

    /// Sets the factor the rate is multiplied by, in (0, 1).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// Sets how many non-improving epochs trigger a reduction.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets the smallest change that counts as an improvement (its sign is ignored). It must
    /// be finite.
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self.monitor = Monitor::new(self.key.clone(), self.mode, min_delta);
        self
    }

    /// Sets whether smaller or larger values are better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.monitor = Monitor::new(self.key.clone(), mode, self.min_delta);
        self
    }

    /// Sets how many epochs to wait after a reduction before counting again.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets the lowest rate a reduction may set.
    pub fn min_lr(mut self, min_lr: f32) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// Prints each reduction when above 0.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn name(&self) -> &str {
        "ReduceLROnPlateau"
    }

    fn provided_keys(&self) -> Vec<String> {
        vec!["learning_rate".into()]
    }

    fn validate(&mut self, run: &RunInfo) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(TrainError::InvalidCallback {
                callback: "ReduceLROnPlateau",
                message: format!("factor = {} must be above 0 and below 1", self.factor),
            });
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0) {
            return Err(TrainError::InvalidCallback {
                callback: "ReduceLROnPlateau",
                message: format!("min_lr = {} must be finite and not negative", self.min_lr),
            });
        }
        self.monitor.resolve("ReduceLROnPlateau", run)
    }

    fn on_train_begin(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.best = None;
        self.wait = 0;
        self.cooldown_counter = 0;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        let rate = ctx.learning_rate();
        logs.insert("learning_rate".into(), rate as f64);
        let Some(current) = self.monitor.read("ReduceLROnPlateau", logs) else {
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.monitor.is_improvement(current, self.best) {
            self.best = Some(current);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.patience && rate > self.min_lr {
                let reduced = (rate * self.factor).max(self.min_lr);
                ctx.set_learning_rate(reduced)?;
                if self.verbose > 0 {
                    ctx.println(&format!(
                        "Epoch {}: ReduceLROnPlateau reducing learning rate to {reduced}.",
                        epoch + 1
                    ));
                }
                self.cooldown_counter = self.cooldown;
                self.wait = 0;
            }
        }
        Ok(())
    }

    fn state(&self) -> Option<serde_json::Value> {
        Some(
            json!({ "best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter }),
        )
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let invalid = || TrainError::InvalidCallback {
            callback: "ReduceLROnPlateau",
            message: format!("saved state {state} is not a ReduceLROnPlateau state"),
        };
        self.best = match state.get("best") {
            Some(serde_json::Value::Null) => None,
            Some(value) => Some(value.as_f64().ok_or_else(invalid)?),
            None => return Err(invalid()),
        };
        self.wait = state
            .get("wait")
            .and_then(|v| v.as_u64())
            .ok_or_else(invalid)? as usize;
        self.cooldown_counter = state
            .get("cooldown_counter")
            .and_then(|v| v.as_u64())
            .ok_or_else(invalid)? as usize;
        Ok(())
    }
}
