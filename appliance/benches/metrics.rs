//! What monitoring costs per frame: every call the pipeline makes for one
//! frame (frame in, queued, in/out of the engine, inference, decided,
//! verdict, published, batch share), and one scrape's rendering. Compare the
//! per-frame figure with the pipeline's time per part (`appliance bench`).
//!
//! `cargo bench -p appliance --bench metrics`

use std::time::{Duration, SystemTime};

use appliance::metrics::{self, Stage};
use criterion::{criterion_group, criterion_main, Criterion};

fn per_frame(c: &mut Criterion) {
    let captured = SystemTime::now() - Duration::from_millis(40);
    c.bench_function("metrics: all recording for one frame", |b| {
        b.iter(|| {
            metrics::frame_in("top");
            metrics::stage(Stage::Queued, captured);
            metrics::in_engine(1);
            metrics::in_engine(-1);
            metrics::stage(Stage::Inference, captured);
            metrics::stage(Stage::Decided, captured);
            metrics::verdict(fusion::Decision::Pass);
            metrics::stage(Stage::Published, captured);
            metrics::batch(8);
        })
    });
    let cameras: Vec<vision::sources::health::HealthSnapshot> = Vec::new();
    c.bench_function("metrics: render one scrape", |b| {
        b.iter(|| metrics::render(&cameras, Some(0)))
    });
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
