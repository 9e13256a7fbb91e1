use std::collections::BTreeSet;
use std::fmt::Write;

use super::{Callback, Context, Logs};
use crate::Result;

/// The record of a `fit`: every key of every epoch's final logs, `learning_rate` and `val_*`
/// included, by 0-based epoch index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    epochs: Vec<usize>,
    logs: Vec<Logs>,
}

impl History {
    /// Creates an empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Returns the 0-based indices of the epochs run.
    pub fn epochs(&self) -> &[usize] {
        &self.epochs
    }

    /// Returns the logs of each epoch, in order.
    pub fn logs(&self) -> &[Logs] {
        &self.logs
    }

    /// Returns the values of `key` in epoch order, skipping epochs that did not log it (with
    /// a validation frequency above 1, `val_*` lists are shorter, as in Keras).
    pub fn values(&self, key: &str) -> Vec<f64> {
        self.logs
            .iter()
            .filter_map(|logs| logs.get(key).copied())
            .collect()
    }

    /// Returns the last value of `key`.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.logs
            .iter()
            .rev()
            .find_map(|logs| logs.get(key).copied())
    }

    /// Returns every key logged in any epoch, sorted.
    pub fn keys(&self) -> Vec<String> {
        let keys: BTreeSet<&String> = self.logs.iter().flat_map(|logs| logs.keys()).collect();
        keys.into_iter().cloned().collect()
    }

    /// Returns the history as CSV: an `epoch` column, then every key sorted, `NA` where an
    /// epoch did not log a key, one row per epoch.
    pub fn to_csv(&self) -> String {
        let keys = self.keys();
        let mut out = String::from("epoch");
        for key in &keys {
            out.push(',');
            out.push_str(key);
        }
        out.push('\n');
        for (epoch, logs) in self.epochs.iter().zip(&self.logs) {
            let _ = write!(out, "{epoch}");
            for key in &keys {
                match logs.get(key) {
                    Some(value) => {
                        let _ = write!(out, ",{value}");
                    }
                    None => out.push_str(",NA"),
                }
            }
            out.push('\n');
        }
        out
    }
}

impl Callback for History {
    fn name(&self) -> &str {
        "History"
    }

    fn on_train_begin(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.epochs.clear();
        self.logs.clear();
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, _ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        self.epochs.push(epoch);
        self.logs.push(logs.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_marks_missing_values() {
        let mut history = History::new();
        history.epochs = vec![0, 1];
        history.logs = vec![
            Logs::from([("loss".to_string(), 0.5)]),
            Logs::from([("loss".to_string(), 0.25), ("val_loss".to_string(), 0.375)]),
        ];
        assert_eq!(
            history.to_csv(),
            "epoch,loss,val_loss\n0,0.5,NA\n1,0.25,0.375\n"
        );
        assert_eq!(history.values("val_loss"), vec![0.375]);
        assert_eq!(history.last("loss"), Some(0.25));
    }
}
