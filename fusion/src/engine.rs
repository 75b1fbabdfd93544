//! The inference engine: image features + the standard's text -> cross-modal
//! encoder -> constrained, cached decoding -> a `Judgement` per image.
//!
//! It owns all ONNX Runtime sessions of one model package and is used from a
//! single dedicated worker thread. Work that depends only on the recipe (the
//! standard's token embeddings) is computed once per standard version and
//! cached; only the image path runs per frame.
//!
//! A batch may mix recipes: each image's joint sequence (image tokens, then
//! its standard's tokens) is right-padded to the longest and masked. The
//! decoder runs the whole batch with its KV cache and retires each sequence
//! the step its verdict closes, so a long verdict does not make short ones
//! pay for its extra steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynValue, Tensor, TensorRef};
use serde::Serialize;
use tokenizers::Tokenizer;
use vision::encoder::VisionEncoder;
use vision::preprocess::InputSpec;
use vision::runtime::{self, RuntimeError, SessionSettings};

use crate::anomaly::AnomalyGraph;
use crate::cache::{CacheStats, RecipeCache};
use crate::compiled::Compiled;
use crate::decoding::Sequence;
use crate::grammar::{Grammar, MissingToken, Token};
use crate::package::{ModelPackage, PackageError, StandardForm};
use crate::reading::{Reading, Vocabulary};
use crate::standard::Standard;
pub use record::Decision;

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
    /// That clause's label as the standard writes it (`5`, `4.2.1`).
    pub clause_label: Option<String>,
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
    /// `false` when decoding stopped at the token limit before `</s>`.
    pub closed: bool,
    /// Milliseconds the engine spent on the batch this image was judged in
    /// (vision encoder to last decoder step).
    pub inference_ms: f64,
    /// How many images were judged together.
    pub batch_size: usize,
    /// How the standard's clauses read (what the verdict is held to).
    #[serde(skip)]
    pub readings: Arc<Vec<Reading>>,
    /// How unlike the good parts the picture is, for a package with an
    /// anomaly graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<crate::anomaly::Anomaly>,
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
    /// Images the vision encoder takes in one run (0: the whole batch;
    /// see `firmware_config::ModelConfig::vision_images_per_run`).
    pub vision_batch: usize,
    pub onnxruntime_library: std::path::PathBuf,
    /// Run no graph: judge synthetic parts from the defects drawn on them
    /// (see [`crate::stand_in`]); for load tests of the shared services.
    pub stand_in: bool,
}

/// Everything derived from one standard version, computed once.
impl EngineSettings {
    /// CPU only, `intra_threads` per session (0: one per core), the default
    /// review threshold and the library found by the usual search: what
    /// tests, benchmarks and tools use.
    pub fn cpu(intra_threads: usize) -> Self {
        Self {
            sessions: SessionSettings {
                intra_threads,
                ..SessionSettings::default()
            },
            review_threshold: 0.6,
            vision_batch: 1,
            onnxruntime_library: std::path::PathBuf::new(),
            stand_in: false,
        }
    }
}

struct CachedStandard {
    /// `[tokens, dim]` embeddings of the standard's text.
    embeds: Vec<f32>,
    tokens: usize,
    context_loss: f32,
    /// Per grammar defect word, the clauses a finding of it may cite.
    citable: Arc<Vec<Vec<u32>>>,
    /// How each clause reads with this model's defect words.
    readings: Arc<Vec<Reading>>,
    /// The standard as the model read it, when compiled from its reading:
    /// the decoder's clause numbers are the compiled lines'.
    compiled: Option<crate::compiled::Compiled>,
}

impl CachedStandard {
    /// Highest clause number the decoder may cite.
    fn max_clause(&self, standard: &Standard) -> u32 {
        match &self.compiled {
            Some(c) => c.standard.max_clause(),
            None => standard.max_clause(),
        }
    }

    /// The written standard's clause that the decoder's clause `n` means.
    fn clause(&self, n: u32) -> Option<u32> {
        match &self.compiled {
            Some(c) => c.clause_of(n),
            None => Some(n),
        }
    }

