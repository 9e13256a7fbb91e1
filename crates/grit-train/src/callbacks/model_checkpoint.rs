use std::path::PathBuf;

use serde_json::json;

use super::filepath::{FieldValue, FilepathTemplate};
use super::save_freq::BatchCounter;
use super::{Callback, Context, Logs, Mode, Monitor, RunInfo, SaveFrequency, weights_are_finite};
use crate::{Result, TrainError};

const NAME: &str = "ModelCheckpoint";

/// Saves the model during training (Keras's `ModelCheckpoint`): every epoch, every N
/// batches, or only when a monitored value improves.
///
/// The file path is a template. `{epoch}` is the 1-based epoch and `{batch}` the 1-based batch
/// within the epoch, which exists for batch-level saves only. Any key of the logs that the
/// save uses is available too: the epoch logs, or the running batch logs for batch-level
/// saves. `{{` and `}}` are literal braces. Format specs follow Python's `str.format` for
/// these forms:
///
/// | spec | meaning | `{epoch:…}` of 3 | `{val_loss:…}` of 0.012345 |
/// | --- | --- | --- | --- |
/// | none | integer, or the shortest decimal that reads back | `3` | `0.012345` |
/// | `02`, `02d` | integer, zero-padded to the width | `03` | rejected |
/// | `3`, `3d` | integer, space-padded to the width | `  3` | rejected |
/// | `.4`, `.4f` | fixed number of decimals | `3.0000` | `0.0123` |
/// | `.3e` | scientific, exponent with sign and 2 digits or more | `3.000e+00` | `1.235e-02` |
///
/// `.4` means 4 decimals, as in Rust; in Python it means 4 significant digits, which differs
/// for values of 1 or more. NaN and infinities print as `nan`, `inf` and `-inf`.
///
/// The path must end in `.safetensors`. A save writes a full checkpoint
/// ([`crate::Sequential::save`]) or, with `save_weights_only`, the weights
/// ([`crate::Sequential::save_weights`]), atomically, and creates missing folders. A path
/// without placeholders is overwritten at each save.
///
/// With `save_best_only`, a save happens only when the monitored value improves strictly on
/// the best so far (or on `initial_value_threshold`), and a NaN or infinite value is never
/// saved as the best. Neither are weights that contain a NaN or infinite value: the logged
/// loss is computed before each update, so it can improve in the epoch whose last update
/// overflowed the weights. The best value carries over when the same instance is used for another
/// `fit`, as in Keras.
///
/// Unlike Keras, the template and the monitored key are checked against the keys this run
/// will log before the first batch. An epoch whose logs lack the monitored key, as happens
/// with a validation frequency above 1, is skipped with a warning instead of saved.
///
/// ```
/// use grit_train::callbacks::{Mode, ModelCheckpoint};
///
/// let checkpoint = ModelCheckpoint::new("runs/mnist/best-{epoch:02d}-{val_loss:.4f}.safetensors")
///     .monitor("val_loss")
///     .mode(Mode::Min)
///     .save_best_only(true);
/// ```
pub struct ModelCheckpoint {
    filepath: String,
    template: Option<FilepathTemplate>,
    monitor: Monitor,
    mode: Mode,
    save_best_only: bool,
    save_weights_only: bool,
    save_freq: SaveFrequency,
    initial_value_threshold: Option<f64>,
    verbose: u8,
    best: Option<f64>,
    counter: BatchCounter,
    epoch: usize,
}

impl ModelCheckpoint {
    /// Saves to `filepath` at the end of every epoch, monitoring `val_loss` when
    /// `save_best_only` is set, as Keras's defaults.
    pub fn new(filepath: impl Into<String>) -> Self {
        ModelCheckpoint {
            filepath: filepath.into(),
            template: None,
            monitor: Monitor::new("val_loss", Mode::Auto, 0.0),
            mode: Mode::Auto,
            save_best_only: false,
            save_weights_only: false,
            save_freq: SaveFrequency::Epoch,
            initial_value_threshold: None,
            verbose: 0,
            best: None,
            counter: BatchCounter::default(),
            epoch: 0,
        }
    }

