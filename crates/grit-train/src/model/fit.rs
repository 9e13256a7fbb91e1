//! The training loop.

use std::collections::BTreeMap;
use std::ops::Range;

use grit_nn::Direction;
use grit_tensor::parallel::in_pool;
use grit_tensor::{ParamMut, Samples, Tensor, rayon};
use ndarray::IxDyn;

use super::Sequential;
use super::data::{BatchMemory, check_counts, check_inputs, check_targets, gather_targets};
use super::evaluate::{check_batch_size, running_logs};
use super::heap;
use super::order::EpochOrder;
use crate::callbacks::{
    BackupRequests, Callback, Console, Context, History, Logs, ProgressLogger, RunInfo,
    check_callback_states,
};
use crate::checkpoint::CallbackState;
use crate::{Result, TrainError};

/// The settings of one [`Sequential::fit`] call, with Keras's defaults.
///
/// ```
/// use grit_train::FitOptions;
///
/// let options = FitOptions::new().epochs(20).batch_size(128).validation_split(0.1);
/// assert_eq!(options.batch_size_value(), 128);
/// ```
#[derive(Clone, Copy)]
pub struct FitOptions<'a> {
    epochs: usize,
    batch_size: usize,
    shuffle: bool,
    validation_split: f32,
    validation_data: Option<(&'a dyn Samples, &'a dyn Samples)>,
    validation_batch_size: Option<usize>,
    validation_freq: usize,
    initial_epoch: usize,
    verbose: u8,
}

impl std::fmt::Debug for FitOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitOptions")
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("validation_split", &self.validation_split)
            .field(
                "validation_data",
                &self.validation_data.map(|(x, _)| x.num_samples()),
            )
            .field("validation_batch_size", &self.validation_batch_size)
            .field("validation_freq", &self.validation_freq)
            .field("initial_epoch", &self.initial_epoch)
            .field("verbose", &self.verbose)
            .finish()
    }
}

impl Default for FitOptions<'_> {
    fn default() -> Self {
        FitOptions {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            validation_split: 0.0,
            validation_data: None,
            validation_batch_size: None,
            validation_freq: 1,
            initial_epoch: 0,
            verbose: 1,
        }
    }
}

impl<'a> FitOptions<'a> {
    /// Keras's defaults: 1 epoch, batch size 32, shuffling on, no validation, verbose 1.
    pub fn new() -> Self {
        FitOptions::default()
    }

    /// Sets the index one past the last epoch (not a count when `initial_epoch` > 0).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Sets the number of samples per training batch.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Returns the training batch size.
    pub fn batch_size_value(&self) -> usize {
        self.batch_size
    }

    /// Turns the per-epoch shuffling of the training samples on or off.
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Holds out the last `fraction` of the samples (taken before shuffling) for validation.
    pub fn validation_split(mut self, fraction: f32) -> Self {
        self.validation_split = fraction;
        self
    }

    /// Validates on separate data; takes precedence over `validation_split`.
    pub fn validation_data(mut self, x: &'a dyn Samples, y: &'a dyn Samples) -> Self {
        self.validation_data = Some((x, y));
        self
    }

    /// Sets the validation batch size (default: the training batch size).
    pub fn validation_batch_size(mut self, batch_size: usize) -> Self {
        self.validation_batch_size = Some(batch_size);
        self
    }

    /// Validates after every `frequency`-th epoch (1-based: epochs `k`, `2k`, ...).
    pub fn validation_freq(mut self, frequency: usize) -> Self {
        self.validation_freq = frequency;
        self
    }

    /// Sets the 0-based epoch to start from, to continue an earlier run.
    pub fn initial_epoch(mut self, epoch: usize) -> Self {
        self.initial_epoch = epoch;
        self
    }

