//! Self-healing as a state machine, apart from the clock and the engine so
//! that its rules can be read and tested on their own:
//!
//! - a figure that crosses its threshold raises an alert and, with
//!   `auto_reload`, reloads the model at once;
//! - figures are then judged only on what came after the reload; if the
//!   alerted figure is still breached, the next reload waits
//!   `reload_backoff` from the end of the last one, doubling each time;
//! - after `max_reloads` reloads that did not cure it, the alert escalates
//!   and reloading stops: a person has to look;
//! - when every alerted figure is back within its threshold (with enough
//!   samples to tell), the alert ends and the count starts again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub use telemetry::health::Mode;
use telemetry::health::{Figure, FigureName, Standing};

/// What the monitor has to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A figure crossed its threshold.
    Alert(Figure),
    /// Reload the model; `attempt` counts from 1 within this alert.
    Reload { attempt: u32 },
    /// Reloads did not cure it; stop trying.
    Escalate { figures: Vec<Figure>, reloads: u32 },
    /// Every alerted figure is back within its threshold.
    Recover(Vec<Figure>),
}

/// Rules from `[monitoring]`.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub auto_reload: bool,
    pub backoff: Duration,
    pub max_reloads: u32,
}

impl Rules {
    pub fn from_config(m: &firmware_config::Monitoring) -> Self {
        Self {
            auto_reload: m.auto_reload,
            backoff: m.reload_backoff,
            max_reloads: m.max_reloads,
        }
    }
}

#[derive(Debug)]
pub struct Healer {
    mode: Mode,
    alerting: BTreeSet<FigureName>,
    reloads: u32,
    last_reload: Option<Instant>,
}

impl Default for Healer {
    fn default() -> Self {
        Self {
            mode: Mode::Healthy,
            alerting: BTreeSet::new(),
            reloads: 0,
            last_reload: None,
        }
    }
}

impl Healer {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn alerting(&self) -> Vec<FigureName> {
        self.alerting.iter().copied().collect()
    }

    pub fn reloads(&self) -> u32 {
        self.reloads
    }

    /// Mode, alerted figures and reloads: what the status topic announces
    /// whenever it changes.
    pub fn standing(&self) -> (Mode, Vec<FigureName>, u32) {
        (self.mode, self.alerting(), self.reloads)
    }

    /// The reload asked for has finished (loaded or failed) at `now`: the
    /// back-off counts from here, so a slow load does not eat it.
    pub fn reload_finished(&mut self, now: Instant) {
        if self.reloads > 0 {
            self.last_reload = Some(now);
        }
    }

