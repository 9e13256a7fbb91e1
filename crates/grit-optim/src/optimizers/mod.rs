//! The [`Optimizer`] trait and its implementations.

use std::sync::Arc;

pub use grit_tensor::ParamMut;
use grit_tensor::Tensor;

use crate::schedules::LearningRateSchedule;
use crate::{OptimError, Result};

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

/// The magnitude below which optimizer state that decays is set to zero: 2⁻¹⁰⁰, about
/// 7.9e-31.
///
/// A moment or velocity whose gradient stays zero shrinks by a constant factor at every
/// update, and Adam's first moment would become subnormal (below 1.2e-38) after about 800
/// updates. Intel CPUs compute with subnormal operands in microcode. In the MNIST MLP, whose
/// rarely lit border pixels give such gradients, 1403 subnormal first moments made the
/// epochs grow by up to a fifth within a run on a 2-core Xeon. Products such as Adam's α·m
/// turn subnormal long before m does (α is about 10⁻³), so the threshold sits far above that
/// range: α·m stays normal for any α above 1.5e-8.
///
/// What the flush changes: with Adam's default betas and ε = 1e-7 and a learning rate up to
/// 1, a first moment below the threshold would add less than 7.9e-24 to a weight, which
/// moves no weight larger than about 1.1e-16 in magnitude. The bound grows as 1/ε for a
/// smaller ε. With SGD, a velocity below it moves no weight larger than about 1.3e-23.
pub(crate) const FLUSH_BELOW: f32 = 1.0 / (1u128 << 100) as f32;

/// Returns `value`, or zero when its magnitude is below [`FLUSH_BELOW`].
#[inline(always)]
pub(crate) fn flush_tiny(value: f32) -> f32 {
    if value.abs() < FLUSH_BELOW {
        0.0
    } else {
        value
    }
}

/// A fixed learning rate, or a schedule of the step count.
#[derive(Debug, Clone)]
pub enum LearningRate {
    /// A rate that stays until a callback sets another.
    Fixed(f32),
    /// A rate evaluated at the number of updates made so far.
    Scheduled(Arc<dyn LearningRateSchedule>),
}

impl LearningRate {
    /// Returns the rate at `step` updates made so far.
    pub fn at(&self, step: u64) -> f32 {
        match self {
            LearningRate::Fixed(rate) => *rate,
            LearningRate::Scheduled(schedule) => schedule.learning_rate(step),
        }
    }

    fn validate(&self, owner: &'static str) -> Result<()> {
        match self {
            LearningRate::Fixed(rate) => crate::error::check_rate(owner, "learning_rate", *rate),
            LearningRate::Scheduled(_) => Ok(()),
        }
    }

    fn set(&mut self, rate: f32, owner: &'static str) -> Result<()> {
        match self {
            LearningRate::Fixed(current) => {
                crate::error::check_rate(owner, "learning_rate", rate)?;
                *current = rate;
                Ok(())
            }
            LearningRate::Scheduled(schedule) => Err(OptimError::LearningRateIsScheduled {
                requested: rate,
                schedule: schedule.name().to_string(),
            }),
        }
    }

    fn config(&self) -> serde_json::Value {
        match self {
            LearningRate::Fixed(rate) => serde_json::json!(rate),
            LearningRate::Scheduled(schedule) => serde_json::json!({
                "schedule": schedule.name(),
                "config": schedule.config(),
            }),
        }
    }
}

impl From<f32> for LearningRate {
    fn from(rate: f32) -> Self {
        LearningRate::Fixed(rate)
    }
}

impl<S: LearningRateSchedule + 'static> From<S> for LearningRate {
    fn from(schedule: S) -> Self {
        LearningRate::Scheduled(Arc::new(schedule))
    }
}

/// The state an optimizer needs to continue exactly: its update count and its per-parameter
/// slots (moments), in parameter order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    /// Number of updates made.
    pub iterations: u64,
    /// The current fixed learning rate, if the optimizer has one.
    pub learning_rate: Option<f32>,
    /// Named slots, such as `"m/0"` for the first moment of parameter 0.
    pub slots: Vec<(String, Tensor)>,
}

/// Updates parameters from their gradients.
pub trait Optimizer: Send {
    /// Returns Keras's name for the optimizer (`"SGD"`, `"Adam"`).
    fn name(&self) -> &'static str;

    /// Checks every setting; `compile` calls this.
    ///
    /// # Errors
    /// [`OptimError::InvalidParameter`] naming the first invalid setting.
    fn validate(&self) -> Result<()>;

    /// Returns the learning rate the next update will use.
    fn learning_rate(&self) -> f32;

    /// Sets a fixed learning rate for the following updates.
    ///
    /// # Errors
    /// [`OptimError::LearningRateIsScheduled`] when the optimizer follows a schedule, and
    /// [`OptimError::InvalidParameter`] for a negative or non-finite rate.
    fn set_learning_rate(&mut self, rate: f32) -> Result<()>;

    /// Returns the number of updates made.
    fn iterations(&self) -> u64;

    /// Makes one update of every parameter. The parameters must come in the same order, with
    /// the same shapes, at every call.
    fn apply(&mut self, params: &mut [ParamMut<'_>]);

    /// Returns the settings as JSON.
    fn config(&self) -> serde_json::Value;

    /// Returns the state needed to continue training exactly.
    fn state(&self) -> OptimizerState;

    /// Restores a state returned by [`Optimizer::state`].
    ///
    /// # Errors
    /// [`OptimError::StateMismatch`] when a slot is missing or unknown.
    fn load_state(&mut self, state: OptimizerState) -> Result<()>;
}

/// Creates the slot vector for `params` on the first update, or checks that it still fits.
pub(crate) fn ensure_slots(slots: &mut Vec<Tensor>, params: &[ParamMut<'_>]) {
    if slots.len() != params.len()
        || slots
            .iter()
            .zip(params)
            .any(|(slot, p)| slot.shape() != p.value.shape())
    {
        *slots = params
            .iter()
            .map(|p| Tensor::zeros(p.value.shape()))
            .collect();
    }
}

/// Loads named slots `"{prefix}/{index}"` into `slots`.
pub(crate) fn load_slots(
    slots: &mut Vec<Tensor>,
    prefix: &str,
    saved: &[(String, Tensor)],
) -> Result<()> {
    let mut found: Vec<(usize, Tensor)> = saved
        .iter()
        .filter_map(|(name, tensor)| {
            let index = name.strip_prefix(prefix)?.strip_prefix('/')?.parse().ok()?;
            Some((index, tensor.clone()))
        })
        .collect();
    found.sort_by_key(|(index, _)| *index);
    for (position, (index, _)) in found.iter().enumerate() {
        if *index != position {
            return Err(OptimError::StateMismatch(format!(
                "slot `{prefix}/{position}` is missing"
            )));
        }
    }
    *slots = found.into_iter().map(|(_, tensor)| tensor).collect();
    Ok(())
}

pub(crate) fn named_slots(prefix: &str, slots: &[Tensor]) -> Vec<(String, Tensor)> {
    slots
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{prefix}/{i}"), t.clone()))
        .collect()
}
