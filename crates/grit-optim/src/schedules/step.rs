use serde_json::json;

use super::LearningRateSchedule;
use crate::error::{check_increasing, check_positive, check_rate, check_steps};

/// A rate multiplied by `factor` at chosen steps or at a fixed interval.
///
/// The rate is `initial_learning_rate · factor^k`, where `k` is
/// - with [`StepDecay::at`], the number of milestones `≤ step`, so the rate changes at each
///   milestone itself;
/// - with [`StepDecay::every`], `floor(step / decay_steps)`.
///
/// Evaluated per epoch, "0.1, then 10 times lower at epoch 100 and again at epoch 200" is
/// `StepDecay::at(0.1, 0.1, [100, 200])`: 0.1 for epochs 0 to 99, 0.01 for 100 to 199 and
/// 0.001 from 200 on.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDecay {
    initial_learning_rate: f32,
    factor: f32,
    decay_points: DecayPoints,
}

/// The steps at which a [`StepDecay`] multiplies its rate.
#[derive(Debug, Clone, PartialEq)]
enum DecayPoints {
    /// Strictly increasing steps.
    Milestones(Vec<u64>),
    /// Every multiple of this many steps, at least 1.
    Every(u64),
}

const OWNER: &str = "StepDecay";

impl StepDecay {
    /// Creates a schedule that multiplies the rate by `factor` at each of `milestones`.
    ///
    /// With no milestones the rate stays `initial_learning_rate`.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `initial_learning_rate` is negative or not
    /// finite, `factor` is not a finite value greater than 0, or the milestones are not strictly
    /// increasing.
    pub fn at(
        initial_learning_rate: f32,
        factor: f32,
        milestones: impl IntoIterator<Item = u64>,
    ) -> crate::Result<Self> {
        check_rate(OWNER, "initial_learning_rate", initial_learning_rate)?;
        check_positive(OWNER, "factor", factor)?;
        let milestones: Vec<u64> = milestones.into_iter().collect();
        check_increasing(OWNER, "milestones", &milestones)?;
        Ok(StepDecay {
            initial_learning_rate,
            factor,
            decay_points: DecayPoints::Milestones(milestones),
        })
    }

    /// Creates a schedule that multiplies the rate by `factor` every `decay_steps` steps.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `initial_learning_rate` is negative or not
    /// finite, `factor` is not a finite value greater than 0, or `decay_steps` is 0.
    pub fn every(initial_learning_rate: f32, factor: f32, decay_steps: u64) -> crate::Result<Self> {
        check_rate(OWNER, "initial_learning_rate", initial_learning_rate)?;
        check_positive(OWNER, "factor", factor)?;
        check_steps(OWNER, "decay_steps", decay_steps)?;
        Ok(StepDecay {
            initial_learning_rate,
            factor,
            decay_points: DecayPoints::Every(decay_steps),
        })
    }

    /// Returns how many times the rate has been multiplied by `factor` at `step`.
    fn decay_count(&self, step: u64) -> u64 {
        match &self.decay_points {
            DecayPoints::Milestones(milestones) => {
                milestones.partition_point(|&milestone| milestone <= step) as u64
            }
            DecayPoints::Every(decay_steps) => step / decay_steps,
        }
    }
}

