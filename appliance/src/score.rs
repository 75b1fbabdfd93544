//! Live scoring against ground truth: frames from the synthetic line carry
//! the defects drawn on the part, so a demo or soak run can say, while it
//! runs, how often the verdict found exactly those defects.

use std::sync::atomic::{AtomicU64, Ordering};

use synth::DrawnDefect;

use record::Finding;

/// Parts scored and parts whose findings named exactly the drawn defects.
#[derive(Debug, Default)]
pub struct LiveScore {
    judged: AtomicU64,
    agreed: AtomicU64,
}

/// Whether two lists name the same defects, each kind as often.
pub fn same_defects<'a>(
    drawn: impl IntoIterator<Item = &'a str>,
    found: impl IntoIterator<Item = &'a str>,
) -> bool {
    let mut drawn: Vec<&str> = drawn.into_iter().collect();
    let mut found: Vec<&str> = found.into_iter().collect();
    drawn.sort_unstable();
    found.sort_unstable();
    drawn == found
}

impl LiveScore {
    /// Scores one verdict; every 50th part logs the running figure.
    pub fn record(&self, truth: &[DrawnDefect], findings: &[Finding]) {
        let judged = self.judged.fetch_add(1, Ordering::Relaxed) + 1;
        let drawn = truth.iter().map(|d| d.kind.word());
        if same_defects(drawn, findings.iter().map(|f| f.defect.as_str())) {
            self.agreed.fetch_add(1, Ordering::Relaxed);
        }
        if judged.is_multiple_of(50) {
            let (judged, agreed) = self.snapshot();
            tracing::info!(
                parts = judged,
                agreed,
                percent = 100.0 * agreed as f64 / judged as f64,
                "synthetic line: findings agree with the drawn defects"
            );
        }
    }

    /// (parts judged, parts agreeing).
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.judged.load(Ordering::Relaxed),
            self.agreed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defects_agree_only_kind_for_kind_and_count_for_count() {
        assert!(same_defects([], []));
        assert!(same_defects(["dent", "scratch"], ["scratch", "dent"]));
        assert!(!same_defects(["scratch", "scratch"], ["scratch"]));
        assert!(!same_defects(["scratch"], ["crack"]));
        assert!(!same_defects([], ["stain"]));
    }
}
