//! A frame's span is carried through the inference worker: the batch that
//! judges frames from two cameras follows from both frames' spans, so a log
//! reader can join what the worker said about a batch to the frames in it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appliance::batcher::Batcher;
use appliance::worker;
use firmware_config::Precision;
use fusion::{Engine, EngineSettings, ModelPackage, Standard};
use tracing::span::{Attributes, Id};
use tracing::Instrument;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Every "follows from" link as (span name, its fields; the other's fields).
#[derive(Clone, Default)]
struct Links(Arc<Mutex<Vec<(String, String)>>>);

/// The fields a span was made with, kept in its extensions.
struct Fields(String);

impl<S> Layer<S> for Links
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = String::new();
        attrs.record(&mut |f: &tracing::field::Field, v: &dyn std::fmt::Debug| {
            fields.push_str(&format!("{}={:?} ", f.name(), v));
        });
        let span = ctx.span(id).expect("a new span");
        span.extensions_mut()
            .insert(Fields(format!("{}{{{}}}", span.name(), fields.trim_end())));
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        let name = |id: &Id| {
            let s = ctx.span(id).expect("a live span");
            let e = s.extensions();
            e.get::<Fields>().map(|f| f.0.clone()).unwrap_or_default()
        };
        self.0.lock().unwrap().push((name(span), name(follows)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_follows_from_each_frame_it_judges() {
    let links = Links::default();
    // Global: the worker's thread and the runtime's threads must see it
    // (nextest runs each test in its own process).
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(links.clone()))
        .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let package = ModelPackage::open(&repo.join("models/reference"), Precision::Fp32).unwrap();
    let engine = Engine::load(package, &EngineSettings::cpu(1)).unwrap();
    let spec = engine.input_spec();
    // A long gather window, so that both frames share one batch.
    let (handle, thread) = worker::spawn(
        vec![engine],
        Batcher::new(2, Duration::from_secs(5)),
        8,
        tokio::runtime::Handle::current(),
    );
    let standard = Arc::new(Standard::new(
        "housing",
        "1. Scratches longer than 2 mm are not allowed.\n",
    ));
    let pixels = 3 * spec.width as usize * spec.height as usize;
    let judge = |camera: &'static str| {
        let (handle, standard) = (handle.clone(), standard.clone());
        tokio::spawn(
            async move {
                handle
                    .judge_tensor(vec![0.0; pixels], standard, None)
                    .await
                    .map(|_| ())
            }
            .instrument(tracing::info_span!("frame", camera)),
        )
    };
    let (a, b) = (judge("top"), judge("side"));
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    drop(handle);
    thread.join().unwrap();

    let links = links.0.lock().unwrap().clone();
    for camera in ["top", "side"] {
        assert!(
            links.iter().any(|(batch, frame)| batch == "batch{frames=2}"
                && frame == &format!("frame{{camera={camera:?}}}")),
            "the batch of two follows from the {camera} frame: {links:?}"
        );
    }
}