    /// Sets the output: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    fn validate(&self) -> Result<()> {
        check_batch_size(self.batch_size)?;
        if let Some(size) = self.validation_batch_size {
            if size == 0 {
                return Err(TrainError::InvalidArgument {
                    name: "validation_batch_size",
                    value: "0".into(),
                    expected: "at least 1".into(),
                });
            }
        }
        if !(self.validation_split >= 0.0 && self.validation_split < 1.0) {
            return Err(TrainError::InvalidArgument {
                name: "validation_split",
                value: self.validation_split.to_string(),
                expected: "a fraction in [0, 1)".into(),
            });
        }
        if self.validation_freq == 0 {
            return Err(TrainError::InvalidArgument {
                name: "validation_freq",
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        if self.verbose > 2 {
            return Err(TrainError::InvalidArgument {
                name: "verbose",
                value: self.verbose.to_string(),
                expected: "0, 1 or 2".into(),
            });
        }
        Ok(())
    }
}

/// Loop state shared with callbacks through [`Context`].
pub(crate) struct LoopState {
    pub(crate) stop: bool,
    pub(crate) console: Console,
    pub(crate) resume_epoch: Option<usize>,
    pub(crate) backup: BackupRequests,
}

impl LoopState {
    pub(crate) fn new() -> Self {
        LoopState {
            stop: false,
            console: Console::new(),
            resume_epoch: None,
            backup: BackupRequests::default(),
        }
    }
}

/// The user's callbacks followed by the ones `fit` adds (History, progress display).
pub(crate) struct CallbackList<'c> {
    callbacks: Vec<&'c mut dyn Callback>,
}

impl<'c> CallbackList<'c> {
    pub(crate) fn empty() -> Self {
        CallbackList {
            callbacks: Vec::new(),
        }
    }

    /// Returns the state of every callback that has one, with its position and name.
    pub(crate) fn states(&self) -> Vec<CallbackState> {
        self.callbacks
            .iter()
            .enumerate()
            .filter_map(|(index, callback)| {
                let state = callback.state()?;
                Some(CallbackState {
                    index,
                    name: callback.name().to_string(),
                    state,
                })
            })
            .collect()
    }

    /// Loads the callback states of the backup at `path` into the callbacks at the same
    /// positions, after checking that they are the same callbacks.
    fn load_states(&mut self, path: &std::path::Path, saved: Vec<CallbackState>) -> Result<()> {
        let current: Vec<(String, bool)> = self
            .callbacks
            .iter()
            .map(|callback| (callback.name().to_string(), callback.state().is_some()))
            .collect();
        check_callback_states(path, &saved, &current)?;
        for entry in saved {
            self.callbacks[entry.index].load_state(entry.state)?;
        }
        Ok(())
    }

    /// Calls `hook` on every callback in order with one shared logs map.
    pub(crate) fn dispatch(
        &mut self,
        model: &mut Sequential,
        state: &mut LoopState,
        run: &RunInfo,
        logs: &mut Logs,
        mut hook: impl FnMut(&mut dyn Callback, &mut Context, &mut Logs) -> Result<()>,
    ) -> Result<()> {
        for callback in self.callbacks.iter_mut() {
            let mut ctx = Context {
                model: &mut *model,
                run,
                stop_training: &mut state.stop,
                console: &mut state.console,
                resume_epoch: &mut state.resume_epoch,
                backup: &mut state.backup,
            };
            hook(&mut **callback, &mut ctx, logs)?;
        }
        Ok(())
    }
}

/// The samples validation runs on.
struct Validation<'v> {
    x: &'v dyn Samples,
    y: &'v dyn Samples,
    indices: Vec<usize>,
}

