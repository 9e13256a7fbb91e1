use std::sync::Arc;

use grit_optim::LearningRateSchedule;

use super::{Callback, Context, Logs};
use crate::{Result, TrainError};

type ScheduleFn = Box<dyn FnMut(usize, f32) -> f32>;

/// Sets the learning rate at the start of every epoch (Keras's `LearningRateScheduler`).
///
/// The schedule receives the 0-based absolute epoch index (so `initial_epoch` continues the
/// schedule) and the current rate, and returns the rate for this epoch. At the end of each
/// epoch the rate in use is written to the logs as `learning_rate`, which History, a
/// CSVLogger placed after this callback and the progress display then show.
///
/// A NaN, infinite or negative rate is an error naming the epoch. The optimizer must have a
/// fixed rate: one built on a schedule rejects the change.
///
/// ```
/// use grit_optim::schedules::StepDecay;
/// use grit_train::callbacks::LearningRateScheduler;
///
/// // 0.1, then ×0.1 at epoch 100 and again at 200.
/// let step = LearningRateScheduler::from_schedule(StepDecay::at(0.1, 0.1, [100, 200])?);
/// // The same rule as a closure of (epoch, current rate).
/// let closure = LearningRateScheduler::new(|epoch, rate| if epoch == 100 || epoch == 200 { rate * 0.1 } else { rate });
/// # Ok::<(), grit_optim::OptimError>(())
/// ```
pub struct LearningRateScheduler {
    schedule: ScheduleFn,
    verbose: u8,
}

impl LearningRateScheduler {
    /// Uses a closure `(epoch, current_rate) -> rate`.
    pub fn new(schedule: impl FnMut(usize, f32) -> f32 + 'static) -> Self {
        LearningRateScheduler {
            schedule: Box::new(schedule),
            verbose: 0,
        }
    }

    /// Evaluates a schedule at the 0-based epoch index.
    pub fn from_schedule(schedule: impl LearningRateSchedule + 'static) -> Self {
        let schedule: Arc<dyn LearningRateSchedule> = Arc::new(schedule);
        LearningRateScheduler::new(move |epoch, _| schedule.learning_rate(epoch as u64))
    }

    /// Prints each change when above 0.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }
}

impl Callback for LearningRateScheduler {
    fn name(&self) -> &str {
        "LearningRateScheduler"
    }

    fn provided_keys(&self) -> Vec<String> {
        vec!["learning_rate".into()]
    }

    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        let rate = (self.schedule)(epoch, ctx.learning_rate());
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(TrainError::InvalidCallback {
                callback: "LearningRateScheduler",
                message: format!(
                    "the schedule returned {rate} for epoch {epoch}; a learning rate must be finite and not negative"
                ),
            });
        }
        ctx.set_learning_rate(rate)?;
        if self.verbose > 0 {
            ctx.println(&format!(
                "Epoch {}: LearningRateScheduler setting learning rate to {rate}.",
                epoch + 1
            ));
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        logs.insert("learning_rate".into(), ctx.learning_rate() as f64);
        Ok(())
    }
}
