// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::scenario::Scenario;

/// Which placements to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    /// Frontend and daemon (or the floor's two threads) on one CPU.
    Same,
    /// Frontend on the first CPU, daemon on the second.
    Cross,
    /// Both, one after the other.
    Both,
}

/// Which load shapes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShapeArg {
    /// One request in flight: latency percentiles.
    PingPong,
    /// --in-flight requests in flight: requests per second.
    Pipelined,
    /// Both.
    Both,
}

/// How requests are put on the virtqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverArg {
    /// Chains laid out once and republished by head: the least a driver
    /// can do per request.
    Lean,
    /// The test frontend's TestQueue API: buffers copied and descriptors
    /// written for every request.
    Frontend,
}

impl DriverArg {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            DriverArg::Lean => "lean",
            DriverArg::Frontend => "frontend",
        }
    }
}

/// Load generator for vhost-user device backends.
///
/// Connects to a backend's socket (ours or any other implementation's) like
/// QEMU does, or starts one of our daemons, and measures a named scenario:
/// latency with one request in flight, throughput with many, the daemon's
/// CPU time per request, its wake-ups while idle and its memory, all beside
/// the machine's floor (a bare eventfd round trip between two threads) in
/// the same CPU placement.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "vhost-device-bench",
    version,
    after_help = "Examples:\n  \
        vhost-device-bench floor\n  \
        vhost-device-bench gpio-get                      (starts vhost-device-gpio --device-list s8)\n  \
        vhost-device-bench i2c-read --placement same --json\n  \
        vhost-device-bench gpio-get --socket-path /run/gpio.sock --pid 4242\n  \
        vhost-device-bench gpio-get --spawn /opt/upstream/vhost-device-gpio --device-list s8\n  \
        vhost-device-bench gpu-2d --duration-ms 5000\n\n\
        Daemons named by --device or by a scenario's default are looked up next to this binary,\n\
        then in PATH."
)]
pub struct Args {
    /// The scenario: floor (eventfd round trip only), echo (the core's echo
    /// device), gpio-get, i2c-read, gpu-2d (with its memcpy baseline),
    /// gpu-virgl (a SUBMIT_3D clear and a TRANSFER_FROM_HOST_3D of 256x256
    /// on the real virglrenderer), gpu-virgl-scanout (page flips of 1280x800
    /// render targets, SET_SCANOUT + RESOURCE_FLUSH, to a display socket),
    /// sound-null, can-tx, memcpy (the baseline only), rpmsg (a message to a host
    /// program on the channel socket `<socket>.peer` and its echo back), bt
    /// (HCI Read BD_ADDR round trips).
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// Drive the backend already listening on this socket instead of
    /// starting one.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["spawn", "device"])]
    pub socket_path: Option<PathBuf>,

    /// Pid of the daemon behind --socket-path, for the cost figures.
    /// Default: the socket's peer (SO_PEERCRED).
    #[arg(long, value_name = "PID", requires = "socket_path")]
    pub pid: Option<u32>,

