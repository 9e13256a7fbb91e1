use std::cmp::Ordering;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grit_nn::Direction;
use grit_optim::LearningRateSchedule;

use super::chart::write_atomically;
use super::{CompareError, SchedulePer};
use crate::History;

/// The result of one run of a schedule comparison.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's name.
    pub name: String,
    /// The schedule the run followed.
    pub schedule: Arc<dyn LearningRateSchedule>,
    /// Whether the schedule was evaluated per epoch or per update.
    pub per: SchedulePer,
    /// Every epoch's logs, with `learning_rate` in each: the optimizer's rate at the end of the
    /// epoch, which is the rate of its next update.
    pub history: History,
    /// The best finite value of the monitored key, or `None` when no epoch logged a finite
    /// value (a run whose loss became NaN from the first epoch on).
    pub best_value: Option<f64>,
    /// The 0-based epoch of the best value, the earliest one when several epochs reach it.
    pub best_epoch: Option<usize>,
    /// The rate of the last optimizer update, or `None` when no batch ran.
    pub final_learning_rate: Option<f32>,
    /// The rate of every optimizer update, in order, read before each batch.
    pub learning_rates: Vec<f32>,
    /// The optimizer's update count before the first update of `learning_rates`.
    pub first_step: u64,
    /// The time from building the run's model to the end of `fit`.
    pub wall_time: Duration,
}

/// The runs of a schedule comparison, best first.
#[derive(Debug, Clone)]
pub struct ComparisonReport {
    /// The key that ranks the runs.
    pub monitor: String,
    /// The direction in which the monitored key improves.
    pub direction: Direction,
    /// The runs, ranked: best value first, runs without a finite value last, and equal values
    /// in name order.
    pub runs: Vec<RunReport>,
}

impl ComparisonReport {
    /// Creates a report that ranks `runs` by their best value of `monitor`.
    pub fn new(monitor: impl Into<String>, direction: Direction, mut runs: Vec<RunReport>) -> Self {
        runs.sort_by(|a, b| rank_order(direction, a, b));
        ComparisonReport {
            monitor: monitor.into(),
            direction,
            runs,
        }
    }

    /// Returns the best run, if any run logged a finite monitored value.
    pub fn best(&self) -> Option<&RunReport> {
        self.runs.first().filter(|run| run.best_value.is_some())
    }

    /// Returns the run named `name`.
    pub fn run(&self, name: &str) -> Option<&RunReport> {
        self.runs.iter().find(|run| run.name == name)
    }

    /// Returns the ranking as a Markdown table, one row per run, best first.
    ///
    /// Columns: rank, run name, schedule, where it was evaluated, best monitored value, its
    /// 0-based epoch, the rate of the last update and the wall time in seconds. A run without a
    /// finite monitored value shows `n/a`.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| rank | run | schedule | applied | best {} | best epoch (0-based) | final learning rate | wall time (s) |",
            escape_cell(&self.monitor)
        );
        out.push_str("| ---: | --- | --- | --- | ---: | ---: | ---: | ---: |\n");
        for (index, run) in self.runs.iter().enumerate() {
            let applied = match run.per {
                SchedulePer::Epoch => "per epoch",
                SchedulePer::Step => "per step",
            };
            let best_value = run
                .best_value
                .map_or_else(|| "n/a".into(), |value| format!("{value:.4}"));
            let best_epoch = run
                .best_epoch
                .map_or_else(|| "n/a".into(), |epoch| epoch.to_string());
            let final_rate = run
                .final_learning_rate
                .map_or_else(|| "n/a".into(), |rate| format!("{rate:.3e}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {applied} | {best_value} | {best_epoch} | {final_rate} | {:.1} |",
                index + 1,
                escape_cell(&run.name),
                run.schedule.name(),
                run.wall_time.as_secs_f64(),
            );
        }
        out
    }

    /// Writes [`ComparisonReport::to_markdown`] to `path`, through a temporary file in the same
    /// folder that is then renamed, so a reader never sees a partial file.
    ///
    /// # Errors
    /// [`CompareError::Io`] naming the file.
    pub fn write_markdown(&self, path: impl AsRef<Path>) -> Result<(), CompareError> {
        write_atomically(path.as_ref(), &self.to_markdown())
    }
}