    /// Takes the figures computed at `now` and says what to do.
    pub fn step(&mut self, figures: &[Figure], rules: Rules, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let breached: Vec<&Figure> = figures
            .iter()
            .filter(|f| f.standing == Standing::Breached)
            .collect();
        for f in &breached {
            if self.alerting.insert(f.name) {
                actions.push(Action::Alert((*f).clone()));
            }
        }
        if self.alerting.is_empty() {
            return actions;
        }
        let recovered = self.alerting.iter().all(|name| {
            figures
                .iter()
                .any(|f| f.name == *name && f.standing == Standing::Ok)
        });
        if recovered {
            let back = figures
                .iter()
                .filter(|f| self.alerting.contains(&f.name))
                .cloned()
                .collect();
            *self = Healer {
                last_reload: self.last_reload,
                ..Healer::default()
            };
            actions.push(Action::Recover(back));
            return actions;
        }
        if self.mode == Mode::Healthy {
            self.mode = Mode::Alert;
        }
        if self.mode == Mode::Escalated || !rules.auto_reload || breached.is_empty() {
            // Escalated: a person looks. No reload: only alarm. Nothing
            // breached yet after a reload: wait for samples.
            return actions;
        }
        let due = match self.last_reload {
            Some(at) if self.reloads > 0 => {
                let wait = rules.backoff * 2u32.saturating_pow(self.reloads - 1);
                now.duration_since(at) >= wait
            }
            _ => true,
        };
        if !due {
            return actions;
        }
        if self.reloads >= rules.max_reloads {
            self.mode = Mode::Escalated;
            actions.push(Action::Escalate {
                figures: breached.into_iter().cloned().collect(),
                reloads: self.reloads,
            });
        } else {
            self.reloads += 1;
            self.last_reload = Some(now);
            actions.push(Action::Reload {
                attempt: self.reloads,
            });
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: FigureName, standing: Standing) -> Figure {
        Figure {
            name,
            value: Some(1.0),
            threshold: 0.5,
            lower_is_worse: false,
            samples: 100,
            window_s: 60,
            standing,
            sources: Vec::new(),
        }
    }

    const RULES: Rules = Rules {
        auto_reload: true,
        backoff: Duration::from_secs(10),
        max_reloads: 2,
    };

    fn kinds(a: &[Action]) -> Vec<String> {
        a.iter()
            .map(|a| match a {
                Action::Alert(f) => format!("alert {}", f.name.as_str()),
                Action::Reload { attempt } => format!("reload {attempt}"),
                Action::Escalate { reloads, .. } => format!("escalate after {reloads}"),
                Action::Recover(_) => "recover".into(),
            })
            .collect()
    }

    #[test]
    fn a_breach_alerts_reloads_backs_off_and_escalates() {
        let bad = [figure(FigureName::Latency, Standing::Breached)];
        let waiting = [figure(FigureName::Latency, Standing::Unknown)];
        let mut h = Healer::default();
        let t0 = Instant::now();
        let s = |h: &mut Healer, f: &[Figure], secs| {
            kinds(&h.step(f, RULES, t0 + Duration::from_secs(secs)))
        };
        assert_eq!(s(&mut h, &bad, 0), ["alert latency", "reload 1"]);
        assert_eq!(h.mode(), Mode::Alert);
        assert!(
            s(&mut h, &waiting, 1).is_empty(),
            "no samples since the reload yet"
        );
        assert!(s(&mut h, &bad, 9).is_empty(), "backing off");
        assert_eq!(s(&mut h, &bad, 10), ["reload 2"]);
        assert!(s(&mut h, &bad, 29).is_empty(), "the back-off doubled");
        assert_eq!(s(&mut h, &bad, 30), ["escalate after 2"]);
        assert_eq!(h.mode(), Mode::Escalated);
        assert!(s(&mut h, &bad, 1000).is_empty(), "no more reloads");
        let good = [figure(FigureName::Latency, Standing::Ok)];
        assert_eq!(s(&mut h, &good, 1001), ["recover"]);
        assert_eq!((h.mode(), h.reloads()), (Mode::Healthy, 0));
        assert_eq!(s(&mut h, &bad, 1002), ["alert latency", "reload 1"]);
    }

    #[test]
    fn a_reload_that_cures_ends_the_alert() {
        let mut h = Healer::default();
        let now = Instant::now();
        let bad = [
            figure(FigureName::ContextLoss, Standing::Breached),
            figure(FigureName::Latency, Standing::Ok),
        ];
        assert_eq!(
            kinds(&h.step(&bad, RULES, now)),
            ["alert context_loss", "reload 1"]
        );
        let good = [
            figure(FigureName::ContextLoss, Standing::Ok),
            figure(FigureName::Latency, Standing::Ok),
        ];
        assert_eq!(kinds(&h.step(&good, RULES, now)), ["recover"]);
    }

    #[test]
    fn without_auto_reload_it_only_alarms() {
        let mut h = Healer::default();
        let rules = Rules {
            auto_reload: false,
            ..RULES
        };
        let bad = [figure(FigureName::Consistency, Standing::Breached)];
        assert_eq!(
            kinds(&h.step(&bad, rules, Instant::now())),
            ["alert consistency"]
        );
        assert!(h.step(&bad, rules, Instant::now()).is_empty());
        assert_eq!(h.mode(), Mode::Alert);
    }
}
