//! The station's typed configuration: one TOML file that describes the
//! station, loaded in layers (built-in defaults, the file, environment
//! variables), typed, validated, and explained when it is wrong.
//!
//! Library code only: it never logs, exits or reads the environment by
//! itself; the binary passes the environment in.

mod layer;
mod sections;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use layer::ENV_PREFIX;
pub use sections::*;
pub use units::{ByteSize, Secret};
pub use validate::Problem;

/// The commented built-in default configuration (also the bottom layer).
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    Syntax { path: PathBuf, message: String },
    /// The TOML is well formed but wrong: each problem names its key.
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read configuration {}: {source}", path.display())
            }
            ConfigError::Syntax { path, message } => {
                write!(f, "{} is not valid TOML: {message}", path.display())
            }
            ConfigError::Invalid { origin, problems } => {
                write!(f, "{origin} has {} problem(s):", problems.len())?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The problems, when the configuration was readable but invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// How to load: which file, which environment, and whether files it names must exist.
pub struct Loader<'a> {
    /// The station file; `None` uses defaults (and the environment) only.
    pub file: Option<&'a Path>,
    /// Environment variables to consider (only `APPLIANCE__*` are used).
    pub env: Vec<(String, String)>,
    /// Check that standards, the model package and TLS files exist.
    pub check_files: bool,
}

impl<'a> Loader<'a> {
    /// Loads `file` with the process environment, checking referenced files.
    pub fn new(file: Option<&'a Path>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            check_files: true,
        }
    }

    /// Loads a file without reading the process environment.
    pub fn without_env(file: Option<&'a Path>) -> Self {
        Self {
            file,
            env: Vec::new(),
            check_files: true,
        }
    }

    /// Runs the layers, types the result and validates it.
    pub fn load(&self) -> Result<StationConfig, ConfigError> {
        let mut table: toml::Table = DEFAULT_TOML
            .parse()
            .expect("built-in default.toml is valid TOML");
        let (origin, base_dir) = match self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let file: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Syntax {
                            path: path.to_path_buf(),
                            message: e.to_string(),
                        })?;
                layer::merge(&mut table, file);
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (path.display().to_string(), dir)
            }
            None => ("built-in configuration".to_string(), PathBuf::from(".")),
        };
        let (env_table, _) = layer::env_overrides(self.env.iter().cloned());
        layer::merge(&mut table, env_table);

        let mut config: StationConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Invalid {
                    origin: origin.clone(),
                    problems: vec![Problem {
                        key: if key == "." {
                            "(top level)".into()
                        } else {
                            key
                        },
                        message: e.into_inner().to_string(),
                    }],
                }
            })?;
        resolve_paths(&mut config, &base_dir);
        config.source = self.file.map(Path::to_path_buf);
        let mut problems = validate::check_values(&config);
        if self.check_files {
            problems.extend(validate::check_files(&config));
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { origin, problems })
        }
    }
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if !p.as_os_str().is_empty() && p.is_relative() {
        *p = base.join(&*p);
    }
}

/// Makes every relative path relative to the configuration file's folder.
fn resolve_paths(c: &mut StationConfig, base: &Path) {
    for cam in &mut c.cameras {
        if let CameraSource::Opencv {
            file: Some(path), ..
        } = &mut cam.source
        {
            resolve(base, path);
        }
        if let CameraSource::HotFolder { path, .. } = &mut cam.source {
            resolve(base, path);
        }
    }
    for r in &mut c.recipes {
        resolve(base, &mut r.standard);
        if let Some(g) = &mut r.golden {
            resolve(base, g);
        }
    }
    resolve(base, &mut c.model.package);
    resolve(base, &mut c.model.onnxruntime_library);
    resolve(base, &mut c.model.tensorrt.engine_cache);
    resolve(base, &mut c.mqtt.password_file);
    if let Some(tls) = &mut c.mqtt.tls {
        resolve(base, &mut tls.ca);
        resolve(base, &mut tls.cert);
        resolve(base, &mut tls.key);
    }
    resolve(base, &mut c.storage.data_dir);
    if let Some(file) = c.storage.database_url.strip_prefix("sqlite://") {
        if !file.starts_with('/') && !file.starts_with(':') {
            c.storage.database_url = format!("sqlite://{}", base.join(file).display());
        }
    }
}

impl StationConfig {
    /// The recipe named `name`.
    pub fn recipe(&self, name: &str) -> Option<&RecipeConfig> {
        self.recipes.iter().find(|r| r.name == name)
    }

    /// The MQTT client id, defaulting to `appliance-<station>`.
    pub fn client_id(&self) -> String {
        if self.mqtt.client_id.is_empty() {
            format!("appliance-{}", self.station.station)
        } else {
            self.mqtt.client_id.clone()
        }
    }
}
