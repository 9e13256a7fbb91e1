use std::f64::consts::PI;

use serde_json::json;

use super::{LearningRateSchedule, widen_decimal};
use crate::OptimError;
use crate::error::{check_positive, check_rate, check_steps};

/// Smith's one-cycle policy: a cosine warm-up to `max_learning_rate`, then a cosine decay to a
/// rate far below the start. The policy comes from Smith & Topin's "Super-Convergence" (2017),
/// and the formula is that of PyTorch's `OneCycleLR` (`torch/optim/lr_scheduler.py`) with
/// `anneal_strategy="cos"` and `three_phase=False`.
///
/// With `T = total_steps`:
/// - `initial = max_learning_rate / div_factor` and `min = initial / final_div_factor`;
/// - the warm-up phase ends at step `e = pct_start · T − 1` and the decay phase at step `T − 1`;
/// - `anneal(a, b, p) = b + (a − b) · ½ · (1 + cos(π · p))` goes from `a` at `p = 0` to `b` at
///   `p = 1`.
///
/// The rate at `step` is then
/// - `anneal(initial, max_learning_rate, step / e)` for `step ≤ e`;
/// - `anneal(max_learning_rate, min, (step − e) / (T − 1 − e))` for `e < step < T − 1`;
/// - `min` from step `T − 1` on. PyTorch follows the cosine one more step, to a value slightly
///   above `min` at step `T`, and raises an error after it.
///
/// When `e ≤ 0`, that is `pct_start · T ≤ 1`, the warm-up phase is empty and the rate starts on
/// the decay phase's cosine at `step = 0`. PyTorch does the same for `e < 0` and divides by
/// zero for `e = 0`.
///
/// Defaults as PyTorch: `pct_start` 0.3, `div_factor` 25, `final_div_factor` 1e4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    max_learning_rate: f32,
    total_steps: u64,
    pct_start: f32,
    div_factor: f32,
    final_div_factor: f32,
}

const OWNER: &str = "OneCycle";

impl OneCycle {
    /// Creates the policy with PyTorch's defaults.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] when `max_learning_rate` is negative or not finite, or
    /// `total_steps` is 0.
    pub fn new(max_learning_rate: f32, total_steps: u64) -> crate::Result<Self> {
        check_rate(OWNER, "max_learning_rate", max_learning_rate)?;
        check_steps(OWNER, "total_steps", total_steps)?;
        Ok(OneCycle {
            max_learning_rate,
            total_steps,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        })
    }

    /// Sets the fraction of `total_steps` spent in the warm-up phase.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] when `pct_start` is not strictly between 0 and 1.
    pub fn pct_start(mut self, pct_start: f32) -> crate::Result<Self> {
        if !(pct_start > 0.0 && pct_start < 1.0) {
            return Err(OptimError::InvalidParameter {
                owner: OWNER,
                name: "pct_start",
                value: pct_start.to_string(),
                expected: "a value strictly between 0 and 1",
            });
        }
        self.pct_start = pct_start;
        Ok(self)
    }

    /// Sets the divisor of `max_learning_rate` that gives the initial rate.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] when `div_factor` is not a finite value greater than 0.
    pub fn div_factor(mut self, div_factor: f32) -> crate::Result<Self> {
        check_positive(OWNER, "div_factor", div_factor)?;
        self.div_factor = div_factor;
        Ok(self)
    }

    /// Sets the divisor of the initial rate that gives the final rate.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] when `final_div_factor` is not a finite value greater
    /// than 0.
    pub fn final_div_factor(mut self, final_div_factor: f32) -> crate::Result<Self> {
        check_positive(OWNER, "final_div_factor", final_div_factor)?;
        self.final_div_factor = final_div_factor;
        Ok(self)
    }

    /// Returns the step at which the warm-up phase ends, `pct_start · total_steps − 1`.
    fn warmup_end(&self) -> f64 {
        // PyTorch computes in f64, where 0.3 · 100 is exactly 30. The f32 widened directly would
        // give 30.0000012 and move the phase change off the step where PyTorch places it.
        widen_decimal(self.pct_start) * self.total_steps as f64 - 1.0
    }
}

/// Cosine interpolation from `start` at `progress` 0 to `end` at `progress` 1.
fn anneal(start: f64, end: f64, progress: f64) -> f64 {
    end + (start - end) * 0.5 * (1.0 + (PI * progress).cos())
}

impl LearningRateSchedule for OneCycle {
    fn learning_rate(&self, step: u64) -> f32 {
        let max = f64::from(self.max_learning_rate);
        let initial = max / f64::from(self.div_factor);
        let min = initial / f64::from(self.final_div_factor);
        let last_step = self.total_steps - 1;
        if step >= last_step {
            return min as f32;
        }

        let step = step as f64;
        let warmup_end = self.warmup_end();
        let rate = if warmup_end > 0.0 && step <= warmup_end {
            anneal(initial, max, step / warmup_end)
        } else {
            let progress = (step - warmup_end) / (last_step as f64 - warmup_end);
            anneal(max, min, progress)
        };
        rate as f32
    }

