//! Layers, losses and metrics for grit.
//!
//! Every layer implements [`Layer`]: a forward pass in training or inference mode that keeps
//! what the backward pass needs, a backward pass that stores the parameter gradients and
//! returns the input gradient, and its weights under Keras's names (`kernel`, `bias`). The
//! [`gradcheck`] module compares each backward pass with finite differences.

#![warn(missing_docs)]

mod error;
pub mod gradcheck;
mod layer;
pub mod layers;
pub mod losses;
pub mod metrics;

pub use error::NnError;
pub use layer::{Layer, MAX_TENSOR_VALUES, layer_from_config};
pub use layers::{
    ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, MaxPooling2D, Padding, Reshape,
};
pub use losses::Loss;
pub use metrics::{Direction, Metric, ResolvedMetric};

/// The result type of this crate.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
