// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! sound-null: a playback stream at real-time pace; what counts is how
//! regularly periods complete and what the daemon's pacing costs.

use serde_json::{json, Value};
use std::time::Duration;

use crate::affinity::Placement;
use crate::stats::Histogram;

/// What a sound run measured.
#[derive(Debug, Clone)]
pub struct SoundResult {
    /// Where the frontend and the daemon ran.
    pub placement: Placement,
    /// Frames per second.
    pub rate: u32,
    /// Frames per period.
    pub period_frames: u32,
    /// Completed periods in the measured part.
    pub periods: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Time between consecutive period completions.
    pub intervals: Histogram,
    /// |interval − period| per completion.
    pub jitter: Histogram,
    /// The daemon's CPU time over the measured part.
    pub daemon_cpu: Option<Duration>,
    /// The daemon's context switches over the measured part.
    pub daemon_switches: Option<u64>,
}

impl SoundResult {
    /// The nominal period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(
            u64::from(self.period_frames) * 1_000_000_000 / u64::from(self.rate.max(1)),
        )
    }

    /// Daemon CPU as a share of one CPU, in percent.
    pub fn daemon_cpu_percent(&self) -> Option<f64> {
        let s = self.elapsed.as_secs_f64();
        self.daemon_cpu
            .filter(|_| s > 0.0)
            .map(|c| c.as_secs_f64() / s * 100.0)
    }

    /// A few lines for the table.
    pub fn table(&self) -> String {
        let us = |ns: u64| ns as f64 / 1000.0;
        let cs = self.daemon_switches.map_or("-".into(), |s| {
            format!("{:.1}", s as f64 / self.elapsed.as_secs_f64().max(1e-9))
        });
        format!(
            "sound {}: {} periods of {} frames at {} Hz (period {:.0} µs) in {:.1} s\n  \
             completion interval p50 {:.0} µs, min {:.0}, max {:.0}\n  \
             jitter |interval - period| p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs\n  \
             daemon CPU {} %, {} context switches/s",
            self.placement.name(),
            self.periods,
            self.period_frames,
            self.rate,
            us(u64::try_from(self.period().as_nanos()).unwrap_or(0)),
            self.elapsed.as_secs_f64(),
            us(self.intervals.quantile(0.5)),
            us(self.intervals.min()),
            us(self.intervals.max()),
            us(self.jitter.quantile(0.5)),
            us(self.jitter.quantile(0.99)),
            us(self.jitter.max()),
            self.daemon_cpu_percent()
                .map_or("-".into(), |p| format!("{p:.3}")),
            cs,
        )
    }

    /// The figures as JSON.
    pub fn json(&self) -> Value {
        let us = |ns: u64| ns as f64 / 1000.0;
        json!({
            "placement": self.placement.name(),
            "rate": self.rate,
            "period_frames": self.period_frames,
            "periods": self.periods,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "interval_p50_us": us(self.intervals.quantile(0.5)),
            "interval_min_us": us(self.intervals.min()),
            "interval_max_us": us(self.intervals.max()),
            "jitter_p50_us": us(self.jitter.quantile(0.5)),
            "jitter_p99_us": us(self.jitter.quantile(0.99)),
            "jitter_max_us": us(self.jitter.max()),
            "daemon_cpu_percent": self.daemon_cpu_percent(),
            "daemon_context_switches": self.daemon_switches,
        })
    }
}

use vhost_device_common::testing::TestFrontend;

use crate::error::{Error, Result};
use crate::load::RunLimits;

/// Plays a stream and times its period completions (not written yet).
pub fn measure(
    _fe: &mut TestFrontend,
    _placement: Placement,
    _pid: Option<u32>,
    _limits: &RunLimits,
) -> Result<SoundResult> {
    Err(Error::Unsupported(
        "sound-null: not yet (waiting for vhost-device-sound)".into(),
    ))
}