    /// The decoder's clause number that a finding of grammar word `word`
    /// may cite for written clause `written`, if any.
    fn decoder_clause(&self, word: usize, written: u32) -> Option<u32> {
        self.citable
            .get(word)?
            .iter()
            .copied()
            .find(|&n| self.clause(n) == Some(written))
    }
}

/// One image to judge and the standard to judge it against.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// Preprocessed CHW pixels, per [`Engine::input_spec`].
    pub image: &'a [f32],
    pub standard: &'a Standard,
    /// Millimetres one pixel of `image` spans at this camera (its
    /// `mm_per_px` times the crop's shrink to the model's input), when the
    /// camera is calibrated. With the package's own training calibration it
    /// gives the factor by which the standard's lengths are rewritten before
    /// the model reads them: a 3 mm limit seen by a camera twice as coarse
    /// as the training images is shown to the model as 1.5 mm, so the model
    /// judges real millimetres.
    pub mm_per_input_px: Option<f32>,
    /// The defects known to be on the part, for the stand-in (see
    /// [`crate::stand_in`]); the model's graphs ignore it.
    pub known: Option<&'a [crate::stand_in::Known]>,
}

/// How the decoder spent its steps on the last batch: the number of live
/// sequences at each step (it shrinks as verdicts close).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeProfile {
    pub rows_per_step: Vec<usize>,
}

impl DecodeProfile {
    /// Sequence-steps the decoder actually computed.
    pub fn row_steps(&self) -> usize {
        self.rows_per_step.iter().sum()
    }
}

fn extract<'v>(
    value: &'v DynValue,
    graph: &'static str,
) -> Result<(Vec<usize>, &'v [f32]), EngineError> {
    let (shape, data) = value.try_extract_tensor::<f32>().map_err(infer(graph))?;
    Ok((shape.iter().map(|&d| d as usize).collect(), data))
}

fn take(
    out: &mut SessionOutputs<'_>,
    name: &str,
    graph: &'static str,
) -> Result<DynValue, EngineError> {
    out.remove(name).ok_or_else(|| EngineError::Inference {
        graph,
        reason: format!("output `{name}` missing"),
    })
}

/// Keeps only `rows` (in order) of a tensor whose first axis is the batch.
fn keep_rows(value: &DynValue, rows: &[usize]) -> Result<DynValue, EngineError> {
    let (mut shape, data) = extract(value, "decoder_with_past")?;
    let stride = data.len() / shape[0].max(1);
    let mut kept = Vec::with_capacity(rows.len() * stride);
    for &r in rows {
        kept.extend_from_slice(&data[r * stride..(r + 1) * stride]);
    }
    shape[0] = rows.len();
    Ok(Tensor::from_array((shape, kept))
        .map_err(infer("decoder_with_past"))?
        .into_dyn())
}

/// Most recipes whose standards are kept prepared.
const STANDARD_CACHE: usize = 32;

/// The ONNX Runtime sessions of one model package.
struct Graphs {
    vision: VisionEncoder,
    embed: Session,
    encoder: Session,
    decoder: Session,
    decoder_past: Session,
    /// The good-only anomaly graph, when the package has one.
    anomaly: Option<AnomalyGraph>,
}

/// All sessions of one model package, ready to judge.
pub struct Engine {
    pub package: ModelPackage,
    tokenizer: Tokenizer,
    grammar: Arc<Grammar>,
    /// `None` for the stand-in (see [`crate::stand_in`]).
    graphs: Option<Graphs>,
    /// Embeddings of every token the decoder can emit (and `<s>`), so decoding
    /// never runs the embedding graph.
    token_embeds: HashMap<u32, Vec<f32>>,
    dim: usize,
    standards: RecipeCache<Arc<CachedStandard>>,
    review_threshold: f32,
    /// Images the vision encoder takes in one run (0: the whole batch).
    vision_batch: usize,
    profile: DecodeProfile,
}

