//! f32 tensors for grit, built on [`ndarray`].
//!
//! A [`Tensor`] is an `ndarray` array of `f32` with a dynamic number of axes; the first axis is
//! always the batch. This crate holds the numerical building blocks that layers share:
//!
//! - [`ops`]: matrix products through ndarray's GEMM (split across threads), bias broadcast,
//!   reductions;
//! - [`parallel`]: the thread pool grit computes on, and how results stay the same on any
//!   number of threads;
//! - [`Activation`]: element-wise activations with their derivatives, and a numerically stable
//!   [`softmax`] and [`log_softmax`];
//! - [`Initializer`]: Keras's weight initializers;
//! - [`Rng`]: the one seeded random-number generator a training run draws from, with a state
//!   that can be saved and restored;
//! - [`Samples`]: a source of samples (f32 or u8 arrays) that batches are gathered from.

#![warn(missing_docs)]

pub mod activation;
pub mod init;
pub mod ops;
pub mod parallel;
pub mod rng;
pub mod samples;
pub mod softmax;

pub use activation::Activation;
pub use init::Initializer;
pub use ndarray;
pub use rayon;
pub use rng::{Rng, RngState};
pub use samples::{Samples, ScaledU8};
pub use softmax::{log_softmax, softmax, softmax_rows_with_shifts};

/// An f32 array with a dynamic number of axes, batch first.
pub type Tensor = ndarray::ArrayD<f32>;

/// One trainable parameter and its gradient, as layers hand them to an optimizer.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// The parameter, updated in place.
    pub value: &'a mut Tensor,
    /// The gradient of the loss with respect to the parameter, same shape.
    pub grad: &'a Tensor,
}
