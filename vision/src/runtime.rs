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

/// Finds libonnxruntime: explicit path, then `ORT_DYLIB_PATH`, then
/// `.cache/onnxruntime` beside the executable or the working folder, or any
/// of their parents.
pub fn find_library(configured: &Path) -> Result<PathBuf, RuntimeError> {
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
    for root in &roots {
        let candidate = root.join(CACHE_DIR).join(LIB_NAME);
        if candidate.exists() {
            return Ok(candidate);
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

/// The process-wide ONNX Runtime environment (loaded on first use).
pub fn environment(configured_library: &Path) -> Result<&'static Environment, RuntimeError> {
    let path = find_library(configured_library)?;
    let result = ENVIRONMENT.get_or_init(|| {
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

fn build(env: &Environment, path: &Path, settings: &SessionSettings) -> ort::Result<Session> {
    let usable = usable_providers(&settings.providers);
    let providers: Vec<_> = usable
        .iter()
        .map(|p| match p {
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
        })
        .collect();
    tracing::debug!(graph = %path.display(), providers = ?usable, "building session");
    let mut builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        // Same shapes run after run: let ONNX Runtime plan memory once per shape.
        .with_memory_pattern(true)?
        .with_execution_providers(providers)?;
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