    /// Sets the key that `save_best_only` compares.
    pub fn monitor(mut self, key: impl Into<String>) -> Self {
        self.monitor = Monitor::new(key, self.mode, 0.0);
        self
    }

    /// Sets whether smaller or larger monitored values are better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.monitor = Monitor::new(self.monitor.key().to_string(), mode, 0.0);
        self
    }

    /// Saves only when the monitored value improves on the best so far.
    pub fn save_best_only(mut self, save_best_only: bool) -> Self {
        self.save_best_only = save_best_only;
        self
    }

    /// Saves the weights only, without optimizer state and training counters.
    pub fn save_weights_only(mut self, save_weights_only: bool) -> Self {
        self.save_weights_only = save_weights_only;
        self
    }

    /// Sets how often to save.
    pub fn save_freq(mut self, save_freq: SaveFrequency) -> Self {
        self.save_freq = save_freq;
        self
    }

    /// Sets the value that the first monitored value must beat to be saved. It must be finite.
    pub fn initial_value_threshold(mut self, threshold: f64) -> Self {
        self.initial_value_threshold = Some(threshold);
        self.best = Some(threshold);
        self
    }

    /// Prints each save (and, with `save_best_only`, each epoch without improvement) when
    /// above 0.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// Returns the best monitored value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Checks that every placeholder of `template` names a value that the saves' logs will
    /// contain, and that integer specs are used for integers only.
    fn check_placeholders(&self, template: &FilepathTemplate, run: &RunInfo) -> Result<()> {
        let batch_level = matches!(self.save_freq, SaveFrequency::Batches(_));
        let (log_keys, integer_names): (&[String], &[&str]) = if batch_level {
            (&run.batch_keys, &["epoch", "batch"])
        } else {
            (&run.epoch_keys, &["epoch"])
        };
        for name in template.names() {
            if integer_names.contains(&name) || log_keys.iter().any(|key| key == name) {
                continue;
            }
            let mut available: Vec<&str> = integer_names.to_vec();
            available.extend(log_keys.iter().map(String::as_str));
            let hint = if name == "batch" {
                " `{batch}` exists only with save_freq SaveFrequency::Batches."
            } else {
                ""
            };
            return Err(invalid(format!(
                "the file path `{}` has the placeholder `{{{name}}}`, which no {} log of this \
                 run contains.{hint} Available: {}",
                self.filepath,
                if batch_level { "batch" } else { "epoch" },
                available.join(", ")
            )));
        }
        template.check_specs(integer_names).map_err(invalid)
    }

    /// Formats the path for this save, or fails naming the key the logs lack.
    fn path(&self, epoch: usize, batch: Option<usize>, logs: &Logs) -> Result<PathBuf> {
        let template = self
            .template
            .as_ref()
            .expect("`validate` parses the template before training");
        let path = template.format(|name| match (name, batch) {
            ("epoch", _) => Some(FieldValue::Integer(epoch + 1)),
            ("batch", Some(batch)) => Some(FieldValue::Integer(batch + 1)),
            _ => logs.get(name).map(|value| FieldValue::Float(*value)),
        });
        path.map(PathBuf::from).map_err(|missing| TrainError::Callback {
            callback: NAME.into(),
            message: format!(
                "the logs of epoch {} have no `{missing}` for the file path `{}`. A `val_*` key \
                 is missing on epochs without validation (validation_freq above 1)",
                epoch + 1,
                self.filepath
            ),
        })
    }

    fn save(
        &mut self,
        ctx: &mut Context,
        logs: &Logs,
        epoch: usize,
        batch: Option<usize>,
    ) -> Result<()> {
        let path = self.path(epoch, batch, logs)?;
        if self.save_best_only {
            let Some(current) = self.monitor.read(NAME, logs) else {
                log::warn!(
                    "{NAME}: the logs of epoch {} have no `{}`, so the model was not saved",
                    epoch + 1,
                    self.monitor.key()
                );
                return Ok(());
            };
            if !self.monitor.is_improvement(current, self.best) {
                if self.verbose > 0 {
                    ctx.println(&format!(
                        "Epoch {}: {} did not improve from {}",
                        epoch + 1,
                        self.monitor.key(),
                        format_best(self.best)
                    ));
                }
                return Ok(());
            }
            if !weights_are_finite(ctx.model()) {
                log::warn!(
                    "{NAME}: {} improved to {current} at epoch {}, but the weights contain NaN \
                     or infinite values, so they were not saved as the best",
                    self.monitor.key(),
                    epoch + 1
                );
                return Ok(());
            }
            if self.verbose > 0 {
                ctx.println(&format!(
                    "Epoch {}: {} improved from {} to {current:.5}, saving model to {}",
                    epoch + 1,
                    self.monitor.key(),
                    format_best(self.best),
                    path.display()
                ));
            }
            self.best = Some(current);
        } else if self.verbose > 0 {
            ctx.println(&format!(
                "Epoch {}: saving model to {}",
                epoch + 1,
                path.display()
            ));
        }
        if self.save_weights_only {
            ctx.model().save_weights(&path)
        } else {
            ctx.model().save(&path)
        }
    }
}