impl Graphs {
    /// Builds every session of `package`.
    fn load(package: &ModelPackage, settings: &EngineSettings) -> Result<Self, EngineError> {
        let want_gpu = settings
            .sessions
            .providers
            .iter()
            .any(|p| *p != firmware_config::ExecutionProvider::Cpu);
        let env = runtime::environment(&settings.onnxruntime_library, want_gpu)?;
        let m = &package.manifest;
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
        // FP32 at either precision: the distances to the good patches are
        // what the threshold was set on.
        let anomaly = match &m.anomaly {
            Some(a) => Some(AnomalyGraph::new(
                runtime::session(env, &package.dir.join(&a.graph), s)?,
                a.threshold,
            )),
            None => None,
        };
        Ok(Self {
            vision,
            embed,
            encoder,
            decoder,
            decoder_past,
            anomaly,
        })
    }
}

impl Engine {
    /// Verifies the package, builds every session and precomputes the verdict
    /// tokens' embeddings. With `settings.stand_in` it reads the package's
    /// manifest and tokenizer only.
    pub fn load(package: ModelPackage, settings: &EngineSettings) -> Result<Self, EngineError> {
        let tokenizer =
            Tokenizer::from_file(package.tokenizer()).map_err(|e| EngineError::Tokenizer {
                path: package.tokenizer().display().to_string(),
                reason: e.to_string(),
            })?;
        let grammar = Grammar::new(&tokenizer, &package.manifest)?;
        let graphs = if settings.stand_in {
            None
        } else {
            Some(Graphs::load(&package, settings)?)
        };
        let mut engine = Self {
            package,
            tokenizer,
            grammar: Arc::new(grammar),
            graphs,
            token_embeds: HashMap::new(),
            dim: 0,
            standards: RecipeCache::new(STANDARD_CACHE),
            review_threshold: settings.review_threshold,
            vision_batch: settings.vision_batch,
            profile: DecodeProfile::default(),
        };
        if engine.graphs.is_none() {
            return Ok(engine);
        }
        let g = &engine.grammar;
        let mut ids: Vec<u32> = vec![g.bos, g.eos, g.pass, g.fail, g.ok];
        ids.extend(&g.loc);
        ids.extend(&g.clause);
        ids.extend(g.defects.iter().map(|(_, t)| *t));
        let (shape, table) = engine.embed_ids(&ids)?;
        engine.dim = shape[2];
        for (i, id) in ids.iter().enumerate() {
            let d = engine.dim;
            engine
                .token_embeds
                .insert(*id, table[i * d..(i + 1) * d].to_vec());
        }
        Ok(engine)
    }

    /// True when this engine is the stand-in, which runs no graph.
    pub fn is_stand_in(&self) -> bool {
        self.graphs.is_none()
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

    /// The verdict grammar this package speaks.
    pub fn grammar(&self) -> &Arc<Grammar> {
        &self.grammar
    }

    /// Hits and misses of the per-recipe standard cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.standards.stats()
    }

    /// Live sequences per decoder step in the last batch.
    pub fn last_decode_profile(&self) -> &DecodeProfile {
        &self.profile
    }

