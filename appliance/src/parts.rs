//! Multi-view parts: several cameras photograph the same part, each view is
//! judged on its own, and the views with the same part id are combined into
//! one part verdict — the one the PLC acts on.
//!
//! Rule: any view FAIL fails the part; otherwise a REVIEW view, or a view
//! that did not arrive within `view_timeout`, makes the part REVIEW (a part
//! not seen whole is not passed); otherwise PASS.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use record::{Decision, PartVerdict, View};

struct Pending {
    first_at: Instant,
    views: Vec<View>,
}

/// Collects views per part id until all arrived or the timeout passed.
pub struct Assembler {
    station: String,
    cameras: Vec<String>,
    timeout: Duration,
    pending: HashMap<String, Pending>,
}

impl Assembler {
    pub fn new(station: &str, cameras: Vec<String>, timeout: Duration) -> Self {
        Self {
            station: station.to_string(),
            cameras,
            timeout,
            pending: HashMap::new(),
        }
    }

    /// Whether `camera` is one of the part's views.
    pub fn is_view(&self, camera: &str) -> bool {
        self.cameras.iter().any(|c| c == camera)
    }

    /// Adds a judged view; returns the part verdict once every view is in.
    /// A second view from the same camera for a pending part replaces the
    /// first (the line re-triggered it).
    pub fn add(&mut self, part_id: &str, view: View, now: Instant) -> Option<PartVerdict> {
        let p = self
            .pending
            .entry(part_id.to_string())
            .or_insert_with(|| Pending {
                first_at: now,
                views: Vec::new(),
            });
        p.views.retain(|v| v.camera != view.camera);
        p.views.push(view);
        let complete = self
            .cameras
            .iter()
            .all(|c| p.views.iter().any(|v| &v.camera == c));
        if complete {
            let p = self.pending.remove(part_id).expect("just inserted");
            Some(self.combine(part_id, p.views))
        } else {
            None
        }
    }

    /// Parts whose first view arrived more than `timeout` ago, decided with
    /// their missing views named.
    pub fn expire(&mut self, now: Instant) -> Vec<PartVerdict> {
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.first_at) >= self.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: Vec<PartVerdict> = late
            .into_iter()
            .map(|id| {
                let p = self.pending.remove(&id).expect("listed above");
                self.combine(&id, p.views)
            })
            .collect();
        out.sort_by(|a, b| a.part_id.cmp(&b.part_id));
        out
    }

    /// Parts still waiting for views.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn combine(&self, part_id: &str, mut views: Vec<View>) -> PartVerdict {
        views.sort_by_key(|v| self.cameras.iter().position(|c| *c == v.camera));
        let missing: Vec<String> = self
            .cameras
            .iter()
            .filter(|c| !views.iter().any(|v| &v.camera == *c))
            .cloned()
            .collect();
        let named = |d: Decision| {
            views
                .iter()
                .filter(|v| v.decision == d)
                .map(|v| v.camera.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (decision, reason) = if views.iter().any(|v| v.decision == Decision::Fail) {
            (
                Decision::Fail,
                Some(format!("failed in view {}", named(Decision::Fail))),
            )
        } else if !missing.is_empty() {
            (
                Decision::Review,
                Some(format!("view {} missing", missing.join(", "))),
            )
        } else if views.iter().any(|v| v.decision == Decision::Review) {
            (
                Decision::Review,
                Some(format!("view {} needs review", named(Decision::Review))),
            )
        } else {
            (Decision::Pass, None)
        };
        PartVerdict {
            schema: record::PART_SCHEMA.into(),
            id: uuid::Uuid::now_v7().to_string(),
            station: self.station.clone(),
            part_id: part_id.to_string(),
            decision,
            reason,
            views,
            missing,
            decided_at: record::time::now(),
        }
    }
}