fn invalid(message: String) -> TrainError {
    TrainError::InvalidCallback {
        callback: NAME,
        message,
    }
}

fn format_best(best: Option<f64>) -> String {
    best.map_or("None".to_string(), |best| format!("{best:.5}"))
}

impl Callback for ModelCheckpoint {
    fn name(&self) -> &str {
        NAME
    }

    fn validate(&mut self, run: &RunInfo) -> Result<()> {
        self.save_freq.validate(NAME)?;
        if !self.filepath.ends_with(".safetensors") {
            return Err(invalid(format!(
                "the file path `{}` must end in `.safetensors`",
                self.filepath
            )));
        }
        if let Some(threshold) = self.initial_value_threshold {
            if !threshold.is_finite() {
                return Err(invalid(format!(
                    "initial_value_threshold is {threshold}, but it must be finite"
                )));
            }
        }

        let template = FilepathTemplate::parse(&self.filepath).map_err(invalid)?;
        self.check_placeholders(&template, run)?;

        if self.save_best_only {
            let batch_level = matches!(self.save_freq, SaveFrequency::Batches(_));
            if batch_level && !run.batch_keys.iter().any(|key| key == self.monitor.key()) {
                return Err(TrainError::UnknownMonitor {
                    callback: format!("{NAME} (saving every N batches, with batch logs)"),
                    key: self.monitor.key().to_string(),
                    available: run.batch_keys.clone(),
                });
            }
            self.monitor.resolve(NAME, run)?;
        }
        self.template = Some(template);
        Ok(())
    }

    fn state(&self) -> Option<serde_json::Value> {
        Some(json!({
            "best": self.best,
            "batches_since_save": self.counter.since_save,
        }))
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let invalid = || TrainError::InvalidCallback {
            callback: NAME,
            message: format!("saved state {state} is not a {NAME} state"),
        };
        self.best = match state.get("best") {
            Some(serde_json::Value::Null) => None,
            Some(value) => Some(value.as_f64().ok_or_else(invalid)?),
            None => return Err(invalid()),
        };
        self.counter.since_save = state
            .get("batches_since_save")
            .and_then(|v| v.as_u64())
            .ok_or_else(invalid)? as usize;
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> Result<()> {
        if let SaveFrequency::Batches(every) = self.save_freq {
            if self.counter.tick(every) {
                self.save(ctx, logs, self.epoch, Some(batch))?;
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if self.save_freq == SaveFrequency::Epoch {
            self.save(ctx, logs, epoch, None)?;
        }
        Ok(())
    }
}
