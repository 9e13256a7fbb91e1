//! SVG charts of learning-rate curves and validation losses, drawn with plotters.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use grit_optim::LearningRateSchedule;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{CompareError, ComparisonReport, RunReport};

type SvgArea<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult<T = ()> = Result<T, DrawingAreaErrorKind<io::Error>>;

/// Line colors, one per run in rank order, repeating after ten runs (matplotlib's "tab10").
const COLORS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Above this many steps, a chart samples the learning rate instead of drawing each step.
const MAX_CHART_STEPS: u64 = 2000;

/// Writes an SVG chart of `schedule` over steps `0..steps` to `path`, titled with the
/// schedule's name and parameters.
///
/// Each step's rate is drawn as a flat segment from that step to the next, as an optimizer
/// applies it. Above 2000 steps, the chart samples 2000 evenly spaced steps and joins them
/// with straight lines. The file is written through a temporary file in the same folder that
/// is then renamed, so a reader never sees a partial chart.
///
/// # Errors
/// [`CompareError::InvalidSetting`] when `steps` is 0, [`CompareError::Chart`] when drawing
/// fails and [`CompareError::Io`] when the file cannot be written.
pub fn chart_schedule(
    schedule: &dyn LearningRateSchedule,
    steps: u64,
    path: impl AsRef<Path>,
) -> Result<(), CompareError> {
    let path = path.as_ref();
    if steps == 0 {
        return Err(CompareError::InvalidSetting {
            name: "steps",
            value: "0".into(),
            expected: "at least 1 step to chart",
        });
    }
    let points = if steps <= MAX_CHART_STEPS {
        let rates: Vec<(f64, f64)> = (0..steps)
            .map(|step| (step as f64, f64::from(schedule.learning_rate(step))))
            .collect();
        staircase(&rates)
    } else {
        sample_steps(steps, MAX_CHART_STEPS)
            .map(|step| (step as f64, f64::from(schedule.learning_rate(step))))
            .collect()
    };
    let title = schedule.name();
    let subtitle = describe_config(&schedule.config());
    let svg = render((720, 360), |root| {
        let (header, body) = root.split_vertically(56);
        header.draw_text(
            title,
            &("sans-serif", 22).into_font().color(&BLACK),
            (16, 8),
        )?;
        header.draw_text(
            &subtitle,
            &("sans-serif", 13).into_font().color(&BLACK.mix(0.7)),
            (16, 36),
        )?;
        let x_range = padded_range(0.0, steps as f64);
        let y_range = rate_range(points.iter().map(|&(_, rate)| rate));
        let mut chart = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range, y_range)?;
        configure_mesh(&mut chart, "step", "learning rate")?;
        chart.draw_series(LineSeries::new(points, COLORS[0].stroke_width(2)))?;
        Ok(())
    })
    .map_err(|message| CompareError::Chart {
        path: path.to_path_buf(),
        message,
    })?;
    write_atomically(path, &svg)
}

impl ComparisonReport {
    /// Writes an SVG chart of every run to `path`, with three parts. The top panel shows the
    /// learning rate of each optimizer update. The lower panel shows the validation loss of
    /// each epoch, or the training loss when no run logged `val_loss`. A legend on the right
    /// lists the runs in rank order. Non-finite losses are left out, and a run of more than
    /// 2000 updates is drawn from 2000 evenly spaced updates.
    ///
    /// The file is written through a temporary file in the same folder that is then renamed,
    /// so a reader never sees a partial chart.
    ///
    /// # Errors
    /// [`CompareError::Chart`] when drawing fails and [`CompareError::Io`] when the file cannot
    /// be written.
    pub fn write_svg(&self, path: impl AsRef<Path>) -> Result<(), CompareError> {
        let path = path.as_ref();
        let svg = render((1160, 760), |root| {
            let (charts, legend) = root.split_horizontally(940);
            let (top, bottom) = charts.split_vertically(380);
            self.draw_learning_rates(&top)?;
            self.draw_losses(&bottom)?;
            self.draw_legend(&legend)
        })
        .map_err(|message| CompareError::Chart {
            path: path.to_path_buf(),
            message,
        })?;
        write_atomically(path, &svg)
    }

