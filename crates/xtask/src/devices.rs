// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Every device binary of the workspace, with what packaging needs to know
//! about it beyond its clap definition.

use clap::{Command, CommandFactory};

/// One device binary.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    /// The binary's (and its package's) name.
    pub binary: &'static str,
    /// Its clap definition.
    pub command: fn() -> Command,
    /// One line for the man page's NAME and the descriptor's description.
    pub summary: &'static str,
    /// Example invocations: the daemon, then the QEMU options that use it.
    pub daemon_example: &'static str,
    pub qemu_example: &'static str,
    /// Device flags that serve a guest on host-free backends, for the
    /// systemd test (`VHOST_DEVICE_ARGS` in the unit's environment file).
    pub service_args: &'static [&'static str],
}

/// QEMU's options for a vhost-user device at `/tmp/<name>.sock`, where
/// `device` is the `-device` value after `chardev=...`.
macro_rules! qemu {
    ($id:literal, $device:literal) => {
        concat!(
            "qemu-system-x86_64 -machine q35,memory-backend=mem -m 1G \\\n",
            "    -object memory-backend-memfd,id=mem,size=1G,share=on \\\n",
            "    -chardev socket,id=",
            $id,
            ",path=/tmp/",
            $id,
            ".sock \\\n",
            "    -device ",
            $device,
            " ..."
        )
    };
}

/// The seven device binaries.
pub const DEVICES: &[Device] = &[
    Device {
        binary: "vhost-device-i2c",
        command: vhost_device_i2c::Args::command,
        summary: "vhost-user virtio-i2c backend",
        daemon_example: "vhost-device-i2c --socket-path /tmp/i2c.sock --device-list sim:0x50=eeprom:256,sim:0x48=lm75",
        qemu_example: qemu!("i2c", "vhost-user-i2c-pci,chardev=i2c"),
        service_args: &["--device-list", "sim:0x50=eeprom:256"],
    },
    Device {
        binary: "vhost-device-gpio",
        command: vhost_device_gpio::args::Args::command,
        summary: "vhost-user virtio-gpio backend",
        daemon_example: "vhost-device-gpio --socket-path /tmp/gpio.sock --device-list s8 --sim-control /tmp/gpio.ctl",
        qemu_example: qemu!("gpio", "vhost-user-gpio-pci,chardev=gpio"),
        service_args: &["--device-list", "s8"],
    },
    Device {
        binary: "vhost-device-sound",
        command: vhost_device_sound::args::SoundArgs::command,
        summary: "vhost-user virtio-snd backend",
        daemon_example: "vhost-device-sound --socket-path /tmp/snd.sock --backend null",
        qemu_example: qemu!("snd", "vhost-user-snd-pci,chardev=snd"),
        service_args: &["--backend", "null"],
    },
    Device {
        binary: "vhost-device-gpu",
        command: vhost_device_gpu::Args::command,
        summary: "vhost-user virtio-gpu backend",
        daemon_example: "vhost-device-gpu --socket-path /tmp/gpu.sock",
        qemu_example: qemu!("gpu", "vhost-user-gpu-pci,chardev=gpu"),
        service_args: &["--headless"],
    },
    Device {
        binary: "vhost-device-can",
        command: vhost_device_can::args::Args::command,
        summary: "vhost-user virtio-can backend",
        daemon_example: "vhost-device-can --socket-path /tmp/can.sock",
        qemu_example: qemu!(
            "can",
            "vhost-user-test-device-pci,chardev=can,virtio-id=36,num_vqs=3,config_size=2"
        ),
        service_args: &[],
    },
    Device {
        binary: "vhost-device-rpmsg",
        command: vhost_device_rpmsg::args::Args::command,
        summary: "vhost-user virtio-rpmsg backend",
        daemon_example: "vhost-device-rpmsg --socket-path /tmp/rpmsg.sock --channel name=rpmsg-tty,addr=0x400,socket=/tmp/rpmsg-tty.sock",
        qemu_example: qemu!(
            "rpmsg",
            "vhost-user-test-device-pci,chardev=rpmsg,virtio-id=7,num_vqs=2"
        ),
        service_args: &[],
    },
    Device {
        binary: "vhost-device-bluetooth",
        command: vhost_device_bluetooth::args::Args::command,
        summary: "vhost-user virtio-bluetooth backend",
        daemon_example: "vhost-device-bluetooth --socket-path /tmp/bt.sock",
        qemu_example: qemu!(
            "bt",
            "vhost-user-test-device-pci,chardev=bt,virtio-id=40,num_vqs=2,config_size=6"
        ),
        service_args: &[],
    },
];

/// The device whose binary is `name`.
pub fn by_binary(name: &str) -> Option<&'static Device> {
    DEVICES.iter().find(|d| d.binary == name)
}
