//! Comparison of learning-rate schedules: one training run per schedule, all from the same
//! initial weights and in the same data order, ranked by a monitored value.
//!
//! A [`ScheduleComparison`] calls the model builder once to fix the initial weights and the
//! state of the model's random generator (which orders the shuffled batches). Each run then
//! builds its own model with its run's learning rate, copies those weights and that generator
//! state into it, and trains it with `fit`. Runs go in parallel threads, at most
//! [`std::thread::available_parallelism`] at once unless [`ScheduleComparison::max_threads`]
//! sets another limit. Each run has its own model and generator, so the results do not depend
//! on the number of threads.
//!
//! ```
//! use grit_optim::schedules::{Constant, StepDecay};
//! use grit_train::compare::{ScheduleComparison, ScheduleRun};
//! use grit_train::prelude::*;
//!
//! let x = ndarray::Array2::from_shape_fn((32, 1), |(i, _)| i as f32 / 32.0);
//! let y = x.mapv(|v| 2.0 * v + 1.0);
//! let build_model = |learning_rate| {
//!     let mut model = Sequential::new([1]).seed(3).add(Dense::new(1));
//!     model.compile(Sgd::new(learning_rate), Loss::MeanSquaredError, [])?;
//!     Ok(model)
//! };
//! let report = ScheduleComparison::new([
//!     ScheduleRun::per_epoch("constant", Constant::new(0.1)?),
//!     ScheduleRun::per_epoch("step", StepDecay::at(0.1, 0.5, [3])?),
//! ])
//! .monitor("loss", Mode::Auto)
//! .run(build_model, &x, &y, || FitOptions::new().epochs(5).batch_size(8).verbose(0))?;
//! assert_eq!(report.runs.len(), 2);
//! println!("{}", report.to_markdown());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use grit_nn::Direction;
use grit_optim::{LearningRate, LearningRateSchedule};
use grit_tensor::{Rng, Samples};

use crate::callbacks::{
    Callback, Context, LearningRateScheduler, Logs, Mode, Monitor, RunInfo, Weights,
};
use crate::{FitOptions, History, Sequential};

mod chart;
mod error;
mod report;

pub use chart::chart_schedule;
pub use error::CompareError;
pub use report::{ComparisonReport, RunReport};

/// The name under which the comparison reports monitor errors.
const CALLBACK_NAME: &str = "ScheduleComparison";

/// The unit of time at which a run's schedule is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulePer {
    /// At the 0-based epoch index, by a [`LearningRateScheduler`] at the start of each epoch.
    Epoch,
    /// At the optimizer's update count before each update: the optimizer follows the schedule.
    Step,
}

/// One schedule to compare, under a name that is unique within the comparison.
#[derive(Debug, Clone)]
pub struct ScheduleRun {
    name: String,
    schedule: Arc<dyn LearningRateSchedule>,
    per: SchedulePer,
}

impl ScheduleRun {
    /// Creates a run of a shared schedule.
    pub fn new(
        name: impl Into<String>,
        schedule: Arc<dyn LearningRateSchedule>,
        per: SchedulePer,
    ) -> Self {
        ScheduleRun {
            name: name.into(),
            schedule,
            per,
        }
    }

    /// Creates a run whose optimizer follows `schedule` at every update.
    pub fn per_step(
        name: impl Into<String>,
        schedule: impl LearningRateSchedule + 'static,
    ) -> Self {
        ScheduleRun::new(name, Arc::new(schedule), SchedulePer::Step)
    }

    /// Creates a run whose rate a [`LearningRateScheduler`] sets from `schedule` at the start of
    /// every epoch.
    pub fn per_epoch(
        name: impl Into<String>,
        schedule: impl LearningRateSchedule + 'static,
    ) -> Self {
        ScheduleRun::new(name, Arc::new(schedule), SchedulePer::Epoch)
    }

    /// Returns the run's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the schedule.
    pub fn schedule(&self) -> &Arc<dyn LearningRateSchedule> {
        &self.schedule
    }

    /// Returns where the schedule is evaluated.
    pub fn per(&self) -> SchedulePer {
        self.per
    }

    /// Returns the learning rate that the model builder receives for this run.
    ///
    /// A per-step run passes the schedule itself. A per-epoch run passes the schedule's rate at
    /// epoch 0 as a fixed rate, which the run's [`LearningRateScheduler`] then replaces at the
    /// start of every epoch.
    pub fn learning_rate(&self) -> LearningRate {
        match self.per {
            SchedulePer::Step => LearningRate::Scheduled(Arc::clone(&self.schedule)),
            SchedulePer::Epoch => LearningRate::Fixed(self.schedule.learning_rate(0)),
        }
    }
}

type CallbackFactory<'f> = Box<dyn Fn(&str) -> Vec<Box<dyn Callback + 'f>> + Sync + 'f>;

