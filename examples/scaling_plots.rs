//! Draws the curves of docs/SCALING.md from fleet-simulation reports (scripts/simulate.sh)
//! and the cost model (`multilangd::scheduler::sim::cost`).
//!
//! `cargo run --release --features test-support --example scaling_plots -- RESULTS.jsonl OUT_DIR`

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use multilangd::scheduler::sim::cost::{kcl2_steady, kcl3_steady, Cadence, CostModel, UnitsPerMinute};
use plotters::prelude::*;
use serde_json::Value;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

struct Run {
    label: String,
    workers: f64,
    leases: f64,
    steady: UnitsPerMinute,
    phases: Vec<Value>,
    minutes: Vec<Value>,
}

fn load(path: &Path) -> Result<Vec<Run>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut runs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let num = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
        runs.push(Run {
            label: v.get("label").and_then(Value::as_str).unwrap_or("").to_owned(),
            workers: num("/config/workers"),
            leases: num("/config/leases"),
            steady: UnitsPerMinute { rru: num("/steady_units/rru"), wru: num("/steady_units/wru") },
            phases: v.get("phases").and_then(Value::as_array).cloned().unwrap_or_default(),
            minutes: v.get("minutes").and_then(Value::as_array).cloned().unwrap_or_default(),
        });
    }
    Ok(runs)
}

fn phase_secs(run: &Run, phase: &str, field: &str) -> Option<f64> {
    run.phases.iter().find(|p| p.get("phase").and_then(Value::as_str) == Some(phase))?.get(field)?.as_f64()
}

fn legend(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

/// USD per month against workers, 2.x vs 3.x, for three table sizes; simulated points.
fn cost_plot(runs: &[Run], out: &Path) -> Result<PathBuf> {
    let path = out.join("cost.svg");
    let root = SVGBackend::new(&path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Lease-table cost, steady state (on-demand, us-east-1, no checkpoints)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..205f64, (10f64..30_000f64).log_scale())?;
    chart.configure_mesh().x_desc("workers").y_desc("USD per month").draw()?;
    let model = CostModel::default();
    let cadence = Cadence { failover_secs: 10.0, checkpoints_per_lease_minute: 0.0 };
    for (i, leases) in [1_000_usize, 5_000, 20_000].into_iter().enumerate() {
        let workers: Vec<usize> = (1..=40).map(|k| k * 5).collect();
        let v2 = COLORS[i];
        let kcl2 = workers.iter().map(|&w| {
            #[allow(clippy::cast_precision_loss)]
            let audit = 0.5 / w as f64;
            (w as f64, kcl2_steady(&model, &cadence, w, leases, audit, 2.0).usd_per_month())
        });
        chart
            .draw_series(LineSeries::new(kcl2, v2.stroke_width(2)))?
            .label(format!("2.x, {leases} leases"))
            .legend(legend(v2));
        let kcl3 = workers.iter().map(|&w| (w as f64, kcl3_steady(&model, &cadence, w, leases).usd_per_month()));
        chart
            .draw_series(DashedLineSeries::new(kcl3, 6, 4, v2.stroke_width(2)))?
            .label(format!("3.x (analytic), {leases} leases"))
            .legend(legend(v2));
        let simulated: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| (r.leases - leases as f64).abs() < 0.5 && r.steady.wru > 0.0)
            .map(|r| (r.workers, r.steady.usd_per_month()))
            .collect();
        chart.draw_series(simulated.into_iter().map(|(x, y)| Circle::new((x, y), 5, v2.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    drop(chart);
    root.present()?;
    drop(root);
    Ok(path)
}

/// Minutes to balance per phase against fleet size, Java defaults vs tuned settings.
fn balance_plot(runs: &[Run], out: &Path) -> Result<PathBuf> {
    let path = out.join("balance.svg");
    let root = SVGBackend::new(&path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_workers = runs.iter().map(|r| r.workers).fold(10.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Simulated minutes until balanced (2.x protocol; leases = 100 × workers)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_workers * 1.05, 0f64..50f64)?;
    chart.configure_mesh().x_desc("workers").y_desc("minutes").draw()?;
    let series = [
        ("startup", "balanced_after_secs", "start-up"),
        ("scale_out", "balanced_after_secs", "scale-out +10 %"),
        ("kill", "recovered_after_secs", "dead worker's leases re-held"),
    ];
    let mut color = 0;
    for (phase, field, name) in series {
        for label in ["java-defaults", "tuned"] {
            let mut points: Vec<(f64, f64)> = runs
                .iter()
                .filter(|r| r.label == label)
                .filter_map(|r| Some((r.workers, phase_secs(r, phase, field)? / 60.0)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = COLORS[color % COLORS.len()];
            color += 1;
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
                .label(format!("{name} ({label})"))
                .legend(legend(c));
            chart.draw_series(points.into_iter().map(|(x, y)| Circle::new((x, y), 4, c.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    drop(chart);
    root.present()?;
    drop(root);
    Ok(path)
}

/// Request units per simulated minute through the whole scenario of the largest run.
fn timeline_plot(runs: &[Run], out: &Path) -> Result<Option<PathBuf>> {
    let Some(run) = runs
        .iter()
        .filter(|r| !r.minutes.is_empty() && r.label == "java-defaults")
        .max_by(|a, b| a.leases.total_cmp(&b.leases))
    else {
        return Ok(None);
    };
    let path = out.join("timeline.svg");
    let root = SVGBackend::new(&path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let get = |m: &Value, k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let rru: Vec<(f64, f64)> = run.minutes.iter().enumerate().map(|(i, m)| (i as f64, get(m, "rru"))).collect();
    #[allow(clippy::cast_precision_loss)]
    let wru: Vec<(f64, f64)> = run.minutes.iter().enumerate().map(|(i, m)| (i as f64, get(m, "wru"))).collect();
    let top = rru.iter().chain(&wru).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    #[allow(clippy::cast_precision_loss)]
    let len = run.minutes.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} workers, {} leases, Java defaults: request units per minute (start-up, kill, scale-out, rolling restart)", run.workers, run.leases),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..len, 0f64..top)?;
    chart.configure_mesh().x_desc("simulated minute").y_desc("units per minute").draw()?;
    chart
        .draw_series(LineSeries::new(wru, COLORS[3].stroke_width(2)))?
        .label("write units (renew, take, release)")
        .legend(legend(COLORS[3]));
    chart
        .draw_series(LineSeries::new(rru, COLORS[0].stroke_width(2)))?
        .label("read units (scans, gets)")
        .legend(legend(COLORS[0]));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    drop(chart);
    root.present()?;
    drop(root);
    Ok(Some(path))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let results = PathBuf::from(args.next().context("usage: scaling_plots RESULTS.jsonl OUT_DIR")?);
    let out = PathBuf::from(args.next().context("usage: scaling_plots RESULTS.jsonl OUT_DIR")?);
    let runs = load(&results)?;
    println!("{}", cost_plot(&runs, &out)?.display());
    println!("{}", balance_plot(&runs, &out)?.display());
    if let Some(path) = timeline_plot(&runs, &out)? {
        println!("{}", path.display());
    }
    Ok(())
}
