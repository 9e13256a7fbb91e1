use serde_json::json;

use super::LearningRateSchedule;
use crate::error::check_rate;

/// The same learning rate at every step: the baseline of a schedule comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant {
    learning_rate: f32,
}

impl Constant {
    /// Creates a constant schedule.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidParameter`] when `learning_rate` is negative or not finite.
    pub fn new(learning_rate: f32) -> crate::Result<Self> {
        check_rate("Constant", "learning_rate", learning_rate)?;
        Ok(Constant { learning_rate })
    }
}

impl LearningRateSchedule for Constant {
    fn learning_rate(&self, _step: u64) -> f32 {
        self.learning_rate
    }

    fn name(&self) -> &'static str {
        "Constant"
    }

    fn config(&self) -> serde_json::Value {
        json!({ "learning_rate": self.learning_rate })
    }
}
