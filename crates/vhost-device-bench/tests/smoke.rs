// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! CI smoke: every scenario runs once, briefly, against the real daemons,
//! and prints a sane report. Nothing here says anything about speed.
//!
//! The daemons are found next to the bench binary, where a workspace build
//! (`cargo build --workspace --all-features`, or the CI's test run) puts
//! them.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_vhost-device-bench");

/// Short runs: this checks the tool works, not how fast anything is.
const BRIEF: &[&str] = &[
    "--duration-ms",
    "100",
    "--requests",
    "1000",
    "--idle-ms",
    "100",
];

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs the bench with `--json` and returns the parsed report.
fn report(args: &[&str]) -> Value {
    // Ours first: --spawn takes the rest of the line.
    let mut all = BRIEF.to_vec();
    all.push("--json");
    all.extend_from_slice(args);
    let out = bench(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// The floor of both placements is there with a positive latency.
fn check_floor(r: &Value) {
    let floors = r["floor"].as_array().unwrap();
    assert!(!floors.is_empty());
    for f in floors {
        let l = &f["latency"];
        assert!(num(&l["count"], "floor count") > 0.0);
        let (p50, p99) = (num(&l["p50_us"], "p50"), num(&l["p99_us"], "p99"));
        assert!(p50 > 0.0 && p50 <= p99, "{f}");
    }
}

/// Every placement × shape ran requests, with the cost figures present.
fn check_loads(r: &Value, expected_runs: usize) {
    let loads = r["loads"].as_array().unwrap();
    assert_eq!(loads.len(), expected_runs, "{r}");
    for l in loads {
        assert!(num(&l["requests"], "requests") > 0.0, "{l}");
        assert!(num(&l["requests_per_s"], "rate") > 0.0, "{l}");
        assert!(l["daemon_cpu_us_per_request"].is_number(), "{l}");
        assert!(num(&l["memory"]["rss_kib"], "rss") > 0.0, "{l}");
        if l["shape"] == "ping-pong" {
            assert!(num(&l["latency"]["p50_us"], "p50") > 0.0, "{l}");
            assert!(num(&l["ratio_to_floor_p50"], "ratio") > 0.0, "{l}");
        } else {
            assert!(l["latency"].is_null());
        }
    }
    let idle = &r["idle"];
    assert!(num(&idle["wakeups_per_s"], "wakeups") >= 0.0, "{idle}");
    assert!(num(&idle["memory"]["rss_kib"], "idle rss") > 0.0, "{idle}");
    assert!(r["daemon"]["pid"].is_number());
    // The daemon took the orderly disconnect and the SIGTERM.
    assert_eq!(r["daemon"]["exit_code"], 0, "{r}");
}

fn two_cpus() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

fn runs_per_scenario() -> usize {
    if two_cpus() {
        4
    } else {
        2
    }
}

#[test]
fn floor_prints_a_table() {
    let out = bench(&["floor", "--duration-ms", "100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("machine: "), "{table}");
    let rows: Vec<&str> = table.lines().filter(|l| l.contains(" floor ")).collect();
    assert_eq!(rows.len(), if two_cpus() { 2 } else { 1 }, "{table}");
    assert!(rows[0].starts_with("same-cpu"), "{table}");
}

#[test]
fn echo_through_the_core() {
    let r = report(&["echo"]);
    assert_eq!(r["scenario"], "echo");
    check_floor(&r);
    check_loads(&r, runs_per_scenario());
}

#[test]
fn gpio_get_on_a_simulated_line() {
    let r = report(&["gpio-get"]);
    check_floor(&r);
    check_loads(&r, runs_per_scenario());
    assert!(r["daemon"]["description"]
        .as_str()
        .unwrap()
        .contains("vhost-device-gpio --device-list s8"));
}

#[test]
fn bt_read_bd_addr_round_trips() {
    let r = report(&["bt"]);
    check_floor(&r);
    check_loads(&r, runs_per_scenario());
    assert!(r["daemon"]["description"]
        .as_str()
        .unwrap()
        .contains("vhost-device-bluetooth"));
    assert_eq!(r["driver"], "lean");
}

#[test]
fn bt_through_the_test_frontend() {
    let r = report(&["bt", "--driver", "frontend", "--placement", "same"]);
    assert_eq!(r["driver"], "frontend");
    check_loads(&r, 2);
}

#[test]
fn can_tx_on_the_virtual_bus() {
    let r = report(&["can-tx"]);
    check_loads(&r, runs_per_scenario());
    assert!(r["daemon"]["description"]
        .as_str()
        .unwrap()
        .contains("vhost-device-can"));
}

#[test]
fn i2c_read_from_a_simulated_eeprom() {
    let r = report(&["i2c-read", "--driver", "frontend"]);
    assert_eq!(r["driver"], "frontend");
    check_loads(&r, runs_per_scenario());
}

#[test]
fn gpu_2d_with_its_memcpy_baseline() {
    let r = report(&["gpu-2d", "--placement", "same", "--in-flight", "8"]);
    check_loads(&r, 2);
    for l in r["loads"].as_array().unwrap() {
        assert!(num(&l["mb_per_s"], "MB/s") > 0.0, "{l}");
    }
    assert!(num(&r["memcpy"]["mb_per_s"], "memcpy") > 0.0);
    assert_eq!(num(&r["memcpy"]["bytes"], "bytes"), 1920.0 * 1080.0 * 4.0);
    assert!(num(&r["memcpy_from_memfd_by_row"]["mb_per_s"], "memfd memcpy") > 0.0);
    assert!(
        num(
            &r["memcpy_from_memfd_by_row_dst_off16"]["mb_per_s"],
            "memfd memcpy +16"
        ) > 0.0
    );
}

#[test]
fn sound_null_stream_reports_its_periods() {
    let r = report(&["sound-null"]);
    let runs = r["sound"].as_array().unwrap();
    assert_eq!(runs.len(), if two_cpus() { 2 } else { 1 });
    for s in runs {
        // The stream ran; how many periods a fixed run time holds is the
        // figure itself, which a loaded or emulated machine lowers.
        assert!(num(&s["periods"], "periods") >= 1.0, "{s}");
        assert!(num(&s["interval_mean_us"], "interval") > 0.0, "{s}");
        assert!(num(&s["jitter_max_us"], "jitter") >= 0.0, "{s}");
        assert!(s["daemon_cpu_percent"].is_number(), "{s}");
    }
    assert!(r["loads"].as_array().unwrap().is_empty());
    assert!(num(&r["idle"]["memory"]["rss_kib"], "idle rss") > 0.0);
    assert_eq!(r["daemon"]["exit_code"], 0, "{r}");
}

#[test]
fn rpmsg_to_a_host_socket_peer() {
    let r = report(&["rpmsg"]);
    check_floor(&r);
    check_loads(&r, runs_per_scenario());
    assert!(r["daemon"]["description"]
        .as_str()
        .unwrap()
        .contains("vhost-device-rpmsg"));
    assert_eq!(r["daemon"]["exit_code"], 0, "{r}");
}

#[test]
fn memcpy_alone() {
    let r = report(&["memcpy"]);
    assert!(num(&r["memcpy"]["mb_per_s"], "memcpy") > 0.0);
    assert!(r["floor"].as_array().unwrap().is_empty());
}

/// The daemon next to the bench binary.
fn sibling(name: &str) -> PathBuf {
    let path = PathBuf::from(BENCH).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first",
        path.display()
    );
    path
}

#[test]
fn an_already_running_daemon_by_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("echo.sock");
    let mut child = Command::new(sibling("vhost-device-echo"))
        .arg("--socket-path")
        .arg(&sock)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the echo daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = report(&[
        "echo",
        "--socket-path",
        sock.to_str().unwrap(),
        "--placement",
        "same",
    ]);
    // The pid came from the socket's peer credentials.
    assert_eq!(r["daemon"]["pid"], child.id());
    assert!(r["daemon"]["exit_code"].is_null(), "not ours to stop");
    assert_eq!(r["loads"].as_array().unwrap().len(), 2);
    // The daemon serves the next frontend after the bench disconnected.
    let again = report(&[
        "echo",
        "--socket-path",
        sock.to_str().unwrap(),
        "--placement",
        "same",
        "--shape",
        "ping-pong",
    ]);
    assert_eq!(again["loads"].as_array().unwrap().len(), 1);
    // SAFETY: kill() on our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_explicit_command_with_spawn() {
    let echo = sibling("vhost-device-echo");
    let r = report(&[
        "echo",
        "--placement",
        "same",
        "--spawn",
        echo.to_str().unwrap(),
        "--socket-path",
        "{socket}",
    ]);
    assert!(r["daemon"]["description"]
        .as_str()
        .unwrap()
        .ends_with("bench.sock"));
    check_loads(&r, 2);
}

#[test]
fn command_line_errors_are_one_line() {
    for args in [
        &["nope"][..],
        &["gpio-get", "--in-flight", "0"],
        &["gpio-get", "--socket-path", "/x", "--device", "gpio"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("vhost-device-bench: error: "), "{err}");
    }
    let out = bench(&[
        "echo",
        "--socket-path",
        "/nonexistent/sock",
        "--duration-ms",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/sock"), "{err}");
}
