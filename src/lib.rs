//! grit: a Keras-style deep-learning framework in Rust.
//!
//! Build a model in code, compile it with an optimizer, a loss and metrics, then train it with
//! [`Sequential::fit`], steering the run with callbacks. The crates behind this facade:
//!
//! | module | crate | contents |
//! | --- | --- | --- |
//! | [`tensor`] | grit-tensor | f32 tensors, GEMM, activations, initializers, the seeded RNG |
//! | [`nn`] | grit-nn | layers with backpropagation, losses, metrics |
//! | [`optim`] | grit-optim | optimizers and learning-rate schedules |
//! | [`data`] | grit-data | IDX files, MNIST, Fashion-MNIST, XOR, checksummed fetching |
//! | [`train`] | grit-train | `Sequential`, `fit`, History, callbacks, schedule comparison |
//! | [`tensorboard`] | grit-tensorboard | TensorBoard event files and the `TensorBoard` callback |
//!
//! ```
//! use grit::prelude::*;
//!
//! let (x, y) = grit::data::xor();
//! let mut model = Sequential::new([2])
//!     .seed(1)
//!     .add(Dense::new(8).activation(Activation::Tanh))
//!     .add(Dense::new(1).activation(Activation::Sigmoid));
//! model.compile(Adam::new(0.05), Loss::BINARY_CROSSENTROPY, [Metric::Accuracy])?;
//! let options = FitOptions::new().epochs(300).batch_size(4).verbose(0);
//! let history = model.fit(&x, &y, &options, &mut [])?;
//! assert_eq!(history.last("accuracy"), Some(1.0));
//! # Ok::<(), grit::train::TrainError>(())
//! ```

#![warn(missing_docs)]

pub use grit_data as data;
pub use grit_nn as nn;
pub use grit_optim as optim;
pub use grit_tensor as tensor;
pub use grit_tensorboard as tensorboard;
pub use grit_train as train;

pub use grit_train::{Callback, FitOptions, History, Sequential, TrainError};

/// The names most programs need: `use grit::prelude::*;`.
pub mod prelude {
    pub use grit_data::{DataError, FashionMnist, Mnist};
    pub use grit_optim::schedules::*;
    pub use grit_tensorboard::{TensorBoard, UpdateFreq};
    pub use grit_train::prelude::*;
}
