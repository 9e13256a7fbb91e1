//! The monitoring rules that EarlyStopping, ReduceLROnPlateau and ModelCheckpoint share.

use grit_nn::Direction;

use super::RunInfo;
use crate::{Result, Sequential, TrainError};

/// The direction in which a monitored value improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `loss` and `val_loss` are minimised and each metric follows its own direction
    /// (accuracies up, errors down); any other key is an error asking for `Min` or `Max`.
    #[default]
    Auto,
    /// Smaller is better.
    Min,
    /// Larger is better.
    Max,
}

/// A monitored key with Keras's comparison rules.
///
/// An improvement is strict: in min mode `current < best − |min_delta|`, in max mode
/// `current > best + |min_delta|`. Unlike Keras, a NaN or infinite value never counts as an
/// improvement and never becomes the best value, even as the first value seen; the first
/// such value is reported once through `log::warn!`.
#[derive(Debug, Clone)]
pub struct Monitor {
    key: String,
    mode: Mode,
    min_delta: f64,
    direction: Option<Direction>,
    warned_non_finite: bool,
}

impl Monitor {
    /// Creates a monitor of `key`.
    pub fn new(key: impl Into<String>, mode: Mode, min_delta: f64) -> Self {
        Monitor {
            key: key.into(),
            mode,
            min_delta: min_delta.abs(),
            direction: None,
            warned_non_finite: false,
        }
    }

    /// Returns the monitored key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Returns the resolved direction, once [`Monitor::resolve`] ran.
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// Checks that the run logs the key and fixes the direction.
    ///
    /// # Errors
    /// [`TrainError::UnknownMonitor`] when no epoch log of this run contains the key, and
    /// [`TrainError::InvalidCallback`] when `min_delta` is NaN or infinite or `Mode::Auto`
    /// cannot tell the direction.
    pub fn resolve(&mut self, callback: &'static str, run: &RunInfo) -> Result<()> {
        if !self.min_delta.is_finite() {
            return Err(TrainError::InvalidCallback {
                callback,
                message: format!("min_delta = {} must be finite", self.min_delta),
            });
        }
        run.require_epoch_key(callback, &self.key)?;
        self.direction = Some(match self.mode {
            Mode::Min => Direction::Min,
            Mode::Max => Direction::Max,
            Mode::Auto => match run.directions.get(&self.key) {
                Some(direction) => *direction,
                None => {
                    return Err(TrainError::InvalidCallback {
                        callback,
                        message: format!(
                            "mode Auto cannot tell whether `{}` should go up or down; set \
                             Mode::Min or Mode::Max",
                            self.key
                        ),
                    });
                }
            },
        });
        self.warned_non_finite = false;
        Ok(())
    }

    /// Returns whether `current` improves on `reference` (`None`: nothing seen yet).
    pub fn is_improvement(&self, current: f64, reference: Option<f64>) -> bool {
        if !current.is_finite() {
            return false;
        }
        let Some(reference) = reference else {
            return true;
        };
        match self.direction.unwrap_or(Direction::Min) {
            Direction::Min => current < reference - self.min_delta,
            Direction::Max => current > reference + self.min_delta,
        }
    }

    /// Reads the monitored value from `logs`, reporting the first non-finite value once.
    pub fn read(&mut self, callback: &str, logs: &super::Logs) -> Option<f64> {
        let value = logs.get(&self.key).copied()?;
        if !value.is_finite() && !self.warned_non_finite {
            self.warned_non_finite = true;
            log::warn!(
                "{callback}: monitored `{}` is {value}; non-finite values never count as best",
                self.key
            );
        }
        Some(value)
    }
}

/// Returns whether every weight of `model` is finite. The loss of an epoch is computed before
/// its updates, so an epoch can log an improved loss while its last update overflowed the
/// weights. Such weights are never saved or restored as the best.
pub(crate) fn weights_are_finite(model: &Sequential) -> bool {
    model.layers().iter().all(|layer| {
        layer
            .weights()
            .iter()
            .all(|(_, tensor)| tensor.iter().all(|value| value.is_finite()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run() -> RunInfo {
        let mut directions = BTreeMap::new();
        directions.insert("loss".to_string(), Direction::Min);
        directions.insert("accuracy".to_string(), Direction::Max);
        directions.insert("val_loss".to_string(), Direction::Min);
        RunInfo {
            epochs: 1,
            initial_epoch: 0,
            steps_per_epoch: 1,
            verbose: 0,
            has_validation: true,
            epoch_keys: vec![
                "accuracy".into(),
                "learning_rate".into(),
                "loss".into(),
                "val_loss".into(),
            ],
            batch_keys: vec!["accuracy".into(), "loss".into()],
            directions,
        }
    }

    /// Keras's `test_min_delta`: max mode with min_delta 0.5.
    #[test]
    fn min_delta_is_strict() {
        let mut monitor = Monitor::new("accuracy", Mode::Max, 0.5);
        monitor.resolve("test", &run()).unwrap();
        assert!(monitor.is_improvement(0.75, Some(0.0)));
        assert!(monitor.is_improvement(0.5, None));
        assert!(!monitor.is_improvement(0.5, Some(0.0)));
        assert!(!monitor.is_improvement(0.2, Some(0.5)));
    }

    #[test]
    fn auto_mode_follows_the_key() {
        let mut loss = Monitor::new("val_loss", Mode::Auto, 0.0);
        loss.resolve("test", &run()).unwrap();
        assert_eq!(loss.direction(), Some(Direction::Min));
        let mut accuracy = Monitor::new("accuracy", Mode::Auto, 0.0);
        accuracy.resolve("test", &run()).unwrap();
        assert_eq!(accuracy.direction(), Some(Direction::Max));
        let error = Monitor::new("learning_rate", Mode::Auto, 0.0)
            .resolve("test", &run())
            .unwrap_err();
        assert!(error.to_string().contains("Mode::Min"), "{error}");
    }

    #[test]
    fn unknown_key_lists_available_keys() {
        let error = Monitor::new("val_los", Mode::Min, 0.0)
            .resolve("EarlyStopping", &run())
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("`val_los`") && message.contains("val_loss"),
            "{message}"
        );
    }

    #[test]
    fn non_finite_never_improves() {
        let mut monitor = Monitor::new("loss", Mode::Min, 0.0);
        monitor.resolve("test", &run()).unwrap();
        assert!(!monitor.is_improvement(f64::NAN, None));
        assert!(!monitor.is_improvement(f64::NEG_INFINITY, Some(1.0)));
        assert!(monitor.is_improvement(0.5, Some(1.0)));
        assert!(!monitor.is_improvement(1.0, Some(1.0)));
    }
}
