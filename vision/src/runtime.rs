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

/// How sessions are built: providers in order of preference and threads.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub providers: Vec<ExecutionProvider>,
    pub intra_threads: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            providers: vec![ExecutionProvider::Cpu],
            intra_threads: 0,
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
    let providers: Vec<_> = usable_providers(&settings.providers)
        .into_iter()
        .map(|p| match p {
            ExecutionProvider::Tensorrt => ep::TensorRT::default()
                .with_engine_cache(true)
                .with_fp16(true)
                .build(),
            ExecutionProvider::Cuda => ep::CUDA::default().build(),
            ExecutionProvider::Cpu => ep::CPU::default().build(),
        })
        .collect();
    let mut builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_execution_providers(providers)?;
    if settings.intra_threads > 0 {
        builder = builder.with_intra_threads(settings.intra_threads)?;
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
