//! Starts every configured camera on its own thread and keeps what the rest
//! of the station needs from them: their trigger queues (for MQTT and HTTP
//! trigger commands), their health (for status and monitoring) and the
//! stream of up/down events.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use firmware_config::{CameraSource, CaptureMode, StationConfig};
use serde::Deserialize;
use tokio::sync::mpsc;
use vision::sources::health::{Backoff, CameraEvent, CameraHealth};
use vision::sources::hot_folder::HotFolder;
use vision::sources::synthetic::SyntheticCamera;
use vision::sources::trigger::{self, TriggerError, TriggerSender};
use vision::sources::video::{CaptureSettings, Delivery, VideoCamera, VideoUri};
use vision::sources::Arrival;

/// The trigger queues of the cameras in trigger mode, by camera id.
#[derive(Clone, Debug, Default)]
pub struct Triggers {
    by_camera: BTreeMap<String, TriggerSender>,
    all: Vec<String>,
}

/// A trigger command: MQTT `cmd/trigger` payload or HTTP body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// The part now in front of the cameras.
    pub part_id: String,
    /// The PLC's own id for this trigger; one is made when absent.
    #[serde(default)]
    pub trigger_id: Option<String>,
    /// Only this camera; absent: every camera in trigger mode.
    #[serde(default)]
    pub camera: Option<String>,
    /// Echoed in the reply, to match it to the request.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl Triggers {
    /// Fires the request's cameras; all or none (a full queue on one camera
    /// refuses the whole request before any is fired).
    pub fn fire(&self, req: &TriggerRequest) -> Result<Vec<String>, TriggerError> {
        let trigger_id = req
            .trigger_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let cameras: Vec<&TriggerSender> = match &req.camera {
            Some(c) => match self.by_camera.get(c) {
                Some(t) => vec![t],
                None if self.all.contains(c) => {
                    return Err(TriggerError::NotTriggered { camera: c.clone() })
                }
                None => return Err(TriggerError::UnknownCamera { camera: c.clone() }),
            },
            None => self.by_camera.values().collect(),
        };
        if cameras.is_empty() {
            return Err(TriggerError::NotTriggered {
                camera: "(none in trigger mode)".into(),
            });
        }
        for t in &cameras {
            t.fire(Some(req.part_id.clone()), trigger_id.clone())?;
        }
        Ok(cameras.iter().map(|t| t.camera().to_string()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.by_camera.is_empty()
    }
}

/// Running cameras.
pub struct Cameras {
    threads: Vec<std::thread::JoinHandle<()>>,
    pub triggers: Triggers,
    pub health: Vec<Arc<CameraHealth>>,
}

/// What the station reads from its cameras.
pub struct CameraLinks {
    pub triggers: Triggers,
    pub health: Vec<Arc<CameraHealth>>,
    pub events: mpsc::UnboundedReceiver<CameraEvent>,
}

impl CameraLinks {
    /// No cameras (frames are fed by the caller, as the benchmark does).
    pub fn none() -> Self {
        Self {
            triggers: Triggers::default(),
            health: Vec::new(),
            events: mpsc::unbounded_channel().1,
        }
    }
}

impl Cameras {
    /// Starts every camera of `cfg`, delivering into `tx` until `stop`.
    pub fn start(
        cfg: &StationConfig,
        tx: &mpsc::Sender<Arrival>,
        stop: &Arc<AtomicBool>,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<CameraEvent>)> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut cams = Cameras {
            threads: Vec::new(),
            triggers: Triggers {
                all: cfg.cameras.iter().map(|c| c.id.clone()).collect(),
                ..Triggers::default()
            },
            health: Vec::new(),
        };
        for cam in &cfg.cameras {
            let tx = tx.clone();
            let stop = stop.clone();
            let id = cam.id.clone();
            let health = CameraHealth::new(&id, Some(events_tx.clone()));
            cams.health.push(health.clone());
            let builder = std::thread::Builder::new().name(format!("camera-{id}"));
            let t = match &cam.source {
                CameraSource::HotFolder {
                    path, poll, settle, ..
                } => {
                    let folder = HotFolder {
                        camera_id: id.clone(),
                        path: path.clone(),
                        poll: *poll,
                        settle: *settle,
                        watch: true,
                        health: Some(health.clone()),
                    };
                    health.started();
                    builder.spawn(move || {
                        if let Err(e) = folder.run(tx, stop) {
                            health.down(&format!("hot folder stopped: {e}"), Default::default());
                        }
                    })?
                }
                CameraSource::Synthetic {
                    seed,
                    interval,
                    replay,
                } => {
                    let cam = SyntheticCamera {
                        camera_id: id.clone(),
                        seed: *seed,
                        interval: *interval,
                        replay: *replay,
                        health: Some(health.clone()),
                    };
                    health.started();
                    builder.spawn(move || cam.run(tx, stop))?
                }
                CameraSource::Opencv {
                    device,
                    url,
                    pipeline,
                    file,
                    looping,
                    width,
                    height,
                    fps,
                    exposure,
                    mode,
                    every,
                    trigger_queue,
                    stall_timeout,
                    backoff_initial,
                    backoff_max,
                } => {
                    let uri = match (device, url, pipeline, file) {
                        (Some(d), ..) => VideoUri::Device(*d),
                        (_, Some(u), ..) => VideoUri::Url(u.clone()),
                        (_, _, Some(p), _) => VideoUri::Pipeline(p.clone()),
                        (.., Some(f)) => VideoUri::File {
                            path: f.clone(),
                            looping: *looping,
                        },
                        _ => unreachable!("validation requires one of device, url, pipeline, file"),
                    };
                    let delivery = match mode {
                        CaptureMode::FreeRun => Delivery::FreeRun { every: *every },
                        CaptureMode::Trigger => {
                            let (sender, rx) = trigger::queue(&id, *trigger_queue);
                            cams.triggers.by_camera.insert(id.clone(), sender);
                            Delivery::Trigger(rx)
                        }
                    };
                    let camera = VideoCamera {
                        camera_id: id.clone(),
                        uri,
                        settings: CaptureSettings {
                            width: *width,
                            height: *height,
                            fps: *fps,
                            exposure: *exposure,
                        },
                        delivery,
                        stall_timeout: *stall_timeout,
                        backoff: Backoff::new(*backoff_initial, *backoff_max),
                        health,
                    };
                    builder.spawn(move || camera.run(tx, stop))?
                }
            };
            cams.threads.push(t);
        }
        Ok((cams, events))
    }

    /// Waits for every camera thread to end (after `stop` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}
