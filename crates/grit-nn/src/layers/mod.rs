//! Layer implementations, one per file.

mod activation;
mod average_pooling2d;
mod batch_normalization;
mod buffer;
mod conv2d;
mod dense;
mod dropout;
mod flatten;
mod fused_pool;
mod global_average_pooling2d;
mod max_pooling2d;
mod pooling;
mod reshape;
mod spatial;
mod winograd;

pub use activation::{ActivationConfig, ActivationLayer};
pub use average_pooling2d::AveragePooling2D;
pub use batch_normalization::{BatchNormalization, BatchNormalizationConfig};
pub use conv2d::{Conv2D, Conv2DConfig};
pub use dense::{Dense, DenseConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use flatten::{Flatten, FlattenConfig};
pub use global_average_pooling2d::{GlobalAveragePooling2D, GlobalAveragePooling2DConfig};
pub use max_pooling2d::MaxPooling2D;
pub use pooling::Pooling2DConfig;
pub use reshape::{Reshape, ReshapeConfig};
pub use spatial::Padding;

/// Returns the layer's name for messages, or its class name while it has none (a layer
/// built outside a model).
pub(crate) fn label<'a>(name: &'a str, class_name: &'static str) -> &'a str {
    if name.is_empty() { class_name } else { name }
}