/// The settings of a schedule comparison: the runs, the monitored value, the thread limit and
/// the extra callbacks of each run.
pub struct ScheduleComparison<'f> {
    runs: Vec<ScheduleRun>,
    monitor: String,
    mode: Mode,
    max_threads: Option<usize>,
    callbacks: Option<CallbackFactory<'f>>,
}

impl fmt::Debug for ScheduleComparison<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduleComparison")
            .field("runs", &self.runs)
            .field("monitor", &self.monitor)
            .field("mode", &self.mode)
            .field("max_threads", &self.max_threads)
            .field("callbacks", &self.callbacks.is_some())
            .finish()
    }
}

impl<'f> ScheduleComparison<'f> {
    /// Creates a comparison of `runs` that monitors `val_loss` in [`Mode::Auto`].
    pub fn new(runs: impl IntoIterator<Item = ScheduleRun>) -> Self {
        ScheduleComparison {
            runs: runs.into_iter().collect(),
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            max_threads: None,
            callbacks: None,
        }
    }

    /// Sets the epoch-log key that ranks the runs, and its direction of improvement.
    pub fn monitor(mut self, key: impl Into<String>, mode: Mode) -> Self {
        self.monitor = key.into();
        self.mode = mode;
        self
    }

    /// Sets the maximum number of runs that train at once (default: the number of cores that
    /// [`std::thread::available_parallelism`] reports). 1 trains the runs one after another.
    pub fn max_threads(mut self, threads: usize) -> Self {
        self.max_threads = Some(threads);
        self
    }

    /// Sets a factory of extra callbacks, called with the run's name in the thread that trains
    /// the run, so the callbacks need not be `Send`. A TensorBoard callback with
    /// `.run_name(name)` gives each run its own subfolder of one log directory.
    ///
    /// The extra callbacks run after the comparison's own, which add `learning_rate` to every
    /// epoch's logs.
    pub fn callbacks(
        mut self,
        factory: impl Fn(&str) -> Vec<Box<dyn Callback + 'f>> + Sync + 'f,
    ) -> Self {
        self.callbacks = Some(Box::new(factory));
        self
    }

    /// Returns the runs in the order given.
    pub fn runs(&self) -> &[ScheduleRun] {
        &self.runs
    }

    /// Trains one model per run and returns the runs ranked by the monitored value.
    ///
    /// `build_model` receives [`ScheduleRun::learning_rate`] and returns a compiled model. It is
    /// called once before the runs start, to fix the initial weights and the random generator's
    /// state, and once in each run. `fit_options` is called in each run's thread, because
    /// `FitOptions` stores validation data as `&dyn Samples`, which cannot cross threads. Set
    /// `verbose(0)` when runs train in parallel, because their progress output would
    /// interleave.
    ///
    /// In each run, the callbacks are, in order: a [`LearningRateScheduler`] for per-epoch
    /// runs, the comparison's recorder of the rate applied at each batch, and the callbacks of
    /// [`ScheduleComparison::callbacks`].
    ///
    /// # Errors
    /// [`CompareError::NoRuns`], [`CompareError::InvalidRunName`],
    /// [`CompareError::DuplicateName`] and [`CompareError::InvalidSetting`] before any training;
    /// [`CompareError::Build`], [`CompareError::NotCompiled`] and
    /// [`CompareError::WeightsMismatch`] for a builder that fails or is inconsistent;
    /// [`CompareError::Run`] and [`CompareError::Panicked`] for a run that fails. When a run
    /// fails, runs not yet started are skipped, and the error of the first failed run in the
    /// order given is returned.
    pub fn run<'v, X, Y, B, O>(
        &self,
        build_model: B,
        x: &X,
        y: &Y,
        fit_options: O,
    ) -> Result<ComparisonReport, CompareError>
    where
        X: Samples + Sync,
        Y: Samples + Sync,
        B: Fn(LearningRate) -> crate::Result<Sequential> + Sync,
        O: Fn() -> FitOptions<'v> + Sync,
    {
        self.check()?;
        let first = &self.runs[0];
        let reference = build_checked(&build_model, first)?;
        let job = Job {
            build_model: &build_model,
            fit_options: &fit_options,
            callbacks: self.callbacks.as_ref(),
            x,
            y,
            monitor: Monitor::new(self.monitor.clone(), self.mode, 0.0),
            initial_weights: reference.get_weights(),
            initial_rng: reference.rng().clone(),
        };
        drop(reference);

        let threads = self.thread_count();
        log::info!(
            "comparing {} schedules on {threads} threads, monitoring `{}`",
            self.runs.len(),
            self.monitor
        );
        let finished = run_all(&self.runs, threads, &job)?;
        // Every run resolves the same key against the same metrics, so the first run's
        // direction is every run's.
        let direction = finished[0].1;
        let reports = finished.into_iter().map(|(report, _)| report).collect();
        Ok(ComparisonReport::new(
            self.monitor.clone(),
            direction,
            reports,
        ))
    }

    fn check(&self) -> Result<(), CompareError> {
        if self.runs.is_empty() {
            return Err(CompareError::NoRuns);
        }
        let mut names = BTreeSet::new();
        for run in &self.runs {
            if run.name.trim().is_empty() {
                return Err(CompareError::InvalidRunName {
                    name: run.name.clone(),
                    reason: "a run name must contain a character other than white space",
                });
            }
            if !names.insert(run.name.as_str()) {
                return Err(CompareError::DuplicateName(run.name.clone()));
            }
        }
        if self.max_threads == Some(0) {
            return Err(CompareError::InvalidSetting {
                name: "max_threads",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }

    fn thread_count(&self) -> usize {
        let limit = self
            .max_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        limit.min(self.runs.len())
    }
}

/// Trains one model per run of `runs` and returns the runs ranked by the monitored value.
///
/// This is [`ScheduleComparison::run`] with the default settings: `val_loss` in
/// [`Mode::Auto`], as many threads as cores and no extra callbacks.
///
/// # Errors
/// The errors of [`ScheduleComparison::run`].
pub fn compare_schedules<'v, X, Y, B, O>(
    build_model: B,
    x: &X,
    y: &Y,
    fit_options: O,
    runs: impl IntoIterator<Item = ScheduleRun>,
) -> Result<ComparisonReport, CompareError>
where
    X: Samples + Sync,
    Y: Samples + Sync,
    B: Fn(LearningRate) -> crate::Result<Sequential> + Sync,
    O: Fn() -> FitOptions<'v> + Sync,
{
    ScheduleComparison::new(runs).run(build_model, x, y, fit_options)
}

/// The inputs that every run shares.
struct Job<'a, 'f, 'v, X, Y> {
    build_model: &'a (dyn Fn(LearningRate) -> crate::Result<Sequential> + Sync),
    fit_options: &'a (dyn Fn() -> FitOptions<'v> + Sync),
    callbacks: Option<&'a CallbackFactory<'f>>,
    x: &'a X,
    y: &'a Y,
    monitor: Monitor,
    initial_weights: Weights,
    initial_rng: Rng,
}