impl Sequential {
    /// Trains the model on `(x, y)`, calling `callbacks` at Keras's hook points, and returns
    /// the [`History`] of every epoch's logs.
    ///
    /// The order of one call:
    /// 1. Every argument is checked before any work: shapes, sample counts, labels, the batch
    ///    size, the validation split, and each callback's settings against the keys this run
    ///    will log ([`Callback::validate`]).
    /// 2. `on_train_begin`; then for each epoch from `initial_epoch` to `epochs - 1`:
    ///    `on_epoch_begin`; for each batch of the (seeded, reshuffled) training samples
    ///    `on_train_batch_begin`, forward, loss, backward, one optimizer update, and
    ///    `on_train_batch_end` with the running sample-weighted means; then validation in
    ///    inference mode (test hooks), its results added as `val_*`; then `on_epoch_end`.
    ///    A stop requested in a batch hook ends the epoch early, but validation and
    ///    `on_epoch_end` still run; a stop requested by then ends training.
    ///    A backup that [`crate::callbacks::BackupAndRestore`] requests is written once the
    ///    hook has run on every callback; a backup restored at `on_train_begin` sets the first
    ///    epoch and, after every `on_train_begin`, each callback's state.
    /// 3. `on_train_end`, unless an error left the loop; the error reaches the caller.
    ///
    /// The user's callbacks run in the order given, followed by the [`History`] this method
    /// returns and, when `verbose` > 0, the progress display.
    ///
    /// # Errors
    /// [`TrainError::NotCompiled`]; data errors ([`TrainError::SampleCountMismatch`],
    /// [`TrainError::ShapeMismatch`], [`TrainError::EmptyData`], [`TrainError::InvalidLabel`]);
    /// [`TrainError::InvalidArgument`] for an invalid option or a metric that cannot read the
    /// targets (categorical accuracy on integer labels, say); any error a callback returns.
    pub fn fit<X: Samples, Y: Samples>(
        &mut self,
        x: &X,
        y: &Y,
        options: &FitOptions<'_>,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let (x, y): (&dyn Samples, &dyn Samples) = (x, y);
        if self.compiled().is_none() {
            return Err(TrainError::NotCompiled("fit"));
        }
        options.validate()?;
        check_inputs(self, x, "inputs")?;
        check_counts(x, y, "fit")?;
        check_targets(self, y, "targets")?;
        let (train_indices, validation) = self.split(x, y, options)?;
        let steps_per_epoch = train_indices.len().div_ceil(options.batch_size);

        let run = self.run_info(
            options,
            steps_per_epoch,
            validation.is_some(),
            y.sample_size(),
            callbacks,
        );
        for callback in callbacks.iter_mut() {
            callback.validate(&run)?;
        }

        let mut history = History::new();
        let mut progress = (options.verbose > 0).then(|| ProgressLogger::new(options.verbose));
        let mut list = CallbackList {
            callbacks: callbacks
                .iter_mut()
                .map(|c| &mut **c as &mut dyn Callback)
                .collect(),
        };
        list.callbacks.push(&mut history);
        if let Some(progress) = progress.as_mut() {
            list.callbacks.push(progress);
        }
        let mut state = LoopState::new();
        self.train_loop(
            x,
            y,
            train_indices.clone(),
            validation,
            options,
            &run,
            &mut list,
            &mut state,
        )?;
        drop(list);
        Ok(history)
    }

