//! Settings and window placement shared by [`MaxPooling2D`](super::MaxPooling2D) and
//! [`AveragePooling2D`](super::AveragePooling2D).

use serde::{Deserialize, Serialize};

use super::label;
use super::spatial::{AxisWindows, Padding};
use crate::{NnError, Result};

/// The settings of a [`MaxPooling2D`](super::MaxPooling2D) or
/// [`AveragePooling2D`](super::AveragePooling2D) layer, as saved in a model config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pooling2DConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// Window `(height, width)`.
    pub pool_size: (usize, usize),
    /// Step between windows, `(rows, columns)`; `None` means `pool_size`, as in Keras.
    #[serde(default)]
    pub strides: Option<(usize, usize)>,
    /// Padding of the input.
    pub padding: Padding,
}

impl Default for Pooling2DConfig {
    /// Keras's defaults: 2 × 2 windows, strides equal to the window, valid padding.
    fn default() -> Self {
        Pooling2DConfig {
            name: String::new(),
            pool_size: (2, 2),
            strides: None,
            padding: Padding::Valid,
        }
    }
}

impl Pooling2DConfig {
    /// Returns the strides in effect: the configured ones or, when unset, `pool_size`.
    pub fn effective_strides(&self) -> (usize, usize) {
        self.strides.unwrap_or(self.pool_size)
    }
}

/// The window placement of a pooling layer, fixed by `build`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolGeometry {
    pub rows: AxisWindows,
    pub cols: AxisWindows,
    pub channels: usize,
}

impl PoolGeometry {
    /// Checks the settings and the per-sample `input_shape` and places the windows.
    pub fn new(
        config: &Pooling2DConfig,
        class_name: &'static str,
        input_shape: &[usize],
    ) -> Result<Self> {
        let layer = label(&config.name, class_name).to_string();
        let strides = config.effective_strides();
        let invalid = |name: &'static str, value: (usize, usize)| NnError::InvalidParameter {
            layer: layer.clone(),
            name,
            value: format!("{value:?}"),
            expected: "at least 1 along each axis",
        };
        if config.pool_size.0 == 0 || config.pool_size.1 == 0 {
            return Err(invalid("pool_size", config.pool_size));
        }
        if strides.0 == 0 || strides.1 == 0 {
            return Err(invalid("strides", strides));
        }

        let incompatible = |reason: String| NnError::IncompatibleShape {
            layer: layer.clone(),
            input_shape: input_shape.to_vec(),
            reason,
        };
        let &[height, width, channels] = input_shape else {
            return Err(incompatible(format!(
                "{class_name} takes (height, width, channels) per sample, channels last"
            )));
        };
        if height == 0 || width == 0 || channels == 0 {
            return Err(incompatible("the input has an empty axis".into()));
        }

        let pool_size = config.pool_size;
        let rows = AxisWindows::new(height, pool_size.0, strides.0, config.padding);
        let cols = AxisWindows::new(width, pool_size.1, strides.1, config.padding);
        let (Some(rows), Some(cols)) = (rows, cols) else {
            return Err(incompatible(format!(
                "the pool {pool_size:?} is larger than the input's (height, width) \
                 ({height}, {width}) with valid padding, so no window fits; use a smaller \
                 pool or Padding::Same"
            )));
        };
        Ok(PoolGeometry {
            rows,
            cols,
            channels,
        })
    }

    pub fn image_len(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    pub fn input_shape(&self, batch: usize) -> [usize; 4] {
        [batch, self.rows.input, self.cols.input, self.channels]
    }

    pub fn output_shape(&self, batch: usize) -> [usize; 4] {
        [batch, self.rows.output(), self.cols.output(), self.channels]
    }
}