/// Combines the views sent on `rx` until `stop` turns true (or `rx`
/// closes), then decides the parts still waiting (naming their missing
/// views), so none is left undecided.
/// Each part verdict is committed with its outbox rows (`part`, and the
/// PLC's `result`) and handed to the publisher.
pub async fn serve(
    mut assembler: Assembler,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, View)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    store: store::Store,
    publisher: delivery::Publisher,
) {
    let commit = |p: PartVerdict| {
        let store = store.clone();
        let publisher = publisher.clone();
        async move {
            let topics = publisher.topics();
            let outbox = [
                (
                    topics.part(),
                    serde_json::to_string(&p).expect("part verdict serialises"),
                ),
                (
                    topics.result(),
                    serde_json::to_string(&p.plc()).expect("PLC result serialises"),
                ),
            ];
            telemetry::Event::PartDecided {
                part: &p.part_id,
                decision: p.decision,
                missing: p.missing.len(),
                views_agreed: (p.views.len() >= 2 && p.missing.is_empty())
                    .then(|| p.views.iter().all(|v| v.decision == p.views[0].decision)),
            }
            .emit();
            if let Err(e) = store.commit_part(&p, &outbox).await {
                tracing::error!(part = %p.part_id, error = %e, "cannot store part verdict");
            }
            publisher.wake();
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            view = rx.recv() => match view {
                Some((part_id, view)) => {
                    if let Some(p) = assembler.add(&part_id, view, Instant::now()) {
                        commit(p).await;
                    }
                }
                None => break,
            },
            _ = stop.changed() => {
                while let Ok((part_id, view)) = rx.try_recv() {
                    if let Some(p) = assembler.add(&part_id, view, Instant::now()) {
                        commit(p).await;
                    }
                }
                break;
            }
            _ = tick.tick() => {
                for p in assembler.expire(Instant::now()) {
                    commit(p).await;
                }
            }
        }
    }
    let far = Instant::now() + assembler.timeout;
    for p in assembler.expire(far) {
        commit(p).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(camera: &str, decision: Decision) -> View {
        View {
            camera: camera.into(),
            verdict_id: format!("v-{camera}"),
            decision,
            findings: 0,
        }
    }

    fn assembler() -> Assembler {
        Assembler::new(
            "s1",
            vec!["top".into(), "side".into()],
            Duration::from_secs(2),
        )
    }

    #[test]
    fn all_views_in_decides_the_part_by_the_rule() {
        let t = Instant::now();
        let mut a = assembler();
        assert!(a.add("p1", view("side", Decision::Pass), t).is_none());
        let p = a.add("p1", view("top", Decision::Pass), t).unwrap();
        assert_eq!((p.decision, p.reason.as_deref()), (Decision::Pass, None));
        assert_eq!(p.views[0].camera, "top", "views in configured order");

        a.add("p2", view("top", Decision::Review), t);
        let p = a.add("p2", view("side", Decision::Fail), t).unwrap();
        assert_eq!(p.decision, Decision::Fail);
        assert_eq!(p.reason.as_deref(), Some("failed in view side"));

        a.add("p3", view("top", Decision::Review), t);
        let p = a.add("p3", view("side", Decision::Pass), t).unwrap();
        assert_eq!(p.decision, Decision::Review);
        assert_eq!(p.reason.as_deref(), Some("view top needs review"));
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn a_missing_view_is_named_after_the_timeout() {
        let t = Instant::now();
        let mut a = assembler();
        a.add("p1", view("top", Decision::Pass), t);
        a.add(
            "p2",
            view("side", Decision::Fail),
            t + Duration::from_secs(1),
        );
        assert!(a.expire(t + Duration::from_millis(1999)).is_empty());
        let late = a.expire(t + Duration::from_secs(2));
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].part_id, "p1");
        assert_eq!(late[0].decision, Decision::Review);
        assert_eq!(late[0].missing, ["side"]);
        assert_eq!(late[0].reason.as_deref(), Some("view side missing"));
        // A FAIL view fails the part even with a view missing.
        let late = a.expire(t + Duration::from_secs(3));
        assert_eq!(late[0].decision, Decision::Fail);
        assert_eq!(late[0].missing, ["top"]);
    }
}
