use serde_json::json;

use super::LearningRateSchedule;
use crate::error::{check_rate, check_steps};

/// `initial_learning_rate / (1 + decay_rate · step / decay_steps)`, with `step / decay_steps`
/// rounded down when `staircase` is set (Keras's `InverseTimeDecay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseTimeDecay {
    initial_learning_rate: f32,
    decay_steps: u64,
    decay_rate: f32,
    staircase: bool,
}

impl InverseTimeDecay {
    /// Creates the schedule without staircase.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `decay_steps` is 0, or a rate is negative or
    /// not finite.
    pub fn new(
        initial_learning_rate: f32,
        decay_steps: u64,
        decay_rate: f32,
    ) -> crate::Result<Self> {
        const OWNER: &str = "InverseTimeDecay";
        check_rate(OWNER, "initial_learning_rate", initial_learning_rate)?;
        check_steps(OWNER, "decay_steps", decay_steps)?;
        check_rate(OWNER, "decay_rate", decay_rate)?;
        Ok(InverseTimeDecay {
            initial_learning_rate,
            decay_steps,
            decay_rate,
            staircase: false,
        })
    }

    /// Rounds `step / decay_steps` down, so the rate drops once every `decay_steps` steps.
    pub fn staircase(mut self, staircase: bool) -> Self {
        self.staircase = staircase;
        self
    }
}

impl LearningRateSchedule for InverseTimeDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let decay_periods = if self.staircase {
            (step / self.decay_steps) as f64
        } else {
            step as f64 / self.decay_steps as f64
        };
        let denominator = 1.0 + f64::from(self.decay_rate) * decay_periods;
        (f64::from(self.initial_learning_rate) / denominator) as f32
    }

    fn name(&self) -> &'static str {
        "InverseTimeDecay"
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
        let smooth = InverseTimeDecay::new(0.1, 10, 0.96).unwrap();
        for step in 0..=25 {
            // 0.1 / (1 + 0.96 · step / 10) = 0.1 / (1 + 0.096 · step)
            let expected = 0.1 / (1.0 + 0.096 * step as f64);
            assert_rate_at(&smooth, step, expected);
        }
    }

    #[test]
    fn staircase_drops_at_decay_steps() {
        let stairs = InverseTimeDecay::new(0.1, 10, 0.96)
            .unwrap()
            .staircase(true);
        assert_rate_at(&stairs, 0, 0.1);
        assert_rate_at(&stairs, 9, 0.1);
        // 0.1 / (1 + 0.96) = 0.0510204
        assert_rate_at(&stairs, 10, 0.051_020_4);
        assert_rate_at(&stairs, 11, 0.1 / 1.96);
        assert_rate_at(&stairs, 19, 0.1 / 1.96);
        // 0.1 / (1 + 2 · 0.96) = 0.0342466
        assert_rate_at(&stairs, 20, 0.1 / 2.92);
    }

    #[test]
    fn zero_decay_rate_keeps_initial_rate() {
        let schedule = InverseTimeDecay::new(0.1, 10, 0.0).unwrap();
        assert_rate_at(&schedule, 1_000_000, 0.1);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(InverseTimeDecay::new(0.1, 0, 0.96), "decay_steps");
        assert_rejects(
            InverseTimeDecay::new(-0.1, 10, 0.96),
            "initial_learning_rate",
        );
        assert_rejects(
            InverseTimeDecay::new(f32::NAN, 10, 0.96),
            "initial_learning_rate",
        );
        assert_rejects(InverseTimeDecay::new(0.1, 10, -0.5), "decay_rate");
        assert_rejects(InverseTimeDecay::new(0.1, 10, f32::INFINITY), "decay_rate");
    }

    #[test]
    fn config_lists_every_parameter() {
        let config = InverseTimeDecay::new(0.5, 10, 0.25)
            .unwrap()
            .staircase(true)
            .config();
        assert_eq!(config["initial_learning_rate"], 0.5);
        assert_eq!(config["decay_steps"], 10);
        assert_eq!(config["decay_rate"], 0.25);
        assert_eq!(config["staircase"], true);
    }
}
