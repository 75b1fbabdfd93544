//! Criterion benchmarks of the engine's parts with the shipped reference
//! model (FP32 and INT8): preprocessing, each graph on its own, one decoding
//! step's grammar work, and the whole engine at batch 1, 4 and 8.
//!
//! `cargo bench -p fusion --bench engine` (add `-- <filter>` to pick some).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use firmware_config::Precision;
use fusion::decoding::Sequence;
use fusion::{Engine, EngineSettings, ModelPackage, Request, Standard};
use ort::session::Session;
use ort::value::Tensor;
use synth::SynthLine;
use vision::preprocess::{self, Crop};
use vision::runtime::{self, SessionSettings};

const STANDARD: &str = "Inspection standard for machined housings.\n\
1. No cracks are permitted.\n\
2. Scratches longer than 3 mm are rejected.\n\
3. Holes are tolerated and do not cause rejection.\n\
4. Reject if a stain exceeds 2 mm.\n\
5. Any dent is a reject.\n\
6. Contamination is acceptable.\n";

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/reference")
}

fn engine(precision: Precision) -> Engine {
    let package = ModelPackage::open(&package_dir(), precision).expect("reference package");
    Engine::load(package, &EngineSettings::cpu(0)).expect("engine loads")
}

fn name(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Int8 => "int8",
    }
}

/// Preprocessed synthetic parts.
fn images(engine: &Engine, n: usize) -> Vec<Vec<f32>> {
    let mut line = SynthLine::new(7);
    (0..n)
        .map(|_| {
            let part = line.next_part();
            preprocess::to_tensor(&part.image, Crop::full(&part.image), &engine.input_spec())
        })
        .collect()
}

fn preprocessing(c: &mut Criterion) {
    let engine = engine(Precision::Fp32);
    let part = SynthLine::new(3).next_part();
    let spec = engine.input_spec();
    c.bench_function("preprocess/256x256_to_tensor", |b| {
        b.iter(|| preprocess::to_tensor(black_box(&part.image), Crop::full(&part.image), &spec))
    });
    let mut png = Vec::new();
    part.image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    c.bench_function("preprocess/decode_png_256x256", |b| {
        b.iter(|| vision::decode::decode(black_box(&png)).unwrap())
    });
}

fn f32_tensor(shape: Vec<usize>, data: Vec<f32>) -> Tensor<f32> {
    Tensor::from_array((shape, data)).unwrap()
}

