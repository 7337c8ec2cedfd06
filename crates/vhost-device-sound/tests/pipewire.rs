// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The pipewire backend against a real PipeWire daemon, started for the
//! test in a private runtime directory (Debian's `pipewire` and
//! `pipewire-bin` packages). The daemon under test serves one output and
//! one input stream to the test frontend; its nodes must appear in the
//! graph, what it plays must reach `pw-record` sample for sample, and what
//! `pw-play` plays into its input node must come back to the guest. The
//! same again with the alsa backend on alsa-lib's `pipewire` PCM
//! (`pipewire-alsa`). The daemon runs with its default sandbox, seccomp in
//! kill mode.

#![cfg(feature = "pw-backend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vhost_device_common::testing::{
    default_seccomp_mode, wait_for_default_seccomp, DaemonProcess, FrontendOptions, TestFrontend,
};
use vhost_device_sound::backend::wav::{read_file, WavWriter};
use vhost_device_sound::format::SampleFormat;
use vhost_device_sound::protocol::*;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-sound");
const WAIT: Duration = Duration::from_secs(5);
/// 20 ms at 48 kHz stereo S16.
const PERIOD: u32 = 3840;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PipeWire daemon of our own, with its session manager (WirePlumber,
/// which needs a D-Bus session bus) and two virtual devices: a null sink
/// `vds-sink` and a virtual source `vds-src`.
struct PipeWire {
    runtime: tempfile::TempDir,
    _session: Proc,
    _daemon: Proc,
    _bus: Proc,
}

impl PipeWire {
    fn start() -> Self {
        let runtime = tempfile::tempdir().unwrap();
        let bus_path = runtime.path().join("bus");
        let spawn = |program: &str, args: &[&str]| -> Proc {
            let child = Command::new(program)
                .args(args)
                .env("XDG_RUNTIME_DIR", runtime.path())
                .env("PIPEWIRE_RUNTIME_DIR", runtime.path())
                .env("XDG_STATE_HOME", runtime.path())
                .env("XDG_CONFIG_HOME", runtime.path())
                .env(
                    "DBUS_SESSION_BUS_ADDRESS",
                    format!("unix:path={}", bus_path.display()),
                )
                .env_remove("PIPEWIRE_REMOTE")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} (Debian packages dbus, pipewire, wireplumber): {e}")
                });
            Proc(child)
        };
        let address = format!("--address=unix:path={}", bus_path.display());
        let bus = spawn(
            "dbus-daemon",
            &["--session", &address, "--nofork", "--nopidfile"],
        );
        wait_file(&bus_path);
        let daemon = spawn("pipewire", &[]);
        wait_file(&runtime.path().join("pipewire-0"));
        let session = spawn("wireplumber", &[]);
        let pw = PipeWire {
            runtime,
            _session: session,
            _daemon: daemon,
            _bus: bus,
        };
        for (name, class) in [
            ("vds-sink", "Audio/Sink"),
            ("vds-src", "Audio/Source/Virtual"),
        ] {
            let props = format!(
                "{{ factory.name = support.null-audio-sink node.name = {name} \
                 media.class = {class} object.linger = true audio.position = [ FL FR ] }}"
            );
            let out = pw.run("pw-cli", &["create-node", "adapter", &props]);
            assert!(
                out.status.success(),
                "pw-cli: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        pw.wait_node("vds-sink");
        pw.wait_node("vds-src");
        pw
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", self.runtime.path())
            .env("PIPEWIRE_RUNTIME_DIR", self.runtime.path())
            .env_remove("PIPEWIRE_REMOTE");
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap()
    }

    fn nodes(&self) -> String {
        String::from_utf8_lossy(&self.run("pw-cli", &["ls", "Node"]).stdout).into_owned()
    }

    fn wait_node(&self, name: &str) {
        self.wait_node_any(&[name]);
    }

    /// Waits for a node under one of `names` (PipeWire versions name some
    /// nodes differently) and returns the name found.
    fn wait_node_any<'a>(&self, names: &[&'a str]) -> &'a str {
        let deadline = Instant::now() + WAIT;
        loop {
            let nodes = self.nodes();
            if let Some(name) = names.iter().find(|n| nodes.contains(&format!("\"{n}\""))) {
                return name;
            }
            assert!(
                Instant::now() < deadline,
                "no node {names:?} appeared:\n{nodes}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ports of `node` in `direction` ("-o" or "-i"), waiting for two.
    fn ports(&self, direction: &str, node: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.run("pw-link", &[direction]);
            let ports: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with(&format!("{node}:")))
                .map(str::to_owned)
                .collect();
            if ports.len() >= 2 {
                return ports;
            }
            assert!(
                Instant::now() < deadline,
                "{node} has no {direction} ports: {ports:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Links `from`'s output ports to `to`'s input ports, in order.
    fn link(&self, from: &str, to: &str) {
        let outs = self.ports("-o", from);
        let ins = self.ports("-i", to);
        for (o, i) in outs.iter().zip(&ins) {
            let out = self.run("pw-link", &[o, i]);
            assert!(
                out.status.success(),
                "pw-link {o} {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Whether some link goes from `from` to `to`.
    fn linked(&self, from: &str, to: &str) -> bool {
        let out = self.run("pw-link", &["-l"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut current = "";
        for line in text.lines() {
            if !line.starts_with(' ') {
                current = line.trim();
            } else if current.starts_with(&format!("{from}:"))
                && line.trim().starts_with("|->")
                && line.contains(&format!("{to}:"))
            {
                return true;
            }
        }
        false
    }

    fn wait_link(&self, from: &str, to: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.linked(from, to) {
            let links = String::from_utf8_lossy(&self.run("pw-link", &["-l"]).stdout).into_owned();
            assert!(
                Instant::now() < deadline,
                "{from} never linked to {to}:\n{links}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn status(data: &[u8]) -> u32 {
    u32::from_le_bytes(data[..4].try_into().unwrap())
}

fn control(fe: &mut TestFrontend, request: &[u8]) -> u32 {
    status(
        &fe.queue(CONTROL_QUEUE)
            .unwrap()
            .request(&[request], &[4], WAIT)
            .unwrap()
            .data,
    )
}

fn signal(bytes: usize) -> Vec<u8> {
    (0..bytes / 2)
        .flat_map(|i| ((((i as u32).wrapping_mul(2_654_435_761) >> 17) as i16) | 1).to_le_bytes())
        .collect()
}

/// Where two sample streams first differ, for the failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => {
            let end = (i + 16).min(a.len()).min(b.len());
            format!(
                "first difference at byte {i}: {:?} vs {:?}",
                &a[i..end],
                &b[i..end]
            )
        }
        None => format!("lengths {} and {}", a.len(), b.len()),
    }
}

/// Describes where the signal's first nonzero bytes sit in `hay`.
fn describe(hay: &[u8]) -> String {
    match hay.iter().position(|&b| b != 0) {
        Some(i) => format!(
            "{} bytes, first nonzero at {i}: {:?}",
            hay.len(),
            &hay[i..(i + 16).min(hay.len())]
        ),
        None => format!("{} bytes of silence", hay.len()),
    }
}

/// Checks that 0.3 s of `sent`, from 0.1 s on, arrived unchanged in
/// `got`. The first and last moments depend on when the PipeWire tools
/// link and unlink (pw-play drops its last partial cycle; a recorder may
/// start a cycle late), not on the backend.
fn assert_window(got: &[u8], sent: &[u8], who: &str) {
    let window = &sent[19_200..19_200 + 57_600];
    let start = find(got, window)
        .unwrap_or_else(|| panic!("the signal never reached {who}: {}", describe(got)));
    let end = (start + window.len()).min(got.len());
    assert!(
        got[start..end] == window[..end - start] && end - start == window.len(),
        "{who} got different samples: {}",
        first_difference(&got[start..end], window)
    );
}

/// The offset at which `needle` starts in `hay`, by whole frames.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    (0..hay.len().saturating_sub(8))
        .step_by(4)
        .find(|&i| hay[i..i + 8] == needle[..8])
}

fn wait_file(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pipewire_nodes_appear_and_pass_audio_both_ways() {
    let pw = PipeWire::start();
    let (_dir, sock, daemon) = start_daemon(
        &pw,
        &[
            "--backend",
            "pipewire",
            "--pw-node-name",
            "vds-test",
            "--pw-latency",
            "2048",
            "--pw-output-target",
            "vds-sink",
            "--pw-input-target",
            "vds-src",
        ],
    );
    pass_audio_both_ways(
        &pw,
        &daemon,
        &sock,
        (&["vds-test-output0"], &["vds-test-input0"]),
    );
}

/// The alsa backend through alsa-lib's `pipewire` PCM (Debian's
/// `pipewire-alsa`), a desktop's ALSA `default`: the plugin is a PipeWire
/// client inside alsa-lib, so this runs the alsa backend's seccomp list
/// against a real PipeWire daemon, in kill mode.
#[cfg(feature = "alsa-backend")]
#[test]
fn alsa_through_the_pipewire_plugin_passes_audio_both_ways() {
    assert!(
        Path::new("/usr/share/alsa/alsa.conf.d/50-pipewire.conf").exists(),
        "alsa-lib's pipewire PCM (Debian package pipewire-alsa)"
    );
    let pw = PipeWire::start();
    let (_dir, sock, daemon) = start_daemon(
        &pw,
        &[
            "--backend",
            "alsa",
            "--alsa-output",
            "pipewire:NODE=vds-sink",
            "--alsa-input",
            "pipewire:NODE=vds-src",
        ],
    );
    // The names PipeWire 0.3's plugin gives its nodes, and those of 1.x
    // (the MSRV step's trixie root has 1.4).
    pass_audio_both_ways(
        &pw,
        &daemon,
        &sock,
        (
            &["ALSA Playback", "alsa_playback.vhost-device-sound"],
            &["ALSA Capture", "alsa_capture.vhost-device-sound"],
        ),
    );
}

/// The daemon under test with `args`, a client of `pw`, on a socket in a
/// fresh directory.
fn start_daemon(pw: &PipeWire, args: &[&str]) -> (tempfile::TempDir, PathBuf, DaemonProcess) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("snd.sock");
    let mut command = pw.command(BIN);
    command
        .arg("--socket-path")
        .arg(&sock)
        .args(args)
        .env("RUST_LOG", "debug")
        .envs(realtime_client_config())
        .stderr(Stdio::inherit());
    let daemon = DaemonProcess::spawn(command, vec![sock.clone()]).unwrap();
    (dir, sock, daemon)
}

/// Drives `daemon`, whose output and input stream appear in the graph as
/// the nodes `output` and `input`, targeting `vds-sink` and `vds-src`:
/// what it plays must reach `pw-record` sample for sample, and what
/// `pw-play` plays into its input node must come back to the guest.
fn pass_audio_both_ways(
    pw: &PipeWire,
    daemon: &DaemonProcess,
    sock: &Path,
    (outputs, inputs): (&[&str], &[&str]),
) {
    let dir = tempfile::tempdir().unwrap();
    let opts = FrontendOptions {
        num_queues: Some(4),
        ..Default::default()
    };
    let mut fe = TestFrontend::connect_retry(sock, opts, WAIT).unwrap();
    for stream in [0, 1] {
        let mut req = words(&[VIRTIO_SND_R_PCM_SET_PARAMS, stream, 4 * PERIOD, PERIOD, 0]);
        req.extend_from_slice(&[2, VIRTIO_SND_PCM_FMT_S16, 7, 0]);
        assert_eq!(control(&mut fe, &req), VIRTIO_SND_S_OK);
        assert_eq!(
            control(&mut fe, &words(&[VIRTIO_SND_R_PCM_PREPARE, stream])),
            VIRTIO_SND_S_OK
        );
    }
    // The backend runs under its seccomp list by default (kill mode): a
    // call of PipeWire's client outside it would have killed the daemon.
    assert_eq!(
        wait_for_default_seccomp(daemon.pid(), WAIT).unwrap(),
        default_seccomp_mode()
    );
    // Both nodes are in the graph, linked to their targets by the session
    // manager.
    let output = pw.wait_node_any(outputs);
    let input = pw.wait_node_any(inputs);
    pw.wait_link(output, "vds-sink");
    pw.wait_link("vds-src", input);

    // Playback: pw-record records the sink the guest plays into.
    let recorded = dir.path().join("recorded.wav");
    let _rec = Proc(
        pw.command("pw-record")
            .args([
                "--target",
                "vds-sink",
                "-P",
                "{ stream.capture.sink = true, node.name = vds-rec }",
            ])
            .args(["--rate", "48000", "--channels", "2", "--format", "s16"])
            .arg(&recorded)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    pw.wait_link("vds-sink", "vds-rec");
    // The link exists before the recorder runs; give it time to start.
    std::thread::sleep(Duration::from_millis(500));
    let played = signal(96_000);
    let id = 0u32.to_le_bytes();
    let tx = fe.queue(TX_QUEUE).unwrap();
    for period in played.chunks(PERIOD as usize) {
        tx.add(&[&id, period], &[8]).unwrap();
    }
    tx.kick().unwrap();
    let started = Instant::now();
    assert_eq!(
        control(&mut fe, &words(&[VIRTIO_SND_R_PCM_START, 0])),
        VIRTIO_SND_S_OK
    );
    let tx = fe.queue(TX_QUEUE).unwrap();
    for _ in played.chunks(PERIOD as usize) {
        let used = tx.wait_used(WAIT).unwrap();
        assert_eq!(status(&used.data), VIRTIO_SND_S_OK);
    }
    let elapsed = started.elapsed();
    // Buffers complete as the graph takes them, up to the ring's 210 ms
    // (two periods and four 2048-frame quanta) ahead of real time.
    assert!(
        elapsed >= Duration::from_millis(250),
        "0.5 s played in {elapsed:?}"
    );
    // Let the graph drain the ring, then stop pw-record cleanly. On a
    // loaded machine the graph runs late: 300 ms here lost the last
    // 16 ms of the window now and then.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        control(&mut fe, &words(&[VIRTIO_SND_R_PCM_STOP, 0])),
        VIRTIO_SND_S_OK
    );
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(libc::pid_t::try_from(_rec.0.id()).unwrap(), libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    wait_file(&recorded);
    let wav = read_file(&recorded).unwrap();
    assert_eq!(
        (wav.channels, wav.rate, wav.format),
        (2, 48000, SampleFormat::S16)
    );
    assert_window(&wav.data, &played, "pw-record");

    // Capture: pw-play feeds the guest's input node.
    let source = dir.path().join("source.wav");
    let sent = signal(96_000);
    let mut w = WavWriter::create(&source, 2, 48000, SampleFormat::S16).unwrap();
    w.append(&sent).unwrap();
    let in_id = 1u32.to_le_bytes();
    let rx_buffers = 2 * sent.len() / PERIOD as usize;
    let rx = fe.queue(RX_QUEUE).unwrap();
    for _ in 0..rx_buffers {
        rx.add(&[&in_id], &[PERIOD, 8]).unwrap();
    }
    rx.kick().unwrap();
    assert_eq!(
        control(&mut fe, &words(&[VIRTIO_SND_R_PCM_START, 1])),
        VIRTIO_SND_S_OK
    );
    // The session manager links playback streams to sinks only: pw-play
    // waits unlinked and is linked into the virtual source by hand.
    let play = pw
        .command("pw-play")
        .args(["-P", "{ node.name = vds-play, node.autoconnect = false }"])
        .arg(&source)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _play = Proc(play);
    pw.link("vds-play", "vds-src");
    let mut captured = Vec::new();
    for _ in 0..rx_buffers {
        let used = fe.queue(RX_QUEUE).unwrap().wait_used(WAIT).unwrap();
        captured.extend_from_slice(&used.data[..used.data.len() - 8]);
    }
    assert_window(&captured, &sent, "the guest");
    assert_eq!(
        control(&mut fe, &words(&[VIRTIO_SND_R_PCM_STOP, 1])),
        VIRTIO_SND_S_OK
    );
    for stream in [0, 1] {
        assert_eq!(
            control(&mut fe, &words(&[VIRTIO_SND_R_PCM_RELEASE, stream])),
            VIRTIO_SND_S_OK
        );
    }
    fe.disconnect().unwrap();
}

/// PipeWire 1.0 and later load the realtime module (`module-rt`) from the
/// client configuration every stream uses; Debian 12's 0.3.65 only from
/// `client-rt.conf`. The daemon under test takes that one where it exists,
/// so that the module's calls (its own scheduling, resource limits, RTKit
/// over D-Bus) run under the seccomp filter as they do for newer users.
fn realtime_client_config() -> Vec<(&'static str, &'static str)> {
    if Path::new("/usr/share/pipewire/client-rt.conf").exists() {
        vec![("PIPEWIRE_CONFIG_NAME", "client-rt.conf")]
    } else {
        Vec::new()
    }
}
