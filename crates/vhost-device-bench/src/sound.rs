// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! sound-null: a playback stream at real-time pace; what counts is how
//! regularly periods complete and what the daemon's pacing costs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vhost_device_common::testing::{TestFrontend, Used};

use crate::affinity::Placement;
use crate::error::{Error, Result};
use crate::load::RunLimits;
use crate::procstat;
use crate::stats::Histogram;

const CONTROL_QUEUE: usize = 0;
const EVENT_QUEUE: usize = 1;
const TX_QUEUE: usize = 2;
const R_PCM_SET_PARAMS: u32 = 0x0101;
const R_PCM_PREPARE: u32 = 0x0102;
const R_PCM_RELEASE: u32 = 0x0103;
const R_PCM_START: u32 = 0x0104;
const R_PCM_STOP: u32 = 0x0105;
const S_OK: u32 = 0x8000;
const PCM_FMT_S16: u8 = 5;
/// Index of 48000 Hz in the spec's rate table.
const PCM_RATE_48000: u8 = 7;

/// The stream: 48 kHz, stereo, S16, 10 ms periods, 4 periods in the
/// driver's buffer (what the Linux driver queues ahead).
pub const RATE: u32 = 48_000;
/// Channels.
pub const CHANNELS: u8 = 2;
/// Frames per period.
pub const PERIOD_FRAMES: u32 = 480;
/// Periods the driver keeps posted.
pub const PERIODS_AHEAD: usize = 4;
const FRAME_BYTES: u32 = 2 * CHANNELS as u32;

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
             completion interval mean {:.1} µs, min {:.0}, max {:.0}\n  \
             jitter |interval - period| p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs\n  \
             daemon CPU {} %, {} context switches/s",
            self.placement.name(),
            self.periods,
            self.period_frames,
            self.rate,
            us(u64::try_from(self.period().as_nanos()).unwrap_or(0)),
            self.elapsed.as_secs_f64(),
            self.intervals.mean() / 1000.0,
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
            "interval_mean_us": self.intervals.mean() / 1000.0,
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

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn status_of(data: &[u8]) -> Option<u32> {
    data.get(..4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// One control request; an error unless the device answers S_OK.
fn control(fe: &mut TestFrontend, what: &'static str, request: &[u8]) -> Result<()> {
    let used = fe
        .queue(CONTROL_QUEUE)
        .map_err(Error::frontend("selecting the control queue"))?
        .request(&[request], &[4], Duration::from_secs(5))
        .map_err(Error::frontend(format!("sound-null: {what}")))?;
    if status_of(&used.data) == Some(S_OK) {
        Ok(())
    } else {
        Err(Error::BadReply {
            scenario: "sound-null",
            request: what,
            len: used.len,
            bytes: used.data,
        })
    }
}

/// Posts the event buffers the driver keeps on the event queue, once per
/// connection.
pub fn post_event_buffers(fe: &mut TestFrontend, count: u16) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let q = fe
        .queue(EVENT_QUEUE)
        .map_err(Error::frontend("selecting the event queue"))?;
    for _ in 0..count {
        q.add(&[], &[8])
            .map_err(Error::frontend("posting an event buffer"))?;
    }
    q.kick()
        .map_err(Error::frontend("kicking the event queue"))?;
    Ok(())
}

/// Plays output stream 0 the way the Linux driver does (four periods
/// ahead, one re-posted per completion) and times every completion.
pub fn measure(
    fe: &mut TestFrontend,
    placement: Placement,
    pid: Option<u32>,
    limits: &RunLimits,
) -> Result<SoundResult> {
    let period_bytes = PERIOD_FRAMES * FRAME_BYTES;
    let mut params = words(&[
        R_PCM_SET_PARAMS,
        0,
        period_bytes * PERIODS_AHEAD as u32,
        period_bytes,
        0,
    ]);
    params.extend([CHANNELS, PCM_FMT_S16, PCM_RATE_48000, 0]);
    control(fe, "PCM_SET_PARAMS", &params)?;
    control(fe, "PCM_PREPARE", &words(&[R_PCM_PREPARE, 0]))?;
    let silence = vec![0u8; period_bytes as usize];
    let stream_id = 0u32.to_le_bytes();
    let bufs: [&[u8]; 2] = [&stream_id, &silence];
    let tx = fe
        .queue(TX_QUEUE)
        .map_err(Error::frontend("selecting the tx queue"))?;
    for _ in 0..PERIODS_AHEAD {
        tx.add(&bufs, &[8])
            .map_err(Error::frontend("posting a period"))?;
    }
    tx.kick().map_err(Error::frontend("kicking the tx queue"))?;
    control(fe, "PCM_START", &words(&[R_PCM_START, 0]))?;

    let period = Duration::from_nanos(u64::from(PERIOD_FRAMES) * 1_000_000_000 / u64::from(RATE));
    // Periods complete at real-time pace: run at least 20 of them.
    let duration = limits.duration.max(period * 20);
    let warmup = limits.warmup.max(period * 2);
    let tx = fe
        .queue(TX_QUEUE)
        .map_err(Error::frontend("selecting the tx queue"))?;
    let mut used = Used::default();
    let mut intervals = Histogram::new();
    let mut jitter = Histogram::new();
    let start = Instant::now();
    let mut measuring: Option<(Instant, Option<Duration>, Option<u64>)> = None;
    let mut last: Option<Instant> = None;
    let mut periods = 0u64;
    let end_time = loop {
        tx.wait_used_into(&mut used, period * 10 + Duration::from_secs(1))
            .map_err(Error::frontend("waiting for a period"))?;
        let now = Instant::now();
        if status_of(&used.data) != Some(S_OK) {
            return Err(Error::BadReply {
                scenario: "sound-null",
                request: "tx period",
                len: used.len,
                bytes: used.data.clone(),
            });
        }
        if let Some((t0, _, _)) = measuring {
            periods += 1;
            if let Some(prev) = last {
                let gap = now - prev;
                let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                intervals.record(ns(gap));
                jitter.record(ns(gap).abs_diff(ns(period)));
            }
            if now - t0 >= duration {
                break now;
            }
        } else if now - start >= warmup {
            measuring = Some((
                now,
                pid.and_then(|p| procstat::cpu_time_precise(p).ok()),
                pid.and_then(|p| procstat::context_switches(p).ok()),
            ));
        }
        last = Some(now);
        tx.add(&bufs, &[8])
            .map_err(Error::frontend("posting a period"))?;
        tx.kick().map_err(Error::frontend("kicking the tx queue"))?;
    };
    let (t0, cpu0, cs0) = measuring.ok_or_else(|| Error::Failed("no measured part".into()))?;
    let cpu1 = pid.and_then(|p| procstat::cpu_time_precise(p).ok());
    let cs1 = pid.and_then(|p| procstat::context_switches(p).ok());
    control(fe, "PCM_STOP", &words(&[R_PCM_STOP, 0]))?;
    // The periods still posted come back before RELEASE is answered.
    control(fe, "PCM_RELEASE", &words(&[R_PCM_RELEASE, 0]))?;
    let tx = fe
        .queue(TX_QUEUE)
        .map_err(Error::frontend("selecting the tx queue"))?;
    while tx.in_flight() > 0 {
        tx.wait_used_into(&mut used, Duration::from_secs(5))
            .map_err(Error::frontend("taking back the posted periods"))?;
    }
    Ok(SoundResult {
        placement,
        rate: RATE,
        period_frames: PERIOD_FRAMES,
        periods,
        elapsed: end_time - t0,
        intervals,
        jitter,
        daemon_cpu: cpu1.zip(cpu0).map(|(b, a)| b.saturating_sub(a)),
        daemon_switches: cs1.zip(cs0).map(|(b, a)| b.saturating_sub(a)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn period_cpu_share_and_table() {
        let mut intervals = Histogram::new();
        let mut jitter = Histogram::new();
        for gap in [9_990_000u64, 10_010_000] {
            intervals.record(gap);
            jitter.record(gap.abs_diff(10_000_000));
        }
        let r = SoundResult {
            placement: Placement::SameCpu,
            rate: RATE,
            period_frames: PERIOD_FRAMES,
            periods: 3,
            elapsed: Duration::from_millis(30),
            intervals,
            jitter,
            daemon_cpu: Some(Duration::from_micros(300)),
            daemon_switches: Some(6),
        };
        assert_eq!(r.period(), Duration::from_millis(10));
        assert!((r.daemon_cpu_percent().unwrap() - 1.0).abs() < 1e-9);
        let t = r.table();
        assert!(
            t.contains("3 periods of 480 frames at 48000 Hz (period 10000 µs)"),
            "{t}"
        );
        assert!(t.contains("completion interval mean 10000.0 µs"), "{t}");
        assert!(
            t.contains("daemon CPU 1.000 %, 200.0 context switches/s"),
            "{t}"
        );
        assert_eq!(r.json()["periods"], 3);
    }
}
