// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The alsa backend against a real kernel sound card: snd-aloop, loaded in
//! the rig's guest (this host has no snd-aloop). The daemon plays a test
//! signal into `hw:Loopback,0,0` and records `hw:Loopback,1,0`, the other
//! end of the same cable, driven by the test frontend; what it records
//! must contain what it played, sample for sample. Then the card is
//! unplugged under a playing stream and bound again, under the same daemon.
//! A second daemon goes through alsa-lib's dmix and dsnoop plugins on the
//! same cable. Both run with the alsa backend's default sandbox:
//! seccomp in kill mode, which the test reads from `/proc`.

#![cfg(feature = "alsa-backend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vhost_device_common::testing::{wait_for_seccomp, FrontendOptions, RawDesc, TestFrontend};
use vhost_device_common::SeccompMode;
use vhost_device_sound::protocol::*;

const GUEST_BIN: &str = "/rig/vhost-device-sound";
const WAIT: Duration = Duration::from_secs(5);
/// 50 ms periods: the guest runs under TCG, and the host PCM's buffer is
/// four of them.
const PERIOD: u32 = 9600;

/// The daemon, killed if the test fails half-way.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn status(data: &[u8]) -> u32 {
    u32::from_le_bytes(data[..4].try_into().unwrap())
}

fn control(fe: &mut TestFrontend, request: &[u8]) -> u32 {
    let used = fe
        .queue(CONTROL_QUEUE)
        .unwrap()
        .request(&[request], &[4], WAIT)
        .unwrap();
    status(&used.data)
}

/// A signal with no zero sample, distinct from the loopback's silence.
fn signal(bytes: usize) -> Vec<u8> {
    (0..bytes / 2)
        .flat_map(|i| ((((i as u32).wrapping_mul(2_654_435_761) >> 17) as i16) | 1).to_le_bytes())
        .collect()
}

/// The daemon on a fresh socket, playing into `output` and recording
/// `input`, with the sandbox's defaults (seccomp `kill`), and a frontend
/// on it.
fn start_daemon(output: &str, input: &str) -> (tempfile::TempDir, Child, TestFrontend) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("snd.sock");
    let child = Child(
        Command::new(GUEST_BIN)
            .arg("--socket-path")
            .arg(&sock)
            .args(["--backend", "alsa", "--alsa-output", output])
            .args(["--alsa-input", input])
            .env("RUST_LOG", "debug")
            .env("LD_LIBRARY_PATH", "/rig/lib")
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let opts = FrontendOptions {
        num_queues: Some(4),
        // Room for the hand-made rx buffers of `card_unplugged_while_playing`.
        scratch_size: 256 << 10,
        ..Default::default()
    };
    let fe = TestFrontend::connect_retry(&sock, opts, WAIT).unwrap();
    (dir, child, fe)
}

/// The daemon answered a request, so its sandbox is in place: the seccomp
/// filter must be there, in kill mode (the alsa backend's default), not
/// `none` or `log`.
fn assert_seccomp_kill(child: &Child) {
    let mode = wait_for_seccomp(child.0.id(), WAIT).unwrap();
    assert_eq!(mode, SeccompMode::Kill, "the daemon's seccomp mode");
}

