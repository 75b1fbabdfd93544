//! Fault injection for tests and drills: a throttled engine, a stalled
//! pipeline, a decoder that writes a scripted (wrong) verdict, a power cut
//! between a verdict's commit and its file's move. Monitoring,
//! self-healing and the consistency check can only be trusted once they
//! have been seen to act on real faults, and these are the faults a test can
//! cause on demand. Nothing sets them in production; when unset they cost
//! three atomic loads per batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static DELAY_MICROS: AtomicU64 = AtomicU64::new(0);
static CLEARED_BY_RELOAD: AtomicBool = AtomicBool::new(false);
static STALLED: AtomicBool = AtomicBool::new(false);
static SCRIPTED: AtomicBool = AtomicBool::new(false);
static SCRIPT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static MOVES_LOST: AtomicBool = AtomicBool::new(false);

/// While set, hot-folder files stay where they are after their verdict is
/// committed: what a power cut between the commit and the move leaves.
pub fn lose_moves(lost: bool) {
    MOVES_LOST.store(lost, Ordering::SeqCst);
}

/// Whether judged files are to stay in place ([`lose_moves`]).
pub(crate) fn moves_lost() -> bool {
    MOVES_LOST.load(Ordering::Relaxed)
}

/// While set, every judgement is the one the engine makes when its decoder
/// writes exactly `tokens` (verdict-v1 tokens, e.g. `["<fail>",
/// "contamination", "<loc_10>", …, "<clause_6>", "</s>"]`): a wrong model on
/// demand, to show that nothing downstream lets it mislead. `None` ends it.
pub fn script_model_output(tokens: Option<Vec<String>>) {
    let on = tokens.is_some();
    *SCRIPT.lock().expect("script lock") = tokens.unwrap_or_default();
    SCRIPTED.store(on, Ordering::SeqCst);
}

/// The scripted decoder output, when one is set.
pub(crate) fn scripted_output() -> Option<Vec<String>> {
    if !SCRIPTED.load(Ordering::Relaxed) {
        return None;
    }
    Some(SCRIPT.lock().expect("script lock").clone())
}

/// Every batch takes `delay` longer; with `cleared_by_reload` the next model
/// swap ends it (a degradation a reload cures), otherwise it stays until
/// [`clear`].
pub fn throttle_engine(delay: Duration, cleared_by_reload: bool) {
    CLEARED_BY_RELOAD.store(cleared_by_reload, Ordering::SeqCst);
    DELAY_MICROS.store(delay.as_micros() as u64, Ordering::SeqCst);
}

/// While set, the inference worker holds its batch and makes no progress.
pub fn stall_pipeline(stalled: bool) {
    STALLED.store(stalled, Ordering::SeqCst);
}

/// Ends every fault.
pub fn clear() {
    DELAY_MICROS.store(0, Ordering::SeqCst);
    STALLED.store(false, Ordering::SeqCst);
    SCRIPTED.store(false, Ordering::SeqCst);
    MOVES_LOST.store(false, Ordering::SeqCst);
}

/// Called by the worker before each batch.
pub(crate) fn before_batch() {
    let delay = DELAY_MICROS.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(Duration::from_micros(delay));
    }
    while STALLED.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Called by the worker when a new model is swapped in.
pub(crate) fn model_swapped() {
    if CLEARED_BY_RELOAD.load(Ordering::SeqCst) {
        DELAY_MICROS.store(0, Ordering::SeqCst);
    }
}
