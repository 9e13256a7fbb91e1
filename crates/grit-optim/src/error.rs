use thiserror::Error;

/// An invalid optimizer or schedule setting, or a state that does not fit.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum OptimError {
    /// A parameter is outside its valid range.
    #[error("invalid {owner} parameter `{name}` = {value}: expected {expected}")]
    InvalidParameter {
        /// The optimizer or schedule the parameter belongs to.
        owner: &'static str,
        /// The parameter's name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A fixed learning rate was assigned to an optimizer that follows a schedule.
    #[error(
        "cannot set the learning rate to {requested}: this optimizer follows the schedule \
         `{schedule}`; build it with a fixed rate to change the rate from a callback"
    )]
    LearningRateIsScheduled {
        /// The rate that was requested.
        requested: f32,
        /// The schedule's name.
        schedule: String,
    },
    /// A saved optimizer state does not match the parameters it is loaded for.
    #[error("optimizer state does not fit: {0}")]
    StateMismatch(String),
    /// A saved optimizer or schedule config cannot be read back.
    #[error("invalid optimizer config: {0}")]
    InvalidConfig(String),
}

/// Checks that `value` is finite and not negative.
pub(crate) fn check_rate(owner: &'static str, name: &'static str, value: f32) -> crate::Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::InvalidParameter {
            owner,
            name,
            value: value.to_string(),
            expected: "a finite value of at least 0",
        })
    }
}

/// Checks that `value` lies in `[low, high)`, or `[low, high]` when `high_inclusive`.
pub(crate) fn check_range(
    owner: &'static str,
    name: &'static str,
    value: f32,
    low: f32,
    high: f32,
    high_inclusive: bool,
    expected: &'static str,
) -> crate::Result<()> {
    let below_high = if high_inclusive {
        value <= high
    } else {
        value < high
    };
    if value >= low && below_high {
        Ok(())
    } else {
        Err(OptimError::InvalidParameter {
            owner,
            name,
            value: value.to_string(),
            expected,
        })
    }
}

/// Checks that `value` is finite and greater than 0.
pub(crate) fn check_positive(
    owner: &'static str,
    name: &'static str,
    value: f32,
) -> crate::Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(OptimError::InvalidParameter {
            owner,
            name,
            value: value.to_string(),
            expected: "a finite value greater than 0",
        })
    }
}

/// Checks that a step count is at least 1.
pub(crate) fn check_steps(
    owner: &'static str,
    name: &'static str,
    value: u64,
) -> crate::Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(OptimError::InvalidParameter {
            owner,
            name,
            value: value.to_string(),
            expected: "a step count of at least 1",
        })
    }
}

/// Checks that `steps` is strictly increasing.
pub(crate) fn check_increasing(
    owner: &'static str,
    name: &'static str,
    steps: &[u64],
) -> crate::Result<()> {
    if steps.windows(2).all(|pair| pair[0] < pair[1]) {
        Ok(())
    } else {
        Err(OptimError::InvalidParameter {
            owner,
            name,
            value: format!("{steps:?}"),
            expected: "strictly increasing steps",
        })
    }
}
