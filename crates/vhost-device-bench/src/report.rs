// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The results of a run, as a table or as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::affinity::Placement;
use crate::floor::FloorResult;
use crate::load::LoadResult;
use crate::machine::Machine;
use crate::memcpy::MemcpyResult;
use crate::procstat::Memory;
use crate::sound::SoundResult;
use crate::stats::Histogram;

/// The daemon that was measured.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// Its command line, or the socket it was reached on.
    pub description: String,
    /// Its pid, if known.
    pub pid: Option<u32>,
    /// Its exit code after SIGTERM, if we started it.
    pub exit_code: Option<i32>,
}

/// The daemon while a frontend is connected and sends nothing.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// How long the wake-ups were counted.
    pub window: Duration,
    /// Context switches of all its threads in that window.
    pub switches: u64,
    /// Memory at the end of the window.
    pub memory: Memory,
}

impl Idle {
    /// Wake-ups per second.
    pub fn per_second(&self) -> f64 {
        let s = self.window.as_secs_f64();
        if s > 0.0 {
            self.switches as f64 / s
        } else {
            0.0
        }
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Driver name.
    pub driver: &'static str,
    /// Where the figures came from.
    pub machine: Machine,
    /// CPUs used: (frontend, daemon in the cross placement).
    pub cpus: (usize, Option<usize>),
    /// The daemon, for scenarios that drive one.
    pub daemon: Option<DaemonInfo>,
    /// The eventfd floor per placement.
    pub floors: Vec<FloorResult>,
    /// The load runs.
    pub loads: Vec<LoadResult>,
    /// Payload bytes per round of requests and requests per round (gpu-2d).
    pub bytes_per_round: Option<(u64, usize)>,
    /// Idle cost.
    pub idle: Option<Idle>,
    /// The memcpy baseline.
    pub memcpy: Option<MemcpyResult>,
    /// The same bytes copied out of a shared memfd mapping, row by row,
    /// into a page-aligned buffer.
    pub memcpy_memfd: Option<MemcpyResult>,
    /// The same into a buffer 16 bytes past a page boundary.
    pub memcpy_memfd_off16: Option<MemcpyResult>,
    /// The sound stream.
    pub sound: Vec<SoundResult>,
    /// Things the reader must know (skipped placements, missing pid).
    pub notes: Vec<String>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    /// The floor of a placement.
    pub fn floor(&self, placement: Placement) -> Option<&FloorResult> {
        self.floors.iter().find(|f| f.placement == placement)
    }

    fn ratio(&self, load: &LoadResult) -> Option<f64> {
        if !load.round_ratios.is_empty() {
            return crate::stats::median(&load.round_ratios);
        }
        let floor = self.floor(load.placement)?.latency.quantile(0.5);
        let p50 = load.latency.as_ref()?.quantile(0.5);
        (floor > 0).then(|| p50 as f64 / floor as f64)
    }

    /// Payload MB/s of a load run (gpu-2d).
    pub fn mb_per_s(&self, load: &LoadResult) -> Option<f64> {
        let (bytes, per_round) = self.bytes_per_round?;
        Some(load.rate() / per_round.max(1) as f64 * bytes as f64 / 1e6)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "vhost-device-bench {}: scenario {}, driver {}",
            env!("CARGO_PKG_VERSION"),
            self.scenario,
            self.driver
        );
        let _ = writeln!(
            out,
            "machine: {} CPUs, {}, Linux {}, {}",
            m.cpus, m.cpu_model, m.kernel, m.date
        );
        let cross = self
            .cpus
            .1
            .map_or("none".to_string(), |c| format!("daemon on CPU {c}"));
        let _ = writeln!(
            out,
            "placement: frontend on CPU {}; same-cpu = daemon on CPU {} too; cross-cpu = {}",
            self.cpus.0, self.cpus.0, cross
        );
        if let Some(d) = &self.daemon {
            let pid = d.pid.map_or("pid unknown".into(), |p| format!("pid {p}"));
            let _ = writeln!(out, "daemon: {} ({pid})", d.description);
        }
        let gpu = self.bytes_per_round.is_some();
        if !self.floors.is_empty() || !self.loads.is_empty() {
            let _ = writeln!(out);
            let _ = write!(
                out,
                "{:<10} {:<12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12} {:>10} {:>10} {:>9}",
                "placement",
                "load",
                "requests",
                "p50 µs",
                "p99 µs",
                "p999 µs",
                "×floor",
                "req/s",
                "daemon",
                "frontend",
                "daemon"
            );
            if gpu {
                let _ = write!(out, " {:>9}", "MB/s");
            }
            let _ = writeln!(out);
            let _ = write!(
                out,
                "{:<10} {:<12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12} {:>10} {:>10} {:>9}",
                "", "", "", "", "", "", "", "", "µs CPU/req", "µs CPU/req", "cs/req"
            );
            let _ = writeln!(out);
        }
        let pct = |h: &Histogram| {
            (
                format!("{:.2}", us(h.quantile(0.5))),
                format!("{:.2}", us(h.quantile(0.99))),
                format!("{:.2}", us(h.quantile(0.999))),
            )
        };
        for p in [Placement::SameCpu, Placement::CrossCpu] {
            if let Some(f) = self.floor(p) {
                let (p50, p99, p999) = pct(&f.latency);
                let rate = f.latency.count() as f64 / f.elapsed.as_secs_f64().max(1e-9);
                let _ = writeln!(
                    out,
                    "{:<10} {:<12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12.0} {:>10} {:>10} {:>9}",
                    p.name(),
                    "floor",
                    f.latency.count(),
                    p50,
                    p99,
                    p999,
                    "1.00",
                    rate,
                    format!("{:.3}", f.device_cpu_per_rt.as_secs_f64() * 1e6),
                    format!("{:.3}", f.frontend_cpu_per_rt.as_secs_f64() * 1e6),
                    "1.000"
                );
            }
            for l in self.loads.iter().filter(|l| l.placement == p) {
                let (p50, p99, p999) = l
                    .latency
                    .as_ref()
                    .map_or(("-".into(), "-".into(), "-".into()), pct);
                let ratio = self.ratio(l).map_or("-".into(), |r| format!("{r:.2}"));
                let opt = |v: Option<f64>, prec: usize| {
                    v.map_or("-".to_string(), |v| format!("{v:.prec$}"))
                };
                let cs = l
                    .daemon_switches
                    .filter(|_| l.requests > 0)
                    .map(|s| s as f64 / l.requests as f64);
                let _ = write!(
                    out,
                    "{:<10} {:<12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>12.0} {:>10} {:>10} {:>9}",
                    p.name(),
                    l.shape.name(),
                    l.requests,
                    p50,
                    p99,
                    p999,
                    ratio,
                    l.rate(),
                    opt(l.daemon_us_per_request(), 3),
                    opt(l.bench_us_per_request(), 3),
                    opt(cs, 3),
                );
                if gpu {
                    let _ = write!(out, " {:>9}", opt(self.mb_per_s(l), 0));
                }
                let _ = writeln!(out);
            }
        }
        if let Some(mc) = &self.memcpy {
            let _ = writeln!(
                out,
                "\nmemcpy baseline: {:.0} MB/s ({} copies of {} bytes on CPU {})",
                mc.mb_per_s(),
                mc.copies,
                mc.bytes,
                self.cpus.0
            );
            if let (Some(a), Some(m)) = (&self.memcpy_memfd, &self.memcpy_memfd_off16) {
                let _ = writeln!(
                    out,
                    "memcpy out of a shared memfd (as guest memory), by 7680-byte row: {:.0} MB/s \
                     into a page-aligned buffer, {:.0} MB/s into one 16 bytes past a page \
                     boundary (where glibc puts a large malloc)",
                    a.mb_per_s(),
                    m.mb_per_s()
                );
            }
            for l in &self.loads {
                if let Some(mbs) = self.mb_per_s(l) {
                    let _ = writeln!(
                        out,
                        "  {} {}: transfer+flush at {:.2}× memcpy",
                        l.placement.name(),
                        l.shape.name(),
                        mbs / mc.mb_per_s().max(1e-9)
                    );
                }
            }
        }
        for s in &self.sound {
            let _ = writeln!(out, "\n{}", s.table());
        }
        if let Some(idle) = &self.idle {
            let _ = writeln!(
                out,
                "\nidle: {:.1} wake-ups/s ({} context switches in {:.1} s, frontend connected, no traffic)",
                idle.per_second(),
                idle.switches,
                idle.window.as_secs_f64()
            );
            let mem = idle.memory;
            let _ = writeln!(
                out,
                "RSS idle: {:.2} MiB (anon {:.2} MiB, shared guest memory {:.2} MiB)",
                mib(mem.rss_kib),
                mib(mem.anon_kib),
                mib(mem.shmem_kib)
            );
        }
        if let Some(mem) = self
            .loads
            .iter()
            .filter_map(|l| l.memory)
            .max_by_key(|m| m.rss_kib)
        {
            let _ = writeln!(
                out,
                "RSS under load: {:.2} MiB (anon {:.2} MiB, shared {:.2} MiB; peak {:.2} MiB)",
                mib(mem.rss_kib),
                mib(mem.anon_kib),
                mib(mem.shmem_kib),
                mib(mem.hwm_kib)
            );
        }
        if let Some(d) = &self.daemon {
            if let Some(code) = d.exit_code {
                let _ = writeln!(out, "daemon exit code after SIGTERM: {code}");
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// The same figures as JSON.
    pub fn json(&self) -> Value {
        let hist = |h: &Histogram| {
            json!({
                "count": h.count(),
                "min_us": us(h.min()),
                "mean_us": h.mean() / 1000.0,
                "p50_us": us(h.quantile(0.5)),
                "p99_us": us(h.quantile(0.99)),
                "p999_us": us(h.quantile(0.999)),
                "max_us": us(h.max()),
            })
        };
        let mem = |m: &Memory| {
            json!({
                "rss_kib": m.rss_kib,
                "anon_kib": m.anon_kib,
                "shmem_kib": m.shmem_kib,
                "hwm_kib": m.hwm_kib,
            })
        };
        let m = &self.machine;
        json!({
            "tool": format!("vhost-device-bench {}", env!("CARGO_PKG_VERSION")),
            "scenario": self.scenario,
            "driver": self.driver,
            "machine": {
                "cpus": m.cpus,
                "cpu_model": m.cpu_model,
                "kernel": m.kernel,
                "date": m.date,
            },
            "cpus": { "frontend": self.cpus.0, "daemon_cross": self.cpus.1 },
            "daemon": self.daemon.as_ref().map(|d| json!({
                "description": d.description,
                "pid": d.pid,
                "exit_code": d.exit_code,
            })),
            "floor": self.floors.iter().map(|f| json!({
                "placement": f.placement.name(),
                "elapsed_s": f.elapsed.as_secs_f64(),
                "latency": hist(&f.latency),
                "device_thread_cpu_us_per_round_trip": f.device_cpu_per_rt.as_secs_f64() * 1e6,
                "frontend_thread_cpu_us_per_round_trip": f.frontend_cpu_per_rt.as_secs_f64() * 1e6,
            })).collect::<Vec<_>>(),
            "loads": self.loads.iter().map(|l| json!({
                "placement": l.placement.name(),
                "shape": l.shape.name(),
                "requests": l.requests,
                "elapsed_s": l.elapsed.as_secs_f64(),
                "requests_per_s": l.rate(),
                "latency": l.latency.as_ref().map(hist),
                "ratio_to_floor_p50": self.ratio(l),
                "ratio_rounds": l.round_ratios,
                "daemon_cpu_us_per_request": l.daemon_us_per_request(),
                "frontend_cpu_us_per_request": l.bench_us_per_request(),
                "daemon_context_switches": l.daemon_switches,
                "mb_per_s": self.mb_per_s(l),
                "memory": l.memory.as_ref().map(mem),
            })).collect::<Vec<_>>(),
            "memcpy": self.memcpy.map(|mc| json!({
                "bytes": mc.bytes,
                "copies": mc.copies,
                "mb_per_s": mc.mb_per_s(),
            })),
            "memcpy_from_memfd_by_row": self.memcpy_memfd.map(|mc| json!({
                "bytes": mc.bytes,
                "copies": mc.copies,
                "mb_per_s": mc.mb_per_s(),
            })),
            "memcpy_from_memfd_by_row_dst_off16": self.memcpy_memfd_off16.map(|mc| json!({
                "bytes": mc.bytes,
                "copies": mc.copies,
                "mb_per_s": mc.mb_per_s(),
            })),
            "sound": self.sound.iter().map(SoundResult::json).collect::<Vec<_>>(),
            "idle": self.idle.map(|i| json!({
                "window_s": i.window.as_secs_f64(),
                "context_switches": i.switches,
                "wakeups_per_s": i.per_second(),
                "memory": mem(&i.memory),
            })),
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::load::Shape;

    fn hist(values: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    fn memory() -> Memory {
        Memory {
            rss_kib: 3072,
            anon_kib: 256,
            shmem_kib: 20,
            hwm_kib: 3100,
        }
    }

    fn report() -> Report {
        let load = |placement, shape| LoadResult {
            shape,
            placement,
            requests: 1000,
            elapsed: Duration::from_millis(10),
            latency: (shape == Shape::PingPong).then(|| hist(&[3000, 3000, 4000])),
            daemon_cpu: Some(Duration::from_micros(300)),
            daemon_switches: Some(16),
            bench_cpu: Duration::from_micros(100),
            memory: Some(memory()),
            round_ratios: Vec::new(),
        };
        let floor = |placement| FloorResult {
            placement,
            latency: hist(&[2000, 2000, 2500]),
            elapsed: Duration::from_millis(10),
            frontend_cpu_per_rt: Duration::from_nanos(1000),
            device_cpu_per_rt: Duration::from_nanos(1100),
        };
        Report {
            scenario: "gpu-2d",
            driver: "lean",
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".into(),
                kernel: "6.0".into(),
                date: "2026-01-01T00:00:00Z".into(),
            },
            cpus: (0, Some(1)),
            daemon: Some(DaemonInfo {
                description: "vhost-device-gpu --headless".into(),
                pid: Some(42),
                exit_code: Some(0),
            }),
            floors: vec![floor(Placement::SameCpu), floor(Placement::CrossCpu)],
            loads: vec![
                load(Placement::SameCpu, Shape::PingPong),
                load(Placement::SameCpu, Shape::Pipelined(64)),
                load(Placement::CrossCpu, Shape::PingPong),
            ],
            bytes_per_round: Some((8_000_000, 2)),
            idle: Some(Idle {
                window: Duration::from_secs(2),
                switches: 0,
                memory: memory(),
            }),
            memcpy: Some(MemcpyResult {
                bytes: 8_000_000,
                copies: 100,
                elapsed: Duration::from_millis(40),
            }),
            memcpy_memfd: None,
            memcpy_memfd_off16: None,
            sound: Vec::new(),
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn the_table_has_every_section() {
        let r = report();
        let t = r.table();
        assert!(t.contains("scenario gpu-2d, driver lean"), "{t}");
        assert!(t.contains("machine: 2 CPUs, Test CPU, Linux 6.0"), "{t}");
        assert!(
            t.contains("daemon: vhost-device-gpu --headless (pid 42)"),
            "{t}"
        );
        let row = t
            .lines()
            .find(|l| l.starts_with("same-cpu") && l.contains("ping-pong"))
            .unwrap();
        // p50 3 µs against a 2 µs floor; 0.3 µs daemon CPU per request;
        // 1000 requests in 10 ms of 8 MB rounds of two: 400 000 MB/s.
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[3], "3.00", "{row}");
        assert_eq!(cols[6], "1.50", "{row}");
        assert_eq!(cols[8], "0.300", "{row}");
        assert_eq!(cols[11], "400000", "{row}");
        assert!(t.contains("memcpy baseline: 20000 MB/s"), "{t}");
        assert!(
            t.contains("same-cpu pipelined-64: transfer+flush at 20.00× memcpy"),
            "{t}"
        );
        assert!(t.contains("idle: 0.0 wake-ups/s"), "{t}");
        assert!(t.contains("RSS idle: 3.00 MiB (anon 0.25 MiB"), "{t}");
        assert!(t.contains("daemon exit code after SIGTERM: 0"), "{t}");
        assert!(t.contains("note: a note"), "{t}");
    }

    #[test]
    fn json_carries_the_same_figures() {
        let j = report().json();
        assert_eq!(j["scenario"], "gpu-2d");
        assert_eq!(j["floor"].as_array().unwrap().len(), 2);
        let l = &j["loads"][0];
        assert_eq!(l["shape"], "ping-pong");
        let ratio = l["ratio_to_floor_p50"].as_f64().unwrap();
        assert!((ratio - 1.5).abs() < 0.01, "{ratio}");
        assert_eq!(l["requests_per_s"], 100_000.0);
        assert!(j["loads"][1]["latency"].is_null());
        assert_eq!(j["idle"]["wakeups_per_s"], 0.0);
        assert_eq!(j["daemon"]["pid"], 42);
    }

    #[test]
    fn paired_rounds_give_the_median_of_their_ratios() {
        let mut r = report();
        r.loads[0].round_ratios = vec![1.3, 1.0, 1.1];
        let j = r.json();
        let ratio = j["loads"][0]["ratio_to_floor_p50"].as_f64().unwrap();
        assert!((ratio - 1.1).abs() < 1e-9, "{ratio}");
        assert_eq!(j["loads"][0]["ratio_rounds"].as_array().unwrap().len(), 3);
    }
}
