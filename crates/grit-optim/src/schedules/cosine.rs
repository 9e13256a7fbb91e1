use std::f64::consts::PI;

use serde_json::json;

use super::LearningRateSchedule;
use crate::error::{check_range, check_rate, check_steps};

/// A cosine decay over `decay_steps`, optionally after a linear warm-up (Keras's
/// `CosineDecay`).
///
/// With `D = decay_steps` and `cosine(x) = (1 − alpha) · ½ · (1 + cos(π · x)) + alpha`:
/// - without warm-up, `rate = initial_learning_rate · cosine(min(step, D) / D)`, which ends at
///   `initial_learning_rate · alpha`;
/// - with warm-up to `target` over `W` steps, and `s = min(step, W + D)`, the rate is
///   `initial_learning_rate + (target − initial_learning_rate) · s / W` while `s < W`, and
///   `target · cosine((s − W) / D)` after, which ends at `target · alpha`.
///
/// Defaults as Keras: `alpha` 0, no warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineDecay {
    initial_learning_rate: f32,
    decay_steps: u64,
    alpha: f32,
    warmup_target: Option<f32>,
    warmup_steps: u64,
}

const OWNER: &str = "CosineDecay";

impl CosineDecay {
    /// Creates a cosine decay to 0 without warm-up.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `decay_steps` is 0, or
    /// `initial_learning_rate` is negative or not finite.
    pub fn new(initial_learning_rate: f32, decay_steps: u64) -> crate::Result<Self> {
        check_rate(OWNER, "initial_learning_rate", initial_learning_rate)?;
        check_steps(OWNER, "decay_steps", decay_steps)?;
        Ok(CosineDecay {
            initial_learning_rate,
            decay_steps,
            alpha: 0.0,
            warmup_target: None,
            warmup_steps: 0,
        })
    }

    /// Sets the final rate as a fraction of the rate the decay starts from.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `alpha` is outside `[0, 1]`.
    pub fn alpha(mut self, alpha: f32) -> crate::Result<Self> {
        check_range(OWNER, "alpha", alpha, 0.0, 1.0, true, "a value in [0, 1]")?;
        self.alpha = alpha;
        Ok(self)
    }

    /// Adds a linear warm-up from `initial_learning_rate` to `target` over `warmup_steps`
    /// steps, followed by the cosine decay from `target`.
    ///
    /// As in Keras, `warmup_steps` may be 0, and the decay then starts from `target` at step 0.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `target` is negative or not finite.
    pub fn warmup(mut self, target: f32, warmup_steps: u64) -> crate::Result<Self> {
        check_rate(OWNER, "warmup_target", target)?;
        self.warmup_target = Some(target);
        self.warmup_steps = warmup_steps;
        Ok(self)
    }

    fn decayed(&self, start: f64, fraction: f64) -> f64 {
        let alpha = f64::from(self.alpha);
        let cosine = 0.5 * (1.0 + (PI * fraction).cos());
        start * ((1.0 - alpha) * cosine + alpha)
    }
}

