//! The inference engine: image features + the standard's text -> cross-modal
//! encoder -> constrained, cached decoding -> a `Judgement` per image.
//!
//! It owns all ONNX Runtime sessions of one model package and is used from a
//! single dedicated worker thread. Work that depends only on the recipe (the
//! standard's token embeddings) is computed once per standard version and
//! cached; only the image path runs per frame.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ort::session::Session;
use ort::value::Tensor;
use serde::Serialize;
use tokenizers::Tokenizer;
use vision::encoder::VisionEncoder;
use vision::preprocess::InputSpec;
use vision::runtime::{self, RuntimeError, SessionSettings};

use crate::grammar::{Grammar, MissingToken, State, Token};
use crate::package::{ModelPackage, PackageError};
use crate::standard::Standard;

/// What the engine decided about one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    Pass,
    Fail,
    Review,
}

/// One finding as the model wrote it.
#[derive(Debug, Clone, Serialize)]
pub struct RawFinding {
    /// Defect name in words, e.g. `scratch`.
    pub defect: String,
    /// Box as location bins 0..999: x0, y0, x1, y1.
    pub loc: [u32; 4],
    /// Box normalised to 0..1 of the model's input (x0, y0, x1, y1).
    pub box_norm: [f32; 4],
    /// The clause it violates, or `None` when the standard tolerates it.
    pub clause: Option<u32>,
    /// That clause's text.
    pub clause_text: Option<String>,
    /// Lowest probability among the finding's word and clause tokens.
    pub confidence: f32,
}

/// The engine's judgement of one image under one standard.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    /// Final decision after the confidence threshold and consistency checks.
    pub decision: Decision,
    /// What the decision token said (`Pass` or `Fail`).
    pub model_decision: Decision,
    /// Probability of the decision token among the allowed ones.
    pub confidence: f32,
    pub findings: Vec<RawFinding>,
    /// Why the decision became REVIEW, if it did.
    pub review_reason: Option<String>,
    /// The verdict-v1 tokens as decoded.
    pub tokens: Vec<String>,
    /// Fraction of the standard's tokens cut to fit the model's text window.
    pub context_loss: f32,
    /// Milliseconds spent in this image's encoder and decoder.
    pub inference_ms: f64,
}

/// Failures loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot load tokenizer {path}: {reason}")]
    Tokenizer { path: String, reason: String },
    #[error("model package does not speak verdict-v1: {0}")]
    Grammar(#[from] MissingToken),
    #[error("{graph} failed: {reason}")]
    Inference { graph: &'static str, reason: String },
}

fn infer(graph: &'static str) -> impl Fn(ort::Error) -> EngineError {
    move |e| EngineError::Inference {
        graph,
        reason: e.to_string(),
    }
}

/// Settings the engine takes from the station configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub sessions: SessionSettings,
    pub review_threshold: f32,
    pub onnxruntime_library: std::path::PathBuf,
}

struct CachedStandard {
    /// `[tokens, dim]` embeddings of the standard's text.
    embeds: Vec<f32>,
    tokens: usize,
    context_loss: f32,
    /// Per grammar defect word, the clauses a finding of it may cite.
    citable: Arc<Vec<Vec<u32>>>,
}

