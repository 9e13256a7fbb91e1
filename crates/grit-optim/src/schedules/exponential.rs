use serde_json::json;

use super::LearningRateSchedule;
use crate::OptimError;
use crate::error::check_rate;

/// `initial_learning_rate · decay_rate^(step / decay_steps)`, with the exponent rounded down
/// when `staircase` is set (Keras's `ExponentialDecay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialDecay {
    initial_learning_rate: f32,
    decay_steps: u64,
    decay_rate: f32,
    staircase: bool,
}

impl ExponentialDecay {
    /// Creates the schedule without staircase.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] when `decay_steps` is 0, or a rate is negative or not
    /// finite.
    pub fn new(
        initial_learning_rate: f32,
        decay_steps: u64,
        decay_rate: f32,
    ) -> crate::Result<Self> {
        check_rate(
            "ExponentialDecay",
            "initial_learning_rate",
            initial_learning_rate,
        )?;
        check_rate("ExponentialDecay", "decay_rate", decay_rate)?;
        if decay_steps == 0 {
            return Err(OptimError::InvalidParameter {
                owner: "ExponentialDecay",
                name: "decay_steps",
                value: "0".into(),
                expected: "a step count of at least 1",
            });
        }
        Ok(ExponentialDecay {
            initial_learning_rate,
            decay_steps,
            decay_rate,
            staircase: false,
        })
    }

    /// Rounds the exponent down, so the rate drops once every `decay_steps` steps.
    pub fn staircase(mut self, staircase: bool) -> Self {
        self.staircase = staircase;
        self
    }
}

impl LearningRateSchedule for ExponentialDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let mut exponent = step as f64 / self.decay_steps as f64;
        if self.staircase {
            exponent = exponent.floor();
        }
        (self.initial_learning_rate as f64 * (self.decay_rate as f64).powf(exponent)) as f32
    }

    fn name(&self) -> &'static str {
        "ExponentialDecay"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    #[test]
    fn keras_reference_values() {
        let smooth = ExponentialDecay::new(0.05, 10, 0.96).unwrap();
        // 0.05 · 0.96^0.5 = 0.0489898
        assert_rate_at(&smooth, 5, 0.048_989_8);
        let stairs = ExponentialDecay::new(0.1, 3, 0.96).unwrap().staircase(true);
        assert_rate_at(&stairs, 1, 0.1);
        assert_rate_at(&stairs, 2, 0.1);
        assert_rate_at(&stairs, 3, 0.096);
        // 0.1 · 0.96^33 = 0.0259986
        assert_rate_at(&stairs, 100, 0.1 * 0.96_f64.powi(33));
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(ExponentialDecay::new(0.1, 0, 0.9), "decay_steps");
        assert_rejects(
            ExponentialDecay::new(-0.1, 10, 0.9),
            "initial_learning_rate",
        );
        assert_rejects(
            ExponentialDecay::new(f32::NAN, 10, 0.9),
            "initial_learning_rate",
        );
        assert_rejects(ExponentialDecay::new(0.1, 10, -0.9), "decay_rate");
        assert_rejects(ExponentialDecay::new(0.1, 10, f32::INFINITY), "decay_rate");
    }
}
