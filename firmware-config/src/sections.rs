//! The sections of a station configuration, one struct per TOML table.
//!
//! Every field is documented in `default.toml`, which is also the built-in
//! default layer; a test keeps the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{ByteSize, Secret};

/// The whole station.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    pub station: Identity,
    pub cameras: Vec<Camera>,
    pub parts: Parts,
    pub recipes: Vec<RecipeConfig>,
    pub model: ModelConfig,
    pub batching: Batching,
    pub mqtt: Mqtt,
    pub storage: Storage,
    pub http: Http,
    pub shifts: Shifts,
    pub review: Review,
    pub monitoring: Monitoring,
    /// A plant server's own settings (`appliance plant`); a station ignores them.
    pub plant: Plant,
    /// The file it was loaded from, if any: SIGHUP and `cmd/config` read it
    /// again.
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

/// Where the station is, and what it inspects against right now.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub site: String,
    pub line: String,
    /// Appears in every MQTT topic; letters, digits, `-` and `_` only.
    pub station: String,
    /// The recipe active at start-up.
    pub recipe: String,
}

/// One camera looking at the part.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub id: String,
    /// Millimetres per pixel of the full frame, for sizes in findings.
    pub mm_per_px: f64,
    /// Crop applied before the model sees the frame (in pixels of the
    /// frame after `rotate` and `flip`).
    #[serde(default)]
    pub roi: Option<Roi>,
    /// Clockwise rotation applied to every frame: 0, 90, 180 or 270 degrees.
    #[serde(default)]
    pub rotate: u16,
    /// Mirror applied after rotation.
    #[serde(default)]
    pub flip: Flip,
    pub source: CameraSource,
}

/// Mirroring of a camera's frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flip {
    #[default]
    None,
    Horizontal,
    Vertical,
    Both,
}

/// When a streaming camera's frames are judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// Every frame the camera delivers (at most one per `every`); under
    /// overload the newest frame replaces an older one waiting (counted as
    /// dropped).
    #[default]
    FreeRun,
    /// Only on a trigger (MQTT `cmd/trigger` or HTTP): the first frame
    /// captured after the trigger arrived. Triggered frames are never
    /// dropped; triggers beyond `trigger_queue` waiting are refused.
    Trigger,
}

/// Multi-view parts: cameras that each photograph every part.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parts {
    /// Camera ids whose verdicts for one part id are combined into one part
    /// verdict; empty: every verdict stands alone.
    pub views: Vec<String>,
    /// How long after a part's first view the others may take.
    #[serde(with = "humantime_serde")]
    pub view_timeout: Duration,
}

/// A rectangle in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// How a camera delivers frames.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CameraSource {
    /// Image files dropped into a folder by a vision PC or a test.
    HotFolder {
        path: PathBuf,
        #[serde(default)]
        after: AfterJudged,
        #[serde(default = "default_poll", with = "humantime_serde")]
        poll: Duration,
        /// A file that does not decode is rejected only after it stayed
        /// unchanged this long (a slow writer may still be filling it).
        #[serde(default = "default_settle", with = "humantime_serde")]
        settle: Duration,
    },
    /// Anything OpenCV's `VideoCapture` opens. Exactly one of `device`
    /// (V4L2 index), `url` (RTSP/HTTP stream), `pipeline` (GStreamer
    /// pipeline string) or `file` (a video file) is given.
    Opencv {
        #[serde(default)]
        device: Option<i32>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        pipeline: Option<String>,
        #[serde(default)]
        file: Option<PathBuf>,
        /// A video file starts again at its end instead of ending.
        #[serde(default)]
        looping: bool,
        /// Requested resolution, frame rate and exposure, where the backend
        /// accepts them.
        #[serde(default)]
        width: Option<u32>,
        #[serde(default)]
        height: Option<u32>,
        #[serde(default)]
        fps: Option<f64>,
        #[serde(default)]
        exposure: Option<f64>,
        #[serde(default)]
        mode: CaptureMode,
        /// Free-run: judge at most one frame per this interval (0: every frame).
        #[serde(default, with = "humantime_serde")]
        every: Duration,
        /// Trigger mode: triggers waiting for a frame before new ones are refused.
        #[serde(default = "default_trigger_queue")]
        trigger_queue: usize,
        /// No frame for this long means the camera is down; it is reopened.
        #[serde(default = "default_stall_timeout", with = "humantime_serde")]
        stall_timeout: Duration,
        /// Reopen attempts wait this long, doubling up to `backoff_max`.
        #[serde(default = "default_backoff_initial", with = "humantime_serde")]
        backoff_initial: Duration,
        #[serde(default = "default_backoff_max", with = "humantime_serde")]
        backoff_max: Duration,
    },
    /// The built-in synthetic line.
    Synthetic {
        #[serde(default)]
        seed: u64,
        /// Time between parts.
        #[serde(default = "default_interval", with = "humantime_serde")]
        interval: Duration,
        /// Paint this many parts once and replay them in a ring, each under
        /// a new name (0: paint every part); for load tests.
        #[serde(default)]
        replay: usize,
    },
}