/// A dense tensor copied out of a session's outputs.
struct Owned {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Owned {
    fn tensor(&self) -> ort::Result<Tensor<f32>> {
        Tensor::from_array((self.shape.clone(), self.data.clone()))
    }
}

/// Copies one f32 output of a session run.
fn copy_out(
    out: &ort::session::SessionOutputs<'_>,
    name: &str,
    graph: &'static str,
) -> Result<Owned, EngineError> {
    let (shape, data) = out[name]
        .try_extract_tensor::<f32>()
        .map_err(infer(graph))?;
    Ok(Owned {
        shape: shape.iter().map(|&d| d as usize).collect(),
        data: data.to_vec(),
    })
}

/// Most standard versions kept in the embedding cache.
const STANDARD_CACHE: usize = 32;

/// All sessions of one model package, ready to judge.
pub struct Engine {
    pub package: ModelPackage,
    tokenizer: Tokenizer,
    grammar: Arc<Grammar>,
    vision: VisionEncoder,
    embed: Session,
    encoder: Session,
    decoder: Session,
    decoder_past: Session,
    /// Embeddings of every token the decoder can emit (and `<s>`), so decoding
    /// never runs the embedding graph.
    token_embeds: HashMap<u32, Vec<f32>>,
    dim: usize,
    standards: HashMap<String, CachedStandard>,
    review_threshold: f32,
}

impl Engine {
    /// Verifies the package, builds every session and precomputes the verdict
    /// tokens' embeddings.
    pub fn load(package: ModelPackage, settings: &EngineSettings) -> Result<Self, EngineError> {
        let env = runtime::environment(&settings.onnxruntime_library)?;
        let m = &package.manifest;
        let tokenizer =
            Tokenizer::from_file(package.tokenizer()).map_err(|e| EngineError::Tokenizer {
                path: package.tokenizer().display().to_string(),
                reason: e.to_string(),
            })?;
        let grammar = Grammar::new(&tokenizer, m)?;
        let s = &settings.sessions;
        let vision = VisionEncoder::load(
            env,
            &package.graph("vision_encoder.onnx"),
            s,
            m.input.width,
            m.input.height,
        )?;
        let embed = runtime::session(env, &package.graph("embed_tokens.onnx"), s)?;
        let encoder = runtime::session(env, &package.graph("encoder_model.onnx"), s)?;
        let decoder = runtime::session(env, &package.graph("decoder_model.onnx"), s)?;
        let decoder_past =
            runtime::session(env, &package.graph("decoder_with_past_model.onnx"), s)?;
        let mut engine = Self {
            package,
            tokenizer,
            grammar: Arc::new(grammar),
            vision,
            embed,
            encoder,
            decoder,
            decoder_past,
            token_embeds: HashMap::new(),
            dim: 0,
            standards: HashMap::new(),
            review_threshold: settings.review_threshold,
        };
        let g = &engine.grammar;
        let mut ids: Vec<u32> = vec![g.bos, g.eos, g.pass, g.fail, g.ok];
        ids.extend(&g.loc);
        ids.extend(&g.clause);
        ids.extend(g.defects.iter().map(|(_, t)| *t));
        let table = engine.embed_ids(&ids)?;
        engine.dim = table.shape[2];
        for (i, id) in ids.iter().enumerate() {
            let d = engine.dim;
            engine
                .token_embeds
                .insert(*id, table.data[i * d..(i + 1) * d].to_vec());
        }
        Ok(engine)
    }

    /// What the vision encoder expects.
    pub fn input_spec(&self) -> InputSpec {
        let i = &self.package.manifest.input;
        InputSpec {
            width: i.width,
            height: i.height,
            mean: i.mean,
            std: i.std,
        }
    }

    fn embed_ids(&mut self, ids: &[u32]) -> Result<Owned, EngineError> {
        let input: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let t = Tensor::from_array(([1usize, ids.len()], input)).map_err(infer("embed_tokens"))?;
        let out = self
            .embed
            .run(ort::inputs!["input_ids" => t])
            .map_err(infer("embed_tokens"))?;
        copy_out(&out, "inputs_embeds", "embed_tokens")
    }

    /// Embeds the standard once per version (keyed by its sha256).
    fn standard_embeds(&mut self, standard: &Standard) -> Result<(), EngineError> {
        if self.standards.contains_key(&standard.sha256) {
            return Ok(());
        }
        let m = &self.package.manifest;
        let prompt = match m.prompt.format.as_str() {
            "clause-tagged" => standard.prompt_text(m.special_tokens.max_clause),
            _ => standard.text.clone(),
        };
        let enc =
            self.tokenizer
                .encode(prompt.as_str(), false)
                .map_err(|e| EngineError::Tokenizer {
                    path: "standard text".into(),
                    reason: e.to_string(),
                })?;
        let all = enc.get_ids();
        let max = self.package.manifest.prompt.max_text_tokens;
        let kept = &all[..all.len().min(max)];
        let context_loss = if all.is_empty() {
            0.0
        } else {
            (all.len() - kept.len()) as f32 / all.len() as f32
        };
        if context_loss > 0.0 {
            tracing::warn!(recipe = %standard.recipe, tokens = all.len(), kept = kept.len(), "standard longer than the model's text window; tail cut");
        }
        let owned = self.embed_ids(kept)?;
        let citable = self
            .grammar
            .defects
            .iter()
            .map(|(word, _)| {
                standard.clauses_mentioning(&self.package.manifest.output.names_of(word))
            })
            .collect();
        if self.standards.len() >= STANDARD_CACHE {
            self.standards.clear();
        }
        self.standards.insert(
            standard.sha256.clone(),
            CachedStandard {
                embeds: owned.data,
                tokens: kept.len(),
                context_loss,
                citable: Arc::new(citable),
            },
        );
        Ok(())
    }