/// Stops the daemon with SIGTERM; it must exit 0 (a call outside its
/// allow-list would have killed it with SIGSYS instead).
fn stop(mut child: Child) {
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(libc::pid_t::try_from(child.0.id()).unwrap(), libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the daemon ended with {status}");
}

/// The daemon through alsa-lib's plugins, as a desktop without a sound
/// server has them: dmix mixes the output into the card (shared memory and
/// semaphores between its clients), dsnoop shares the capture side; both
/// with the card's native format, which the daemon asks for anyway.
fn in_guest_dmix_and_dsnoop() {
    const SLAVE: &str = "FORMAT=S16_LE,RATE=48000";
    // alsa-lib's configuration gives dmix's IPC objects to the group
    // `audio`, which every distribution has but the rig's guest does not
    // (the guest's root is a fresh tmpfs each boot).
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    if !groups.lines().any(|l| l.starts_with("audio:")) {
        let mut groups = groups;
        groups.push_str("audio:x:29:\n");
        std::fs::write("/etc/group", groups).unwrap();
    }
    let (_dir, child, mut fe) = start_daemon(
        &format!("dmix:CARD=Loopback,DEV=0,{SLAVE},CHANNELS=2"),
        &format!("dsnoop:CARD=Loopback,DEV=1,{SLAVE}"),
    );
    play_and_record(&mut fe, assert_mostly_there);
    assert_seccomp_kill(&child);
    fe.disconnect().unwrap();
    stop(child);
}

fn in_guest_loopback() {
    let (_dir, child, mut fe) = start_daemon("hw:Loopback,0,0", "hw:Loopback,1,0");
    let pid = child.0.id();
    play_and_record(&mut fe, assert_exact);
    assert_seccomp_kill(&child);
    // Both streams are released: the daemon holds no card.
    assert_eq!(
        sound_handles(pid),
        Vec::<String>::new(),
        "released streams still hold the card"
    );
    let device = card_unplugged_while_playing(&mut fe, pid);
    card_comes_back(&mut fe, &device);
    card_unplugged_while_idle(&mut fe, pid, &device);
    fe.disconnect().unwrap();
    stop(child);
    // Last: the cable keeps what dmix played last, the same signal, which
    // would pass for the next recording's start.
    in_guest_dmix_and_dsnoop();
}

fn set_params_and_prepare(fe: &mut TestFrontend, stream: u32) -> u32 {
    let mut req = words(&[VIRTIO_SND_R_PCM_SET_PARAMS, stream, 4 * PERIOD, PERIOD, 0]);
    req.extend_from_slice(&[2, VIRTIO_SND_PCM_FMT_S16, 7, 0]);
    assert_eq!(control(fe, &req), VIRTIO_SND_S_OK);
    control(fe, &words(&[VIRTIO_SND_R_PCM_PREPARE, stream]))
}

/// Plays one second of signal on stream 0 into the loopback and records
/// stream 1, its other end, for up to two; `check` compares the played and
/// the recorded bytes. Both streams are released at the end.
fn play_and_record(fe: &mut TestFrontend, check: fn(&[u8], &[u8])) {
    for stream in [0, 1] {
        assert_eq!(set_params_and_prepare(fe, stream), VIRTIO_SND_S_OK);
    }
    // Every buffer is posted up front: the device holds them until they
    // are due, so a slow frontend cannot starve it.
    let played = signal(192_000);
    let out_id = 0u32.to_le_bytes();
    let in_id = 1u32.to_le_bytes();
    let rx_buffers = 2 * played.len() / PERIOD as usize;
    {
        let rx = fe.queue(RX_QUEUE).unwrap();
        for _ in 0..rx_buffers {
            rx.add(&[&in_id], &[PERIOD, 8]).unwrap();
        }
        rx.kick().unwrap();
    }
    assert_eq!(
        control(fe, &words(&[VIRTIO_SND_R_PCM_START, 1])),
        VIRTIO_SND_S_OK
    );
    let tx = fe.queue(TX_QUEUE).unwrap();
    for period in played.chunks(PERIOD as usize) {
        tx.add(&[&out_id, period], &[8]).unwrap();
    }
    tx.kick().unwrap();
    assert_eq!(
        control(fe, &words(&[VIRTIO_SND_R_PCM_START, 0])),
        VIRTIO_SND_S_OK
    );
    let mut recorded = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..rx_buffers {
        assert!(
            Instant::now() < deadline,
            "capture stalled at {} bytes",
            recorded.len()
        );
        let used = fe.queue(RX_QUEUE).unwrap().wait_used(WAIT).unwrap();
        assert_eq!(status(&used.data[used.data.len() - 8..]), VIRTIO_SND_S_OK);
        recorded.extend_from_slice(&used.data[..used.data.len() - 8]);
    }
    let tx = fe.queue(TX_QUEUE).unwrap();
    let mut next = 0;
    while let Some(used) = tx.try_used().unwrap() {
        assert_eq!(status(&used.data), VIRTIO_SND_S_OK);
        next += 1;
    }
    let periods: Vec<&[u8]> = played.chunks(PERIOD as usize).collect();
    assert_eq!(next, periods.len(), "not all of the signal was played");
    check(&played, &recorded);
    for stream in [0, 1] {
        assert_eq!(
            control(fe, &words(&[VIRTIO_SND_R_PCM_STOP, stream])),
            VIRTIO_SND_S_OK
        );
        assert_eq!(
            control(fe, &words(&[VIRTIO_SND_R_PCM_RELEASE, stream])),
            VIRTIO_SND_S_OK
        );
    }
}

/// The signal starts after some silence (the cable's latency); from there
/// on every sample must match.
fn assert_exact(played: &[u8], recorded: &[u8]) {
    let start = (0..recorded.len() - 4)
        .step_by(4)
        .find(|&i| recorded[i..i + 4] == played[..4])
        .expect("the played signal never reached the capture side");
    let got = &recorded[start..];
    let len = got.len().min(played.len());
    eprintln!("signal found at byte {start}; comparing {len} bytes");
    assert!(
        len >= played.len() * 9 / 10,
        "only {len} bytes of the signal came back"
    );
    assert!(
        got[..len] == played[..len],
        "the loopback capture differs from the playback"
    );
}

/// Most of the signal came back: at least 80 % of its 25 ms pieces are
/// somewhere in the recording, unchanged. dmix and dsnoop run on their own
/// clock and drop or repeat a period where they fall behind, which the
/// loaded TCG guest makes them do.
fn assert_mostly_there(played: &[u8], recorded: &[u8]) {
    let pieces: Vec<&[u8]> = played.chunks_exact(4800).collect();
    let found = pieces
        .iter()
        .filter(|piece| {
            (0..recorded.len().saturating_sub(piece.len()))
                .step_by(4)
                .any(|i| {
                    recorded[i..i + 8] == piece[..8] && recorded[i..i + piece.len()] == ***piece
                })
        })
        .count();
    eprintln!("{found} of {} pieces of the signal came back", pieces.len());
    assert!(
        found * 5 >= pieces.len() * 4,
        "only {found} of {} pieces of the signal came back",
        pieces.len()
    );
}

/// The process's CPU ticks (user + system) from `/proc/PID/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The ALSA device nodes the process holds open, from `/proc/PID/fd`.
fn sound_handles(pid: u32) -> Vec<String> {
    let mut held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("/dev/snd/"))
        .collect();
    held.sort();
    held
}

