use thiserror::Error;

/// An invalid layer setting, an input shape a layer cannot take, or a bad layer config.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum NnError {
    /// A layer cannot take the shape it would receive.
    #[error("layer `{layer}` cannot take input of shape {input_shape:?}: {reason}")]
    IncompatibleShape {
        /// The layer's name.
        layer: String,
        /// The per-sample input shape (without the batch axis).
        input_shape: Vec<usize>,
        /// The shape the layer expected, in words.
        reason: String,
    },
    /// A layer parameter is outside its valid range.
    #[error("invalid `{name}` = {value} for layer `{layer}`: expected {expected}")]
    InvalidParameter {
        /// The layer's name or class.
        layer: String,
        /// The parameter's name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// A description of the valid values.
        expected: &'static str,
    },
    /// A layer config (from a checkpoint) cannot be turned into a layer.
    #[error("invalid layer config: {0}")]
    InvalidConfig(String),
}
