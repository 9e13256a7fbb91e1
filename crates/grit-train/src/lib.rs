//! Models, the training loop and callbacks for grit.
//!
//! A [`Sequential`] model is built in code, compiled with an optimizer, a loss and metrics,
//! then trained with [`Sequential::fit`], which runs Keras's hook sequence on a list of
//! [`Callback`]s and returns a [`History`].
//!
//! ```
//! use grit_train::prelude::*;
//!
//! let (x, y) = (
//!     ndarray::array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
//!     ndarray::array![[0.0f32], [1.0], [1.0], [0.0]],
//! );
//! let mut model = Sequential::new([2])
//!     .add(Dense::new(8).activation(Activation::Tanh))
//!     .add(Dense::new(1).activation(Activation::Sigmoid));
//! model.compile(Adam::new(0.05), Loss::BINARY_CROSSENTROPY, [Metric::Accuracy])?;
//! let history = model.fit(&x, &y, &FitOptions::new().epochs(5).batch_size(4).verbose(0), &mut [])?;
//! assert_eq!(history.values("loss").len(), 5);
//! # Ok::<(), grit_train::TrainError>(())
//! ```

#![warn(missing_docs)]

pub mod callbacks;
pub mod checkpoint;
pub mod compare;
mod error;
mod model;

pub use callbacks::{Callback, Context, History, Logs, RunInfo};
pub use error::TrainError;
pub use model::{FitOptions, Sequential};

/// The result type of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// The names most programs need, for `use grit_train::prelude::*`.
pub mod prelude {
    pub use crate::callbacks::{
        BackupAndRestore, Callback, Context, CsvLogger, EarlyStopping, History, LambdaCallback,
        LearningRateScheduler, Logs, Mode, ModelCheckpoint, ReduceLROnPlateau, SaveFrequency,
        TerminateOnNaN,
    };
    pub use crate::{FitOptions, Sequential, TrainError};
    pub use grit_nn::{
        ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
        GlobalAveragePooling2D, Layer, Loss, MaxPooling2D, Metric, Padding, Reshape,
    };
    pub use grit_optim::{Adam, Optimizer, Sgd};
    pub use grit_tensor::{Activation, Initializer, Samples, ScaledU8, Tensor};
}
