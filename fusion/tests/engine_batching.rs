//! The engine's batching, caching and constrained decoding, with the shipped
//! reference model:
//! - a batch that mixes recipes judges every image exactly as it would be
//!   judged alone, while the decoder retires each sequence the step its
//!   verdict closes;
//! - the vision encoder run one image at a time (the CPU's default) judges
//!   as the whole batch in one run does;
//! - the per-recipe standard cache is hit on reuse and invalidated for exactly
//!   the recipe whose standard changed;
//! - whatever the decoder's scores, decoding yields a well-formed verdict-v1
//!   sentence within the token limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use firmware_config::Precision;
use fusion::decoding::Sequence;
use fusion::grammar::{Grammar, Token};
use fusion::{Engine, EngineSettings, ModelPackage, Request, Standard};
use serde::Deserialize;
use synth::dataset::{write_dataset, DatasetSpec};
use synth::{Language, Phrasings};
use vision::preprocess::{self, Crop};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn engine() -> Engine {
    let package = ModelPackage::open(&repo().join("models/reference"), Precision::Fp32).unwrap();
    let settings = EngineSettings::cpu(1);
    Engine::load(package, &settings).expect("reference model loads")
}

#[derive(Deserialize)]
struct Record {
    image: String,
    standards: Vec<Judged>,
}

#[derive(Deserialize)]
struct Judged {
    text: String,
}

/// Preprocessed images of fresh synthetic parts and their standards.
fn parts(engine: &Engine, count: usize, seed: u64) -> Vec<(Vec<f32>, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_dataset(
        dir.path(),
        &DatasetSpec {
            count,
            seed,
            standards_per_part: 2,
            languages: vec![Language::En, Language::Zh],
            phrasings: Phrasings::Train,
            counterfactuals: false,
        },
    )
    .unwrap();
    std::fs::read_to_string(manifest)
        .unwrap()
        .lines()
        .map(|l| {
            let r: Record = serde_json::from_str(l).unwrap();
            let img = image::open(dir.path().join(&r.image)).unwrap().to_rgb8();
            let x = preprocess::to_tensor(&img, Crop::full(&img), &engine.input_spec());
            (x, r.standards.into_iter().map(|s| s.text).collect())
        })
        .collect()
}

#[test]
fn a_mixed_batch_judges_each_image_as_alone_and_retires_finished_sequences() {
    let mut engine = engine();
    let parts = parts(&engine, 8, 31_337);
    // Each image under its own recipe: the batch mixes eight standards of
    // different lengths, so the joint sequences are padded and masked.
    let standards: Vec<Standard> = parts
        .iter()
        .enumerate()
        .map(|(i, (_, texts))| Standard::new(format!("recipe-{i}"), texts[i % 2].clone()))
        .collect();
    let alone: Vec<_> = parts
        .iter()
        .zip(&standards)
        .map(|((x, _), s)| engine.judge(std::slice::from_ref(x), s).unwrap().remove(0))
        .collect();
    let requests: Vec<Request> = parts
        .iter()
        .zip(&standards)
        .map(|((x, _), s)| Request {
            image: x,
            standard: s,
            mm_per_input_px: None,
            known: None,
        })
        .collect();
    let together = engine.judge_batch(&requests).unwrap();
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(
            a.tokens, t.tokens,
            "image {i} judged differently in a batch"
        );
        assert_eq!(t.batch_size, 8);
    }

    // Retirement: at every step the decoder ran exactly the sequences whose
    // verdicts were still open.
    let lengths: Vec<usize> = together.iter().map(|j| j.tokens.len()).collect();
    let longest = *lengths.iter().max().unwrap();
    let expected: Vec<usize> = (0..longest)
        .map(|step| lengths.iter().filter(|&&n| n > step).count())
        .collect();
    let profile = engine.last_decode_profile();
    assert_eq!(
        profile.rows_per_step, expected,
        "verdict lengths {lengths:?}"
    );
    assert!(
        lengths.iter().any(|&n| n != longest),
        "the batch should hold verdicts of different lengths: {lengths:?}"
    );
    assert_eq!(profile.row_steps(), lengths.iter().sum::<usize>());
    assert!(profile.row_steps() < 8 * longest);
}

#[test]
fn the_vision_encoder_one_image_per_run_judges_as_the_whole_batch_in_one_run() {
    // `EngineSettings::cpu` runs the vision encoder one image at a time.
    let mut per_image = engine();
    let package = ModelPackage::open(&repo().join("models/reference"), Precision::Fp32).unwrap();
    let settings = EngineSettings {
        vision_batch: 0,
        ..EngineSettings::cpu(1)
    };
    let mut whole = Engine::load(package, &settings).unwrap();
    let parts = parts(&per_image, 5, 2_718);
    let standard = Standard::new("housing", parts[0].1[0].clone());
    let requests: Vec<Request> = parts
        .iter()
        .map(|(x, _)| Request {
            image: x,
            standard: &standard,
            mm_per_input_px: None,
            known: None,
        })
        .collect();
    let a = per_image.judge_batch(&requests).unwrap();
    let b = whole.judge_batch(&requests).unwrap();
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a.tokens, b.tokens, "image {i}");
        assert!(
            (a.confidence - b.confidence).abs() < 1e-3,
            "image {i}: {} against {}",
            a.confidence,
            b.confidence
        );
    }
}

