use std::f64::consts::PI;

use serde_json::json;

use super::{LearningRateSchedule, widen_decimal};
use crate::error::{check_positive, check_range, check_rate, check_steps};

/// A cosine decay with warm restarts, each period `t_mul` times longer than the one before and
/// starting from `m_mul` times its peak (Keras's `CosineDecayRestarts`, also known as SGDR).
///
/// Period `i` (0-based) lasts `first_decay_steps · t_mul^i` steps. With `f = step /
/// first_decay_steps`, period `i` is the one with `S(i) ≤ f < S(i + 1)`, where
/// `S(i) = (t_mul^i − 1) / (t_mul − 1)` is the number of first-period lengths before it
/// (`S(i) = i` when `t_mul` is 1). With `g = (f − S(i)) / t_mul^i` the position within the
/// period, in `[0, 1)`:
///
/// `rate = initial_learning_rate · ((1 − alpha) · m_mul^i · ½ · (1 + cos(π · g)) + alpha)`.
///
/// As in Keras, `alpha` is not scaled by `m_mul`, and the schedule has no final step.
///
/// Defaults as Keras: `t_mul` 2, `m_mul` 1, `alpha` 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineDecayRestarts {
    initial_learning_rate: f32,
    first_decay_steps: u64,
    t_mul: f32,
    m_mul: f32,
    alpha: f32,
}

const OWNER: &str = "CosineDecayRestarts";

impl CosineDecayRestarts {
    /// Creates the schedule with Keras's defaults.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `first_decay_steps` is 0, or
    /// `initial_learning_rate` is negative or not finite.
    pub fn new(initial_learning_rate: f32, first_decay_steps: u64) -> crate::Result<Self> {
        check_rate(OWNER, "initial_learning_rate", initial_learning_rate)?;
        check_steps(OWNER, "first_decay_steps", first_decay_steps)?;
        Ok(CosineDecayRestarts {
            initial_learning_rate,
            first_decay_steps,
            t_mul: 2.0,
            m_mul: 1.0,
            alpha: 0.0,
        })
    }

    /// Sets the factor by which each period is longer than the one before.
    ///
    /// Keras accepts values below 1, but its periods then shrink to a total length of
    /// `first_decay_steps / (1 − t_mul)` steps, after which its formula returns NaN. This
    /// schedule rejects them, as PyTorch's `CosineAnnealingWarmRestarts` does.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `t_mul` is below 1 or not finite.
    pub fn t_mul(mut self, t_mul: f32) -> crate::Result<Self> {
        check_range(
            OWNER,
            "t_mul",
            t_mul,
            1.0,
            f32::INFINITY,
            false,
            "a finite value of at least 1",
        )?;
        self.t_mul = t_mul;
        Ok(self)
    }

    /// Sets the factor by which each period's peak is scaled from the one before.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `m_mul` is not a finite value greater
    /// than 0.
    pub fn m_mul(mut self, m_mul: f32) -> crate::Result<Self> {
        check_positive(OWNER, "m_mul", m_mul)?;
        self.m_mul = m_mul;
        Ok(self)
    }

    /// Sets the minimum rate as a fraction of `initial_learning_rate`, the same in every period.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `alpha` is outside `[0, 1]`.
    pub fn alpha(mut self, alpha: f32) -> crate::Result<Self> {
        check_range(OWNER, "alpha", alpha, 0.0, 1.0, true, "a value in [0, 1]")?;
        self.alpha = alpha;
        Ok(self)
    }

    /// Returns the 0-based period of `step` and the position within it, in `[0, 1)`.
    fn period_position(&self, step: u64) -> (f64, f64) {
        let first_periods = step as f64 / self.first_decay_steps as f64;
        let t_mul = widen_decimal(self.t_mul);
        if t_mul == 1.0 {
            let period = first_periods.floor();
            return (period, first_periods - period);
        }

        let period_start = |period: f64| (t_mul.powf(period) - 1.0) / (t_mul - 1.0);
        let mut period = ((1.0 + first_periods * (t_mul - 1.0)).ln() / t_mul.ln()).floor();
        // Rounding in `ln` can put a period's first step in the period before, or the step before
        // a period into that period. Move to the period whose range contains the step.
        if period_start(period + 1.0) <= first_periods {
            period += 1.0;
        } else if period > 0.0 && period_start(period) > first_periods {
            period -= 1.0;
        }
        let position = (first_periods - period_start(period)) / t_mul.powf(period);
        (period, position)
    }
}