fn default_poll() -> Duration {
    Duration::from_millis(100)
}

fn default_settle() -> Duration {
    Duration::from_secs(2)
}

fn default_trigger_queue() -> usize {
    16
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_backoff_initial() -> Duration {
    Duration::from_millis(500)
}

fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}

fn default_interval() -> Duration {
    Duration::from_millis(500)
}

/// What happens to a hot-folder file once judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterJudged {
    /// Moved into `processed/` under the folder.
    #[default]
    Move,
    /// Deleted (the stored copy remains).
    Delete,
}

/// A named inspection standard.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeConfig {
    pub name: String,
    /// Path of the standard's text file.
    pub standard: PathBuf,
    /// Folder with `golden.toml` and its images: parts whose verdict is
    /// known, judged again on a schedule (output consistency).
    #[serde(default)]
    pub golden: Option<PathBuf>,
}

/// Which model runs, and how.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub package: PathBuf,
    pub execution_providers: Vec<ExecutionProvider>,
    pub precision: Precision,
    pub intra_threads: usize,
    pub inter_threads: usize,
    /// Inference workers, each with its own copy of the model's sessions.
    pub workers: usize,
    /// Images the vision encoder takes in one run; 0 chooses by provider
    /// ([`ModelConfig::vision_images_per_run`]).
    pub vision_batch: usize,
    pub review_threshold: f64,
    pub onnxruntime_library: PathBuf,
    /// GPU index for the CUDA and TensorRT providers.
    pub device_id: u32,
    pub tensorrt: TensorrtConfig,
    /// Load tests only: judge synthetic parts from the defects drawn on
    /// them and run no graph (`fusion::stand_in`).
    pub stand_in: bool,
}

impl ModelConfig {
    /// ONNX Runtime's threads per session: `intra_threads`, or where that
    /// is 0 this machine's cores shared among the workers (at least one
    /// each). Two workers of one thread each judged the most parts a second
    /// on a 2-core CPU (README, "Engine structure"); one worker gets every
    /// core, as ONNX Runtime's own default would give it.
    pub fn threads_per_worker(&self) -> usize {
        if self.intra_threads > 0 {
            return self.intra_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.workers.max(1)).max(1)
    }

    /// Images the vision encoder takes in one run (0: the whole batch).
    /// Unset, a CPU runs them one at a time: a convolution's early, wide
    /// activations for one 256-pixel image fit a core's L2 cache and for
    /// eight do not, so on the 2-core Xeon one image at a time took 7.5 ms
    /// each against 8.3 ms in runs of eight (README, "Engine structure").
    /// A GPU takes the whole batch, which is what it is fast at.
    pub fn vision_images_per_run(&self) -> usize {
        if self.vision_batch > 0 {
            return self.vision_batch;
        }
        match self.execution_providers.first() {
            Some(ExecutionProvider::Cpu) | None => 1,
            Some(_) => 0,
        }
    }
}

/// TensorRT provider options (used only when `tensorrt` is listed and the
/// GPU build of ONNX Runtime is installed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorrtConfig {
    pub fp16: bool,
    pub int8: bool,
    /// Folder where built TensorRT engines are kept between starts.
    pub engine_cache: PathBuf,
}

