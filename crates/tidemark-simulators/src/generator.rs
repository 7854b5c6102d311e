//! The random-activity generator's clock: calls a simulator's `step` at a steady average rate
//! until it is replaced, stopped, or the simulator shuts down.

use std::time::{Duration, Instant};

use crate::server::{lock, SimRuntime};

/// At most this many steps run in one tick, so a huge rate cannot stall the runtime.
const MAX_STEPS_PER_TICK: u64 = 10_000;

/// Replaces the simulator's generator with one that calls `step` `rate_per_sec` times a second
/// on average. A rate that is zero, negative or not finite only stops the current generator.
pub(crate) fn spawn(
    runtime: &SimRuntime,
    rate_per_sec: f64,
    mut step: impl FnMut() + Send + 'static,
) {
    let mut slot = lock(&runtime.generator);
    if let Some((_, previous)) = slot.take() {
        previous.abort();
    }
    if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
        return;
    }
    let tick = Duration::from_secs_f64((1.0 / rate_per_sec).clamp(0.005, 1.0));
    let mut shutdown = runtime.shutdown.clone();
    let task = runtime.tokio.spawn(async move {
        let mut owed = 0.0_f64;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let now = Instant::now();
            owed += rate_per_sec * now.duration_since(last).as_secs_f64();
            last = now;
            let due = owed.floor();
            owed -= due;
            // `due` is a non-negative whole number; the cast saturates for huge values.
            let steps = (due as u64).min(MAX_STEPS_PER_TICK);
            for _ in 0..steps {
                step();
            }
        }
    });
    *slot = Some((rate_per_sec, task.abort_handle()));
}

/// Stops the simulator's generator, if one runs.
pub(crate) fn stop(runtime: &SimRuntime) {
    if let Some((_, task)) = lock(&runtime.generator).take() {
        task.abort();
    }
}