type Outcome = Result<(RunReport, Direction), CompareError>;

/// Trains every run on at most `threads` threads and returns the results in run order.
///
/// After a failure, runs not yet started are skipped, and the error of the first failed run in
/// run order is returned.
fn run_all<X, Y>(
    runs: &[ScheduleRun],
    threads: usize,
    job: &Job<'_, '_, '_, X, Y>,
) -> Result<Vec<(RunReport, Direction)>, CompareError>
where
    X: Samples + Sync,
    Y: Samples + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcomes: Vec<Mutex<Option<Outcome>>> = runs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(run) = runs.get(index) else {
                        break;
                    };
                    log::info!(
                        "run {:?} started ({} of {})",
                        run.name,
                        index + 1,
                        runs.len()
                    );
                    let outcome = catch_unwind(AssertUnwindSafe(|| train_run(run, job)))
                        .unwrap_or_else(|payload| {
                            Err(CompareError::Panicked {
                                run: run.name.clone(),
                                message: panic_message(payload.as_ref()),
                            })
                        });
                    log_outcome(run, &outcome);
                    if outcome.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    *outcomes[index].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                }
            });
        }
    });

    // Runs start in index order and none starts after a failure, so the runs without an
    // outcome come after every failed run.
    let mut finished = Vec::with_capacity(runs.len());
    for slot in outcomes {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(run)) => finished.push(run),
            Some(Err(error)) => return Err(error),
            None => unreachable!("a run is skipped only after a failed run"),
        }
    }
    Ok(finished)
}

fn log_outcome(run: &ScheduleRun, outcome: &Outcome) {
    match outcome {
        Ok((report, _)) => log::info!(
            "run {:?} finished in {:.1} s: best value {:?} at epoch {:?}",
            run.name,
            report.wall_time.as_secs_f64(),
            report.best_value,
            report.best_epoch
        ),
        Err(error) => log::error!("run {:?} failed: {error}", run.name),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".into()
    }
}

/// Builds the model for `run` and checks that it is compiled.
fn build_checked(
    build_model: &(dyn Fn(LearningRate) -> crate::Result<Sequential> + Sync),
    run: &ScheduleRun,
) -> Result<Sequential, CompareError> {
    let model = build_model(run.learning_rate()).map_err(|source| CompareError::Build {
        run: run.name.clone(),
        source,
    })?;
    if model.optimizer().is_none() {
        return Err(CompareError::NotCompiled {
            run: run.name.clone(),
        });
    }
    Ok(model)
}

