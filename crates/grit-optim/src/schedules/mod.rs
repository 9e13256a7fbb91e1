//! Learning-rate schedules.
//!
//! A schedule maps a 0-based step to a learning rate. Passed to an optimizer, the step is the
//! number of updates made so far, so the first update uses `learning_rate(0)`. Passed to the
//! `LearningRateScheduler` callback, the step is the 0-based epoch index.

use std::fmt::Debug;

mod constant;
mod exponential;

pub use constant::Constant;
pub use exponential::ExponentialDecay;

/// A learning rate as a function of the step.
pub trait LearningRateSchedule: Debug + Send + Sync {
    /// Returns the learning rate at 0-based `step`.
    fn learning_rate(&self, step: u64) -> f32;

    /// Returns the schedule's name (Keras's class name where one exists).
    fn name(&self) -> &'static str;

    /// Returns the schedule's parameters as JSON, for checkpoints and reports.
    fn config(&self) -> serde_json::Value;
}

impl<S: LearningRateSchedule + ?Sized> LearningRateSchedule for Box<S> {
    fn learning_rate(&self, step: u64) -> f32 {
        (**self).learning_rate(step)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn config(&self) -> serde_json::Value {
        (**self).config()
    }
}
