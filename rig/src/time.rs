//! Time for rig code: tokio's clock, optionally scaled for simulation.
//!
//! tokio's timers have 1 ms resolution, which is far too coarse for a simulated board: a flash
//! word programs in ~130 µs and a CAN FD frame takes ~700 µs. Under a *paused* clock the twin
//! therefore runs with a time scale of [`VIRTUAL_SCALE`]: one tokio millisecond stands for one
//! microsecond of board time, so every sleep is exact to the microsecond and still costs no
//! wall time. On a real rig the scale is 1 and these functions are plain tokio.
//!
//! All rig, twin and scenario code uses this module instead of `tokio::time`, so the scale is
//! applied consistently. The scale is per thread (a current-thread runtime, as
//! `#[tokio::test(start_paused = true)]` uses) with a process-wide default.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// tokio time units per unit of simulated time on the twin.
pub const VIRTUAL_SCALE: u32 = 1000;

static GLOBAL: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static LOCAL: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The current time scale.
pub fn scale() -> u32 {
    LOCAL.with(|l| l.get()).unwrap_or_else(|| GLOBAL.load(Ordering::Relaxed))
}

/// Set the scale for code running on this thread (`None`: use the process default).
pub fn set_thread_scale(scale: Option<u32>) {
    LOCAL.with(|l| l.set(scale.map(|s| s.max(1))));
}

/// Set the process-wide default scale.
pub fn set_global_scale(scale: u32) {
    GLOBAL.store(scale.max(1), Ordering::Relaxed);
}

fn up(d: Duration) -> Duration {
    d.checked_mul(scale()).unwrap_or(Duration::from_secs(u32::MAX as u64))
}

fn down(d: Duration) -> Duration {
    d / scale()
}

/// A point in (possibly simulated) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(tokio::time::Instant);

impl Instant {
    /// Now.
    pub fn now() -> Instant {
        Instant(tokio::time::Instant::now())
    }
    /// Time since `self`.
    pub fn elapsed(&self) -> Duration {
        down(self.0.elapsed())
    }
    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        down(self.0.saturating_duration_since(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + up(d))
    }
}

impl std::ops::Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.saturating_duration_since(other)
    }
}

/// Sleep for `d`.
pub async fn sleep(d: Duration) {
    tokio::time::sleep(up(d)).await
}

/// Sleep until `t`.
pub async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(t.0).await
}

/// The deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Run `f` for at most `d`.
pub async fn timeout<F: Future>(d: Duration, f: F) -> Result<F::Output, Elapsed> {
    tokio::time::timeout(up(d), f).await.map_err(|_| Elapsed)
}

/// Run `f` until `t` at most.
pub async fn timeout_at<F: Future>(t: Instant, f: F) -> Result<F::Output, Elapsed> {
    tokio::time::timeout_at(t.0, f).await.map_err(|_| Elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scaled_sleeps_are_exact_to_the_microsecond() {
        set_thread_scale(Some(VIRTUAL_SCALE));
        let t0 = Instant::now();
        for _ in 0..10 {
            sleep(Duration::from_micros(130)).await;
        }
        assert_eq!(t0.elapsed(), Duration::from_micros(1300));
        let deadline = t0 + Duration::from_micros(1500);
        sleep_until(deadline).await;
        assert_eq!(t0.elapsed(), Duration::from_micros(1500));
        assert!(timeout(Duration::from_micros(10), sleep(Duration::from_micros(20))).await.is_err());
        set_thread_scale(None);
    }

    #[tokio::test(start_paused = true)]
    async fn unscaled_tokio_rounds_to_milliseconds() {
        // Why the scale exists.
        let t0 = tokio::time::Instant::now();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_micros(130)).await;
        }
        assert!(t0.elapsed() >= Duration::from_millis(10), "{:?}", t0.elapsed());
    }
}
