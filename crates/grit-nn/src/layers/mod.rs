//! Layer implementations, one per file.

mod dense;
mod flatten;

pub use dense::{Dense, DenseConfig};
pub use flatten::{Flatten, FlattenConfig};