/// Orders runs best first: by best value in `direction`, runs without one last, ties by name.
fn rank_order(direction: Direction, a: &RunReport, b: &RunReport) -> Ordering {
    let by_value = match (a.best_value, b.best_value) {
        (Some(x), Some(y)) => match direction {
            Direction::Min => x.total_cmp(&y),
            Direction::Max => y.total_cmp(&x),
        },
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_value.then_with(|| a.name.cmp(&b.name))
}

/// Escapes the characters that would break a Markdown table cell.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use grit_optim::schedules::Constant;

    fn report(name: &str, best_value: Option<f64>) -> RunReport {
        RunReport {
            name: name.into(),
            schedule: Arc::new(Constant::new(0.1).unwrap()),
            per: SchedulePer::Epoch,
            history: History::new(),
            best_value,
            best_epoch: best_value.map(|_| 2),
            final_learning_rate: Some(0.1),
            learning_rates: vec![0.1; 4],
            first_step: 0,
            wall_time: Duration::from_millis(1500),
        }
    }

    fn names(report: &ComparisonReport) -> Vec<&str> {
        report.runs.iter().map(|run| run.name.as_str()).collect()
    }

    #[test]
    fn min_ranks_lowest_first() {
        let runs = vec![
            report("c", Some(0.3)),
            report("nan", None),
            report("a", Some(0.1)),
            report("b", Some(0.2)),
        ];
        let ranked = ComparisonReport::new("val_loss", Direction::Min, runs);
        assert_eq!(names(&ranked), ["a", "b", "c", "nan"]);
        assert_eq!(ranked.best().map(|run| run.name.as_str()), Some("a"));
    }

    #[test]
    fn max_ranks_highest_first() {
        let runs = vec![
            report("low", Some(0.8)),
            report("none", None),
            report("high", Some(0.9)),
        ];
        let ranked = ComparisonReport::new("val_accuracy", Direction::Max, runs);
        assert_eq!(names(&ranked), ["high", "low", "none"]);
    }

    #[test]
    fn ties_rank_by_name() {
        let runs = vec![
            report("zeta", Some(0.5)),
            report("alpha", Some(0.5)),
            report("omega", None),
            report("beta", None),
        ];
        let ranked = ComparisonReport::new("val_loss", Direction::Min, runs);
        assert_eq!(names(&ranked), ["alpha", "zeta", "beta", "omega"]);
    }

    #[test]
    fn best_is_none_without_finite_values() {
        let ranked = ComparisonReport::new("val_loss", Direction::Min, vec![report("a", None)]);
        assert!(ranked.best().is_none());
        assert!(ranked.run("a").is_some());
        assert!(ranked.run("b").is_none());
    }

    #[test]
    fn markdown_rows_follow_ranking() {
        let runs = vec![
            report("constant", Some(0.5)),
            report("step|decay", Some(0.25)),
            report("nan", None),
        ];
        let markdown = ComparisonReport::new("val_loss", Direction::Min, runs).to_markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert_eq!(lines.len(), 5, "{markdown}");
        assert_eq!(
            lines[0],
            "| rank | run | schedule | applied | best val_loss | best epoch (0-based) | final learning rate | wall time (s) |"
        );
        assert_eq!(
            lines[2],
            "| 1 | step\\|decay | Constant | per epoch | 0.2500 | 2 | 1.000e-1 | 1.5 |"
        );
        assert_eq!(
            lines[3],
            "| 2 | constant | Constant | per epoch | 0.5000 | 2 | 1.000e-1 | 1.5 |"
        );
        assert_eq!(
            lines[4],
            "| 3 | nan | Constant | per epoch | n/a | n/a | 1.000e-1 | 1.5 |"
        );
    }
}