const DRIVER: &str = "/sys/bus/platform/drivers/snd_aloop";

/// Unbinds snd-aloop's `device` from its driver on a thread: the removal
/// waits for every handle on the card, so a daemon that holds one fails
/// the test rather than hangs it. The channel gets the time it finished.
fn unbind(device: &str) -> std::sync::mpsc::Receiver<Instant> {
    let (done, finished) = std::sync::mpsc::channel();
    let device = device.to_owned();
    std::thread::spawn(move || {
        std::fs::write(format!("{DRIVER}/unbind"), &device).unwrap();
        let _ = done.send(Instant::now());
    });
    finished
}

/// The ALSA card goes away under a playing and a recording stream, as a
/// USB card that is unplugged: snd-aloop's device is unbound from its
/// driver, which disconnects the card while the daemon holds its PCMs open.
/// Every tx and rx buffer is answered (the ones after the unplug with
/// VIRTIO_SND_S_IO_ERR), the daemon does not spin, still answers the
/// control queue, and lets go of the card: the kernel finishes removing a
/// card only once every handle on it is closed, so the unbind returns while
/// the daemon runs. Returns snd-aloop's platform device, unbound.
fn card_unplugged_while_playing(fe: &mut TestFrontend, pid: u32) -> String {
    let started = Instant::now();
    for stream in [0, 1] {
        assert_eq!(set_params_and_prepare(fe, stream), VIRTIO_SND_S_OK);
    }
    // 20 periods of 50 ms each way: one second of playback and of capture,
    // unplugged after 0.2 s.
    // The rx buffers are laid out by hand, so that their status can be
    // read where the device writes it (after the frames, in its own
    // descriptor) also when fewer frames come back.
    let rx = fe.queue(RX_QUEUE).unwrap();
    let (scratch, scratch_len) = rx.scratch();
    let stride = u64::from(4 + PERIOD + 8);
    assert!(scratch_len >= 20 * stride, "the rx queue's scratch area");
    let mut rx_status = std::collections::HashMap::new();
    for i in 0..20 {
        let at = scratch + i * stride;
        rx.write_guest(at, &1u32.to_le_bytes()).unwrap();
        let head = rx
            .add_raw(&[
                RawDesc::readable(at, 4, Some(1)),
                RawDesc::writable(at + 4, PERIOD, Some(2)),
                RawDesc::writable(at + 4 + u64::from(PERIOD), 8, None),
            ])
            .unwrap();
        rx_status.insert(head, at + 4 + u64::from(PERIOD));
    }
    rx.kick().unwrap();
    assert_eq!(
        control(fe, &words(&[VIRTIO_SND_R_PCM_START, 1])),
        VIRTIO_SND_S_OK
    );
    let tx = fe.queue(TX_QUEUE).unwrap();
    let silence = vec![0u8; PERIOD as usize];
    for _ in 0..20 {
        tx.add(&[&0u32.to_le_bytes(), &silence], &[8]).unwrap();
    }
    tx.kick().unwrap();
    assert_eq!(
        control(fe, &words(&[VIRTIO_SND_R_PCM_START, 0])),
        VIRTIO_SND_S_OK
    );
    let device = std::fs::read_dir(DRIVER)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("snd_aloop"))
        .expect("snd-aloop's platform device");
    std::thread::sleep(Duration::from_millis(200));
    eprintln!(
        "the daemon's sound handles while playing and recording: {:?}",
        sound_handles(pid)
    );
    let unplug_began = Instant::now();
    let unplugged = unbind(&device);
    let tx = fe.queue(TX_QUEUE).unwrap();
    let statuses: Vec<u32> = (0..20)
        .map(|_| status(&tx.wait_used(WAIT).unwrap().data))
        .collect();
    eprintln!("tx statuses with the card unplugged: {statuses:x?}");
    assert!(
        statuses.contains(&VIRTIO_SND_S_IO_ERR),
        "no error status after the card went away"
    );
    let rx = fe.queue(RX_QUEUE).unwrap();
    let statuses: Vec<u32> = (0..20)
        .map(|_| {
            let used = rx.wait_used(WAIT).unwrap();
            let mut answer = [0u8; 4];
            rx.read_guest(rx_status[&used.head], &mut answer).unwrap();
            u32::from_le_bytes(answer)
        })
        .collect();
    eprintln!("rx statuses with the card unplugged: {statuses:x?}");
    assert!(
        statuses.contains(&VIRTIO_SND_S_IO_ERR),
        "no capture error status after the card went away"
    );
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(500));
    let ticks = cpu_ticks(pid) - before;
    assert!(
        ticks <= 5,
        "the daemon spins with its card gone: {ticks} ticks in 0.5 s"
    );
    // The control queue still answers.
    for stream in [0, 1] {
        for code in [VIRTIO_SND_R_PCM_STOP, VIRTIO_SND_R_PCM_RELEASE] {
            let answer = control(fe, &words(&[code, stream]));
            assert!(answer == VIRTIO_SND_S_OK || answer == VIRTIO_SND_S_IO_ERR);
        }
    }
    let removed = unplugged.recv_timeout(Duration::from_secs(10));
    let held = sound_handles(pid);
    let Ok(removed) = removed else {
        panic!("the card's removal waits for the daemon, which holds {held:?}");
    };
    assert_eq!(held, Vec::<String>::new());
    eprintln!(
        "card removed {:?} after the unplug began",
        removed - unplug_began
    );
    // With the card gone, PREPARE fails.
    for stream in [0, 1] {
        assert_eq!(set_params_and_prepare(fe, stream), VIRTIO_SND_S_IO_ERR);
    }
    eprintln!(
        "card unplugged under playing and recording streams and removed: {:?}",
        started.elapsed()
    );
    device
}