    fn split<'v>(
        &self,
        x: &'v dyn Samples,
        y: &'v dyn Samples,
        options: &FitOptions<'v>,
    ) -> Result<(Range<usize>, Option<Validation<'v>>)> {
        let n = x.num_samples();
        if let Some((vx, vy)) = options.validation_data {
            check_inputs(self, vx, "validation inputs")?;
            check_counts(vx, vy, "validation data")?;
            check_targets(self, vy, "validation targets")?;
            let indices = (0..vx.num_samples()).collect();
            return Ok((
                0..n,
                Some(Validation {
                    x: vx,
                    y: vy,
                    indices,
                }),
            ));
        }
        if options.validation_split == 0.0 {
            return Ok((0..n, None));
        }
        let split_at = (n as f64 * (1.0 - decimal_f64(options.validation_split))).floor() as usize;
        if split_at == 0 || split_at == n {
            return Err(TrainError::InvalidArgument {
                name: "validation_split",
                value: options.validation_split.to_string(),
                expected: format!(
                    "a fraction that leaves at least one training and one validation sample of {n} \
                     (this split puts {split_at} in training)"
                ),
            });
        }
        Ok((
            0..split_at,
            Some(Validation {
                x,
                y,
                indices: (split_at..n).collect(),
            }),
        ))
    }

    fn run_info(
        &self,
        options: &FitOptions<'_>,
        steps_per_epoch: usize,
        has_validation: bool,
        target_width: usize,
        callbacks: &[&mut dyn Callback],
    ) -> RunInfo {
        let mut directions = BTreeMap::new();
        directions.insert("loss".to_string(), Direction::Min);
        for metric in self.metrics() {
            directions.insert(metric.name().to_string(), metric.direction());
        }
        let _ = target_width;
        let batch_keys: Vec<String> = directions.keys().cloned().collect();
        if has_validation {
            for key in &batch_keys {
                directions.insert(format!("val_{key}"), directions[key]);
            }
        }
        let mut epoch_keys: Vec<String> = directions.keys().cloned().collect();
        for callback in callbacks {
            epoch_keys.extend(callback.provided_keys());
        }
        epoch_keys.sort();
        epoch_keys.dedup();
        RunInfo {
            epochs: options.epochs,
            initial_epoch: options.initial_epoch,
            steps_per_epoch,
            verbose: options.verbose,
            has_validation,
            epoch_keys,
            batch_keys,
            directions,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn train_loop(
        &mut self,
        x: &dyn Samples,
        y: &dyn Samples,
        train_indices: Range<usize>,
        validation: Option<Validation<'_>>,
        options: &FitOptions<'_>,
        run: &RunInfo,
        list: &mut CallbackList<'_>,
        state: &mut LoopState,
    ) -> Result<()> {
        list.dispatch(self, state, run, &mut Logs::new(), |cb, ctx, logs| {
            cb.on_train_begin(ctx, logs)
        })?;
        if let Some((path, saved)) = state.backup.restore.take() {
            list.load_states(&path, saved)?;
        }
        let first_epoch = state
            .resume_epoch
            .filter(|&e| e > 0)
            .unwrap_or(options.initial_epoch);
        let metrics = self.resolved_metrics(y.sample_size());
        let mut last_logs = Logs::new();
        let mut order = EpochOrder::new(train_indices.clone());
        // The indices of the current and the next batch, as `Samples` takes them.
        let (mut chunk_indices, mut next_indices) = (Vec::new(), Vec::new());
        let mut y_batch = Tensor::zeros(IxDyn(&[0]));
        let mut memory = BatchMemory::new(x, options.batch_size.min(train_indices.len()));
        for epoch in first_epoch..options.epochs {
            self.completed_epochs = epoch;
            state.backup.at_epoch_start(self, || list.states());
            list.dispatch(self, state, run, &mut Logs::new(), |cb, ctx, logs| {
                cb.on_epoch_begin(epoch, ctx, logs)
            })?;
            order.reset(
                train_indices.clone(),
                options.shuffle.then_some(&mut self.rng),
            );
            let mut sums = vec![0.0f64; metrics.len()];
            let mut loss_sum = 0.0f64;
            let mut count = 0usize;
            let mut epoch_logs = Logs::new();
            order.batch_into(0, options.batch_size, &mut next_indices);
            for step in 0..order.batch_count(options.batch_size) {
                std::mem::swap(&mut chunk_indices, &mut next_indices);
                order.batch_into(step + 1, options.batch_size, &mut next_indices);
                let (chunk, next) = (&chunk_indices[..], &next_indices[..]);
                list.dispatch(self, state, run, &mut Logs::new(), |cb, ctx, logs| {
                    cb.on_train_batch_begin(step, ctx, logs)
                })?;
                // The whole step runs on a pool thread (see `grit_tensor::parallel::in_pool`).
                let loss = in_pool(|| {
                    let x_batch = memory.gather(x, chunk);
                    gather_targets(self, y, chunk, &mut y_batch);
                    // The first layer may keep the batch (Dense, Conv2D) or reshape it in
                    // place (Flatten) instead of copying it. A thread that would wait during
                    // the step reads the next batch's samples into the cache meanwhile (not
                    // across epochs: the next epoch's order is drawn when it starts).
                    let (loss, output) = self.train_step(x_batch, &y_batch, || x.prefetch(next));
                    for ((_, metric), sum) in metrics.iter().zip(sums.iter_mut()) {
                        *sum += metric.batch_sum(&output, &y_batch);
                    }
                    loss
                });
                // The step has freed its batch: reserve the next one's memory in its place.
                memory.reserve_next();
                if self.heap_releases < heap::RELEASE_STEPS {
                    self.heap_releases += 1;
                    heap::release_free_memory();
                }
                loss_sum += loss as f64 * chunk.len() as f64;
                count += chunk.len();
                epoch_logs = running_logs(loss_sum, &metrics, &sums, count);
                let mut batch_logs = epoch_logs.clone();
                list.dispatch(self, state, run, &mut batch_logs, |cb, ctx, logs| {
                    cb.on_train_batch_end(step, ctx, logs)
                })?;
                state.backup.after_batch(self)?;
                if state.stop {
                    break;
                }
            }
            if let Some(validation) = &validation {
                if (epoch + 1) % options.validation_freq == 0 {
                    let batch_size = options.validation_batch_size.unwrap_or(options.batch_size);
                    // The validation pass reserves memory of its own, which can take this place.
                    memory.release();
                    let val_logs = self.test_loop(
                        validation.x,
                        validation.y,
                        &validation.indices,
                        batch_size,
                        list,
                        state,
                        run,
                    )?;
                    memory.reserve_next();
                    for (key, value) in val_logs {
                        epoch_logs.insert(format!("val_{key}"), value);
                    }
                }
            }
            last_logs = epoch_logs.clone();
            self.completed_epochs = epoch + 1;
            list.dispatch(self, state, run, &mut epoch_logs, |cb, ctx, logs| {
                cb.on_epoch_end(epoch, ctx, logs)
            })?;
            state.backup.after_epoch(self, || list.states())?;
            if state.stop {
                break;
            }
        }
        list.dispatch(self, state, run, &mut last_logs, |cb, ctx, logs| {
            cb.on_train_end(ctx, logs)
        })?;
        Ok(())
    }

    /// Runs one training step and returns the batch loss (before the update) and the output.
    /// Runs `background` on another thread of the pool once the forward pass is done, when
    /// the loss and the small last layers leave that thread idle. On a pool of one thread
    /// the step's own thread runs it, by the end of the step at the latest.
    fn train_step(
        &mut self,
        x: Tensor,
        y: &Tensor,
        background: impl FnOnce() + Send,
    ) -> (f32, Tensor) {
        let output = self.forward(x, true);
        let value = rayon::scope(|scope| {
            scope.spawn(|_| background());
            self.backward_and_update(&output, y)
        });
        (value, output)
    }

    /// Backpropagates the loss of `output` against `y`, updates the weights and returns the
    /// loss.
    fn backward_and_update(&mut self, output: &Tensor, y: &Tensor) -> f32 {
        let compiled = self
            .compiled
            .as_mut()
            .expect("fit checks that the model is compiled");
        let loss = compiled.loss;
        let (last, rest) = self
            .layers
            .split_last_mut()
            .expect("a built model has layers");
        let fused = last.output_activation().filter(|&a| loss.fuses_with(a));
        let (value, mut grad) = match (fused, last.logits()) {
            (Some(_), Some(logits)) => {
                let (value, grad_logits) = loss.logits_value_and_grad(logits, y);
                (value, last.backward_from_logits(&grad_logits))
            }
            _ => {
                let (value, grad_output) = loss.value_and_grad(output, y);
                (value, last.backward(&grad_output))
            }
        };
        // Layers before the first trainable one need no gradient, and that layer needs
        // no input gradient (it returns an empty tensor).
        let first_trainable = self.first_trainable;
        for (index, layer) in rest.iter_mut().enumerate().rev() {
            if index < first_trainable {
                break;
            }
            if !self.fused[index] {
                grad = layer.backward(&grad);
            }
        }
        // Sized for two parameters a layer (kernel and bias), so that it does not grow here
        // for grit's layers. Growing it on this pool thread can reallocate a small block
        // that came from the calling thread's heap, and the larger block then takes space
        // there that the next batch needs (see `BatchMemory`).
        let mut params: Vec<ParamMut<'_>> = Vec::with_capacity(2 * self.layers.len());
        for layer in &mut self.layers {
            params.extend(layer.trainable_params());
        }
        compiled.optimizer.apply(&mut params);
        value
    }
}

/// Returns the f64 of the shortest decimal that reads back as `value`: 0.1 for `0.1f32`,
/// where a plain conversion gives 0.10000000149011612. Keras takes fractions as Python
/// floats (f64), so this gives the same value as the decimal the caller wrote.
fn decimal_f64(value: f32) -> f64 {
    // Rust prints the shortest decimal that parses back to the same f32.
    value.to_string().parse().unwrap_or(f64::from(value))
}