impl LearningRateSchedule for StepDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let count = self.decay_count(step) as f64;
        let rate = f64::from(self.initial_learning_rate) * f64::from(self.factor).powf(count);
        rate as f32
    }

    fn name(&self) -> &'static str {
        "StepDecay"
    }

    fn config(&self) -> serde_json::Value {
        let mut config = json!({
            "initial_learning_rate": self.initial_learning_rate,
            "factor": self.factor,
        });
        match &self.decay_points {
            DecayPoints::Milestones(milestones) => config["milestones"] = json!(milestones),
            DecayPoints::Every(decay_steps) => config["decay_steps"] = json!(decay_steps),
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    #[test]
    fn milestones_boundaries() {
        let schedule = StepDecay::at(0.1, 0.1, [100, 200]).unwrap();
        assert_rate_at(&schedule, 0, 0.1);
        assert_rate_at(&schedule, 99, 0.1);
        // From milestone 100 on: 0.1 · 0.1 = 0.01.
        assert_rate_at(&schedule, 100, 0.01);
        assert_rate_at(&schedule, 101, 0.01);
        assert_rate_at(&schedule, 199, 0.01);
        // From milestone 200 on: 0.1 · 0.1² = 0.001.
        assert_rate_at(&schedule, 200, 0.001);
        assert_rate_at(&schedule, 201, 0.001);
        assert_rate_at(&schedule, u64::MAX, 0.001);
    }

    #[test]
    fn milestone_zero_applies_from_start() {
        let schedule = StepDecay::at(1.0, 0.5, [0, 3]).unwrap();
        assert_rate_at(&schedule, 0, 0.5);
        assert_rate_at(&schedule, 2, 0.5);
        assert_rate_at(&schedule, 3, 0.25);
    }

    #[test]
    fn no_milestones_is_constant() {
        let schedule = StepDecay::at(0.3, 0.1, []).unwrap();
        assert_rate_at(&schedule, 0, 0.3);
        assert_rate_at(&schedule, 1_000_000, 0.3);
    }

    #[test]
    fn every_boundaries() {
        let schedule = StepDecay::every(1.0, 0.5, 10).unwrap();
        assert_rate_at(&schedule, 0, 1.0);
        assert_rate_at(&schedule, 9, 1.0);
        // floor(10/10) = 1: 0.5.
        assert_rate_at(&schedule, 10, 0.5);
        assert_rate_at(&schedule, 11, 0.5);
        assert_rate_at(&schedule, 19, 0.5);
        // floor(20/10) = 2: 0.25.
        assert_rate_at(&schedule, 20, 0.25);
        assert_rate_at(&schedule, 21, 0.25);
        // floor(95/10) = 9: 0.5^9 = 0.001953125.
        assert_rate_at(&schedule, 95, 0.001_953_125);
    }

    #[test]
    fn every_single_step() {
        let schedule = StepDecay::every(0.1, 0.9, 1).unwrap();
        // 0.1 · 0.9³ = 0.0729
        assert_rate_at(&schedule, 3, 0.0729);
    }

    #[test]
    fn factor_above_one_grows_the_rate() {
        let schedule = StepDecay::every(0.01, 2.0, 5).unwrap();
        assert_rate_at(&schedule, 5, 0.02);
        assert_rate_at(&schedule, 10, 0.04);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(StepDecay::at(0.1, 0.0, [10]), "factor");
        assert_rejects(StepDecay::at(0.1, -0.5, [10]), "factor");
        assert_rejects(StepDecay::at(0.1, f32::NAN, [10]), "factor");
        assert_rejects(StepDecay::at(0.1, f32::INFINITY, [10]), "factor");
        assert_rejects(StepDecay::at(0.1, 0.5, [10, 10]), "milestones");
        assert_rejects(StepDecay::at(0.1, 0.5, [20, 10]), "milestones");
        assert_rejects(StepDecay::at(-0.1, 0.5, [10]), "initial_learning_rate");
        assert_rejects(StepDecay::at(f32::NAN, 0.5, [10]), "initial_learning_rate");
        assert_rejects(StepDecay::every(0.1, 0.5, 0), "decay_steps");
        assert_rejects(StepDecay::every(0.1, 0.0, 10), "factor");
        assert_rejects(StepDecay::every(-0.1, 0.5, 10), "initial_learning_rate");
    }

    #[test]
    fn config_lists_every_parameter() {
        let at = StepDecay::at(0.5, 0.25, [10, 20]).unwrap().config();
        assert_eq!(at["initial_learning_rate"], 0.5);
        assert_eq!(at["factor"], 0.25);
        assert_eq!(at["milestones"], json!([10, 20]));

        let every = StepDecay::every(0.5, 0.25, 7).unwrap().config();
        assert_eq!(every["initial_learning_rate"], 0.5);
        assert_eq!(every["factor"], 0.25);
        assert_eq!(every["decay_steps"], 7);
    }
}
