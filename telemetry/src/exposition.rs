//! What a Prometheus scrape of `/metrics` gets: the registry's atomics and
//! what is read at scrape time (cameras, outbox backlog, health, process,
//! GPUs), written in the OpenMetrics text format by the Prometheus
//! project's own `prometheus-client` encoder. No text is formatted here:
//! this module only says which family holds which value, so escaping,
//! number formatting, suffixes and the closing `# EOF` are the library's.
//!
//! The values stay in our atomics ([`crate::metrics`]): recording costs a
//! few nanoseconds on the hot path and the panel reads bucket counts back,
//! which the library's own metric types keep behind a lock and do not show.

use std::fmt::{self, Write as _};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue,
    LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::gpu::Gpu;
use crate::health::{self, Mode, Standing};
use crate::metrics::{self, CameraState, STAGES};

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition: the registry plus what is read at scrape time.
pub fn render(cameras: &[CameraState], outbox_pending: Option<i64>) -> String {
    let scrape = Scrape {
        cameras: cameras.to_vec(),
        outbox_pending,
        gpus: crate::gpu::snapshot(),
        health: health::snapshot(),
        process: metrics::process(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(8 << 10);
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// One scrape's readings besides the registry.
#[derive(Debug)]
struct Scrape {
    cameras: Vec<CameraState>,
    outbox_pending: Option<i64>,
    gpus: Vec<Gpu>,
    health: Option<health::Snapshot>,
    /// Resident bytes and CPU seconds.
    process: (u64, f64),
}

impl Collector for Scrape {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        pipeline(&mut out)?;
        cameras(&mut out, &self.cameras)?;
        delivery(&mut out, self.outbox_pending)?;
        info(&mut out)?;
        process(&mut out, self.process)?;
        if let Some(h) = &self.health {
            health_figures(&mut out, h)?;
        }
        gpus(&mut out, &self.gpus)
    }
}

type Labels<'a> = [(&'static str, Escaped<'a>)];

/// A label value escaped as the text format needs (`\\`, `\"`, `\n`): the
/// encoder writes values as given, and camera ids, model names and recipes
/// come from files a person wrote.
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, out: &mut LabelValueEncoder) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                '"' => out.write_str("\\\"")?,
                '\n' => out.write_str("\\n")?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A label's value, escaped.
fn lv(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// One family: its descriptor, then each of its samples through `samples`.
fn family(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    let mut m = out.encode_descriptor(name, help, None, kind)?;
    samples(&mut m)
}

/// A counter's sample; `name` is given without `_total`, which the encoder
/// adds.
fn counter(m: &mut MetricEncoder, labels: &Labels, v: impl EncodeCounterValue) -> fmt::Result {
    if labels.is_empty() {
        m.encode_counter::<NoLabelSet, _, u64>(&v, None)
    } else {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)
    }
}

fn gauge(m: &mut MetricEncoder, labels: &Labels, v: impl EncodeGaugeValue) -> fmt::Result {
    if labels.is_empty() {
        m.encode_gauge(&v)
    } else {
        m.encode_family(&labels)?.encode_gauge(&v)
    }
}

fn histogram(
    m: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    h: &metrics::Histogram,
) -> fmt::Result {
    let (sum, count, buckets) = h.snapshot();
    m.encode_family(labels)?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// Frames through the stages, batches, verdicts, rejections, the queue and the engine.
fn pipeline(out: &mut DescriptorEncoder) -> fmt::Result {
    let r = metrics::registry();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    family(out, "appliance_stage_seconds", "Time from capture to each stage of a frame: queued, inference, decided (stored), published (handed to the broker).", MetricType::Histogram, |m| {
        for (i, stage) in STAGES.iter().enumerate() {
            histogram(m, &[("stage", lv(stage))], &r.stage[i])?;
        }
        Ok(())
    })?;
    family(
        out,
        "appliance_store_commit_seconds",
        "Time to commit a verdict and its outbox rows to the store, waiting for its turn included.",
        MetricType::Histogram,
        |m| {
            let (sum, count, buckets) = r.commit.snapshot();
            m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        },
    )?;
    family(
        out,
        "appliance_batch_size",
        "Frames per inference batch.",
        MetricType::Histogram,
        |m| {
            let (sum, count, buckets) = r.batch.snapshot();
            m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        },
    )?;
    family(
        out,
        "appliance_verdicts",
        "Verdicts decided, by decision.",
        MetricType::Counter,
        |m| {
            for (i, d) in record::Decision::ALL.iter().enumerate() {
                counter(m, &[("decision", lv(d.as_str()))], load(&r.verdicts[i]))?;
            }
            Ok(())
        },
    )?;
    family(
        out,
        "appliance_rejected_frames",
        "Frames or files that could not be judged (kept as ingest errors).",
        MetricType::Counter,
        |m| counter(m, &[], load(&r.rejected)),
    )?;
    family(
        out,
        "appliance_queue_depth",
        "Frames accepted and not yet judged (waiting for or in the engine).",
        MetricType::Gauge,
        |m| {
            gauge(
                m,
                &[],
                r.in_engine
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .max(0),
            )
        },
    )?;
    family(
        out,
        "appliance_engine_busy_seconds",
        "Time the inference engine spent running batches.",
        MetricType::Counter,
        |m| counter(m, &[], metrics::engine().busy.as_secs_f64()),
    )?;
    family(
        out,
        "appliance_frames",
        "Frames (and unreadable files) that reached the pipeline, by camera.",
        MetricType::Counter,
        |m| {
            for (camera, n) in r.frames.lock().expect("frames lock").iter() {
                counter(m, &[("camera", lv(camera))], *n)?;
            }
            Ok(())
        },
    )
}

/// Per camera: frames dropped, up or down, reconnects.
fn cameras(out: &mut DescriptorEncoder, cameras: &[CameraState]) -> fmt::Result {
    family(
        out,
        "appliance_camera_dropped_frames",
        "Frames a camera dropped (pipeline full, stale frames).",
        MetricType::Counter,
        |m| {
            cameras
                .iter()
                .try_for_each(|c| counter(m, &[("camera", lv(&c.camera))], c.dropped))
        },
    )?;
    family(
        out,
        "appliance_camera_up",
        "1 when the camera delivers frames, 0 when it is down.",
        MetricType::Gauge,
        |m| {
            cameras
                .iter()
                .try_for_each(|c| gauge(m, &[("camera", lv(&c.camera))], i64::from(c.up)))
        },
    )?;
    family(
        out,
        "appliance_camera_reconnects",
        "Times a camera was reopened.",
        MetricType::Counter,
        |m| {
            cameras
                .iter()
                .try_for_each(|c| counter(m, &[("camera", lv(&c.camera))], c.reconnects))
        },
    )
}

/// The outbox backlog (when the store answered) and the broker connection.
fn delivery(out: &mut DescriptorEncoder, outbox_pending: Option<i64>) -> fmt::Result {
    if let Some(p) = outbox_pending {
        family(
            out,
            "appliance_outbox_pending",
            "Messages committed and not yet acknowledged by the broker.",
            MetricType::Gauge,
            |m| gauge(m, &[], p),
        )?;
    }
    family(
        out,
        "appliance_mqtt_connected",
        "1 while connected to the broker.",
        MetricType::Gauge,
        |m| gauge(m, &[], i64::from(metrics::is_mqtt_connected())),
    )
}

/// The model and standard in use, as gauges that are always 1 (the names
/// dashboards already join on).
fn info(out: &mut DescriptorEncoder) -> fmt::Result {
    let Some(i) = metrics::info() else {
        return Ok(());
    };
    family(
        out,
        "appliance_model_info",
        "The model in use (value always 1).",
        MetricType::Gauge,
        |m| {
            let labels = [
                ("name", lv(i.model_name.as_str())),
                ("version", lv(&i.model_version)),
                ("sha256", lv(&i.model_sha256)),
            ];
            gauge(m, &labels, 1i64)
        },
    )?;
    family(
        out,
        "appliance_standard_info",
        "The active recipe and its standard (value always 1).",
        MetricType::Gauge,
        |m| {
            gauge(
                m,
                &[
                    ("recipe", lv(i.recipe.as_str())),
                    ("sha256", lv(&i.standard_sha256)),
                ],
                1i64,
            )
        },
    )
}

/// Resident memory and CPU time of the process.
fn process(out: &mut DescriptorEncoder, (rss, cpu): (u64, f64)) -> fmt::Result {
    family(
        out,
        "process_resident_memory_bytes",
        "Resident memory of the appliance process.",
        MetricType::Gauge,
        |m| gauge(m, &[], rss),
    )?;
    family(
        out,
        "process_cpu_seconds",
        "User and system CPU time of the appliance process.",
        MetricType::Counter,
        |m| counter(m, &[], cpu),
    )
}

/// The health figures as the monitor last computed them, their thresholds,
/// the healer's state and its reloads.
fn health_figures(out: &mut DescriptorEncoder, h: &health::Snapshot) -> fmt::Result {
    family(out, "appliance_health_value", "Health figures: p99 capture-to-publish seconds (latency), share of verdicts with context loss, output consistency (absent while the window is empty).", MetricType::Gauge, |m| {
        h.figures.iter().try_for_each(|f| match f.value {
            Some(v) => gauge(m, &[("figure", lv(f.name.as_str()))], v),
            None => Ok(()),
        })
    })?;
    family(
        out,
        "appliance_health_threshold",
        "Thresholds of the health figures.",
        MetricType::Gauge,
        |m| {
            h.figures
                .iter()
                .try_for_each(|f| gauge(m, &[("figure", lv(f.name.as_str()))], f.threshold))
        },
    )?;
    family(
        out,
        "appliance_health_breached",
        "1 while a figure is beyond its threshold.",
        MetricType::Gauge,
        |m| {
            h.figures.iter().try_for_each(|f| {
                gauge(
                    m,
                    &[("figure", lv(f.name.as_str()))],
                    i64::from(f.standing == Standing::Breached),
                )
            })
        },
    )?;
    family(
        out,
        "appliance_health_state",
        "Self-healing state: 1 for the current one of healthy, alert, escalated.",
        MetricType::Gauge,
        |m| {
            Mode::ALL.iter().try_for_each(|mode| {
                gauge(
                    m,
                    &[("state", lv(mode.as_str()))],
                    i64::from(h.state == *mode),
                )
            })
        },
    )?;
    family(
        out,
        "appliance_model_reloads",
        "Model reloads started by self-healing.",
        MetricType::Counter,
        |m| counter(m, &[], metrics::reloads()),
    )
}

/// GPU utilisation and memory, where a GPU is present.
fn gpus(out: &mut DescriptorEncoder, gpus: &[Gpu]) -> fmt::Result {
    if gpus.is_empty() {
        return Ok(());
    }
    let each = |m: &mut MetricEncoder, value: fn(&Gpu) -> f64| {
        gpus.iter().try_for_each(|g| {
            let index = g.index.to_string();
            gauge(
                m,
                &[("gpu", lv(index.as_str())), ("name", lv(&g.name))],
                value(g),
            )
        })
    };
    family(
        out,
        "appliance_gpu_utilization_ratio",
        "Share of time the GPU was busy over the driver's last sample period (nvidia-smi).",
        MetricType::Gauge,
        |m| each(m, |g| g.utilization),
    )?;
    family(
        out,
        "appliance_gpu_memory_used_bytes",
        "GPU memory in use (all processes).",
        MetricType::Gauge,
        |m| each(m, |g| g.memory_used_bytes as f64),
    )?;
    family(
        out,
        "appliance_gpu_memory_total_bytes",
        "GPU memory in all.",
        MetricType::Gauge,
        |m| each(m, |g| g.memory_total_bytes as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(scrape: Scrape) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    fn bare() -> Scrape {
        Scrape {
            cameras: vec![],
            outbox_pending: None,
            gpus: vec![],
            health: None,
            process: (1 << 20, 1.5),
        }
    }

    #[test]
    fn gpus_show_as_three_gauge_families_and_not_at_all_without_one() {
        let gpus = crate::gpu::parse("0, NVIDIA H200, 37, 20480, 143771\n");
        let out = text(Scrape { gpus, ..bare() });
        assert!(out.contains("# TYPE appliance_gpu_utilization_ratio gauge\n"));
        assert!(
            out.contains("appliance_gpu_utilization_ratio{gpu=\"0\",name=\"NVIDIA H200\"} 0.37\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "appliance_gpu_memory_used_bytes{gpu=\"0\",name=\"NVIDIA H200\"} 21474836480"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "appliance_gpu_memory_total_bytes{gpu=\"0\",name=\"NVIDIA H200\"} 150754820096"
            ),
            "{out}"
        );
        assert!(
            !text(bare()).contains("appliance_gpu"),
            "nothing without a GPU"
        );
    }

    #[test]
    fn counters_end_in_total_and_the_message_in_eof() {
        let out = text(bare());
        assert!(
            out.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 1.5\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE appliance_verdicts counter\n"), "{out}");
        assert!(
            out.contains("appliance_verdicts_total{decision=\"REVIEW\"} "),
            "{out}"
        );
        assert!(
            out.contains("process_resident_memory_bytes 1048576\n"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn stage_histograms_are_cumulative_to_inf() {
        let out = text(bare());
        for stage in STAGES {
            assert!(
                out.contains(&format!(
                    "appliance_stage_seconds_bucket{{le=\"+Inf\",stage=\"{stage}\"}} "
                )),
                "{out}"
            );
            assert!(out.contains(&format!(
                "appliance_stage_seconds_count{{stage=\"{stage}\"}} "
            )));
        }
        assert!(
            out.contains("appliance_stage_seconds_bucket{le=\"1.2\",stage=\"queued\"} "),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let cameras = [CameraState {
            camera: "a\"b\\c\nd".into(),
            up: true,
            dropped: 2,
            reconnects: 0,
        }];
        let out = text(Scrape {
            cameras: cameras.to_vec(),
            ..bare()
        });
        assert!(
            out.contains("appliance_camera_dropped_frames_total{camera=\"a\\\"b\\\\c\\nd\"} 2\n"),
            "{out}"
        );
    }
}
