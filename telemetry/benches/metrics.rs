//! What monitoring costs per frame: every call the pipeline makes for one
//! frame (frame in, queued, in/out of the engine, inference, decided,
//! verdict, published, batch share, and the health figures' samples), one
//! scrape's rendering, and one evaluation of the three health figures over
//! a full latency window. Compare the per-frame figure with the pipeline's
//! time per part (`appliance bench`).
//!
//! `cargo bench -p telemetry --bench metrics`

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use record::Decision;
use telemetry::{health, metrics, Event};

fn per_frame(c: &mut Criterion) {
    let captured = SystemTime::now() - Duration::from_millis(40);
    c.bench_function("metrics: all recording for one frame", |b| {
        b.iter(|| {
            Event::FrameArrived { camera: "top" }.emit();
            Event::FrameQueued { captured }.emit();
            Event::FrameInferred {
                captured,
                context_lost: false,
            }
            .emit();
            Event::VerdictCommitted {
                id: "0193",
                camera: "top",
                decision: Decision::Pass,
                findings: 0,
                captured,
                commit: Duration::from_millis(2),
            }
            .emit();
            Event::VerdictPublished { captured }.emit();
            // One eighth of a batch of eight.
            Event::BatchRun {
                frames: 8,
                busy: Duration::from_millis(80),
            }
            .emit();
        })
    });
    let cameras: Vec<metrics::CameraState> = Vec::new();
    c.bench_function("metrics: render one scrape", |b| {
        b.iter(|| telemetry::exposition::render(&cameras, Some(0)))
    });
    // Five minutes at 150 parts/s: the p99 sorts 45,000 samples. It runs
    // once per `monitoring.evaluate_every` (10 s), not per frame.
    let mut loader = firmware_config::Loader::without_env(None);
    loader.check_files = false;
    let m = loader.load().expect("built-in configuration").monitoring;
    let window: Vec<f64> = (0..45_000)
        .map(|i| 0.02 + (i % 997) as f64 * 1e-4)
        .collect();
    let inputs = health::Inputs {
        latency: window.clone(),
        inference: window,
        context: (45_000, 12),
        golden: Some((20, 20)),
        views: (0, 0),
        reviews: (40, 38),
    };
    c.bench_function(
        "health: evaluate the three figures and the model's own p99 (2 x 45,000 samples)",
        |b| {
            b.iter(|| {
                let f = health::figures(&m, &inputs);
                let p99 = health::window::quantile(inputs.inference.clone(), 0.99);
                (f, p99)
            })
        },
    );
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
