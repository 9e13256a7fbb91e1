//! The `TensorBoard` callback: Keras's TensorBoard logging for [`grit_train`]'s `fit` loop.

use std::path::{Component, Path, PathBuf};

use grit_tensor::Tensor;
use grit_train::{Callback, Context, Logs, RunInfo, TrainError};

use crate::{EventWriter, TensorBoardError};

/// The callback's name in messages and errors.
const CALLBACK_NAME: &str = "TensorBoard";

/// Tag of the text summary that contains the model's summary and config.
pub const MODEL_CONFIG_TAG: &str = "model_config";

/// Name of the run directory that receives training values.
pub const TRAIN_DIR: &str = "train";

/// Name of the run directory that receives validation values.
pub const VALIDATION_DIR: &str = "validation";

/// How often [`TensorBoard`] writes batch-level scalars.
///
/// ```
/// use grit_tensorboard::{TensorBoard, UpdateFreq};
///
/// // Keras's `update_freq=100`: `batch_*` scalars every 100 training batches.
/// let callback = TensorBoard::new("logs").update_freq(UpdateFreq::Batches(100));
/// assert_eq!(callback.update_freq_value(), UpdateFreq::Batches(100));
/// assert_eq!(UpdateFreq::default(), UpdateFreq::Epoch);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateFreq {
    /// Only epoch-level scalars (Keras's `update_freq="epoch"`, the default).
    #[default]
    Epoch,
    /// Also `batch_<key>` scalars whenever the 1-based global batch counter is a multiple of
    /// `n` (Keras's integer `update_freq`; `Batches(1)` is Keras's `"batch"`). `n` must be at
    /// least 1.
    Batches(u64),
}

/// A callback that logs a run for TensorBoard with Keras's directory layout, tags and steps.
///
/// It writes two runs below [`run_dir`](Self::run_dir): `train/` and, when the `fit` call
/// validates, `validation/`. A `fit` without validation leaves event files only in `train/`.
///
/// | Tag | Run | Written | Step |
/// |---|---|---|---|
/// | `epoch_<key>` for each epoch log key without the `val_` prefix | `train` | every epoch end | epoch index (0-based) |
/// | `epoch_learning_rate` | `train` | every epoch end | epoch index |
/// | `epoch_<key>` for each `val_<key>` in the epoch logs | `validation` | epochs that validated | epoch index |
/// | `evaluation_<key>_vs_iterations` | `validation` | end of each validation | optimizer updates so far |
/// | `batch_<key>` | `train` | with [`UpdateFreq::Batches`]`(n)`, when the global batch counter is a multiple of `n` | global batch counter (1-based) |
/// | `<layer>/<weight>/histogram` | `train` | with [`histogram_freq`](Self::histogram_freq)` = n > 0`, at epochs where `epoch % n == 0` | epoch index |
/// | `model_config` (text) | `train` | train begin, unless turned off | 0 |
///
/// `epoch_learning_rate` is the optimizer's rate at epoch end ([`Context::learning_rate`]),
/// which is the rate the next update will use. It replaces a `learning_rate` key that another
/// callback put in the logs, so the tag is written once per epoch, as in Keras. The global
/// batch counter counts training batches across epochs and restarts at each `fit`.
///
/// Every writer is flushed and synced at each epoch end, so a crash loses at most the current
/// epoch's values, and closed at train end. Any failure to create or write an event file ends
/// `fit` with [`TrainError::Io`] naming the file or directory. The train directory is created
/// in `on_train_begin`, before the first batch.
///
/// ```
/// use grit_tensorboard::TensorBoard;
/// use grit_train::prelude::*;
///
/// let x = ndarray::array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// let y = ndarray::array![[0.0f32], [1.0], [1.0], [0.0]];
/// let mut model = Sequential::new([2])
///     .add(Dense::new(8).activation(Activation::Tanh))
///     .add(Dense::new(1).activation(Activation::Sigmoid));
/// model.compile(Adam::new(0.05), Loss::BINARY_CROSSENTROPY, [Metric::Accuracy])?;
///
/// let logs = tempfile::tempdir()?;
/// let mut tensorboard = TensorBoard::new(logs.path()).histogram_freq(1);
/// let options = FitOptions::new().epochs(3).batch_size(4).verbose(0);
/// model.fit(&x, &y, &options, &mut [&mut tensorboard])?;
///
/// assert!(logs.path().join("train").is_dir());
/// assert!(!logs.path().join("validation").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TensorBoard {
    log_dir: PathBuf,
    run_name: Option<String>,
    histogram_freq: usize,
    update_freq: UpdateFreq,
    write_model_config: bool,
    train_writer: Option<EventWriter>,
    validation_writer: Option<EventWriter>,
    /// Training batches begun since train begin, across epochs.
    global_batch: u64,
}