    fn name(&self) -> &'static str {
        "OneCycle"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    #[test]
    fn default_phases() {
        // initial = 1/25 = 0.04, min = 0.04/1e4 = 4e-6, warm-up ends at 0.3 · 100 − 1 = 29,
        // decay ends at step 99.
        let schedule = OneCycle::new(1.0, 100).unwrap();
        assert_rate_at(&schedule, 0, 0.04);
        // Step 14: 1 + (0.04 − 1) · ½ · (1 + cos(14π/29)) = 0.494013.
        assert_rate_at(&schedule, 14, 0.494_013_323_878_999_5);
        // Step 28: 1 − 0.48 · (1 + cos(28π/29)) = 0.997186.
        assert_rate_at(&schedule, 28, 0.997_186_219_434_092_6);
        assert_rate_at(&schedule, 29, 1.0);
        // Step 30: 4e-6 + (1 − 4e-6) · ½ · (1 + cos(π/70)) = 0.999497.
        assert_rate_at(&schedule, 30, 0.999_496_535_284_524_3);
        // Step 64, halfway through the decay: 4e-6 + (1 − 4e-6) / 2 = 0.500002.
        assert_rate_at(&schedule, 64, 0.500_002);
        // Step 98: 4e-6 + (1 − 4e-6) · ½ · (1 + cos(69π/70)) = 5.07465e-4.
        assert_rate_at(&schedule, 98, 5.074_647_154_757_879e-4);
        assert_rate_at(&schedule, 99, 4e-6);
        assert_rate_at(&schedule, 100, 4e-6);
        assert_rate_at(&schedule, 1_000_000, 4e-6);
    }

    #[test]
    fn custom_factors_and_phase_change() {
        // initial = 0.1/10 = 0.01, min = 0.01/100 = 1e-4, warm-up ends at 0.25 · 20 − 1 = 4,
        // decay ends at step 19.
        let schedule = OneCycle::new(0.1, 20)
            .unwrap()
            .pct_start(0.25)
            .unwrap()
            .div_factor(10.0)
            .unwrap()
            .final_div_factor(100.0)
            .unwrap();
        assert_rate_at(&schedule, 0, 0.01);
        // Step 2: halfway through the warm-up, (0.01 + 0.1) / 2 = 0.055.
        assert_rate_at(&schedule, 2, 0.055);
        // Step 3: 0.1 + (0.01 − 0.1) · ½ · (1 + cos(3π/4)) = 0.0868198.
        assert_rate_at(&schedule, 3, 0.086_819_805_153_394_64);
        assert_rate_at(&schedule, 4, 0.1);
        // Step 5: 1e-4 + (0.1 − 1e-4) · ½ · (1 + cos(π/15)) = 0.0989085.
        assert_rate_at(&schedule, 5, 0.098_908_472_656_653_6);
        // Step 18: 1e-4 + (0.1 − 1e-4) · ½ · (1 + cos(14π/15)) = 0.00119153.
        assert_rate_at(&schedule, 18, 0.001_191_527_343_346_406);
        assert_rate_at(&schedule, 19, 1e-4);
        assert_rate_at(&schedule, 20, 1e-4);
    }

    #[test]
    fn empty_warmup_starts_on_decay() {
        // 0.3 · 3 − 1 = −0.1, so step 0 is at (0 + 0.1) / (2 + 0.1) of the decay:
        // 4e-6 + (1 − 4e-6) · ½ · (1 + cos(π/21)) = 0.994415.
        let schedule = OneCycle::new(1.0, 3).unwrap();
        assert_rate_at(&schedule, 0, 0.994_415_435_450_911_7);
        // Step 1: ½ · (1 + cos(11π/21)) scaled the same way = 0.462637.
        assert_rate_at(&schedule, 1, 0.462_637_102_666_975_05);
        assert_rate_at(&schedule, 2, 4e-6);

        // 0.1 · 10 − 1 = 0: the decay starts at step 0, from the maximum.
        let single_step = OneCycle::new(1.0, 10).unwrap().pct_start(0.1).unwrap();
        assert_rate_at(&single_step, 0, 1.0);
    }

    #[test]
    fn single_step_cycle_is_minimum() {
        let schedule = OneCycle::new(1.0, 1).unwrap();
        assert_rate_at(&schedule, 0, 4e-6);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(OneCycle::new(1.0, 0), "total_steps");
        assert_rejects(OneCycle::new(-1.0, 10), "max_learning_rate");
        assert_rejects(OneCycle::new(f32::NAN, 10), "max_learning_rate");
        let schedule = OneCycle::new(1.0, 100).unwrap();
        assert_rejects(schedule.pct_start(0.0), "pct_start");
        assert_rejects(schedule.pct_start(1.0), "pct_start");
        assert_rejects(schedule.pct_start(-0.3), "pct_start");
        assert_rejects(schedule.pct_start(f32::NAN), "pct_start");
        assert_rejects(schedule.div_factor(0.0), "div_factor");
        assert_rejects(schedule.div_factor(-25.0), "div_factor");
        assert_rejects(schedule.div_factor(f32::INFINITY), "div_factor");
        assert_rejects(schedule.final_div_factor(0.0), "final_div_factor");
        assert_rejects(schedule.final_div_factor(f32::NAN), "final_div_factor");
    }

    #[test]
    fn config_lists_every_parameter() {
        let config = OneCycle::new(0.5, 100)
            .unwrap()
            .pct_start(0.25)
            .unwrap()
            .div_factor(10.0)
            .unwrap()
            .final_div_factor(100.0)
            .unwrap()
            .config();
        assert_eq!(config["max_learning_rate"], 0.5);
        assert_eq!(config["total_steps"], 100);
        assert_eq!(config["pct_start"], 0.25);
        assert_eq!(config["div_factor"], 10.0);
        assert_eq!(config["final_div_factor"], 100.0);
    }
}