impl LearningRateSchedule for CosineDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let initial = f64::from(self.initial_learning_rate);
        let decay_steps = self.decay_steps as f64;
        let rate = match self.warmup_target {
            // Keras ignores `warmup_steps` when there is no target.
            None => {
                let step = step.min(self.decay_steps) as f64;
                self.decayed(initial, step / decay_steps)
            }
            Some(target) => {
                let target = f64::from(target);
                let step = step.min(self.warmup_steps.saturating_add(self.decay_steps));
                if step < self.warmup_steps {
                    let progress = step as f64 / self.warmup_steps as f64;
                    initial + (target - initial) * progress
                } else {
                    let decay_step = (step - self.warmup_steps) as f64;
                    self.decayed(target, decay_step / decay_steps)
                }
            }
        };
        rate as f32
    }

    fn name(&self) -> &'static str {
        "CosineDecay"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    #[test]
    fn keras_reference_values() {
        let plain = CosineDecay::new(1.0, 1000).unwrap();
        assert_rate_at(&plain, 0, 1.0);
        // ½ · (1 + cos(π/4)) = 0.853553
        assert_rate_at(&plain, 250, 0.853_553_390_593_273_8);
        assert_rate_at(&plain, 500, 0.5);
        assert_rate_at(&plain, 1000, 0.0);
        assert_rate_at(&plain, 1250, 0.0);
    }

    #[test]
    fn alpha_sets_the_floor() {
        let floored = CosineDecay::new(1.0, 1000).unwrap().alpha(0.1).unwrap();
        // 0.9 · 0.5 + 0.1 = 0.55
        assert_rate_at(&floored, 500, 0.55);
        assert_rate_at(&floored, 1250, 0.1);
    }

    #[test]
    fn warmup_keras_reference_values() {
        let from_zero = CosineDecay::new(0.0, 1000)
            .unwrap()
            .warmup(10.0, 2000)
            .unwrap();
        assert_rate_at(&from_zero, 1000, 5.0);
        assert_rate_at(&from_zero, 2000, 10.0);
        assert_rate_at(&from_zero, 2500, 5.0);
        assert_rate_at(&from_zero, 3000, 0.0);

        // 0.1 + (1.0 − 0.1) · 50/100 = 0.55, which checks the `+ initial_learning_rate` term.
        let from_nonzero = CosineDecay::new(0.1, 1000)
            .unwrap()
            .warmup(1.0, 100)
            .unwrap();
        assert_rate_at(&from_nonzero, 50, 0.55);
    }

    #[test]
    fn warmup_end_boundary() {
        let schedule = CosineDecay::new(0.0, 1000)
            .unwrap()
            .warmup(10.0, 2000)
            .unwrap();
        // Step 1999: 10 · 1999/2000 = 9.995.
        assert_rate_at(&schedule, 1999, 9.995);
        assert_rate_at(&schedule, 2000, 10.0);
        // Step 2001: 10 · ½ · (1 + cos(π/1000)) = 9.99997533.
        assert_rate_at(&schedule, 2001, 10.0 * 0.5 * (1.0 + (PI / 1000.0).cos()));
        // Around the decay end, step 3000: the value stays at target · alpha = 0.
        // Step 2999: 10 · ½ · (1 + cos(999π/1000)) = 2.4674e-5.
        assert_rate_at(&schedule, 2999, 5.0 * (1.0 + (PI * 0.999).cos()));
        assert_rate_at(&schedule, 3001, 0.0);
    }

    #[test]
    fn warmup_with_alpha_ends_at_target_times_alpha() {
        let schedule = CosineDecay::new(0.0, 100)
            .unwrap()
            .alpha(0.2)
            .unwrap()
            .warmup(1.0, 10)
            .unwrap();
        assert_rate_at(&schedule, 5, 0.5);
        assert_rate_at(&schedule, 110, 0.2);
        assert_rate_at(&schedule, 10_000, 0.2);
    }

    #[test]
    fn zero_warmup_steps_starts_at_target() {
        let schedule = CosineDecay::new(0.5, 1000).unwrap().warmup(2.0, 0).unwrap();
        assert_rate_at(&schedule, 0, 2.0);
        assert_rate_at(&schedule, 500, 1.0);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(CosineDecay::new(1.0, 0), "decay_steps");
        assert_rejects(CosineDecay::new(-1.0, 10), "initial_learning_rate");
        assert_rejects(CosineDecay::new(f32::NAN, 10), "initial_learning_rate");
        let schedule = CosineDecay::new(1.0, 10).unwrap();
        assert_rejects(schedule.alpha(-0.1), "alpha");
        assert_rejects(schedule.alpha(1.1), "alpha");
        assert_rejects(schedule.alpha(f32::NAN), "alpha");
        assert_rejects(schedule.warmup(-1.0, 10), "warmup_target");
        assert_rejects(schedule.warmup(f32::INFINITY, 10), "warmup_target");
    }

    #[test]
    fn config_lists_every_parameter() {
        let plain = CosineDecay::new(0.5, 10).unwrap().config();
        assert_eq!(plain["warmup_target"], serde_json::Value::Null);
        assert_eq!(plain["warmup_steps"], 0);

        let config = CosineDecay::new(0.5, 10)
            .unwrap()
            .alpha(0.25)
            .unwrap()
            .warmup(2.0, 4)
            .unwrap()
            .config();
        assert_eq!(config["initial_learning_rate"], 0.5);
        assert_eq!(config["decay_steps"], 10);
        assert_eq!(config["alpha"], 0.25);
        assert_eq!(config["warmup_target"], 2.0);
        assert_eq!(config["warmup_steps"], 4);
    }
}
