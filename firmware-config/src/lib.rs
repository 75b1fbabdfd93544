//! The station's typed configuration: one TOML file that describes the
//! station, loaded in layers (built-in defaults, the file, environment
//! variables), typed, validated, and explained when it is wrong.
//!
//! Library code only: it never logs, exits or reads the environment by
//! itself; the binary passes the environment in.

mod layer;
mod repair;
mod sections;
mod units;
mod validate;

use std::fmt;
use std::path::{Component, Path, PathBuf};

pub use layer::ENV_PREFIX;
pub use sections::*;
pub use units::{ByteSize, Secret, TimeOfDay};
pub use validate::{is_name, Problem};

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

    /// Runs the layers, types the result and validates it. Every problem is
    /// reported at once: a key that does not type is set aside (its default
    /// stands in) so the rest of the file is still checked.
    pub fn load(&self) -> Result<StationConfig, ConfigError> {
        let defaults: toml::Table = DEFAULT_TOML
            .parse()
            .expect("built-in default.toml is valid TOML");
        let mut table = defaults.clone();
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
                // A file's lists replace the defaults' whole, so nothing is refused here.
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
        let (env_table, overrides) = layer::env_overrides(self.env.iter().cloned());
        let mut problems: Vec<Problem> = layer::merge(&mut table, env_table)
            .into_iter()
            .map(|key| Problem {
                message: format!(
                    "no such entry: an index may be at most the list's length (which adds one){}",
                    blame(&overrides, &key)
                ),
                key,
            })
            .collect();

        let mut typed = None;
        for _ in 0..MAX_PROBLEMS {
            match serde_path_to_error::deserialize::<_, StationConfig>(toml::Value::Table(
                table.clone(),
            )) {
                Ok(c) => {
                    typed = Some(c);
                    break;
                }
                Err(e) => {
                    let segments: Vec<repair::Step> = e
                        .path()
                        .iter()
                        .filter_map(repair::Step::from_segment)
                        .collect();
                    let key = e.path().to_string();
                    let key = if key == "." {
                        "(top level)".to_string()
                    } else {
                        key
                    };
                    let message = e.into_inner().to_string();
                    let message = format!("{message}{}", blame(&overrides, &key));
                    problems.push(Problem { key, message });
                    if !repair::set_aside(&mut table, &defaults, &segments) {
                        break;
                    }
                }
            }
        }
        let Some(mut config) = typed else {
            return Err(ConfigError::Invalid { origin, problems });
        };
        resolve_paths(&mut config, &base_dir);
        config.source = self.file.map(Path::to_path_buf);
        let mut checked = validate::check_values(&config);
        if self.check_files {
            checked.extend(validate::check_files(&config));
        }
        for p in &mut checked {
            p.message.push_str(&blame(&overrides, &p.key));
        }
        // A key that did not type was replaced by its default; what the
        // value checks say about that stand-in is not news.
        checked.retain(|c| !problems.iter().any(|p| within(&c.key, &p.key)));
        problems.extend(checked);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { origin, problems })
        }
    }
}

/// Most problems collected from one file before giving up.
const MAX_PROBLEMS: usize = 64;

/// True when `key` is `outer` or inside it (`cameras[0].id` in `cameras[0]`).
fn within(key: &str, outer: &str) -> bool {
    key == outer
        || key
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// ` (from environment variable X)` when an override set `key` or a key
/// around it, so a bad value from the environment is not looked for in the
/// file.
fn blame(overrides: &[layer::EnvOverride], key: &str) -> String {
    overrides
        .iter()
        .find(|o| within(key, &o.key) || within(&o.key, key))
        .map(|o| format!(" (from environment variable {})", o.var))
        .unwrap_or_default()
}

/// `path` made absolute against the working folder, with `.` and `..`
/// resolved by their names (symbolic links are not followed: the folder a
/// link sits in is where `..` goes, as a shell's `cd` does).
pub fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if !p.as_os_str().is_empty() {
        *p = absolute(&base.join(&*p));
    }
}

/// The file a `sqlite://FILE` URL names, resolved against `base` the way
/// every other path in the configuration is; `None` for other URLs and for
/// SQLite's in-memory names.
pub fn sqlite_file(url: &str, base: &Path) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file.starts_with(':') {
        return None;
    }
    Some(absolute(&base.join(file)))
}

/// Makes every path in the configuration absolute: a relative path is
/// relative to the configuration file's folder (the working folder when
/// there is no file), and the result no longer depends on where the
/// appliance was started from.
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
    if let Some(file) = sqlite_file(&c.storage.database_url, base) {
        c.storage.database_url = format!("sqlite://{}", file.display());
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