    fn draw_learning_rates(&self, area: &SvgArea<'_>) -> DrawResult {
        let curves: Vec<Vec<(f64, f64)>> = self.runs.iter().map(rate_curve).collect();
        let first = self
            .runs
            .iter()
            .map(|run| run.first_step)
            .min()
            .unwrap_or(0);
        let last = curves
            .iter()
            .filter_map(|curve| curve.last().map(|&(step, _)| step))
            .fold(first as f64 + 1.0, f64::max);
        let y_range = rate_range(curves.iter().flatten().map(|&(_, rate)| rate));
        let mut chart = ChartBuilder::on(area)
            .caption("learning rate per optimizer update", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(72)
            .build_cartesian_2d(padded_range(first as f64, last), y_range)?;
        configure_mesh(&mut chart, "step", "learning rate")?;
        for (index, curve) in curves.into_iter().enumerate() {
            draw_line(&mut chart, curve, index)?;
        }
        Ok(())
    }

    /// Lists the runs in rank order, each with its line color.
    fn draw_legend(&self, area: &SvgArea<'_>) -> DrawResult {
        let title = ("sans-serif", 16).into_font().color(&BLACK);
        area.draw_text("runs, best first", &title, (8, 40))?;
        let label = ("sans-serif", 14).into_font().color(&BLACK);
        for (index, run) in self.runs.iter().enumerate() {
            let y = 72 + 24 * index as i32;
            let line = vec![(8, y), (36, y)];
            area.draw(&PathElement::new(line, run_color(index).stroke_width(3)))?;
            let text = format!("{}. {}", index + 1, run.name);
            area.draw_text(&text, &label, (44, y - 8))?;
        }
        Ok(())
    }

    fn draw_losses(&self, area: &SvgArea<'_>) -> DrawResult {
        let has_validation = self
            .runs
            .iter()
            .any(|run| !run.history.values("val_loss").is_empty());
        let (key, caption) = if has_validation {
            ("val_loss", "validation loss per epoch")
        } else {
            ("loss", "training loss per epoch (no run logged val_loss)")
        };
        let curves: Vec<Vec<(f64, f64)>> =
            self.runs.iter().map(|run| epoch_curve(run, key)).collect();
        let points = || curves.iter().flatten();
        let x_range = value_range(points().map(|&(epoch, _)| epoch));
        let y_range = value_range(points().map(|&(_, loss)| loss));
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range, y_range)?;
        configure_mesh(&mut chart, "epoch (0-based)", key)?;
        for (index, curve) in curves.into_iter().enumerate() {
            draw_line(&mut chart, curve, index)?;
        }
        Ok(())
    }
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn configure_mesh(chart: &mut Chart<'_, '_>, x_label: &str, y_label: &str) -> DrawResult {
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|value| format_axis_value(*value))
        .y_label_formatter(&|value| format_axis_value(*value))
        .light_line_style(BLACK.mix(0.05))
        .draw()
}

fn draw_line(chart: &mut Chart<'_, '_>, points: Vec<(f64, f64)>, index: usize) -> DrawResult {
    chart.draw_series(LineSeries::new(points, run_color(index).stroke_width(2)))?;
    Ok(())
}

fn run_color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

