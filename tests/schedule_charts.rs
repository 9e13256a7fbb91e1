//! The schedule charts in `docs/images`: each one must be what `chart_schedule` draws today.
//!
//! To redraw them after a change to a schedule or to the charts, run
//! `GRIT_UPDATE_DOCS=1 cargo test --release --test schedule_charts`.

use std::path::{Path, PathBuf};

use grit::optim::LearningRateSchedule;
use grit::prelude::*;
use grit::train::compare::chart_schedule;

/// Returns the file name (after `schedule-`), the schedule and the number of steps of each
/// chart.
fn charts() -> Vec<(&'static str, Box<dyn LearningRateSchedule>, u64)> {
    vec![
        ("constant", Box::new(Constant::new(0.1).unwrap()), 100),
        (
            "step-decay",
            Box::new(StepDecay::at(0.1, 0.1, [30, 60]).unwrap()),
            100,
        ),
        (
            "exponential",
            Box::new(ExponentialDecay::new(0.1, 10, 0.8).unwrap()),
            100,
        ),
        (
            "inverse-time",
            Box::new(InverseTimeDecay::new(0.1, 10, 0.5).unwrap()),
            100,
        ),
        (
            "piecewise-constant",
            Box::new(PiecewiseConstantDecay::new(vec![30, 60], vec![0.1, 0.05, 0.01]).unwrap()),
            100,
        ),
        (
            "polynomial",
            Box::new(
                PolynomialDecay::new(0.1, 80)
                    .unwrap()
                    .end_learning_rate(0.01)
                    .unwrap()
                    .power(2.0)
                    .unwrap(),
            ),
            100,
        ),
        (
            "polynomial-cycle",
            Box::new(
                PolynomialDecay::new(0.1, 20)
                    .unwrap()
                    .end_learning_rate(0.01)
                    .unwrap()
                    .cycle(true),
            ),
            100,
        ),
        (
            "cosine",
            Box::new(CosineDecay::new(0.1, 80).unwrap().alpha(0.1).unwrap()),
            100,
        ),
        (
            "cosine-warmup",
            Box::new(CosineDecay::new(0.0, 80).unwrap().warmup(0.1, 20).unwrap()),
            100,
        ),
        (
            "cosine-restarts",
            Box::new(CosineDecayRestarts::new(0.1, 10).unwrap()),
            150,
        ),
        (
            "linear-warmup",
            Box::new(LinearWarmup::new(StepDecay::every(0.1, 0.5, 25).unwrap(), 20, 0.0).unwrap()),
            100,
        ),
        ("one-cycle", Box::new(OneCycle::new(0.1, 100).unwrap()), 100),
    ]
}

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join("images")
}

#[test]
fn docs_charts_are_current() {
    let update = std::env::var_os("GRIT_UPDATE_DOCS").is_some();
    let drawn = tempfile::tempdir().unwrap();
    for (name, schedule, steps) in charts() {
        let file_name = format!("schedule-{name}.svg");
        let target = if update {
            images_dir().join(&file_name)
        } else {
            drawn.path().join(&file_name)
        };
        chart_schedule(schedule.as_ref(), steps, &target).unwrap();
        if update {
            continue;
        }
        let committed = images_dir().join(&file_name);
        let committed = std::fs::read_to_string(&committed).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run GRIT_UPDATE_DOCS=1 cargo test --release --test schedule_charts",
                committed.display()
            )
        });
        let current = std::fs::read_to_string(&target).unwrap();
        assert!(
            committed == current,
            "docs/images/{file_name} differs from the chart drawn now; run \
             GRIT_UPDATE_DOCS=1 cargo test --release --test schedule_charts"
        );
    }
}