impl LearningRateSchedule for CosineDecayRestarts {
    fn learning_rate(&self, step: u64) -> f32 {
        let (period, position) = self.period_position(step);
        let alpha = f64::from(self.alpha);
        let peak = f64::from(self.m_mul).powf(period);
        let cosine = 0.5 * (1.0 + (PI * position).cos());
        let rate = f64::from(self.initial_learning_rate) * ((1.0 - alpha) * peak * cosine + alpha);
        rate as f32
    }

    fn name(&self) -> &'static str {
        "CosineDecayRestarts"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    /// ½ · (1 + cos(π/8)), the cosine factor a quarter of the way into the second period.
    const COSINE_AT_EIGHTH: f64 = 0.961_939_766_255_643_4;

    #[test]
    fn keras_reference_values() {
        let schedule = CosineDecayRestarts::new(1.0, 1000).unwrap();
        assert_rate_at(&schedule, 500, 0.5);
        // Period 1 spans steps 1000..3000, period 2 starts at 3000.
        assert_rate_at(&schedule, 1000, 1.0);
        assert_rate_at(&schedule, 1250, 0.961_940);
        assert_rate_at(&schedule, 1250, COSINE_AT_EIGHTH);
        assert_rate_at(&schedule, 3000, 1.0);
    }

    #[test]
    fn m_mul_scales_later_peaks() {
        let schedule = CosineDecayRestarts::new(1.0, 1000)
            .unwrap()
            .m_mul(0.9)
            .unwrap();
        // 0.9 · 0.9619398 = 0.865746
        assert_rate_at(&schedule, 1250, 0.865_746);
        assert_rate_at(&schedule, 1250, 0.9 * COSINE_AT_EIGHTH);
        // Period 2 starts at 0.9^2 = 0.81.
        assert_rate_at(&schedule, 3000, 0.81);
    }

    #[test]
    fn equal_periods_when_t_mul_is_one() {
        let schedule = CosineDecayRestarts::new(1.0, 1000)
            .unwrap()
            .t_mul(1.0)
            .unwrap();
        // A quarter into period 1: ½ · (1 + cos(π/4)) = 0.853553
        assert_rate_at(&schedule, 1250, 0.853_553);
        assert_rate_at(&schedule, 2000, 1.0);
        assert_rate_at(&schedule, 2500, 0.5);
    }

    #[test]
    fn alpha_is_not_scaled_by_m_mul() {
        let schedule = CosineDecayRestarts::new(1.0, 1000)
            .unwrap()
            .m_mul(0.5)
            .unwrap()
            .alpha(0.1)
            .unwrap();
        // Period 1 start: 0.9 · 0.5 · 1 + 0.1 = 0.55
        assert_rate_at(&schedule, 1000, 0.55);
    }

    #[test]
    fn restart_boundaries() {
        let schedule = CosineDecayRestarts::new(1.0, 1000).unwrap();
        // Step 999: ½ · (1 + cos(999π/1000)) = 2.4674e-6.
        assert_rate_at(&schedule, 999, 0.5 * (1.0 + (PI * 0.999).cos()));
        assert_rate_at(&schedule, 1000, 1.0);
        // Step 1001: g = 1/2000, ½ · (1 + cos(π/2000)) = 0.99999938.
        assert_rate_at(&schedule, 1001, 0.5 * (1.0 + (PI / 2000.0).cos()));
        // Step 2999: g = 1999/2000, ½ · (1 + cos(1999π/2000)) = 6.1685e-7.
        assert_rate_at(&schedule, 2999, 0.5 * (1.0 + (PI * 0.9995).cos()));
        assert_rate_at(&schedule, 3000, 1.0);
        // Period 3 starts at step 1000 · (1 + 2 + 4) = 7000.
        assert_rate_at(&schedule, 7000, 1.0);
    }