impl TensorBoard {
    /// Creates a callback that logs to `log_dir/train` and `log_dir/validation`, with
    /// Keras's defaults: no histograms, epoch-level scalars only, and the model config.
    ///
    /// ```
    /// use grit_tensorboard::TensorBoard;
    ///
    /// let callback = TensorBoard::new("logs");
    /// assert_eq!(callback.run_dir(), std::path::Path::new("logs"));
    /// ```
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        TensorBoard {
            log_dir: log_dir.into(),
            run_name: None,
            histogram_freq: 0,
            update_freq: UpdateFreq::Epoch,
            write_model_config: true,
            train_writer: None,
            validation_writer: None,
            global_batch: 0,
        }
    }

    /// Sets how often, in epochs, weight histograms are written: at every epoch whose 0-based
    /// index is a multiple of `frequency`, so epoch 0 is always included. 0 (the default)
    /// turns histograms off.
    ///
    /// ```
    /// use grit_tensorboard::TensorBoard;
    ///
    /// // Histograms at epochs 0, 5, 10, ...
    /// let callback = TensorBoard::new("logs").histogram_freq(5);
    /// assert_eq!(callback.histogram_freq_value(), 5);
    /// ```
    pub fn histogram_freq(mut self, frequency: usize) -> Self {
        self.histogram_freq = frequency;
        self
    }

    /// Sets whether and how often batch-level scalars are written (default
    /// [`UpdateFreq::Epoch`]: never).
    ///
    /// ```
    /// use grit_tensorboard::{TensorBoard, UpdateFreq};
    ///
    /// let callback = TensorBoard::new("logs").update_freq(UpdateFreq::Batches(1));
    /// assert_eq!(callback.update_freq_value(), UpdateFreq::Batches(1));
    /// ```
    pub fn update_freq(mut self, frequency: UpdateFreq) -> Self {
        self.update_freq = frequency;
        self
    }

    /// Writes below `log_dir/<name>` instead of `log_dir`, so several runs can share one log
    /// directory and appear side by side in TensorBoard. `name` is a relative path such as
    /// `"cosine"` or `"schedules/cosine"`. An empty name, an absolute path or a `..` component
    /// makes `fit` fail with [`TrainError::InvalidCallback`].
    ///
    /// ```
    /// use grit_tensorboard::TensorBoard;
    ///
    /// let callback = TensorBoard::new("runs").run_name("cosine");
    /// assert_eq!(callback.run_dir(), std::path::Path::new("runs/cosine"));
    /// ```
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// Sets whether the model's config and summary are written as the text `model_config`
    /// at train begin (default `true`).
    ///
    /// ```
    /// use grit_tensorboard::TensorBoard;
    ///
    /// let callback = TensorBoard::new("logs").write_model_config(false);
    /// assert!(!callback.write_model_config_value());
    /// ```
    pub fn write_model_config(mut self, write: bool) -> Self {
        self.write_model_config = write;
        self
    }

    /// Returns the directory that contains `train/` and `validation/`: the log directory, joined
    /// with the run name when one is set.
    ///
    /// ```
    /// use grit_tensorboard::{TRAIN_DIR, TensorBoard};
    ///
    /// let callback = TensorBoard::new("runs").run_name("adam");
    /// assert_eq!(callback.run_dir().join(TRAIN_DIR), std::path::Path::new("runs/adam/train"));
    /// ```
    pub fn run_dir(&self) -> PathBuf {
        match &self.run_name {
            Some(name) => self.log_dir.join(name),
            None => self.log_dir.clone(),
        }
    }

    /// Returns the histogram frequency in epochs (0 when histograms are off).
    ///
    /// ```
    /// use grit_tensorboard::TensorBoard;
    ///
    /// assert_eq!(TensorBoard::new("logs").histogram_freq_value(), 0);
    /// ```
    pub fn histogram_freq_value(&self) -> usize {
        self.histogram_freq
    }

    /// Returns the batch-level update frequency.
    ///
    /// ```
    /// use grit_tensorboard::{TensorBoard, UpdateFreq};
    ///
    /// assert_eq!(TensorBoard::new("logs").update_freq_value(), UpdateFreq::Epoch);
    /// ```
    pub fn update_freq_value(&self) -> UpdateFreq {
        self.update_freq
    }

    /// Returns whether the model config is written at train begin.
    ///
    /// ```
    /// use grit_tensorboard::TensorBoard;
    ///
    /// assert!(TensorBoard::new("logs").write_model_config_value());
    /// ```
    pub fn write_model_config_value(&self) -> bool {
        self.write_model_config
    }

    /// Returns the train writer, creating `run_dir/train` and its event file on first use.
    fn train_writer(&mut self) -> Result<&mut EventWriter, TrainError> {
        let dir = self.run_dir().join(TRAIN_DIR);
        open_writer(&mut self.train_writer, &dir)
    }

    /// Returns the validation writer, creating `run_dir/validation` and its event file on
    /// first use.
    fn validation_writer(&mut self) -> Result<&mut EventWriter, TrainError> {
        let dir = self.run_dir().join(VALIDATION_DIR);
        open_writer(&mut self.validation_writer, &dir)
    }

    /// Checks that the run name stays inside the log directory.
    fn check_run_name(&self) -> Result<(), TrainError> {
        let Some(name) = &self.run_name else {
            return Ok(());
        };
        let path = Path::new(name);
        let escapes = path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if name.is_empty() || escapes {
            return Err(TrainError::InvalidCallback {
                callback: CALLBACK_NAME,
                message: format!(
                    "run_name {name:?} is not a relative path below the log directory. \
                     Use a name such as \"adam\" or \"schedules/cosine\""
                ),
            });
        }
        Ok(())
    }

    fn write_epoch_scalars(
        &mut self,
        epoch: usize,
        learning_rate: f32,
        logs: &Logs,
    ) -> Result<(), TrainError> {
        let step = to_step(epoch);
        let train = self.train_writer()?;
        for (key, value) in logs {
            // The optimizer's rate is written below, in place of the logged copy.
            if key.starts_with("val_") || key == "learning_rate" {
                continue;
            }
            write_scalar(train, &format!("epoch_{key}"), step, *value)?;
        }
        train
            .write_scalar("epoch_learning_rate", step, learning_rate)
            .map_err(train_error)?;

        let mut validation_values = logs
            .iter()
            .filter_map(|(key, value)| Some((key.strip_prefix("val_")?, *value)))
            .peekable();
        if validation_values.peek().is_some() {
            let validation = self.validation_writer()?;
            for (key, value) in validation_values {
                write_scalar(validation, &format!("epoch_{key}"), step, value)?;
            }
        }
        Ok(())
    }

    fn write_histograms(
        &mut self,
        epoch: usize,
        weights: &[(String, Tensor)],
    ) -> Result<(), TrainError> {
        let step = to_step(epoch);
        let train = self.train_writer()?;
        for (name, tensor) in weights {
            // Keras replaces the ':' of TensorFlow variable names (`kernel:0`) with '_'.
            let tag = format!("{}/histogram", name.replace(':', "_"));
            let values: Vec<f32> = tensor.iter().copied().collect();
            let non_finite = train
                .write_histogram(&tag, step, &values)
                .map_err(train_error)?;
            if non_finite > 0 {
                log::warn!(
                    "{CALLBACK_NAME}: {non_finite} of {} values of {name} at epoch {epoch} are \
                     NaN or infinite and are left out of histogram {tag}",
                    values.len()
                );
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        for writer in [&mut self.train_writer, &mut self.validation_writer]
            .into_iter()
            .flatten()
        {
            writer.flush().map_err(train_error)?;
        }
        Ok(())
    }
}

impl Callback for TensorBoard {
    fn name(&self) -> &str {
        CALLBACK_NAME
    }

    fn validate(&mut self, _run: &RunInfo) -> grit_train::Result<()> {
        if self.update_freq == UpdateFreq::Batches(0) {
            return Err(TrainError::InvalidCallback {
                callback: CALLBACK_NAME,
                message: "update_freq Batches(0) is invalid. Use Batches(n) with n >= 1, or \
                          UpdateFreq::Epoch for no batch-level scalars"
                    .to_string(),
            });
        }
        self.check_run_name()
    }

    fn on_train_begin(&mut self, ctx: &mut Context, _logs: &mut Logs) -> grit_train::Result<()> {
        self.global_batch = 0;
        // Writers left open by a `fit` that ended in an error flush when dropped here, and
        // this `fit` gets new event files next to theirs.
        self.train_writer = None;
        self.validation_writer = None;

        let model_text = self
            .write_model_config
            .then(|| model_config_text(ctx.model().config(), &ctx.model().summary()));
        let train = self.train_writer()?;
        if let Some(text) = model_text {
            train
                .write_text(MODEL_CONFIG_TAG, 0, &text)
                .map_err(train_error)?;
            train.flush().map_err(train_error)?;
        }
        if ctx.run().has_validation {
            self.validation_writer()?;
        }
        Ok(())
    }

    fn on_train_batch_begin(
        &mut self,
        _batch: usize,
        _ctx: &mut Context,
        _logs: &mut Logs,
    ) -> grit_train::Result<()> {
        self.global_batch += 1;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _ctx: &mut Context,
        logs: &mut Logs,
    ) -> grit_train::Result<()> {
        let UpdateFreq::Batches(frequency) = self.update_freq else {
            return Ok(());
        };
        if frequency == 0 || self.global_batch % frequency != 0 {
            return Ok(());
        }
        let step = i64::try_from(self.global_batch).unwrap_or(i64::MAX);
        let train = self.train_writer()?;
        for (key, value) in logs.iter() {
            write_scalar(train, &format!("batch_{key}"), step, *value)?;
        }
        Ok(())
    }

    fn on_test_end(&mut self, ctx: &mut Context, logs: &mut Logs) -> grit_train::Result<()> {
        let step = i64::try_from(ctx.iterations()).unwrap_or(i64::MAX);
        let validation = self.validation_writer()?;
        for (key, value) in logs.iter() {
            write_scalar(
                validation,
                &format!("evaluation_{key}_vs_iterations"),
                step,
                *value,
            )?;
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> grit_train::Result<()> {
        self.write_epoch_scalars(epoch, ctx.learning_rate(), logs)?;
        if self.histogram_freq > 0 && epoch % self.histogram_freq == 0 {
            self.write_histograms(epoch, &ctx.weights())?;
        }
        self.flush()
    }

    fn on_train_end(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> grit_train::Result<()> {
        // Both writers are closed even when the first fails, and the first error is returned.
        let train = self.train_writer.take().map(EventWriter::close);
        let validation = self.validation_writer.take().map(EventWriter::close);
        for result in [train, validation].into_iter().flatten() {
            result.map_err(train_error)?;
        }
        Ok(())
    }
}

/// Formats the text of the `model_config` tag: the summary table, then the config as pretty
/// JSON, each in a fenced code block because TensorBoard renders text as Markdown.
///
/// ```
/// use grit_tensorboard::model_config_text;
///
/// let text = model_config_text(serde_json::json!({"class_name": "Sequential"}), "table\n");
/// assert_eq!(
///     text,
///     "```text\ntable\n```\n\n```json\n{\n  \"class_name\": \"Sequential\"\n}\n```\n"
/// );
/// ```
pub fn model_config_text(config: serde_json::Value, summary: &str) -> String {
    let json = serde_json::to_string_pretty(&config).unwrap_or_else(|_| config.to_string());
    let summary = summary.strip_suffix('\n').unwrap_or(summary);
    format!("```text\n{summary}\n```\n\n```json\n{json}\n```\n")
}

/// Returns the writer in `slot`, creating one in `dir` when the slot is empty.
fn open_writer<'w>(
    slot: &'w mut Option<EventWriter>,
    dir: &Path,
) -> Result<&'w mut EventWriter, TrainError> {
    if slot.is_none() {
        *slot = Some(EventWriter::create(dir).map_err(train_error)?);
    }
    Ok(slot.as_mut().expect("the slot was filled above"))
}

/// Writes a log value, which `fit` keeps as f64, as the f32 scalar that Keras writes.
fn write_scalar(
    writer: &mut EventWriter,
    tag: &str,
    step: i64,
    value: f64,
) -> Result<(), TrainError> {
    writer
        .write_scalar(tag, step, value as f32)
        .map_err(train_error)
}

fn to_step(epoch: usize) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// Converts an event-file error into the error `fit` returns, keeping the path and I/O cause.
fn train_error(error: TensorBoardError) -> TrainError {
    match error {
        TensorBoardError::CreateDir { path, source } => TrainError::Io {
            action: "failed to create TensorBoard log directory",
            path,
            source,
        },
        TensorBoardError::CreateFile { path, source } => TrainError::Io {
            action: "failed to create TensorBoard event file",
            path,
            source,
        },
        TensorBoardError::Write { path, source } => TrainError::Io {
            action: "failed to write TensorBoard event file",
            path,
            source,
        },
        // Only reading produces the other variants, so this arm is for completeness.
        other => TrainError::Callback {
            callback: CALLBACK_NAME.to_string(),
            message: other.to_string(),
        },
    }
}