/// ONNX Runtime execution providers the appliance knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProvider {
    Tensorrt,
    Cuda,
    Cpu,
}

/// Numeric precision of the model graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Int8,
}

/// Dynamic batching across cameras.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    pub max_batch: usize,
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    pub queue_capacity: usize,
}

/// Connection to the plant's broker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mqtt {
    pub url: String,
    pub client_id: String,
    pub topic_prefix: String,
    pub broker: BrokerMode,
    /// With `broker = "embedded"`: where the appliance's own broker listens.
    pub embedded_listen: std::net::SocketAddr,
    /// With `broker = "embedded"`: how much of each topic's recent traffic
    /// the broker keeps in memory for subscribers that are behind, or away
    /// with a kept session. It bounds the broker's memory; a subscriber
    /// further behind than this misses the oldest messages.
    pub embedded_backlog: ByteSize,
    pub protocol: MqttVersion,
    pub username: String,
    pub password: Secret,
    pub password_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub sparkplug: Option<Sparkplug>,
}

/// MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MqttVersion {
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// Sparkplug B: the appliance as an edge node, the station as its device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sparkplug {
    pub group_id: String,
    pub edge_node_id: String,
}

/// Whether the appliance connects out or hosts the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    External,
    Embedded,
}

/// TLS material for the broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: PathBuf,
    #[serde(default)]
    pub key: PathBuf,
}

/// Where verdicts and images are kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub database_url: String,
    pub data_dir: PathBuf,
    /// PASS images are deleted after this.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// FAIL, REVIEW and reviewed images are deleted after this.
    #[serde(with = "humantime_serde")]
    pub keep_max_age: Duration,
    /// Images above this total are deleted, PASS first, oldest first.
    pub disk_quota: ByteSize,
    /// Below this much free disk, new images are not written (the verdict
    /// is still decided, stored and published, and says so).
    pub min_free: ByteSize,
    /// How often retention runs.
    #[serde(with = "humantime_serde")]
    pub sweep_every: Duration,
    /// Whole months of verdicts kept before the current one (their findings,
    /// reviews and shadow judgements with them); 0 keeps them for ever. On
    /// PostgreSQL each month is a partition, dropped whole.
    pub verdict_months: u32,
}

/// The review UI, API and metrics endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub bind: SocketAddr,
    /// Mark the review UI's session cookie `Secure` (reached over HTTPS).
    pub secure_cookies: bool,
    /// Serve `/metrics` without credentials (a Prometheus on a closed
    /// network); otherwise it needs a viewer's API token.
    pub open_metrics: bool,
}

/// The line's shifts: the line view counts parts and first-pass yield
/// from the start of the current one (local time of the station).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shifts {
    /// When each shift starts, `"HH:MM"`, in any order.
    pub starts: Vec<crate::units::TimeOfDay>,
}

/// What a plant server rolls out, and how stations reach it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plant {
    /// One folder per model package the plant server can roll out.
    pub packages_dir: PathBuf,
    /// The plant server's URL as the stations reach it (they fetch packages
    /// from it), e.g. `http://plant.local:8090`; empty: `http://` and
    /// `http.bind`, which must then not be a wildcard address.
    pub url: String,
}

/// The review UI's one-tap review.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// The reasons an operator picks from (free text stays possible).
    pub reasons: Vec<String>,
}

/// The health figures' thresholds and windows, and self-healing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
    #[serde(with = "humantime_serde")]
    pub latency_window: Duration,
    pub context_loss_threshold: f64,
    #[serde(with = "humantime_serde")]
    pub context_loss_window: Duration,
    pub consistency_threshold: f64,
    #[serde(with = "humantime_serde")]
    pub consistency_window: Duration,
    #[serde(with = "humantime_serde")]
    pub evaluate_every: Duration,
    pub min_samples: u64,
    #[serde(with = "humantime_serde")]
    pub golden_every: Duration,
    pub auto_reload: bool,
    #[serde(with = "humantime_serde")]
    pub reload_backoff: Duration,
    pub max_reloads: u32,
    #[serde(with = "humantime_serde")]
    pub history_every: Duration,
}