/// Builds, prepares and trains the model of one run.
fn train_run<X, Y>(run: &ScheduleRun, job: &Job<'_, '_, '_, X, Y>) -> Outcome
where
    X: Samples + Sync,
    Y: Samples + Sync,
{
    let start = Instant::now();
    let mut model = build_checked(job.build_model, run)?;
    model
        .set_weights(&job.initial_weights)
        .map_err(|source| CompareError::WeightsMismatch {
            run: run.name.clone(),
            source,
        })?;
    model.set_rng(job.initial_rng.clone());

    let mut scheduler = match run.per {
        SchedulePer::Epoch => {
            let schedule = Arc::clone(&run.schedule);
            Some(LearningRateScheduler::new(move |epoch, _| {
                schedule.learning_rate(epoch as u64)
            }))
        }
        SchedulePer::Step => None,
    };
    let mut recorder = RateRecorder::new(job.monitor.clone());
    let mut extra = job
        .callbacks
        .map(|factory| factory(&run.name))
        .unwrap_or_default();
    let mut callbacks: Vec<&mut dyn Callback> = Vec::with_capacity(extra.len() + 2);
    if let Some(scheduler) = scheduler.as_mut() {
        callbacks.push(scheduler);
    }
    callbacks.push(&mut recorder);
    callbacks.extend(extra.iter_mut().map(|c| &mut **c as &mut dyn Callback));

    let options = (job.fit_options)();
    let history = model
        .fit(job.x, job.y, &options, &mut callbacks)
        .map_err(|source| CompareError::Run {
            run: run.name.clone(),
            source,
        })?;
    drop(callbacks);
    drop(extra);

    let (best_value, best_epoch) = recorder.best(&history);
    let direction = recorder.monitor.direction().unwrap_or(Direction::Min);
    let report = RunReport {
        name: run.name.clone(),
        schedule: Arc::clone(&run.schedule),
        per: run.per,
        history,
        best_value,
        best_epoch,
        final_learning_rate: recorder.rates.last().copied(),
        first_step: recorder.first_step.unwrap_or(0),
        learning_rates: recorder.rates,
        wall_time: start.elapsed(),
    };
    Ok((report, direction))
}

/// Records the rate applied at every batch, adds `learning_rate` to epoch logs that lack it,
/// and resolves the monitored key against the run.
struct RateRecorder {
    monitor: Monitor,
    first_step: Option<u64>,
    rates: Vec<f32>,
}

impl RateRecorder {
    fn new(monitor: Monitor) -> Self {
        RateRecorder {
            monitor,
            first_step: None,
            rates: Vec::new(),
        }
    }

    /// Returns the best finite monitored value of `history` and its epoch. The first of equal
    /// values wins, because an improvement must be strict.
    fn best(&self, history: &History) -> (Option<f64>, Option<usize>) {
        let mut best: Option<(f64, usize)> = None;
        for (&epoch, logs) in history.epochs().iter().zip(history.logs()) {
            let Some(&value) = logs.get(self.monitor.key()) else {
                continue;
            };
            if self
                .monitor
                .is_improvement(value, best.map(|(value, _)| value))
            {
                best = Some((value, epoch));
            }
        }
        (best.map(|(value, _)| value), best.map(|(_, epoch)| epoch))
    }
}

impl Callback for RateRecorder {
    fn name(&self) -> &str {
        CALLBACK_NAME
    }

    fn provided_keys(&self) -> Vec<String> {
        vec!["learning_rate".into()]
    }

    fn validate(&mut self, run: &RunInfo) -> crate::Result<()> {
        self.monitor.resolve(CALLBACK_NAME, run)
    }

    fn on_train_begin(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> crate::Result<()> {
        self.first_step = None;
        self.rates.clear();
        Ok(())
    }

    fn on_train_batch_begin(
        &mut self,
        _batch: usize,
        ctx: &mut Context,
        _logs: &mut Logs,
    ) -> crate::Result<()> {
        // Read at the first batch rather than at train begin, because a callback later in the
        // list may restore the optimizer's update count in its own `on_train_begin`.
        self.first_step.get_or_insert(ctx.iterations());
        self.rates.push(ctx.learning_rate());
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        ctx: &mut Context,
        logs: &mut Logs,
    ) -> crate::Result<()> {
        // A per-epoch run's LearningRateScheduler has logged the rate already. A per-step run
        // logs the optimizer's rate at epoch end, the rate of its next update, as
        // LearningRateScheduler and the TensorBoard callback do.
        if !logs.contains_key("learning_rate") {
            logs.insert("learning_rate".into(), f64::from(ctx.learning_rate()));
        }
        Ok(())
    }
}
