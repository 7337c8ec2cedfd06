// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest scenarios: the Linux virtio_snd driver through QEMU's
//! vhost-user-snd-pci, used with alsa-utils, against the daemon's wav
//! backend. Run with rust-vmm-ci/guest/run-tests.sh. One scenario uses
//! QEMU's default device line (no controls), one enables controls at both
//! ends.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use vhost_device_rig::{Scenario, ScenarioResult};
use vhost_device_sound::backend::wav::{read_file, WavWriter};
use vhost_device_sound::format::SampleFormat;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-sound");

/// QEMU's default device line, exactly as its documentation and our README
/// show it: no `controls=on`, so QEMU's config space has no `controls` field.
const QEMU_DEFAULT: [&str; 4] = [
    "-chardev",
    "socket,id=snd0,path={sock}",
    "-device",
    "vhost-user-snd-pci,chardev=snd0",
];

/// Controls at both ends: the daemon's `--controls` and QEMU's `controls=on`.
const QEMU_CONTROLS: [&str; 4] = [
    "-chardev",
    "socket,id=snd0,path={sock}",
    "-device",
    "vhost-user-snd-pci,chardev=snd0,controls=on",
];

/// A scenario with the daemon's wav backend writing into the scenario's
/// log directory, with `extra` daemon arguments.
fn wav_scenario(name: &str, extra: &[&str]) -> Scenario {
    let mut args = vec![
        "--socket-path",
        "{sock}",
        "--backend",
        "wav",
        "--wav-dir",
        "{dir}",
    ];
    args.extend_from_slice(extra);
    Scenario::new(name).backend(BIN, &args)
}

/// Distinct samples, so a dropped, repeated or reordered frame shows.
fn signal(frames: usize, channels: usize) -> Vec<u8> {
    (0..frames * channels)
        .flat_map(|i| {
            let v = ((i as u32).wrapping_mul(2_654_435_761) >> 17) as i16;
            // Keep it clear of zero so silence cannot pass for audio.
            (v | 1).to_le_bytes()
        })
        .collect()
}

fn write_wav(path: &Path, channels: u16, data: &[u8]) {
    let mut w = WavWriter::create(path, channels, 48000, SampleFormat::S16).unwrap();
    w.append(data).unwrap();
}