#[test]
fn the_standard_cache_is_reused_and_invalidated_per_recipe() {
    let mut engine = engine();
    let parts = parts(&engine, 1, 4_242);
    let (x, texts) = &parts[0];
    let housing_v1 = Standard::new("housing", texts[0].clone());
    let bracket = Standard::new("bracket", texts[1].clone());
    let x = std::slice::from_ref(x);

    let first = engine.judge(x, &housing_v1).unwrap().remove(0);
    engine.judge(x, &bracket).unwrap();
    let again = engine.judge(x, &housing_v1).unwrap().remove(0);
    let s = engine.cache_stats();
    assert_eq!((s.misses, s.hits), (2, 1), "{s:?}");
    assert_eq!(
        first.tokens, again.tokens,
        "a cached standard judges the same"
    );

    // The housing recipe's standard is edited: only its entry is replaced.
    let housing_v2 = Standard::new("housing", format!("{}\n", texts[1]));
    let edited = engine.judge(x, &housing_v2).unwrap().remove(0);
    let s = engine.cache_stats();
    assert_eq!((s.misses, s.invalidated), (3, 1), "{s:?}");
    engine.judge(x, &bracket).unwrap();
    assert_eq!(engine.cache_stats().hits, 2, "bracket kept its entry");
    let by_bracket = engine.judge(x, &bracket).unwrap().remove(0);
    assert_eq!(
        edited.tokens, by_bracket.tokens,
        "the edited housing standard (same clauses as bracket) is read from its new text"
    );
}

/// Checks that `tokens` form one verdict-v1 sentence.
fn well_formed(g: &Grammar, tokens: &[u32], max_clause: u32) -> Result<(), String> {
    let mut it = tokens.iter().map(|&t| g.meaning(t));
    match it.next() {
        Some(Some(Token::Pass | Token::Fail)) => {}
        other => return Err(format!("starts with {other:?}")),
    }
    loop {
        match it.next() {
            Some(Some(Token::Eos)) => break,
            Some(Some(Token::Defect(_))) => {
                let mut bins = [0u32; 4];
                for b in &mut bins {
                    match it.next() {
                        Some(Some(Token::Loc(v))) => *b = v,
                        other => return Err(format!("expected a location, got {other:?}")),
                    }
                }
                if bins[2] <= bins[0] || bins[3] <= bins[1] {
                    return Err(format!("empty box {bins:?}"));
                }
                match it.next() {
                    Some(Some(Token::Ok)) => {}
                    Some(Some(Token::Clause(n))) if n >= 1 && n <= max_clause => {}
                    other => return Err(format!("expected a clause or <ok>, got {other:?}")),
                }
            }
            other => return Err(format!("expected a finding or </s>, got {other:?}")),
        }
    }
    match it.next() {
        None => Ok(()),
        Some(t) => Err(format!("tokens after </s>: {t:?}")),
    }
}

#[test]
fn decoding_stays_in_the_grammar_whatever_the_scores() {
    let engine = engine();
    let g = engine.grammar().clone();
    let vocab = engine
        .grammar()
        .defects
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap() as usize
        + 64;
    let vocab = vocab.max(*g.loc.iter().chain(&g.clause).max().unwrap() as usize + 1);
    let max_clause = 5;
    let citable = Arc::new(vec![vec![]; g.defects.len()]);
    // A small deterministic generator: no dependency, same cases every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut closed = 0;
    for case in 0..400 {
        let mut seq = Sequence::new(g.clone(), max_clause, citable.clone());
        while !seq.finished() {
            let logits: Vec<f32> = (0..vocab)
                .map(|i| {
                    let r = next();
                    match case % 5 {
                        // Random scores.
                        0 => (r % 2000) as f32 / 100.0 - 10.0,
                        // Forbidden tokens score far higher than allowed ones.
                        1 if g.meaning(i as u32).is_none() => 1e30,
                        1 => -1e30,
                        // NaN and infinities everywhere.
                        2 => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0][(r % 4) as usize],
                        // The model wants to go on for ever: findings score high,
                        // the end token never wins.
                        3 if i as u32 == g.eos => -1e9,
                        3 => (r % 100) as f32,
                        // Degenerate boxes: the lowest location always scores best.
                        _ => g
                            .loc
                            .iter()
                            .position(|&t| t == i as u32)
                            .map_or(0.0, |b| -(b as f32)),
                    }
                })
                .collect();
            seq.step(&logits);
        }
        let tokens: Vec<u32> = seq.emitted.iter().map(|(t, _)| *t).collect();
        assert!(
            tokens.len() <= g.max_tokens,
            "case {case}: {} tokens",
            tokens.len()
        );
        for (_, p) in &seq.emitted {
            assert!((0.0..=1.0).contains(p), "case {case}: probability {p}");
        }
        if seq.closed() {
            closed += 1;
            well_formed(&g, &tokens, max_clause).unwrap_or_else(|e| panic!("case {case}: {e}"));
        }
    }
    assert_eq!(closed, 400, "every verdict closes before the token limit");
}