    fn embed_ids(&mut self, ids: &[u32]) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
        let Some(graphs) = self.graphs.as_mut() else {
            return Ok((vec![1, ids.len(), 0], Vec::new()));
        };
        let input: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let t = Tensor::from_array(([1usize, ids.len()], input)).map_err(infer("embed_tokens"))?;
        let mut out = graphs
            .embed
            .run(ort::inputs!["input_ids" => t])
            .map_err(infer("embed_tokens"))?;
        let v = take(&mut out, "inputs_embeds", "embed_tokens")?;
        let (shape, data) = extract(&v, "embed_tokens")?;
        Ok((shape, data.to_vec()))
    }

    /// Everything about `standard` that does not depend on the image: from
    /// the cache, or computed now and cached for its recipe.
    fn prepared(
        &mut self,
        standard: &Standard,
        mm_per_input_px: Option<f32>,
    ) -> Result<Arc<CachedStandard>, EngineError> {
        let factor = self.length_factor(mm_per_input_px);
        // One entry per recipe and length factor: two cameras at different
        // scales judging the same recipe each keep their prompt.
        let key = if factor == 1.0 {
            standard.recipe.clone()
        } else {
            format!("{}@{factor}", standard.recipe)
        };
        if let Some(c) = self.standards.get(&key, &standard.sha256) {
            let c = Arc::clone(c);
            // Counts the hit and refreshes the recipe's place in the cache.
            self.standards
                .get_or_try_insert(&key, &standard.sha256, || {
                    Ok::<_, EngineError>(Arc::clone(&c))
                })?;
            return Ok(c);
        }
        let prepared = Arc::new(self.prepare(standard, factor)?);
        let c = self
            .standards
            .get_or_try_insert(&key, &standard.sha256, || Ok::<_, EngineError>(prepared))?;
        Ok(Arc::clone(c))
    }

    /// By how much the standard's lengths are multiplied for the model to
    /// read them in its training calibration (1 when either calibration is
    /// unknown). Rounded to four significant digits so that the same camera
    /// always finds its cached prompt.
    pub fn length_factor(&self, mm_per_input_px: Option<f32>) -> f32 {
        match (self.package.manifest.input.mm_per_px, mm_per_input_px) {
            (Some(trained), Some(here)) if trained > 0.0 && here > 0.0 => {
                let f = trained / here;
                let digits = 10f32.powi(3 - f.log10().floor() as i32);
                let f = (f * digits).round() / digits;
                if (f - 1.0).abs() < 1e-3 {
                    1.0
                } else {
                    f
                }
            }
            _ => 1.0,
        }
    }

    fn prepare(&mut self, standard: &Standard, factor: f32) -> Result<CachedStandard, EngineError> {
        let m = &self.package.manifest;
        let readings = standard.readings(&self.vocabulary());
        let compiled = Compiled::for_model(standard, &readings, m, factor);
        if compiled.is_none() && m.prompt.standard == StandardForm::Compiled {
            tracing::warn!(recipe = %standard.recipe, max_clause = m.special_tokens.max_clause, "the compiled standard needs more clause lines than the model can cite; it reads the standard as written");
        }
        // What the model reads: the compiled standard, or the written one.
        let read = compiled.as_ref().map_or(standard, |c| &c.standard);
        let prompt = match m.prompt.format.as_str() {
            "clause-tagged" => read.prompt_text(m.special_tokens.max_clause),
            _ => read.text.clone(),
        };
        let prompt = crate::reading::rescale_lengths(&prompt, factor);
        let enc =
            self.tokenizer
                .encode(prompt.as_str(), false)
                .map_err(|e| EngineError::Tokenizer {
                    path: "standard text".into(),
                    reason: e.to_string(),
                })?;
        let all = enc.get_ids();
        let max = m.prompt.max_text_tokens;
        let kept = &all[..all.len().min(max)];
        let context_loss = if all.is_empty() {
            0.0
        } else {
            (all.len() - kept.len()) as f32 / all.len() as f32
        };
        if context_loss > 0.0 {
            tracing::warn!(recipe = %standard.recipe, tokens = all.len(), kept = kept.len(), "standard longer than the model's text window; tail cut");
        }
        let citable = self
            .grammar
            .defects
            .iter()
            .map(|(word, _)| read.clauses_mentioning(&self.package.manifest.output.names_of(word)))
            .collect();
        let kept = kept.to_vec();
        let (_, embeds) = self.embed_ids(&kept)?;
        Ok(CachedStandard {
            embeds,
            tokens: kept.len(),
            context_loss,
            citable: Arc::new(citable),
            readings: Arc::new(readings),
            compiled,
        })
    }

    /// Judges a batch of preprocessed images (CHW, per `input_spec`) under one standard.
    pub fn judge(
        &mut self,
        images: &[Vec<f32>],
        standard: &Standard,
    ) -> Result<Vec<Judgement>, EngineError> {
        self.judge_calibrated(images, standard, None)
    }

    /// As [`Engine::judge`], for images from a calibrated camera (see
    /// [`Request::mm_per_input_px`]).
    pub fn judge_calibrated(
        &mut self,
        images: &[Vec<f32>],
        standard: &Standard,
        mm_per_input_px: Option<f32>,
    ) -> Result<Vec<Judgement>, EngineError> {
        let requests: Vec<Request> = images
            .iter()
            .map(|image| Request {
                image,
                standard,
                mm_per_input_px,
                known: None,
            })
            .collect();
        self.judge_batch(&requests)
    }

    /// Judges a batch of images, each under its own standard, in one pass
    /// through every graph.
    pub fn judge_batch(&mut self, requests: &[Request]) -> Result<Vec<Judgement>, EngineError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let prepared = requests
            .iter()
            .map(|r| self.prepared(r.standard, r.mm_per_input_px))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(graphs) = self.graphs.as_mut() else {
            return Ok(self.stand_in(requests, &prepared, started));
        };
        let images: Vec<&[f32]> = requests.iter().map(|r| r.image).collect();
        let features = graphs
            .vision
            .encode(&images, self.vision_batch)
            .map_err(infer("vision_encoder"))?;
        let anomalies = match &mut graphs.anomaly {
            Some(graph) => {
                let i = &self.package.manifest.input;
                let (w, h) = (i.width as usize, i.height as usize);
                let pixels: Vec<f32> = images.iter().flat_map(|i| i.iter().copied()).collect();
                Some(graph.score(&pixels, [images.len(), 3, h, w])?)
            }
            None => None,
        };
        let t_vision = started.elapsed();
        let b = features.batch;
        let (t, d) = (features.tokens, features.dim);
        let length = t + prepared.iter().map(|p| p.tokens).max().unwrap_or(0);
        let mut joint = vec![0f32; b * length * d];
        let mut mask = vec![0i64; b * length];
        for (i, p) in prepared.iter().enumerate() {
            let row = &mut joint[i * length * d..(i + 1) * length * d];
            row[..t * d].copy_from_slice(&features.data[i * t * d..(i + 1) * t * d]);
            row[t * d..(t + p.tokens) * d].copy_from_slice(&p.embeds);
            mask[i * length..i * length + t + p.tokens].fill(1);
        }
        let hidden = {
            let x = TensorRef::from_array_view(([b, length, d], joint.as_slice()))
                .map_err(infer("encoder_model"))?;
            let m = TensorRef::from_array_view(([b, length], mask.as_slice()))
                .map_err(infer("encoder_model"))?;
            let mut out = graphs
                .encoder
                .run(ort::inputs!["inputs_embeds" => x, "attention_mask" => m])
                .map_err(infer("encoder_model"))?;
            take(&mut out, "last_hidden_state", "encoder_model")?
        };
        let mut sequences: Vec<Sequence> = requests
            .iter()
            .zip(&prepared)
            .map(|(r, p)| {
                Sequence::new(
                    Arc::clone(&self.grammar),
                    p.max_clause(r.standard),
                    Arc::clone(&p.citable),
                )
            })
            .collect();
        let t_encoder = started.elapsed();
        self.decode(&hidden, mask, length, &mut sequences)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(
            batch = b,
            length,
            vision_ms = t_vision.as_secs_f64() * 1e3,
            encoder_ms = (t_encoder - t_vision).as_secs_f64() * 1e3,
            decode_ms = ms - t_encoder.as_secs_f64() * 1e3,
            steps = self.profile.rows_per_step.len(),
            "batch judged"
        );
        Ok(sequences
            .iter()
            .zip(requests.iter().zip(&prepared))
            .enumerate()
            .map(|(i, (s, (r, p)))| {
                let mut j = self.interpret(&s.emitted, r.standard, p, s.closed());
                j.readings = Arc::clone(&p.readings);
                j.inference_ms = ms;
                j.batch_size = b;
                if let Some(a) = anomalies.as_ref().map(|a| a[i].clone()) {
                    if a.over() {
                        j.decision = Decision::Review;
                        j.review_reason = Some(match j.review_reason.take() {
                            Some(r) => format!("{}; {r}", a.reason()),
                            None => a.reason(),
                        });
                        j.findings.push(a.finding());
                    }
                    j.anomaly = Some(a);
                }
                j
            })
            .collect())
    }

    /// The stand-in's judgements (see [`crate::stand_in`]): the tokens a
    /// perfect model would write for each request's known defects (none
    /// when it has none), interpreted as the decoder's would be.
    fn stand_in(
        &self,
        requests: &[Request],
        prepared: &[Arc<CachedStandard>],
        started: Instant,
    ) -> Vec<Judgement> {
        let mut judgements: Vec<Judgement> = requests
            .iter()
            .zip(prepared)
            .map(|(r, p)| {
                let emitted = crate::stand_in::tokens(
                    &self.grammar,
                    &p.readings,
                    r.known.unwrap_or_default(),
                    |word, clause| p.decoder_clause(word, clause),
                );
                let mut j = self.interpret(&emitted, r.standard, p, true);
                j.readings = Arc::clone(&p.readings);
                j
            })
            .collect();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        for j in &mut judgements {
            j.inference_ms = ms;
            j.batch_size = requests.len();
        }
        judgements
    }

    /// Greedy constrained decoding of the whole batch with the KV cache;
    /// a sequence leaves the batch the step its verdict is finished.
    fn decode(
        &mut self,
        hidden: &DynValue,
        mut mask: Vec<i64>,
        length: usize,
        sequences: &mut [Sequence],
    ) -> Result<(), EngineError> {
        let layers = self.package.manifest.decoder.layers;
        let dim = self.dim;
        let graphs = self
            .graphs
            .as_mut()
            .expect("decoding runs only with the model's graphs");
        let mut live: Vec<usize> = (0..sequences.len()).collect();
        let mut enc_kv: Vec<DynValue> = Vec::new();
        let mut dec_kv: Vec<DynValue> = Vec::new();
        self.profile = DecodeProfile::default();
        while !live.is_empty() {
            let a = live.len();
            let mut x = Vec::with_capacity(a * dim);
            for &s in &live {
                x.extend_from_slice(&self.token_embeds[&sequences[s].last_token()]);
            }
            let x = Tensor::from_array(([a, 1, dim], x)).map_err(infer("decoder"))?;
            let m = TensorRef::from_array_view(([a, length], mask.as_slice()))
                .map_err(infer("decoder"))?;
            let logits = if enc_kv.is_empty() {
                let mut out = graphs
                    .decoder
                    .run(ort::inputs![
                        "inputs_embeds" => x,
                        "encoder_hidden_states" => hidden,
                        "encoder_attention_mask" => m
                    ])
                    .map_err(infer("decoder_model"))?;
                for i in 0..layers {
                    for part in ["key", "value"] {
                        let name = format!("present.{i}.decoder.{part}");
                        dec_kv.push(take(&mut out, &name, "decoder_model")?);
                        let name = format!("present.{i}.encoder.{part}");
                        enc_kv.push(take(&mut out, &name, "decoder_model")?);
                    }
                }
                take(&mut out, "logits", "decoder_model")?
            } else {
                let mut inputs: Vec<(String, SessionInputValue)> = vec![
                    ("inputs_embeds".into(), x.into_dyn().into()),
                    ("encoder_attention_mask".into(), m.into()),
                ];
                for i in 0..layers {
                    for (p, part) in ["key", "value"].iter().enumerate() {
                        inputs.push((
                            format!("past_key_values.{i}.decoder.{part}"),
                            (&dec_kv[2 * i + p]).into(),
                        ));
                        inputs.push((
                            format!("past_key_values.{i}.encoder.{part}"),
                            (&enc_kv[2 * i + p]).into(),
                        ));
                    }
                }
                let mut out = graphs
                    .decoder_past
                    .run(inputs)
                    .map_err(infer("decoder_with_past"))?;
                let mut next = Vec::with_capacity(2 * layers);
                for i in 0..layers {
                    for part in ["key", "value"] {
                        let name = format!("present.{i}.decoder.{part}");
                        next.push(take(&mut out, &name, "decoder_with_past")?);
                    }
                }
                let logits = take(&mut out, "logits", "decoder_with_past")?;
                drop(out);
                dec_kv = next;
                logits
            };
            self.profile.rows_per_step.push(a);
            let (_, scores) = extract(&logits, "decoder")?;
            let vocab = scores.len() / a;
            for (row, &s) in live.iter().enumerate() {
                sequences[s].step(&scores[row * vocab..(row + 1) * vocab]);
            }
            let keep: Vec<usize> = (0..a)
                .filter(|&row| !sequences[live[row]].finished())
                .collect();
            if keep.len() == a {
                continue;
            }
            live = keep.iter().map(|&row| live[row]).collect();
            if live.is_empty() {
                break;
            }
            mask = keep
                .iter()
                .flat_map(|&row| mask[row * length..(row + 1) * length].iter().copied())
                .collect();
            for v in dec_kv.iter_mut().chain(enc_kv.iter_mut()) {
                *v = keep_rows(v, &keep)?;
            }
        }
        Ok(())
    }

    /// The defect words this model writes and their names in standards.
    pub fn vocabulary(&self) -> Vocabulary {
        self.package.manifest.output.vocabulary()
    }

    /// The judgement the engine makes when the decoder writes `tokens`
    /// (verdict-v1 tokens after the decision's `<s>`, e.g. `<fail> dent
    /// <loc_1> <loc_2> <loc_30> <loc_40> <clause_5> </s>`), each with
    /// probability 1. For drills and tests of everything downstream of the
    /// decoder; returns the first token the grammar would not have allowed.
    pub fn interpret_tokens(
        &mut self,
        tokens: &[&str],
        standard: &Standard,
    ) -> Result<Judgement, String> {
        let prepared = self.prepared(standard, None).map_err(|e| e.to_string())?;
        let mut sequence = Sequence::new(
            Arc::clone(&self.grammar),
            prepared.max_clause(standard),
            Arc::clone(&prepared.citable),
        );
        for token in tokens {
            let id = self
                .tokenizer
                .token_to_id(token)
                .ok_or_else(|| format!("`{token}` is not a token of this model"))?;
            if !sequence.allowed().contains(&id) {
                return Err(format!("the grammar does not allow `{token}` here"));
            }
            let mut logits = vec![0f32; self.tokenizer.get_vocab_size(true)];
            logits[id as usize] = 1e4;
            sequence.step(&logits);
            if sequence.finished() {
                break;
            }
        }
        let mut j = self.interpret(&sequence.emitted, standard, &prepared, sequence.closed());
        j.readings = Arc::clone(&prepared.readings);
        Ok(j)
    }

    /// Runs a few real judgements of a plain grey image under each standard,
    /// at batch 1 and at `batch`, so the first real frame does not pay for
    /// ONNX Runtime's lazy allocations; also prepares those standards.
    pub fn warm_up(
        &mut self,
        standards: &[&Standard],
        batch: usize,
    ) -> Result<Duration, EngineError> {
        let started = Instant::now();
        let i = &self.package.manifest.input;
        // Zero after normalisation: the dataset's mean colour.
        let grey = vec![0f32; 3 * i.width as usize * i.height as usize];
        for standard in standards {
            for n in [1, batch.max(1)] {
                let requests = vec![
                    Request {
                        image: &grey,
                        standard,
                        mm_per_input_px: None,
                        known: None,
                    };
                    n
                ];
                self.judge_batch(&requests)?;
            }
        }
        Ok(started.elapsed())
    }

    /// Turns the decoded tokens into a judgement and applies the review rules.
    fn interpret(
        &self,
        emitted: &[(u32, f32)],
        standard: &Standard,
        prepared: &CachedStandard,
        closed: bool,
    ) -> Judgement {
        let context_loss = prepared.context_loss;
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
                Some(Token::Clause(n)) => prepared.clause(n),
                _ => None,
            };
            let bins = g.loc.len() as f32;
            let cited = clause.and_then(|n| standard.clause(n));
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
                clause_label: cited.map(|c| c.label.clone()),
                clause_text: cited.map(|c| c.text.clone()),
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
            closed,
            inference_ms: 0.0,
            batch_size: 1,
            readings: Arc::default(),
            anomaly: None,
        }
    }
}
