//! ONNX Runtime for the appliance: finds the shared library, creates the one
//! process-wide environment, and builds sessions with the configured execution
//! providers, falling back visibly when one is not available.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`) from the folder
//! the set-up step unpacks it into, so nothing downloads at build or run time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use firmware_config::ExecutionProvider;
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

/// Where the set-up step puts the library, relative to the repository root.
pub const CACHE_DIR: &str = ".cache/onnxruntime";
/// Where `GPU=1 make setup` puts the GPU build with the CUDA, cuDNN and
/// TensorRT libraries it needs.
pub const GPU_CACHE_DIR: &str = ".cache/onnxruntime-gpu";
const LIB_NAME: &str = "libonnxruntime.so";

/// Failures setting up ONNX Runtime or a session.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found: looked for {LIB_NAME} in {searched}; run `make setup` or set model.onnxruntime_library"
    )]
    LibraryNotFound { searched: String },
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot create session for {path}: {reason}")]
    Session { path: PathBuf, reason: String },
}

/// Finds libonnxruntime: explicit path, then `ORT_DYLIB_PATH`, then (when a
/// GPU provider is wanted) `.cache/onnxruntime-gpu`, then `.cache/onnxruntime`
/// beside the executable or the working folder, or any of their parents.
pub fn find_library(configured: &Path, want_gpu: bool) -> Result<PathBuf, RuntimeError> {
    if !configured.as_os_str().is_empty() {
        return Ok(configured.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    let dirs: &[&str] = if want_gpu {
        &[GPU_CACHE_DIR, CACHE_DIR]
    } else {
        &[CACHE_DIR]
    };
    for dir in dirs {
        for root in &roots {
            let candidate = root.join(dir).join(LIB_NAME);
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    Err(RuntimeError::LibraryNotFound {
        searched: roots
            .iter()
            .take(6)
            .map(|r| r.join(CACHE_DIR).display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// CUDA, cuDNN and TensorRT libraries that sit beside the GPU build are
/// loaded before it, so its providers find them without a system-wide CUDA
/// install or `LD_LIBRARY_PATH`.
fn preload_gpu_libraries(dir: &Path) {
    if !dir.join("libcudart.so.13").exists() {
        return;
    }
    match ort::ep::cuda::preload_dylibs(Some(dir), Some(dir)) {
        Ok(()) => tracing::info!(dir = %dir.display(), "CUDA and cuDNN libraries preloaded"),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot preload CUDA libraries; the CUDA provider will fall back")
        }
    }
    for lib in [
        "libnvinfer.so.10",
        "libnvinfer_plugin.so.10",
        "libnvonnxparser.so.10",
    ] {
        let path = dir.join(lib);
        if path.exists() {
            if let Err(e) = ort::util::preload_dylib(&path) {
                tracing::warn!(library = %path.display(), error = %e, "cannot preload TensorRT library");
            }
        }
    }
}

/// The process-wide ONNX Runtime environment (loaded on first use; the first
/// caller decides which library). `want_gpu` prefers the GPU build.
pub fn environment(
    configured_library: &Path,
    want_gpu: bool,
) -> Result<&'static Environment, RuntimeError> {
    let path = find_library(configured_library, want_gpu)?;
    let result = ENVIRONMENT.get_or_init(|| {
        if let Some(dir) = path.parent() {
            preload_gpu_libraries(dir);
        }
        tracing::info!(library = %path.display(), "loading ONNX Runtime");
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        builder
            .with_name("appliance")
            .build()
            .map_err(|e| e.to_string())
    });
    result.as_ref().map_err(|reason| RuntimeError::Load {
        path,
        reason: reason.clone(),
    })
}

/// How sessions are built: providers in order of preference, threads and
/// the GPU providers' options.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub providers: Vec<ExecutionProvider>,
    /// Threads inside one operator; 0 lets ONNX Runtime use one per core.
    pub intra_threads: usize,
    /// Threads running independent operators at once; 0 runs them in order.
    pub inter_threads: usize,
    pub device_id: u32,
    pub tensorrt_fp16: bool,
    pub tensorrt_int8: bool,
    /// Where TensorRT keeps built engines; empty disables the cache.
    pub tensorrt_cache: PathBuf,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            providers: vec![ExecutionProvider::Cpu],
            intra_threads: 0,
            inter_threads: 0,
            device_id: 0,
            tensorrt_fp16: true,
            tensorrt_int8: false,
            tensorrt_cache: PathBuf::new(),
        }
    }
}

/// Which of the wanted providers the loaded library can run; the rest are
/// logged as fallbacks. CPU is always last.
pub fn usable_providers(wanted: &[ExecutionProvider]) -> Vec<ExecutionProvider> {
    let mut usable = Vec::new();
    for p in wanted {
        let available = match p {
            ExecutionProvider::Tensorrt => ep::TensorRT::is_available().unwrap_or(false),
            ExecutionProvider::Cuda => ep::CUDA::is_available().unwrap_or(false),
            ExecutionProvider::Cpu => true,
        };
        if available {
            usable.push(*p);
        } else {
            tracing::warn!(provider = ?p, "execution provider not available in this ONNX Runtime; falling back to the next one");
        }
    }
    if !usable.contains(&ExecutionProvider::Cpu) {
        usable.push(ExecutionProvider::Cpu);
    }
    usable
}

fn provider(p: ExecutionProvider, settings: &SessionSettings) -> ep::ExecutionProviderDispatch {
    match p {
        ExecutionProvider::Tensorrt => {
            let mut trt = ep::TensorRT::default()
                .with_device_id(settings.device_id as i32)
                .with_fp16(settings.tensorrt_fp16)
                .with_int8(settings.tensorrt_int8);
            if !settings.tensorrt_cache.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(&settings.tensorrt_cache);
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(settings.tensorrt_cache.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(settings.tensorrt_cache.display());
            }
            trt.build()
        }
        ExecutionProvider::Cuda => ep::CUDA::default()
            .with_device_id(settings.device_id as i32)
            .build(),
        // The CPU arena keeps activation buffers between runs instead of
        // allocating them per frame.
        ExecutionProvider::Cpu => ep::CPU::default().with_arena_allocator(true).build(),
    }
}

fn build_with(
    env: &Environment,
    path: &Path,
    settings: &SessionSettings,
    p: ExecutionProvider,
) -> ort::Result<Session> {
    let mut providers = vec![provider(p, settings).error_on_failure()];
    if p != ExecutionProvider::Cpu {
        // Operators the GPU provider does not take run on the CPU.
        providers.push(provider(ExecutionProvider::Cpu, settings));
    }
    let mut builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        // Same shapes run after run: let ONNX Runtime plan memory once per shape.
        .with_memory_pattern(true)?
        // Five sessions run one after another, each with its own thread
        // pool: threads left spinning after one graph steal the cores the
        // next graph (and the rest of the pipeline) needs. Measured on 2
        // cores at batch 8: vision encoder 30-50 ms spinning, 11.5 ms not.
        .with_intra_op_spinning(false)?
        .with_execution_providers(providers)?;
    if p == ExecutionProvider::Cpu {
        // Weights stored 8-bit behind DequantizeLinear (the INT8 vision
        // encoder, 8-bit tables) are folded into FP32 constants at load
        // instead of being dequantized on every run: measured on 2 cores at
        // batch 8, the INT8 vision encoder took 11.7 ms per image with the
        // QDQ transformations on and 9.2 ms off (FP32: 9.2 ms). Nothing we
        // ship quantizes activations with QDQ, so nothing else changes.
        builder = builder.with_config_entry("session.disable_quant_qdq", "1")?;
    }
    if settings.intra_threads > 0 {
        builder = builder.with_intra_threads(settings.intra_threads)?;
    }
    if settings.inter_threads > 0 {
        builder = builder
            .with_parallel_execution(true)?
            .with_inter_threads(settings.inter_threads)?;
    }
    builder.commit_from_file(path)
}

/// Tries the usable providers in order; a provider that fails to set up for
/// this graph is logged and the next one tried.
fn build(env: &Environment, path: &Path, settings: &SessionSettings) -> ort::Result<Session> {
    let usable = usable_providers(&settings.providers);
    let mut failure = None;
    for (i, p) in usable.iter().enumerate() {
        match build_with(env, path, settings, *p) {
            Ok(session) => {
                if i > 0 || Some(p) != settings.providers.first() {
                    tracing::warn!(graph = %path.display(), provider = ?p, wanted = ?settings.providers, "running on a fallback execution provider");
                } else {
                    tracing::debug!(graph = %path.display(), provider = ?p, "session built");
                }
                return Ok(session);
            }
            Err(e) => {
                tracing::warn!(graph = %path.display(), provider = ?p, error = %e, "execution provider failed; trying the next one");
                failure = Some(e);
            }
        }
    }
    Err(failure.expect("CPU is always tried"))
}

/// Builds a session for one graph.
pub fn session(
    env: &Environment,
    path: &Path,
    settings: &SessionSettings,
) -> Result<Session, RuntimeError> {
    build(env, path, settings).map_err(|e| RuntimeError::Session {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