/// Uptime stamps the guest script printed as `MARK <name> <seconds>`.
fn mark(result: &ScenarioResult, name: &str) -> f64 {
    let prefix = format!("MARK {name} ");
    result
        .guest_output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} mark in:\n{}", result.report()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_sound_default_qemu_line_plays_and_records() {
    let files = tempfile::tempdir().unwrap();
    let wav = files.path().join("two-seconds.wav");
    let samples = signal(96_000, 2);
    write_wav(&wav, 2, &samples);
    let source = files.path().join("source.wav");
    let recorded = signal(48_000, 2);
    write_wav(&source, 2, &recorded);
    let expect = files.path().join("expect.raw");
    std::fs::write(&expect, &recorded).unwrap();
    let result = wav_scenario(
        "guest_sound_default_qemu_line_plays_and_records",
        &["--wav-input", source.to_str().unwrap()],
    )
    .qemu_args(&QEMU_DEFAULT)
    .guest_file(&wav, "/rig/two-seconds.wav")
    .guest_file(&expect, "/rig/expect.raw")
    .guest_script(
        "set -e\n\
             aplay -l\n\
             arecord -l\n\
             aplay -l | grep -q 'device 0'\n\
             arecord -l | grep -q 'device 0'\n\
             echo MARK start $(cut -d' ' -f1 /proc/uptime)\n\
             aplay -D hw:0,0 --period-size=960 --buffer-size=7680 /rig/two-seconds.wav\n\
             echo MARK end $(cut -d' ' -f1 /proc/uptime)\n\
             echo MARK rec-start $(cut -d' ' -f1 /proc/uptime)\n\
             arecord -D hw:0,0 -f S16_LE -r 48000 -c 2 --period-size=960 --buffer-size=7680 \
               -s 48000 /tmp/cap.wav\n\
             echo MARK rec-end $(cut -d' ' -f1 /proc/uptime)\n\
             tail -c +45 /tmp/cap.wav > /tmp/cap.raw\n\
             cmp /tmp/cap.raw /rig/expect.raw\n\
             echo CAPTURE-MATCHES\n",
    )
    .timeout(Duration::from_secs(120))
    .run()
    .expect("scenario could not start");
    result.assert_success();
    assert!(
        !result
            .guest_output
            .contains("probe with driver virtio_snd failed"),
        "{}",
        result.report()
    );
    let took = mark(&result, "end") - mark(&result, "start");
    assert!(
        (1.9..4.0).contains(&took),
        "aplay of 2 s took {took:.3} s in the guest\n{}",
        result.report()
    );
    let out = read_file(&result.dir.join("output0.wav")).unwrap();
    assert_eq!(
        (out.channels, out.rate, out.format),
        (2, 48000, SampleFormat::S16)
    );
    assert_eq!(out.data.len(), samples.len(), "{}", result.report());
    assert!(out.data == samples, "the host WAV differs from the guest's");

    assert!(result.guest_output.contains("CAPTURE-MATCHES"));
    let took = mark(&result, "rec-end") - mark(&result, "rec-start");
    assert!(
        (0.9..3.0).contains(&took),
        "1 s of capture took {took:.3} s"
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_sound_controls_amixer_volume_mute_and_six_channels() {
    let files = tempfile::tempdir().unwrap();
    let stereo = files.path().join("stereo.wav");
    let stereo_samples = signal(9600, 2);
    write_wav(&stereo, 2, &stereo_samples);
    let six = files.path().join("six.wav");
    let six_samples = signal(9600, 6);
    write_wav(&six, 6, &six_samples);
    let result = wav_scenario(
        "guest_sound_controls_amixer_volume_mute_and_six_channels",
        &["--controls", "--outputs", "2", "--output-channels", "2,6"],
    )
    .qemu_args(&QEMU_CONTROLS)
    .guest_file(&stereo, "/rig/stereo.wav")
    .guest_file(&six, "/rig/six.wav")
    .guest_script(
        "set -e\n\
             amixer -c 0 controls\n\
             amixer -c 0 sget PCM,0\n\
             amixer -c 0 sset PCM,0 50%\n\
             amixer -c 0 sget PCM,0 | grep -q '\\[50%\\]'\n\
             aplay -D hw:0,0 --period-size=960 --buffer-size=7680 /rig/stereo.wav\n\
             amixer -c 0 sset PCM,0 mute\n\
             amixer -c 0 sget PCM,0 | grep -q '\\[off\\]'\n\
             aplay -D hw:0,0 --period-size=960 --buffer-size=7680 /rig/stereo.wav\n\
             amixer -c 0 sset PCM,0 unmute\n\
             amixer -c 0 sget PCM,0 | grep -q '\\[on\\]'\n\
             aplay -l | grep -q 'device 1'\n\
             aplay -D hw:0,1 --period-size=960 --buffer-size=7680 /rig/six.wav\n\
             echo MIXER-DONE\n",
    )
    .timeout(Duration::from_secs(90))
    .run()
    .expect("scenario could not start");
    result.assert_success();
    assert!(
        result.guest_output.contains("Playback Volume"),
        "{}",
        result.report()
    );

    let halved: Vec<u8> = stereo_samples
        .chunks(2)
        .flat_map(|c| {
            ((i32::from(i16::from_le_bytes([c[0], c[1]])) * 50 / 100) as i16).to_le_bytes()
        })
        .collect();
    // Both sessions had the same parameters, so they share one file: the
    // first at half volume, the second muted.
    let out = read_file(&result.dir.join("output0.wav")).unwrap();
    assert_eq!(out.data.len(), 2 * halved.len(), "{}", result.report());
    assert!(
        out.data[..halved.len()] == halved[..],
        "the host output does not reflect the volume"
    );
    assert!(
        out.data[halved.len()..].iter().all(|&b| b == 0),
        "the host output does not reflect the mute switch"
    );

    let out = read_file(&result.dir.join("output1.wav")).unwrap();
    assert_eq!((out.channels, out.format), (6, SampleFormat::S16));
    assert!(out.data == six_samples, "the 6-channel output differs");
}

/// A machine reset while a stream plays (issue #17): boot 1 starts a long
/// playback and the rig resets the machine through QMP in the middle of it;
/// boot 2's driver plays a short one through the same daemon. The host's
/// WAV holds a prefix of boot 1's samples (nothing after the reset, nothing
/// replayed) and then exactly boot 2's.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_sound_plays_after_a_machine_reset_mid_stream() {
    let files = tempfile::tempdir().unwrap();
    let long = files.path().join("long.wav");
    let first = signal(480_000, 2);
    write_wav(&long, 2, &first);
    let short = files.path().join("short.wav");
    // Another signal: the first's samples, reversed.
    let second: Vec<u8> = signal(24_000, 2)
        .chunks(2)
        .rev()
        .flat_map(|c| c.to_vec())
        .collect();
    write_wav(&short, 2, &second);
    let result = wav_scenario("guest_sound_plays_after_a_machine_reset_mid_stream", &[])
        .qemu_args(&QEMU_DEFAULT)
        .guest_file(&long, "/rig/long.wav")
        .guest_file(&short, "/rig/short.wav")
        .resets(1)
        .guest_script(
            "set -e\n\
             aplay -l | grep -q 'device 0'\n\
             if [ \"$RIG_BOOT\" = 1 ]; then\n\
                 aplay -D hw:0,0 --period-size=960 --buffer-size=7680 /rig/long.wav &\n\
                 n=0\n\
                 until grep -q 'state: RUNNING' /proc/asound/card0/pcm0p/sub0/status 2>/dev/null; do\n\
                     n=$((n + 1)); [ $n -lt 200 ] || { echo 'aplay never ran'; exit 1; }\n\
                     sleep 0.05\n\
                 done\n\
                 sleep 1\n\
                 grep -E 'state|hw_ptr' /proc/asound/card0/pcm0p/sub0/status\n\
                 echo BOOT-1-PLAYING\n\
                 rig_reset\n\
             fi\n\
             aplay -D hw:0,0 --period-size=960 --buffer-size=7680 /rig/short.wav\n\
             echo BOOT-2-PLAYED\n",
        )
        .timeout(Duration::from_secs(240))
        .run()
        .expect("scenario could not start");
    result.assert_success();
    let out = &result.guest_output;
    assert!(out.contains("BOOT-1-PLAYING"), "{}", result.report());
    assert!(out.contains("BOOT-2-PLAYED"), "{}", result.report());
    let wav = read_file(&result.dir.join("output0.wav")).unwrap();
    assert_eq!((wav.channels, wav.format), (2, SampleFormat::S16));
    let data = &wav.data;
    assert!(data.len() >= second.len(), "{}", result.report());
    let (before, after) = data.split_at(data.len() - second.len());
    assert!(
        after == second,
        "boot 2's playback is not at the end of the WAV"
    );
    assert_eq!(before.len() % 4, 0, "a partial frame from boot 1");
    assert!(
        before.len() < first.len() && before == &first[..before.len()],
        "the WAV's first {} bytes are not a prefix of boot 1's playback",
        before.len()
    );
    eprintln!(
        "boot 1 played {} of {} frames before the reset",
        before.len() / 4,
        first.len() / 4
    );
}
