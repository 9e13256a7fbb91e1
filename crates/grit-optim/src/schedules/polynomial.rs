use serde_json::json;

use super::LearningRateSchedule;
use crate::error::{check_positive, check_rate, check_steps};

/// A polynomial decay from `initial_learning_rate` to `end_learning_rate` over `decay_steps`
/// (Keras's `PolynomialDecay`).
///
/// With `D = decay_steps`, `s = min(step, D)` and
/// `rate = (initial_learning_rate − end_learning_rate) · (1 − s / D)^power + end_learning_rate`.
/// The rate stays at `end_learning_rate` after step `D`.
///
/// With `cycle`, the step is not clipped. Instead the span grows to
/// `D · ceil(step / D)` (`D` at step 0), so the rate reaches `end_learning_rate` at every
/// multiple of `D` and jumps up after it. Each jump is lower than the one before: at step
/// `k · D + 1` the rate is about `(initial − end) / (k + 1)^power + end`, and it never returns
/// to `initial_learning_rate`.
///
/// Defaults as Keras: `end_learning_rate` 1e-4, `power` 1 (linear), no cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialDecay {
    initial_learning_rate: f32,
    decay_steps: u64,
    end_learning_rate: f32,
    power: f32,
    cycle: bool,
}

const OWNER: &str = "PolynomialDecay";

impl PolynomialDecay {
    /// Creates a linear decay to 1e-4 without cycle.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `decay_steps` is 0, or
    /// `initial_learning_rate` is negative or not finite.
    pub fn new(initial_learning_rate: f32, decay_steps: u64) -> crate::Result<Self> {
        check_rate(OWNER, "initial_learning_rate", initial_learning_rate)?;
        check_steps(OWNER, "decay_steps", decay_steps)?;
        Ok(PolynomialDecay {
            initial_learning_rate,
            decay_steps,
            end_learning_rate: 1e-4,
            power: 1.0,
            cycle: false,
        })
    }

    /// Sets the rate reached at `decay_steps`.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `end_learning_rate` is negative or not finite.
    pub fn end_learning_rate(mut self, end_learning_rate: f32) -> crate::Result<Self> {
        check_rate(OWNER, "end_learning_rate", end_learning_rate)?;
        self.end_learning_rate = end_learning_rate;
        Ok(self)
    }

    /// Sets the exponent of the polynomial.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `power` is not a finite value greater than 0.
    pub fn power(mut self, power: f32) -> crate::Result<Self> {
        check_positive(OWNER, "power", power)?;
        self.power = power;
        Ok(self)
    }

    /// Restarts the decay after every multiple of `decay_steps`, over a longer span each time.
    pub fn cycle(mut self, cycle: bool) -> Self {
        self.cycle = cycle;
        self
    }
}

impl LearningRateSchedule for PolynomialDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let (step, span) = if self.cycle {
            let spans = step.div_ceil(self.decay_steps).max(1);
            (step as f64, self.decay_steps as f64 * spans as f64)
        } else {
            let clipped = step.min(self.decay_steps);
            (clipped as f64, self.decay_steps as f64)
        };
        let initial = f64::from(self.initial_learning_rate);
        let end = f64::from(self.end_learning_rate);
        let remaining = (1.0 - step / span).powf(f64::from(self.power));
        ((initial - end) * remaining + end) as f32
    }

    fn name(&self) -> &'static str {
        "PolynomialDecay"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    #[test]
    fn keras_reference_values() {
        let to_zero = PolynomialDecay::new(0.05, 10)
            .unwrap()
            .end_learning_rate(0.0)
            .unwrap();
        // (0.05 − 0) · (1 − 5/10) + 0 = 0.025
        assert_rate_at(&to_zero, 5, 0.025);

        let linear = PolynomialDecay::new(0.05, 10)
            .unwrap()
            .end_learning_rate(0.001)
            .unwrap();
        // 0.049 · 0.5 + 0.001 = 0.0255
        assert_rate_at(&linear, 5, 0.0255);
        assert_rate_at(&linear, 10, 0.001);
        assert_rate_at(&linear, 15, 0.001);

        let cycled = linear.cycle(true);
        assert_rate_at(&cycled, 10, 0.001);
        // The span grows to 20: 0.049 · (1 − 15/20) + 0.001 = 0.01325
        assert_rate_at(&cycled, 15, 0.013_25);

        let square_root = cycled.power(0.5).unwrap();
        // 0.049 · 0.25^0.5 + 0.001 = 0.0255
        assert_rate_at(&square_root, 15, 0.049 * 0.25_f64.sqrt() + 0.001);

        let default_end = PolynomialDecay::new(0.001, 10).unwrap().cycle(true);
        assert_rate_at(&default_end, 0, 0.001);
    }

    #[test]
    fn default_end_rate_is_keras_value() {
        let schedule = PolynomialDecay::new(0.1, 100).unwrap();
        // (0.1 − 1e-4) · 0.5 + 1e-4 = 0.05005
        assert_rate_at(&schedule, 50, 0.050_05);
        assert_rate_at(&schedule, 100, 1e-4);
        assert_rate_at(&schedule, 10_000, 1e-4);
    }

    #[test]
    fn cycle_restarts_lower_each_time() {
        let schedule = PolynomialDecay::new(0.05, 10)
            .unwrap()
            .end_learning_rate(0.001)
            .unwrap()
            .cycle(true);
        // Step 9: span 10, 0.049 · 0.1 + 0.001 = 0.0059.
        assert_rate_at(&schedule, 9, 0.0059);
        assert_rate_at(&schedule, 10, 0.001);
        // Step 11: span 20, 0.049 · (1 − 11/20) + 0.001 = 0.02305.
        assert_rate_at(&schedule, 11, 0.023_05);
        assert_rate_at(&schedule, 20, 0.001);
        // Step 21: span 30, 0.049 · (1 − 21/30) + 0.001 = 0.0157.
        assert_rate_at(&schedule, 21, 0.0157);
    }

    #[test]
    fn power_shapes_the_curve() {
        let quadratic = PolynomialDecay::new(1.0, 10)
            .unwrap()
            .end_learning_rate(0.0)
            .unwrap()
            .power(2.0)
            .unwrap();
        // (1 − 3/10)^2 = 0.49
        assert_rate_at(&quadratic, 3, 0.49);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(PolynomialDecay::new(0.1, 0), "decay_steps");
        assert_rejects(PolynomialDecay::new(-0.1, 10), "initial_learning_rate");
        assert_rejects(
            PolynomialDecay::new(f32::INFINITY, 10),
            "initial_learning_rate",
        );
        let schedule = PolynomialDecay::new(0.1, 10).unwrap();
        assert_rejects(schedule.end_learning_rate(-1e-4), "end_learning_rate");
        assert_rejects(schedule.end_learning_rate(f32::NAN), "end_learning_rate");
        assert_rejects(schedule.power(0.0), "power");
        assert_rejects(schedule.power(-1.0), "power");
        assert_rejects(schedule.power(f32::NAN), "power");
    }

    #[test]
    fn config_lists_every_parameter() {
        let config = PolynomialDecay::new(0.5, 10)
            .unwrap()
            .end_learning_rate(0.25)
            .unwrap()
            .power(2.0)
            .unwrap()
            .cycle(true)
            .config();
        assert_eq!(config["initial_learning_rate"], 0.5);
        assert_eq!(config["decay_steps"], 10);
        assert_eq!(config["end_learning_rate"], 0.25);
        assert_eq!(config["power"], 2.0);
        assert_eq!(config["cycle"], true);
    }
}
