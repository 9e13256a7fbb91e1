//! Optimizers and learning-rate schedules for grit.
//!
//! An [`Optimizer`] updates a model's parameters from their gradients, one step per batch,
//! with Keras 3's formulas. Its learning rate is either a fixed value that callbacks may change
//! between steps, or a [`LearningRateSchedule`] evaluated at the step count before each update
//! (the first update uses `schedule(0)`, as in Keras).

#![warn(missing_docs)]

mod config;
mod error;
pub mod optimizers;
pub mod schedules;

pub use config::{optimizer_from_config, schedule_from_config};
pub use error::OptimError;
pub use optimizers::{Adam, LearningRate, Optimizer, OptimizerState, ParamMut, Sgd};
pub use schedules::{
    Constant, CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay,
    LearningRateSchedule, LinearWarmup, OneCycle, PiecewiseConstantDecay, PolynomialDecay,
    StepDecay,
};

/// The result type of this crate.
pub type Result<T, E = OptimError> = std::result::Result<T, E>;