/// Binds snd-aloop's `device` again, then PREPAREs stream 0 until it
/// works, as a driver retrying (an application retrying its open) until
/// the card's nodes are there. Returns when the bind returned.
fn bind_and_prepare(fe: &mut TestFrontend, device: &str) -> Instant {
    std::fs::write(format!("{DRIVER}/bind"), device).unwrap();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(10);
    while set_params_and_prepare(fe, 0) != VIRTIO_SND_S_OK {
        assert!(
            Instant::now() < deadline,
            "PREPARE fails with the card back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("card back: first PREPARE OK after {:?}", back.elapsed());
    back
}

/// The card is bound again under the same daemon: the driver's next
/// PREPARE opens it, and playback reaches the loopback's other end.
fn card_comes_back(fe: &mut TestFrontend, device: &str) {
    let back = bind_and_prepare(fe, device);
    play_and_record(fe, assert_exact);
    eprintln!("card back: played and recorded after {:?}", back.elapsed());
}

/// The card goes away while the guest has both streams prepared but not
/// started (between two sounds): nothing touches their PCMs, so the
/// daemon's once-a-second probe must notice and let go of the card, for
/// its removal to finish. START then fails; once the card is back, PREPARE
/// works again.
fn card_unplugged_while_idle(fe: &mut TestFrontend, pid: u32, device: &str) {
    for stream in [0, 1] {
        assert_eq!(set_params_and_prepare(fe, stream), VIRTIO_SND_S_OK);
    }
    assert_eq!(sound_handles(pid).len(), 2);
    let began = Instant::now();
    let removed = unbind(device).recv_timeout(Duration::from_secs(5));
    let held = sound_handles(pid);
    let Ok(removed) = removed else {
        panic!("the idle card's removal waits for the daemon, which holds {held:?}");
    };
    assert_eq!(held, Vec::<String>::new());
    eprintln!(
        "idle card removed {:?} after the unplug began",
        removed - began
    );
    assert_eq!(
        control(fe, &words(&[VIRTIO_SND_R_PCM_START, 0])),
        VIRTIO_SND_S_IO_ERR
    );
    for stream in [0, 1] {
        assert_eq!(
            control(fe, &words(&[VIRTIO_SND_R_PCM_RELEASE, stream])),
            VIRTIO_SND_S_OK
        );
    }
    bind_and_prepare(fe, device);
    assert_eq!(
        control(fe, &words(&[VIRTIO_SND_R_PCM_RELEASE, 0])),
        VIRTIO_SND_S_OK
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn host_kernel_alsa_loopback() {
    if vhost_device_rig::in_guest() {
        in_guest_loopback();
        return;
    }
    let scenario = vhost_device_rig::Scenario::host_test(
        "host_kernel_alsa_loopback",
        std::env::current_exe().unwrap(),
        "host_kernel_alsa_loopback",
    );
    // The daemon links libpipewire too (unused here); the guest has none.
    #[cfg(feature = "pw-backend")]
    let scenario = scenario.guest_file(
        std::fs::canonicalize("/usr/lib/x86_64-linux-gnu/libpipewire-0.3.so.0").unwrap(),
        "/rig/lib/libpipewire-0.3.so.0",
    );
    scenario
        .modules(&["snd-aloop"])
        .guest_file(env!("CARGO_BIN_EXE_vhost-device-sound"), GUEST_BIN)
        .timeout(Duration::from_secs(120))
        .run()
        .expect("scenario could not start")
        .assert_success();
}