    /// Start one of our daemons from the built-in table: echo
    /// (vhost-device-echo), gpio (vhost-device-gpio --device-list s8), i2c
    /// (vhost-device-i2c --device-list sim:0x50=eeprom:256), gpu
    /// (vhost-device-gpu --headless --resolution 1920x1080), gpu-virgl
    /// (vhost-device-gpu --headless --gpu-mode virgl), gpu-virgl-display
    /// (vhost-device-gpu --gpu-mode virgl), sound
    /// (vhost-device-sound --backend null --outputs 1 --inputs 0), rpmsg
    /// (vhost-device-rpmsg with one rpmsg-raw channel on `<socket>.peer`),
    /// bt (vhost-device-bluetooth with its built-in controller), can
    /// (vhost-device-can: one guest on its virtual bus).
    /// Default: the scenario's device.
    #[arg(long, value_name = "NAME", conflicts_with = "spawn",
          value_parser = ["echo", "gpio", "i2c", "gpu", "gpu-virgl", "gpu-virgl-display", "sound", "rpmsg", "bt", "can"])]
    pub device: Option<String>,

    /// Start this daemon: BINARY [ARGS...], which must come last on the
    /// command line. `{socket}` in ARGS becomes the socket path; without
    /// it, `--socket-path PATH` is appended.
    #[arg(long, value_name = "BINARY [ARGS]", num_args = 1.., allow_hyphen_values = true)]
    pub spawn: Option<Vec<String>>,

    /// Where to look for daemon binaries named without a path. Default:
    /// this binary's directory, then PATH.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// CPU placements to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub placement: PlacementArg,

    /// The two CPUs to use, FRONTEND,DAEMON (the daemon's is used only in
    /// the cross placement). Default: the first two this process may use.
    #[arg(long, value_name = "A,B", value_parser = parse_cpus)]
    pub cpus: Option<(usize, usize)>,

    /// Load shapes to run.
    #[arg(long, value_enum, default_value = "both")]
    pub shape: ShapeArg,

    /// Requests in flight in the pipelined shape.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=128))]
    pub in_flight: u16,

    /// Measured time of each run, after a warm-up of a tenth of it (at most
    /// 200 ms).
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub duration_ms: u64,

    /// Measure the floor and the ping-pong of each placement in this many
    /// alternating slices of --duration-ms / N each, so that both see the
    /// same state of a noisy machine; the ping-pong ratio to the floor is
    /// then the median of the slices' ratios. 1 measures each once, the
    /// floor first.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,

    /// End each measured run after this many requests, if sooner.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// How long to count the daemon's wake-ups while a frontend is
    /// connected and sends nothing.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub idle_ms: u64,

    /// How requests are put on the queue.
    #[arg(long, value_enum, default_value = "lean")]
    pub driver: DriverArg,

    /// Size of every virtqueue (a power of two the backend accepts; some
    /// implementations refuse more than 64).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(2..=32768))]
    pub queue_size: u16,

    /// sound-null: event buffers posted on the event queue first, as the
    /// Linux driver does at probe.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub sound_event_buffers: u16,

    /// gpio-get: first drive line 0 as an output (SET_VALUE 0, then
    /// SET_DIRECTION out, the order the Linux driver uses), so that a chip
    /// that refuses to read a line never driven (upstream's simulated one)
    /// answers GET_VALUE.
    #[arg(long)]
    pub gpio_drive_first: bool,

    /// Call eventfds the floor's device thread writes per round trip; the
    /// frontend waits for the last only. 2 is the floor of a round trip on
    /// two queues whose first completion is signalled but not waited for,
    /// as bt's tx queue is.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub floor_calls: u8,

    /// Skip the floor (e.g. while profiling the daemon from outside).
    #[arg(long)]
    pub no_floor: bool,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_cpus(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}' is not A,B"))?;
    let cpu = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{v}' is not a CPU number"))
    };
    Ok((cpu(a)?, cpu(b)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::assertions_on_result_states)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("vhost-device-bench").chain(args.iter().copied()))
    }

    #[test]
    fn spawn_takes_the_rest_of_the_line() {
        let a = parse(&[
            "gpio-get",
            "--json",
            "--spawn",
            "/x/gpio",
            "--device-list",
            "s8",
        ])
        .unwrap();
        assert_eq!(
            a.spawn.unwrap(),
            ["/x/gpio", "--device-list", "s8"].map(String::from)
        );
        assert!(a.json);
        assert_eq!(a.in_flight, 64);
    }

    #[test]
    fn bad_combinations_are_refused() {
        assert!(parse(&["gpio-get", "--socket-path", "/s", "--device", "gpio"]).is_err());
        assert!(parse(&["gpio-get", "--pid", "3"]).is_err());
        assert!(parse(&["gpio-get", "--device", "nope"]).is_err());
        assert!(parse(&["gpio-get", "--in-flight", "0"]).is_err());
        assert!(parse(&["gpio-get", "--cpus", "0"]).is_err());
        assert_eq!(
            parse(&["floor", "--cpus", "2,3"]).unwrap().cpus,
            Some((2, 3))
        );
        assert!(parse(&["nope"]).is_err());
    }
}
