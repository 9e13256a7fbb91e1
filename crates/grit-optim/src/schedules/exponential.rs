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

    #[test]
    fn keras_reference_values() {
        let smooth = ExponentialDecay::new(0.05, 10, 0.96).unwrap();
        assert!((smooth.learning_rate(5) - 0.048_989_8).abs() < 1e-7);
        let stairs = ExponentialDecay::new(0.1, 3, 0.96).unwrap().staircase(true);
        assert_eq!(stairs.learning_rate(1), 0.1);
        assert_eq!(stairs.learning_rate(2), 0.1);
        assert!((stairs.learning_rate(3) - 0.096).abs() < 1e-7);
        assert!((stairs.learning_rate(100) - 0.025_998_6).abs() < 1e-7);
    }

    #[test]
    fn zero_decay_steps_is_rejected() {
        let error = ExponentialDecay::new(0.1, 0, 0.9).unwrap_err();
        assert!(error.to_string().contains("decay_steps"), "{error}");
    }
}
