use serde_json::json;

use super::LearningRateSchedule;
use crate::OptimError;
use crate::error::check_increasing;

/// A constant rate on each interval between boundaries (Keras's `PiecewiseConstantDecay`).
///
/// The rate is `values[0]` for `step ≤ boundaries[0]`, `values[i]` for
/// `boundaries[i-1] < step ≤ boundaries[i]`, and the last value after the last boundary. Each
/// interval includes its upper boundary, as in Keras.
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseConstantDecay {
    boundaries: Vec<u64>,
    values: Vec<f32>,
}

impl PiecewiseConstantDecay {
    /// Creates the schedule from strictly increasing `boundaries` and one more value than
    /// boundaries.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] when the boundaries are not strictly increasing, when
    /// `values.len()` is not `boundaries.len() + 1`, or when a value is negative or not finite.
    pub fn new(boundaries: Vec<u64>, values: Vec<f32>) -> crate::Result<Self> {
        const OWNER: &str = "PiecewiseConstantDecay";
        check_increasing(OWNER, "boundaries", &boundaries)?;
        if values.len() != boundaries.len() + 1 {
            return Err(OptimError::InvalidParameter {
                owner: OWNER,
                name: "values",
                value: format!(
                    "{values:?} (length {}, with {} boundaries)",
                    values.len(),
                    boundaries.len()
                ),
                expected: "a length of one more than the number of boundaries",
            });
        }
        if let Some((index, value)) = values
            .iter()
            .enumerate()
            .find(|(_, value)| !(value.is_finite() && **value >= 0.0))
        {
            return Err(OptimError::InvalidParameter {
                owner: OWNER,
                name: "values",
                value: format!("{value} at index {index}"),
                expected: "finite values of at least 0",
            });
        }
        Ok(PiecewiseConstantDecay { boundaries, values })
    }
}

impl LearningRateSchedule for PiecewiseConstantDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        // The number of boundaries strictly below `step` is the index of its interval.
        let interval = self.boundaries.partition_point(|&boundary| boundary < step);
        self.values[interval]
    }

    fn name(&self) -> &'static str {
        "PiecewiseConstantDecay"
    }

    fn config(&self) -> serde_json::Value {
        json!({
            "boundaries": self.boundaries,
            "values": self.values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::test_support::{assert_rate_at, assert_rejects};

    #[test]
    fn keras_reference_values() {
        let schedule =
            PiecewiseConstantDecay::new(vec![100, 110, 120], vec![1.0, 0.1, 0.01, 0.001]).unwrap();
        // Keras's table starts at step -999, which a u64 step cannot express, so this test uses 0.
        let cases = [
            (0, 1.0),
            (100, 1.0),
            (105, 0.1),
            (110, 0.1),
            (120, 0.01),
            (999, 0.001),
        ];
        for (step, expected) in cases {
            assert_rate_at(&schedule, step, expected);
        }

        let short = PiecewiseConstantDecay::new(vec![1, 2, 3], vec![0.4, 0.5, 0.6, 0.7]).unwrap();
        for (step, expected) in [(0, 0.4), (1, 0.4), (2, 0.5), (3, 0.6), (4, 0.7)] {
            assert_rate_at(&short, step, expected);
        }
    }

    #[test]
    fn each_interval_includes_its_upper_boundary() {
        let schedule =
            PiecewiseConstantDecay::new(vec![100, 110, 120], vec![1.0, 0.1, 0.01, 0.001]).unwrap();
        // Around boundary 100: step 99 and 100 are in the first interval, 101 in the second.
        assert_rate_at(&schedule, 99, 1.0);
        assert_rate_at(&schedule, 100, 1.0);
        assert_rate_at(&schedule, 101, 0.1);
        // Around boundary 110.
        assert_rate_at(&schedule, 109, 0.1);
        assert_rate_at(&schedule, 110, 0.1);
        assert_rate_at(&schedule, 111, 0.01);
        // Around the last boundary, 120: the last value applies from 121 on.
        assert_rate_at(&schedule, 119, 0.01);
        assert_rate_at(&schedule, 120, 0.01);
        assert_rate_at(&schedule, 121, 0.001);
        assert_rate_at(&schedule, u64::MAX, 0.001);
    }

    #[test]
    fn boundary_zero_covers_only_step_zero() {
        let schedule = PiecewiseConstantDecay::new(vec![0], vec![0.5, 0.25]).unwrap();
        assert_rate_at(&schedule, 0, 0.5);
        assert_rate_at(&schedule, 1, 0.25);
    }

    #[test]
    fn no_boundaries_is_constant() {
        let schedule = PiecewiseConstantDecay::new(Vec::new(), vec![0.3]).unwrap();
        assert_rate_at(&schedule, 0, 0.3);
        assert_rate_at(&schedule, 1_000_000, 0.3);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_rejects(
            PiecewiseConstantDecay::new(vec![100, 110], vec![1.0, 0.1]),
            "values",
        );
        assert_rejects(
            PiecewiseConstantDecay::new(vec![100, 110], vec![1.0, 0.1, 0.01, 0.001]),
            "values",
        );
        assert_rejects(
            PiecewiseConstantDecay::new(vec![100, 100], vec![1.0, 0.1, 0.01]),
            "boundaries",
        );
        assert_rejects(
            PiecewiseConstantDecay::new(vec![110, 100], vec![1.0, 0.1, 0.01]),
            "boundaries",
        );
        assert_rejects(
            PiecewiseConstantDecay::new(vec![100], vec![1.0, -0.1]),
            "values",
        );
        assert_rejects(
            PiecewiseConstantDecay::new(vec![100], vec![f32::NAN, 0.1]),
            "values",
        );
    }

    #[test]
    fn error_shows_counts_and_bad_index() {
        let mismatch = PiecewiseConstantDecay::new(vec![100, 110], vec![1.0, 0.1]).unwrap_err();
        assert!(
            mismatch.to_string().contains("length 2, with 2 boundaries"),
            "{mismatch}"
        );
        let negative = PiecewiseConstantDecay::new(vec![100], vec![1.0, -0.1]).unwrap_err();
        assert!(negative.to_string().contains("at index 1"), "{negative}");
    }

    #[test]
    fn config_lists_every_parameter() {
        let config = PiecewiseConstantDecay::new(vec![1, 2], vec![0.5, 0.25, 0.125])
            .unwrap()
            .config();
        assert_eq!(config["boundaries"], json!([1, 2]));
        assert_eq!(config["values"], json!([0.5, 0.25, 0.125]));
    }
}
