// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vhost-device-sound`: parses the flags and serves the device.

use std::process::ExitCode;

use vhost_device_common::{cli, daemon, VirtioDevice};
use vhost_device_sound::args::SoundArgs;
use vhost_device_sound::SoundDevice;

fn main() -> ExitCode {
    cli::run::<SoundArgs>(|args| {
        let config = args.sound_config()?;
        if config.controls {
            // The one setting QEMU must match by hand: its default config
            // space is too short for `controls`, yet it passes F_CTLS on.
            log::info!("offering VIRTIO_SND_F_CTLS: QEMU needs vhost-user-snd-pci,...,controls=on");
        }
        let backend = args.backend_spec()?;
        let several = args.socket.socket_count > 1;
        let policy = backend.sandbox_policy(SoundDevice::seccomp_policy());
        daemon::serve_with("vhost-device-sound", &args.socket, &policy, move |guest| {
            let backend = backend.build(several.then_some(guest))?;
            Ok(SoundDevice::new(config.clone(), backend))
        })?;
        Ok(())
    })
}