    #[test]
    fn non_integer_t_mul_periods() {
        let schedule = CosineDecayRestarts::new(1.0, 100)
            .unwrap()
            .t_mul(1.5)
            .unwrap();
        // Periods last 100, 150 and 225 steps, so period 2 starts at step 250 and period 3
        // at step 475.
        assert_rate_at(&schedule, 250, 1.0);
        assert_rate_at(&schedule, 475, 1.0);
        // Halfway through period 1 (step 175): ½ · (1 + cos(π/2)) = 0.5.
        assert_rate_at(&schedule, 175, 0.5);
        // Step 474: g = 224/225, ½ · (1 + cos(224π/225)) = 4.8739e-5.
        assert_rate_at(&schedule, 474, 0.5 * (1.0 + (PI * 224.0 / 225.0).cos()));
    }

    #[test]
    fn period_start_where_logarithm_rounds_down() {
        // With t_mul 1.2, period 3 starts at 100 · (1.2³ − 1) / 0.2 = 364, but
        // floor(ln(1 + 3.64 · 0.2) / ln(1.2)) rounds to 2 in f64.
        let schedule = CosineDecayRestarts::new(1.0, 100)
            .unwrap()
            .t_mul(1.2)
            .unwrap();
        assert_rate_at(&schedule, 364, 1.0);
        // Step 363: period 2 (144 steps from step 220), g = 143/144,
        // ½ · (1 + cos(143π/144)) = 1.1899e-4.
        assert_rate_at(&schedule, 363, 0.5 * (1.0 + (PI * 143.0 / 144.0).cos()));
    }

    #[test]
    fn period_end_where_logarithm_rounds_up() {
        // With first_decay_steps 1, period 48 starts at step 2^48 − 1, but the logarithm of
        // step 2^48 − 2 rounds up to 48 in f64, which would give a rate near 1.
        let schedule = CosineDecayRestarts::new(1.0, 1).unwrap();
        let period_start = (1_u64 << 48) - 1;
        assert!(schedule.learning_rate(period_start - 1) < 1e-6);
        assert_rate_at(&schedule, period_start, 1.0);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(CosineDecayRestarts::new(1.0, 0), "first_decay_steps");
        assert_rejects(CosineDecayRestarts::new(-1.0, 10), "initial_learning_rate");
        assert_rejects(
            CosineDecayRestarts::new(f32::NAN, 10),
            "initial_learning_rate",
        );
        let schedule = CosineDecayRestarts::new(1.0, 10).unwrap();
        assert_rejects(schedule.t_mul(0.0), "t_mul");
        assert_rejects(schedule.t_mul(-2.0), "t_mul");
        assert_rejects(schedule.t_mul(0.5), "t_mul");
        assert_rejects(schedule.t_mul(f32::INFINITY), "t_mul");
        assert_rejects(schedule.m_mul(0.0), "m_mul");
        assert_rejects(schedule.m_mul(-0.5), "m_mul");
        assert_rejects(schedule.m_mul(f32::NAN), "m_mul");
        assert_rejects(schedule.alpha(-0.1), "alpha");
        assert_rejects(schedule.alpha(1.5), "alpha");
    }

    #[test]
    fn config_lists_every_parameter() {
        let config = CosineDecayRestarts::new(0.5, 10)
            .unwrap()
            .t_mul(1.5)
            .unwrap()
            .m_mul(0.75)
            .unwrap()
            .alpha(0.25)
            .unwrap()
            .config();
        assert_eq!(config["initial_learning_rate"], 0.5);
        assert_eq!(config["first_decay_steps"], 10);
        assert_eq!(config["t_mul"], 1.5);
        assert_eq!(config["m_mul"], 0.75);
        assert_eq!(config["alpha"], 0.25);
    }
}