    /// Judges a batch of preprocessed images (CHW, per `input_spec`) under one standard.
    pub fn judge(
        &mut self,
        images: &[Vec<f32>],
        standard: &Standard,
    ) -> Result<Vec<Judgement>, EngineError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        self.standard_embeds(standard)?;
        let features = self
            .vision
            .encode(images)
            .map_err(infer("vision_encoder"))?;
        let per_image = features.tokens * features.dim;
        let mut out = Vec::with_capacity(images.len());
        for b in 0..features.batch {
            let started = Instant::now();
            let img = &features.data[b * per_image..(b + 1) * per_image];
            let mut j = self.judge_one(img, features.tokens, standard)?;
            j.inference_ms = started.elapsed().as_secs_f64() * 1e3;
            out.push(j);
        }
        Ok(out)
    }

    fn judge_one(
        &mut self,
        image: &[f32],
        image_tokens: usize,
        standard: &Standard,
    ) -> Result<Judgement, EngineError> {
        let cached = &self.standards[&standard.sha256];
        let length = image_tokens + cached.tokens;
        let context_loss = cached.context_loss;
        let mut joint = Vec::with_capacity(length * self.dim);
        joint.extend_from_slice(image);
        joint.extend_from_slice(&cached.embeds);
        let mask: Vec<i64> = vec![1; length];
        let hidden = {
            let x = Tensor::from_array(([1usize, length, self.dim], joint))
                .map_err(infer("encoder_model"))?;
            let m = Tensor::from_array(([1usize, length], mask.clone()))
                .map_err(infer("encoder_model"))?;
            let out = self
                .encoder
                .run(ort::inputs!["inputs_embeds" => x, "attention_mask" => m])
                .map_err(infer("encoder_model"))?;
            copy_out(&out, "last_hidden_state", "encoder_model")?
        };
        self.decode(&hidden, &mask, standard, context_loss)
    }

    fn decode(
        &mut self,
        hidden: &Owned,
        mask: &[i64],
        standard: &Standard,
        context_loss: f32,
    ) -> Result<Judgement, EngineError> {
        let layers = self.package.manifest.decoder.layers;
        let g = Arc::clone(&self.grammar);
        let clauses = standard.max_clause();
        let citable = Arc::clone(&self.standards[&standard.sha256].citable);
        let mut defect = 0usize;
        let mut state = State::Decision;
        let mut emitted: Vec<(u32, f32)> = Vec::new();
        let mut boxes: Vec<u32> = Vec::new();
        let mut enc_kv: Vec<Owned> = Vec::new();
        let mut dec_kv: Vec<Owned> = Vec::new();
        let mut next = g.bos;
        while state != State::Done && emitted.len() < g.max_tokens {
            let embed = self.token_embeds[&next].clone();
            let x = Tensor::from_array(([1usize, 1, self.dim], embed)).map_err(infer("decoder"))?;
            let m = Tensor::from_array(([1usize, mask.len()], mask.to_vec()))
                .map_err(infer("decoder"))?;
            let logits = if emitted.is_empty() {
                let h = hidden.tensor().map_err(infer("decoder_model"))?;
                let out = self
                    .decoder
                    .run(ort::inputs![
                        "inputs_embeds" => x,
                        "encoder_hidden_states" => h,
                        "encoder_attention_mask" => m
                    ])
                    .map_err(infer("decoder_model"))?;
                for i in 0..layers {
                    for (kind, store) in [("decoder", &mut dec_kv), ("encoder", &mut enc_kv)] {
                        for part in ["key", "value"] {
                            let name = format!("present.{i}.{kind}.{part}");
                            store.push(copy_out(&out, &name, "decoder_model")?);
                        }
                    }
                }
                copy_out(&out, "logits", "decoder_model")?.data
            } else {
                let mut inputs: Vec<(String, ort::value::DynValue)> = vec![
                    ("inputs_embeds".into(), x.into_dyn()),
                    ("encoder_attention_mask".into(), m.into_dyn()),
                ];
                for i in 0..layers {
                    for (p, part) in ["key", "value"].iter().enumerate() {
                        let d = dec_kv[2 * i + p]
                            .tensor()
                            .map_err(infer("decoder_with_past"))?;
                        inputs.push((format!("past_key_values.{i}.decoder.{part}"), d.into_dyn()));
                        let e = enc_kv[2 * i + p]
                            .tensor()
                            .map_err(infer("decoder_with_past"))?;
                        inputs.push((format!("past_key_values.{i}.encoder.{part}"), e.into_dyn()));
                    }
                }
                let out = self
                    .decoder_past
                    .run(inputs)
                    .map_err(infer("decoder_with_past"))?;
                dec_kv.clear();
                for i in 0..layers {
                    for part in ["key", "value"] {
                        let name = format!("present.{i}.decoder.{part}");
                        dec_kv.push(copy_out(&out, &name, "decoder_with_past")?);
                    }
                }
                copy_out(&out, "logits", "decoder_with_past")?.data
            };
            let allowed = g.allowed(state, emitted.len(), &boxes, clauses, &citable[defect]);
            let (id, p) = pick(&logits, &allowed);
            if let Some(Token::Defect(k)) = g.meaning(id) {
                defect = k;
            }
            if let State::Loc(_) = state {
                if let Some(Token::Loc(bin)) = g.meaning(id) {
                    boxes.push(bin);
                }
            }
            state = g.advance(state, id);
            if state == State::FindingOrEnd || state == State::Done {
                boxes.clear();
            }
            emitted.push((id, p));
            next = id;
        }
        Ok(self.interpret(&emitted, standard, context_loss, state == State::Done))
    }