/// Draws on a white SVG canvas of `size` pixels and returns the SVG text.
fn render(
    size: (u32, u32),
    draw: impl FnOnce(&SvgArea<'_>) -> DrawResult,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Returns a run's rate of each update over the optimizer's step count: a staircase up to
/// 2000 updates, and 2000 evenly spaced updates joined by straight lines above.
fn rate_curve(run: &RunReport) -> Vec<(f64, f64)> {
    let point = |index: u64| {
        let rate = run.learning_rates[index as usize];
        ((run.first_step + index) as f64, f64::from(rate))
    };
    let updates = run.learning_rates.len() as u64;
    if updates <= MAX_CHART_STEPS {
        let rates: Vec<(f64, f64)> = (0..updates).map(point).collect();
        staircase(&rates)
    } else {
        sample_steps(updates, MAX_CHART_STEPS).map(point).collect()
    }
}

/// Returns the finite values of `key` by 0-based epoch.
fn epoch_curve(run: &RunReport, key: &str) -> Vec<(f64, f64)> {
    run.history
        .epochs()
        .iter()
        .zip(run.history.logs())
        .filter_map(|(&epoch, logs)| {
            let value = *logs.get(key)?;
            value.is_finite().then_some((epoch as f64, value))
        })
        .collect()
}

/// Turns one value per step into a staircase that keeps each value until the next step.
fn staircase(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for &(step, value) in points {
        out.push((step, value));
        out.push((step + 1.0, value));
    }
    out
}

/// Returns `count` evenly spaced steps from 0 to `steps − 1`, both included, for `count ≥ 2`.
fn sample_steps(steps: u64, count: u64) -> impl Iterator<Item = u64> {
    let last = steps - 1;
    (0..count).map(move |i| ((i as f64 / (count - 1) as f64) * last as f64).round() as u64)
}

/// Returns a y range from 0 to 5 % above the highest finite rate, or `0..1` without one.
fn rate_range(rates: impl Iterator<Item = f64>) -> Range<f64> {
    let max = rates.filter(|r| r.is_finite()).fold(0.0, f64::max);
    if max > 0.0 { 0.0..max * 1.05 } else { 0.0..1.0 }
}

/// Returns the range of the finite values with 5 % padding, or `0..1` without one.
fn value_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (min, max) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if min > max {
        return 0.0..1.0;
    }
    let padding = (max - min) * 0.05;
    padded_range(min - padding, max + padding)
}

/// Returns `min..max`, widened around its middle when the two are equal.
fn padded_range(min: f64, max: f64) -> Range<f64> {
    if max > min {
        min..max
    } else {
        let half_width = (min.abs() * 0.1).max(0.5);
        min - half_width..max + half_width
    }
}

/// Formats an axis label: up to four significant digits, in scientific notation below 1e-3.
fn format_axis_value(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    if value.abs() < 1e-3 || value.abs() >= 1e5 {
        return format!("{value:.1e}");
    }
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// Renders a schedule's JSON config as `name=value` pairs, with `f32` values as their `f32`
/// text, so 0.1 shows as 0.1 rather than 0.10000000149011612.
fn describe_config(config: &serde_json::Value) -> String {
    match config {
        serde_json::Value::Object(entries) => {
            let pairs: Vec<String> = entries
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| format!("{key}={}", describe_nested(value)))
                .collect();
            pairs.join(", ")
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(describe_nested).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Number(number) => match (number.as_u64(), number.as_f64()) {
            (Some(integer), _) => integer.to_string(),
            (None, Some(float)) if f64::from(float as f32) == float => (float as f32).to_string(),
            _ => number.to_string(),
        },
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Renders a config value inside another: a nested schedule as `Name(parameters)`, another
/// object in parentheses.
fn describe_nested(value: &serde_json::Value) -> String {
    let Some(entries) = value.as_object() else {
        return describe_config(value);
    };
    match (entries.get("schedule"), entries.get("config")) {
        (Some(serde_json::Value::String(name)), Some(config)) if entries.len() == 2 => {
            format!("{name}({})", describe_config(config))
        }
        _ => format!("({})", describe_config(value)),
    }
}

/// Writes `contents` to a temporary file next to `path`, then renames it to `path`.
pub(super) fn write_atomically(path: &Path, contents: &str) -> Result<(), CompareError> {
    let file_name = path.file_name().ok_or_else(|| CompareError::Io {
        action: "failed to write",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary: PathBuf = path.with_file_name(temporary_name);
    std::fs::write(&temporary, contents).map_err(|source| CompareError::Io {
        action: "failed to write",
        path: temporary.clone(),
        source,
    })?;
    std::fs::rename(&temporary, path).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        CompareError::Io {
            action: "failed to rename the temporary file to",
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use grit_optim::schedules::{CosineDecay, LinearWarmup, StepDecay};

    #[test]
    fn staircase_holds_each_value() {
        let points = staircase(&[(0.0, 1.0), (1.0, 0.5)]);
        assert_eq!(points, [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5), (2.0, 0.5)]);
    }

    #[test]
    fn sampled_steps_span_range() {
        let steps: Vec<u64> = sample_steps(10_001, 5).collect();
        assert_eq!(steps, [0, 2500, 5000, 7500, 10_000]);
    }

    #[test]
    fn ranges_cover_degenerate_values() {
        assert_eq!(rate_range([0.0, 0.0].into_iter()), 0.0..1.0);
        assert_eq!(value_range([f64::NAN].into_iter()), 0.0..1.0);
        assert_eq!(value_range([2.0, 2.0].into_iter()), 1.5..2.5);
        let range = value_range([1.0, f64::INFINITY, 3.0].into_iter());
        assert!((range.start - 0.9).abs() < 1e-12, "{range:?}");
        assert!((range.end - 3.1).abs() < 1e-12, "{range:?}");
    }

    #[test]
    fn axis_values_are_short() {
        assert_eq!(format_axis_value(0.0), "0");
        assert_eq!(format_axis_value(0.1), "0.1");
        assert_eq!(format_axis_value(0.0125), "0.0125");
        assert_eq!(format_axis_value(4e-6), "4.0e-6");
        assert_eq!(format_axis_value(250.0), "250");
    }

    #[test]
    fn config_text_shows_f32_values() {
        let schedule = StepDecay::at(0.1, 0.5, [10, 20]).unwrap();
        assert_eq!(
            describe_config(&schedule.config()),
            "factor=0.5, initial_learning_rate=0.1, milestones=[10, 20]"
        );
        let nested = LinearWarmup::new(CosineDecay::new(0.3, 100).unwrap(), 5, 0.0).unwrap();
        let text = describe_config(&nested.config());
        assert!(
            text.starts_with("inner=CosineDecay(alpha=0, decay_steps=100, "),
            "{text}"
        );
    }

    #[test]
    fn schedule_chart_is_svg() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("step.svg");
        let schedule = StepDecay::at(0.1, 0.5, [10, 20]).unwrap();
        chart_schedule(&schedule, 30, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("StepDecay"));
        assert!(svg.contains("milestones=[10, 20]"));
        let leftovers: Vec<_> = std::fs::read_dir(folder.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file is renamed away");
    }

    #[test]
    fn schedule_chart_rejects_zero_steps() {
        let folder = tempfile::tempdir().unwrap();
        let schedule = StepDecay::at(0.1, 0.5, [10]).unwrap();
        let error = chart_schedule(&schedule, 0, folder.path().join("x.svg")).unwrap_err();
        assert!(error.to_string().contains("steps = 0"), "{error}");
    }

    #[test]
    fn write_into_missing_folder_names_file() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("missing").join("chart.svg");
        let schedule = StepDecay::at(0.1, 0.5, [10]).unwrap();
        let error = chart_schedule(&schedule, 20, &path).unwrap_err();
        assert!(
            matches!(&error, CompareError::Io { path: p, .. } if p.starts_with(folder.path())),
            "{error}"
        );
    }
}
