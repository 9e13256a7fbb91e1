use std::sync::Arc;

use serde_json::json;

use super::LearningRateSchedule;
use crate::error::check_rate;

/// A linear warm-up in front of another schedule.
///
/// With `W = warmup_steps`, the rate at `step < W` is
/// `start_learning_rate + (inner(0) − start_learning_rate) · step / W`, and from step `W` on it is
/// `inner(step − W)`. The inner schedule is shifted rather than overlaid: it starts at the end of
/// the warm-up, so a decay over `D` steps still spans `D` steps and the warm-up ends exactly at
/// `inner(0)`. This matches the warm-up of Keras's `CosineDecay`. With `W = 0` the schedule is
/// the inner schedule.
#[derive(Debug, Clone)]
pub struct LinearWarmup {
    inner: Arc<dyn LearningRateSchedule>,
    warmup_steps: u64,
    start_learning_rate: f32,
}

impl LinearWarmup {
    /// Creates a warm-up from `start_learning_rate` at step 0 to `inner`'s first rate at step
    /// `warmup_steps`, followed by `inner`.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `start_learning_rate` is negative or not
    /// finite.
    pub fn new(
        inner: impl LearningRateSchedule + 'static,
        warmup_steps: u64,
        start_learning_rate: f32,
    ) -> crate::Result<Self> {
        check_rate("LinearWarmup", "start_learning_rate", start_learning_rate)?;
        Ok(LinearWarmup {
            inner: Arc::new(inner),
            warmup_steps,
            start_learning_rate,
        })
    }
}

impl LearningRateSchedule for LinearWarmup {
    fn learning_rate(&self, step: u64) -> f32 {
        if step >= self.warmup_steps {
            return self.inner.learning_rate(step - self.warmup_steps);
        }
        let start = f64::from(self.start_learning_rate);
        let end = f64::from(self.inner.learning_rate(0));
        let progress = step as f64 / self.warmup_steps as f64;
        (start + (end - start) * progress) as f32
    }

    fn name(&self) -> &'static str {
        "LinearWarmup"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "warmup_steps": self.warmup_steps,
            "start_learning_rate": self.start_learning_rate,
            "inner": {
                "schedule": self.inner.name(),
                "config": self.inner.config(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};
    use crate::schedules::{Constant, CosineDecay, StepDecay};

    #[test]
    fn warmup_end_boundary() {
        let inner = StepDecay::every(1.0, 0.5, 10).unwrap();
        let schedule = LinearWarmup::new(inner, 100, 0.0).unwrap();
        assert_rate_at(&schedule, 0, 0.0);
        // 0 + (1 − 0) · 50/100 = 0.5
        assert_rate_at(&schedule, 50, 0.5);
        // Step 99: 99/100 = 0.99.
        assert_rate_at(&schedule, 99, 0.99);
        // Step 100 is inner step 0, step 101 inner step 1.
        assert_rate_at(&schedule, 100, 1.0);
        assert_rate_at(&schedule, 101, 1.0);
        // Inner steps 9 and 10 are the inner schedule's first drop: 1.0, then 0.5.
        assert_rate_at(&schedule, 109, 1.0);
        assert_rate_at(&schedule, 110, 0.5);
    }

    #[test]
    fn warmup_from_nonzero_start() {
        let inner = CosineDecay::new(1.0, 1000).unwrap();
        let schedule = LinearWarmup::new(inner, 10, 0.1).unwrap();
        // 0.1 + (1.0 − 0.1) · 5/10 = 0.55
        assert_rate_at(&schedule, 5, 0.55);
        // Step 9: 0.1 + 0.9 · 0.9 = 0.91.
        assert_rate_at(&schedule, 9, 0.91);
        assert_rate_at(&schedule, 10, 1.0);
        // Step 510 is inner step 500: ½ · (1 + cos(π/2)) = 0.5.
        assert_rate_at(&schedule, 510, 0.5);
        assert_rate_at(&schedule, 1010, 0.0);
    }

    #[test]
    fn start_above_inner_rate_decreases() {
        let schedule = LinearWarmup::new(Constant::new(0.2).unwrap(), 4, 1.0).unwrap();
        // 1.0 + (0.2 − 1.0) · 1/4 = 0.8
        assert_rate_at(&schedule, 1, 0.8);
        assert_rate_at(&schedule, 4, 0.2);
    }

    #[test]
    fn zero_warmup_steps_is_inner_schedule() {
        let schedule = LinearWarmup::new(Constant::new(0.2).unwrap(), 0, 0.0).unwrap();
        assert_rate_at(&schedule, 0, 0.2);
        assert_rate_at(&schedule, 7, 0.2);
    }

    #[test]
    fn boxed_inner_schedule() {
        let inner: Box<dyn LearningRateSchedule> = Box::new(Constant::new(0.4).unwrap());
        let schedule = LinearWarmup::new(inner, 2, 0.0).unwrap();
        assert_rate_at(&schedule, 1, 0.2);
        assert_rate_at(&schedule, 2, 0.4);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        let inner = Constant::new(0.1).unwrap();
        assert_rejects(LinearWarmup::new(inner, 10, -0.1), "start_learning_rate");
        assert_rejects(
            LinearWarmup::new(inner, 10, f32::NAN),
            "start_learning_rate",
        );
    }

    #[test]
    fn config_includes_inner_schedule() {
        let inner = CosineDecay::new(0.5, 100).unwrap();
        let config = LinearWarmup::new(inner, 10, 0.25).unwrap().config();
        assert_eq!(config["warmup_steps"], 10);
        assert_eq!(config["start_learning_rate"], 0.25);
        assert_eq!(config["inner"]["schedule"], "CosineDecay");
        assert_eq!(config["inner"]["config"]["decay_steps"], 100);
    }
}