    /// Turns the decoded tokens into a judgement and applies the review rules.
    fn interpret(
        &self,
        emitted: &[(u32, f32)],
        standard: &Standard,
        context_loss: f32,
        closed: bool,
    ) -> Judgement {
        let g = &self.grammar;
        let tokens: Vec<String> = emitted
            .iter()
            .map(|(id, _)| self.tokenizer.id_to_token(*id).unwrap_or_default())
            .collect();
        let (model_decision, confidence) = match emitted.first() {
            Some((id, p)) if *id == g.fail => (Decision::Fail, *p),
            Some((_, p)) => (Decision::Pass, *p),
            None => (Decision::Review, 0.0),
        };
        let mut findings = Vec::new();
        let mut i = 1;
        // A finding is six tokens: word, four locations, clause or <ok>.
        while i + 5 < emitted.len() {
            let Some(Token::Defect(k)) = g.meaning(emitted[i].0) else {
                break;
            };
            let mut loc = [0u32; 4];
            for (j, l) in loc.iter_mut().enumerate() {
                if let Some(Token::Loc(bin)) = g.meaning(emitted[i + 1 + j].0) {
                    *l = bin;
                }
            }
            let (clause_id, clause_p) = emitted[i + 5];
            let clause = match g.meaning(clause_id) {
                Some(Token::Clause(n)) => Some(n),
                _ => None,
            };
            let bins = g.loc.len() as f32;
            findings.push(RawFinding {
                defect: g.defects[k].0.clone(),
                loc,
                box_norm: [
                    loc[0] as f32 / bins,
                    loc[1] as f32 / bins,
                    (loc[2] + 1) as f32 / bins,
                    (loc[3] + 1) as f32 / bins,
                ],
                clause,
                clause_text: clause
                    .and_then(|n| standard.clause(n))
                    .map(|c| c.text.clone()),
                confidence: emitted[i].1.min(clause_p),
            });
            i += 6;
        }
        let violated = findings.iter().any(|f| f.clause.is_some());
        let review_reason = if !closed {
            Some(format!("verdict not closed within {} tokens", g.max_tokens))
        } else if confidence < self.review_threshold {
            Some(format!(
                "decision confidence {confidence:.2} below threshold {:.2}",
                self.review_threshold
            ))
        } else if model_decision == Decision::Fail && !violated {
            Some("model said FAIL but cited no violated clause".into())
        } else if model_decision == Decision::Pass && violated {
            Some("model said PASS but cited a violated clause".into())
        } else {
            None
        };
        Judgement {
            decision: if review_reason.is_some() {
                Decision::Review
            } else {
                model_decision
            },
            model_decision,
            confidence,
            findings,
            review_reason,
            tokens,
            context_loss,
            inference_ms: 0.0,
        }
    }
}

/// Greedy choice among allowed tokens; returns the token and its probability
/// renormalised over the allowed set.
fn pick(logits: &[f32], allowed: &[u32]) -> (u32, f32) {
    let mut best = allowed[0];
    let mut max = f32::NEG_INFINITY;
    for &t in allowed {
        if logits[t as usize] > max {
            max = logits[t as usize];
            best = t;
        }
    }
    let sum: f32 = allowed
        .iter()
        .map(|&t| (logits[t as usize] - max).exp())
        .sum();
    (best, 1.0 / sum)
}
