//! Learning-rate schedules.
//!
//! A schedule maps a 0-based step to a learning rate. Passed to an optimizer, the step is the
//! number of updates made so far, so the first update uses `learning_rate(0)`. Passed to the
//! `LearningRateScheduler` callback, the step is the 0-based epoch index.
//!
//! Each schedule's constructor takes its required parameters, and setters take the optional
//! ones. The constructor and every setter whose value can be invalid check that value at once and
//! return [`crate::Result`], with an [`crate::OptimError::InvalidParameter`] that names the
//! parameter. Setters that take a `bool` return the schedule directly. For example,
//! `CosineDecay::new(1e-3, 1000)?.alpha(0.1)?`.
//!
//! Schedules compute in `f64` and round the result to `f32`.

use std::fmt::Debug;

mod constant;
mod cosine;
mod cosine_restarts;
mod exponential;
mod inverse_time;
mod linear_warmup;
mod one_cycle;
mod piecewise_constant;
mod polynomial;
mod step;

pub use constant::Constant;
pub use cosine::CosineDecay;
pub use cosine_restarts::CosineDecayRestarts;
pub use exponential::ExponentialDecay;
pub use inverse_time::InverseTimeDecay;
pub use linear_warmup::LinearWarmup;
pub use one_cycle::OneCycle;
pub use piecewise_constant::PiecewiseConstantDecay;
pub use polynomial::PolynomialDecay;
pub use step::StepDecay;

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

/// Widens `value` to the `f64` nearest to its shortest decimal form, so 0.3_f32 becomes 0.3_f64
/// rather than 0.30000001192092896.
///
/// Schedules use it for parameters that place phase or period boundaries, so that a boundary the
/// user wrote as a whole step, such as 0.3 · 100 = 30, falls exactly on that step.
pub(crate) fn widen_decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::LearningRateSchedule;

    /// Asserts that `schedule` returns `expected` at `step`, within 1e-6 relative.
    #[track_caller]
    pub(crate) fn assert_rate_at(schedule: &impl LearningRateSchedule, step: u64, expected: f64) {
        let actual = schedule.learning_rate(step);
        let difference = (f64::from(actual) - expected).abs();
        assert!(
            difference <= 1e-6 * expected.abs(),
            "{} at step {step}: got {actual}, expected {expected} (relative tolerance 1e-6)",
            schedule.name(),
        );
    }

    /// Asserts that `result` is an error whose message names `parameter`.
    #[track_caller]
    pub(crate) fn assert_rejects<T: std::fmt::Debug>(result: crate::Result<T>, parameter: &str) {
        let error = result.expect_err("expected an invalid-parameter error");
        let message = error.to_string();
        assert!(
            message.contains(&format!("`{parameter}`")),
            "error does not name `{parameter}`: {message}"
        );
    }
}