/// Each graph alone at batch 1, fed with the shapes the engine feeds it.
fn graphs(c: &mut Criterion) {
    for precision in [Precision::Fp32, Precision::Int8] {
        let engine = engine(precision);
        let package = ModelPackage::open(&package_dir(), precision).unwrap();
        let env = runtime::environment(Path::new(""), false).unwrap();
        let open = |g: &str| -> Session {
            runtime::session(env, &package.graph(g), &SessionSettings::default()).unwrap()
        };
        let (mut vision_s, mut embed_s, mut encoder_s, mut decoder_s, mut past_s) = (
            open("vision_encoder.onnx"),
            open("embed_tokens.onnx"),
            open("encoder_model.onnx"),
            open("decoder_model.onnx"),
            open("decoder_with_past_model.onnx"),
        );
        let image = images(&engine, 1).remove(0);
        let i = &package.manifest.input;
        let (w, h) = (i.width as usize, i.height as usize);
        let tokenizer = tokenizers::Tokenizer::from_file(package.tokenizer()).unwrap();
        let standard = Standard::new("bench", STANDARD);
        let ids: Vec<i64> = tokenizer
            .encode(
                standard.prompt_text(package.manifest.special_tokens.max_clause),
                false,
            )
            .unwrap()
            .get_ids()
            .iter()
            .map(|&t| t as i64)
            .collect();
        let group_name = format!("graph/{}", name(precision));
        let mut group = c.benchmark_group(group_name);

        let feats = {
            let out = vision_s
                .run(ort::inputs!["pixel_values" => f32_tensor(vec![1, 3, h, w], image.clone())])
                .unwrap();
            let (s, d) = out["image_features"].try_extract_tensor::<f32>().unwrap();
            (
                s.iter().map(|&v| v as usize).collect::<Vec<_>>(),
                d.to_vec(),
            )
        };
        group.bench_function("vision_encoder", |b| {
            b.iter(|| {
                vision_s
                    .run(
                        ort::inputs!["pixel_values" => f32_tensor(vec![1, 3, h, w], image.clone())],
                    )
                    .unwrap();
            })
        });
        let text = {
            let t = Tensor::from_array(([1usize, ids.len()], ids.clone())).unwrap();
            let out = embed_s.run(ort::inputs!["input_ids" => t]).unwrap();
            out["inputs_embeds"]
                .try_extract_tensor::<f32>()
                .unwrap()
                .1
                .to_vec()
        };
        group.bench_function("embed_tokens_standard", |b| {
            b.iter(|| {
                let t = Tensor::from_array(([1usize, ids.len()], ids.clone())).unwrap();
                embed_s.run(ort::inputs!["input_ids" => t]).unwrap();
            })
        });
        let dim = feats.0[2];
        let length = feats.0[1] + ids.len();
        let mut joint = feats.1.clone();
        joint.extend_from_slice(&text);
        let mask = vec![1i64; length];
        let hidden = {
            let out = encoder_s
                .run(ort::inputs![
                    "inputs_embeds" => f32_tensor(vec![1, length, dim], joint.clone()),
                    "attention_mask" => Tensor::from_array(([1usize, length], mask.clone())).unwrap()
                ])
                .unwrap();
            out["last_hidden_state"]
                .try_extract_tensor::<f32>()
                .unwrap()
                .1
                .to_vec()
        };
        group.bench_function("encoder_model", |b| {
            b.iter(|| {
                encoder_s
                    .run(ort::inputs![
                        "inputs_embeds" => f32_tensor(vec![1, length, dim], joint.clone()),
                        "attention_mask" => Tensor::from_array(([1usize, length], mask.clone())).unwrap()
                    ])
                    .unwrap();
            })
        });
        let first = || {
            ort::inputs![
                "inputs_embeds" => f32_tensor(vec![1, 1, dim], vec![0.01; dim]),
                "encoder_hidden_states" => f32_tensor(vec![1, length, dim], hidden.clone()),
                "encoder_attention_mask" => Tensor::from_array(([1usize, length], mask.clone())).unwrap()
            ]
        };
        let layers = package.manifest.decoder.layers;
        let past: Vec<(String, Vec<usize>, Vec<f32>)> = {
            let out = decoder_s.run(first()).unwrap();
            let mut v = Vec::new();
            for l in 0..layers {
                for kind in ["decoder", "encoder"] {
                    for part in ["key", "value"] {
                        let (s, d) = out[format!("present.{l}.{kind}.{part}").as_str()]
                            .try_extract_tensor::<f32>()
                            .unwrap();
                        v.push((
                            format!("past_key_values.{l}.{kind}.{part}"),
                            s.iter().map(|&x| x as usize).collect(),
                            d.to_vec(),
                        ));
                    }
                }
            }
            v
        };
        group.bench_function("decoder_model_first_step", |b| {
            b.iter(|| {
                decoder_s.run(first()).unwrap();
            })
        });
        group.bench_function("decoder_with_past_step", |b| {
            b.iter(|| {
                let mut inputs: Vec<(String, ort::session::SessionInputValue)> = vec![
                    (
                        "inputs_embeds".into(),
                        f32_tensor(vec![1, 1, dim], vec![0.01; dim]).into(),
                    ),
                    (
                        "encoder_attention_mask".into(),
                        Tensor::from_array(([1usize, length], mask.clone()))
                            .unwrap()
                            .into(),
                    ),
                ];
                for (n, s, d) in &past {
                    inputs.push((n.clone(), f32_tensor(s.clone(), d.clone()).into()));
                }
                past_s.run(inputs).unwrap();
            })
        });
        group.finish();
    }
}

/// The grammar's share of one decoding step: allowed tokens, greedy pick,
/// state advance, for a whole verdict.
fn decoding(c: &mut Criterion) {
    let engine = engine(Precision::Fp32);
    let g = engine.grammar().clone();
    let vocab = g
        .loc
        .iter()
        .chain(&g.clause)
        .chain(g.defects.iter().map(|(_, t)| t))
        .max()
        .copied()
        .unwrap() as usize
        + 1;
    // Scores that make the verdict as long as the limit allows.
    let mut logits = vec![0.0f32; vocab];
    logits[g.fail as usize] = 5.0;
    logits[g.defects[0].1 as usize] = 4.0;
    logits[g.ok as usize] = 3.0;
    logits[g.eos as usize] = -5.0;
    let citable = Arc::new(vec![vec![]; g.defects.len()]);
    c.bench_function("decoding/grammar_whole_verdict", |b| {
        b.iter(|| {
            let mut s = Sequence::new(g.clone(), 6, citable.clone());
            while !s.finished() {
                s.step(black_box(&logits));
            }
            s.emitted.len()
        })
    });
}

/// The whole engine (vision encoder to closed verdicts) per batch size.
fn whole_engine(c: &mut Criterion) {
    for precision in [Precision::Fp32, Precision::Int8] {
        let mut engine = engine(precision);
        let standard = Standard::new("bench", STANDARD);
        let imgs = images(&engine, 8);
        let mut group = c.benchmark_group(format!("engine/{}", name(precision)));
        for batch in [1usize, 4, 8] {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &n| {
                let requests: Vec<Request> = imgs[..n]
                    .iter()
                    .map(|image| Request {
                        image,
                        standard: &standard,
                        mm_per_input_px: None,
                        known: None,
                    })
                    .collect();
                b.iter(|| engine.judge_batch(&requests).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = preprocessing, graphs, decoding, whole_engine
}
criterion_main!(benches);
