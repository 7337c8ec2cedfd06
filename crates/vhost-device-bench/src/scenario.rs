// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The scenarios: which daemon they start by default, what they set up on
//! the device, and the requests they send.
//!
//! Requests are built from the virtio spec's wire formats here, not from
//! our device crates, so that a scenario drives any implementation of the
//! device (ours or upstream's) the same way.

use std::time::Duration;

use clap::ValueEnum;
use vhost_device_common::testing::{FrontendOptions, TestFrontend};

use crate::driver::{Template, LEAN_AREA};
use crate::error::{Error, Result};

/// The named scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Only the eventfd floor, no daemon.
    Floor,
    /// The core's echo test device: pure daemon overhead.
    Echo,
    /// virtio-gpio GET_VALUE on line 0 of a simulated chip.
    GpioGet,
    /// virtio-i2c: a 1-byte read from a simulated EEPROM at 0x50.
    I2cRead,
    /// virtio-gpu 2D: TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of a 1920x1080
    /// resource, in MB/s, with a memcpy of the same bytes beside it.
    #[value(name = "gpu-2d")]
    Gpu2d,
    /// virtio-gpu virgl 3D: a SUBMIT_3D that clears a 256x256 render
    /// target, then TRANSFER_FROM_HOST_3D of it into guest memory, on the
    /// daemon's real virglrenderer (a `virgl_renderer` build, see the gpu
    /// README).
    #[value(name = "gpu-virgl")]
    GpuVirgl,
    /// virtio-gpu virgl 3D display path: a page flip between two 1280x800
    /// render targets (SET_SCANOUT, then RESOURCE_FLUSH of the whole
    /// picture), with a display socket attached that takes the frames as
    /// QEMU's vhost-user-gpu does (see crate::virgl).
    #[value(name = "gpu-virgl-scanout")]
    GpuVirglScanout,
    /// virtio-snd: a 48 kHz stereo S16 stream on the null backend.
    SoundNull,
    /// virtio-can: one classic 8-byte frame sent on the daemon's virtual
    /// bus, after a START; the TX result must be OK.
    CanTx,
    /// Only the memcpy baseline of gpu-2d, no daemon.
    Memcpy,
    /// virtio-rpmsg: a 16-byte message out on TX to a host program on the
    /// channel socket, and its echo back in an RX buffer.
    Rpmsg,
    /// virtio-bluetooth: HCI Read BD_ADDR round trips, the command on the
    /// tx queue and its Command Complete on the rx queue (see crate::bt).
    Bt,
}

/// A daemon of ours and the arguments a scenario wants it started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Name for `--device`.
    pub name: &'static str,
    /// Binary name.
    pub binary: &'static str,
    /// Arguments besides the socket.
    pub args: &'static [&'static str],
}

/// The built-in table of `--device` names.
pub const DEVICES: &[DeviceSpec] = &[
    DeviceSpec {
        name: "echo",
        binary: "vhost-device-echo",
        args: &[],
    },
    DeviceSpec {
        name: "gpio",
        binary: "vhost-device-gpio",
        args: &["--device-list", "s8"],
    },
    DeviceSpec {
        name: "i2c",
        binary: "vhost-device-i2c",
        args: &["--device-list", "sim:0x50=eeprom:256"],
    },
    DeviceSpec {
        name: "gpu",
        binary: "vhost-device-gpu",
        args: &["--headless", "--resolution", "1920x1080"],
    },
    DeviceSpec {
        name: "gpu-virgl",
        binary: "vhost-device-gpu",
        args: &["--headless", "--gpu-mode", "virgl"],
    },
    DeviceSpec {
        name: "gpu-virgl-display",
        binary: "vhost-device-gpu",
        args: &["--gpu-mode", "virgl"],
    },
    DeviceSpec {
        name: "bt",
        binary: "vhost-device-bluetooth",
        args: &[],
    },
    DeviceSpec {
        name: "can",
        binary: "vhost-device-can",
        args: &[],
    },
    DeviceSpec {
        name: "sound",
        binary: "vhost-device-sound",
        args: &["--backend", "null", "--outputs", "1", "--inputs", "0"],
    },
    DeviceSpec {
        name: "rpmsg",
        binary: "vhost-device-rpmsg",
        // The channel socket sits beside the vhost-user socket, where
        // crate::rpmsg::peer_path looks for it.
        args: &[
            "--socket-path",
            "{socket}",
            "--channel",
            "name=rpmsg-raw,addr=0x401,socket={socket}.peer",
        ],
    },
];

/// Looks up a `--device` name.
pub fn device_spec(name: &str) -> Option<&'static DeviceSpec> {
    DEVICES.iter().find(|d| d.name == name)
}

/// GPU frame: 1920x1080, 4 bytes a pixel.
pub const GPU_WIDTH: u32 = 1920;
/// GPU frame height.
pub const GPU_HEIGHT: u32 = 1080;
/// Bytes of one full-frame transfer.
pub const GPU_FRAME_BYTES: u64 = GPU_WIDTH as u64 * GPU_HEIGHT as u64 * 4;

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Floor => "floor",
            Scenario::Echo => "echo",
            Scenario::GpioGet => "gpio-get",
            Scenario::I2cRead => "i2c-read",
            Scenario::Gpu2d => "gpu-2d",
            Scenario::GpuVirgl => "gpu-virgl",
            Scenario::GpuVirglScanout => "gpu-virgl-scanout",
            Scenario::SoundNull => "sound-null",
            Scenario::CanTx => "can-tx",
            Scenario::Memcpy => "memcpy",
            Scenario::Rpmsg => "rpmsg",
            Scenario::Bt => "bt",
        }
    }

    /// Whether the scenario drives a daemon.
    pub fn needs_daemon(self) -> bool {
        !matches!(self, Scenario::Floor | Scenario::Memcpy)
    }

    /// The daemon started when neither `--socket-path`, `--spawn` nor
    /// `--device` is given.
    pub fn default_device(self) -> Option<&'static DeviceSpec> {
        let name = match self {
            Scenario::Floor | Scenario::Memcpy => return None,
            Scenario::Echo => "echo",
            Scenario::GpioGet => "gpio",
            Scenario::I2cRead => "i2c",
            Scenario::Gpu2d => "gpu",
            Scenario::GpuVirgl => "gpu-virgl",
            Scenario::GpuVirglScanout => "gpu-virgl-display",
            Scenario::SoundNull => "sound",
            Scenario::Rpmsg => "rpmsg",
            Scenario::Bt => "bt",
            Scenario::CanTx => "can",
        };
        device_spec(name)
    }

    /// How the frontend sets the device up.
    pub fn frontend_options(self) -> FrontendOptions {
        let mut opts = FrontendOptions {
            scratch_size: LEAN_AREA,
            // Benchmarks read only the bytes the device says it wrote.
            zero_writable: false,
            ..FrontendOptions::default()
        };
        if self == Scenario::Gpu2d {
            opts.scratch_size = LEAN_AREA + GPU_FRAME_BYTES.next_multiple_of(4096);
            opts.mem_size = 64 << 20;
        }
        if self == Scenario::GpuVirgl {
            opts.scratch_size = LEAN_AREA + crate::virgl::FRAME_BYTES.next_multiple_of(4096);
        }
        opts
    }
}

/// A request scenario ready to run: the queue it uses and what it sends.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The queue the requests go to.
    pub queue: usize,
    /// The requests, sent in turn.
    pub templates: Vec<Template>,
    /// Payload bytes moved per round of `templates` (gpu-2d), for MB/s.
    pub bytes_per_round: Option<u64>,
}

pub(crate) fn le(fields: &[u32]) -> Vec<u8> {
    fields.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// virtio-gpu control header: type, flags, fence_id (2 words), ctx_id,
/// ring_idx + padding.
pub(crate) fn gpu_cmd(kind: u32, body: &[u32]) -> Vec<u8> {
    let mut v = le(&[kind, 0, 0, 0, 0, 0]);
    v.extend(le(body));
    v
}

const GPU_CMD_RESOURCE_CREATE_2D: u32 = 0x0101;
pub(crate) const GPU_CMD_SET_SCANOUT: u32 = 0x0103;
pub(crate) const GPU_CMD_RESOURCE_FLUSH: u32 = 0x0104;
const GPU_CMD_TRANSFER_TO_HOST_2D: u32 = 0x0105;
pub(crate) const GPU_CMD_RESOURCE_ATTACH_BACKING: u32 = 0x0106;
const GPU_RESP_OK_NODATA: u32 = 0x1100;
const GPU_FORMAT_B8G8R8X8_UNORM: u32 = 2;
const GPU_RESOURCE_ID: u32 = 1;

pub(crate) fn gpu_ok(len: u32, reply: &[u8]) -> bool {
    len >= 24 && u32_at(reply, 0) == Some(GPU_RESP_OK_NODATA)
}

/// `VIRTIO_GPIO_MSG_SET_DIRECTION`.
const GPIO_MSG_SET_DIRECTION: u16 = 0x0003;
/// `VIRTIO_GPIO_MSG_GET_VALUE`.
const GPIO_MSG_GET_VALUE: u16 = 0x0004;
/// `VIRTIO_GPIO_MSG_SET_VALUE`.
const GPIO_MSG_SET_VALUE: u16 = 0x0005;
/// `VIRTIO_GPIO_DIRECTION_OUT`.
const GPIO_DIRECTION_OUT: u32 = 1;

/// A `virtio_gpio_request` for line 0.
fn gpio_request(kind: u16, value: u32) -> Vec<u8> {
    let mut req = kind.to_le_bytes().to_vec();
    req.extend(0u16.to_le_bytes()); // line 0
    req.extend(value.to_le_bytes());
    req
}

/// A gpio request for line 0 whose reply must be status OK.
fn gpio_template(name: &'static str, kind: u16, value: u32) -> Template {
    Template {
        name,
        readable: vec![gpio_request(kind, value)],
        writable: vec![2],
        // status OK, value 0 or 1
        check: |len, reply| {
            len == 2 && reply.first() == Some(&0) && reply.get(1).is_some_and(|&v| v <= 1)
        },
    }
}
/// `VIRTIO_I2C_FLAGS_M_RD`.
const I2C_FLAGS_M_RD: u32 = 1 << 1;
/// The simulated EEPROM's address.
const I2C_EEPROM_ADDR: u16 = 0x50;

/// virtio-can queues, message types and flags (virtio 1.4 draft, "CAN
/// Device").
const CAN_TX_QUEUE: usize = 0;
const CAN_CONTROL_QUEUE: usize = 2;
const CAN_MSG_TX: u16 = 0x0001;
const CAN_SET_CTRL_MODE_START: u16 = 0x0201;

/// A `virtio_can_tx_out` for a classic frame with an 11-bit ID.
fn can_tx(can_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = CAN_MSG_TX.to_le_bytes().to_vec();
    v.extend(u16::try_from(payload.len()).unwrap_or(0).to_le_bytes());
    v.extend([0, 0, 0, 0]); // reserved_classic_dlc, padding, reserved_xl_priority
    v.extend(le(&[0, can_id])); // flags, can_id
    v.extend(payload);
    v
}

/// Sends one request through the test frontend and checks the reply.
pub(crate) fn setup_request(
    fe: &mut TestFrontend,
    scenario: &'static str,
    queue: usize,
    t: &Template,
) -> Result<()> {
    let readable: Vec<&[u8]> = t.readable.iter().map(Vec::as_slice).collect();
    let used = fe
        .queue(queue)
        .map_err(Error::frontend("selecting the queue"))?
        .request(&readable, &t.writable, Duration::from_secs(5))
        .map_err(Error::frontend(format!("{scenario}: {}", t.name)))?;
    t.verify(scenario, used.len, &used.data)
}

/// Sets the device up for `scenario` and returns its requests, after
/// checking that each is answered correctly once. `gpio_drive_first`: see
/// `--gpio-drive-first`.
pub fn prepare(
    scenario: Scenario,
    fe: &mut TestFrontend,
    gpio_drive_first: bool,
) -> Result<Prepared> {
    let name = scenario.name();
    let prepared = match scenario {
        Scenario::Floor | Scenario::Memcpy => {
            return Err(Error::Unsupported(format!("{name} sends no requests")))
        }
        Scenario::SoundNull => {
            return Err(Error::Unsupported(
                "sound-null is a streaming scenario, see crate::sound".into(),
            ))
        }
        Scenario::Rpmsg => {
            return Err(Error::Unsupported(
                "rpmsg drives two queues, see crate::rpmsg".into(),
            ))
        }
        Scenario::Bt => {
            return Err(Error::Unsupported(
                "bt answers on another queue, see crate::bt".into(),
            ))
        }
        Scenario::Echo => Prepared {
            queue: 0,
            templates: vec![Template {
                name: "echo",
                readable: vec![b"bench-echo-01234".to_vec()],
                writable: vec![64],
                // 12-byte header, then the 16 bytes back.
                check: |len, reply| len == 28 && reply.get(12..) == Some(b"bench-echo-01234"),
            }],
            bytes_per_round: None,
        },
        Scenario::GpioGet => {
            if gpio_drive_first {
                for t in [
                    gpio_template("SET_VALUE", GPIO_MSG_SET_VALUE, 0),
                    gpio_template("SET_DIRECTION", GPIO_MSG_SET_DIRECTION, GPIO_DIRECTION_OUT),
                ] {
                    setup_request(fe, name, 0, &t)?;
                }
            }
            Prepared {
                queue: 0,
                templates: vec![gpio_template("GET_VALUE", GPIO_MSG_GET_VALUE, 0)],
                bytes_per_round: None,
            }
        }
        Scenario::I2cRead => {
            let mut hdr = (I2C_EEPROM_ADDR << 1).to_le_bytes().to_vec();
            hdr.extend([0, 0]);
            hdr.extend(I2C_FLAGS_M_RD.to_le_bytes());
            Prepared {
                queue: 0,
                templates: vec![Template {
                    name: "1-byte read",
                    readable: vec![hdr],
                    writable: vec![1, 1],
                    // data byte, then status OK
                    check: |len, reply| len == 2 && reply.get(1) == Some(&0),
                }],
                bytes_per_round: None,
            }
        }
        Scenario::Gpu2d => prepare_gpu(fe)?,
        Scenario::GpuVirgl => crate::virgl::prepare(fe)?,
        Scenario::GpuVirglScanout => crate::virgl::prepare_scanout(fe)?,
        Scenario::CanTx => {
            let start = Template {
                name: "SET_CTRL_MODE_START",
                readable: vec![CAN_SET_CTRL_MODE_START.to_le_bytes().to_vec()],
                writable: vec![1],
                check: |len, reply| len == 1 && reply.first() == Some(&0),
            };
            setup_request(fe, name, CAN_CONTROL_QUEUE, &start)?;
            Prepared {
                queue: CAN_TX_QUEUE,
                templates: vec![Template {
                    name: "TX",
                    readable: vec![can_tx(0x123, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])],
                    writable: vec![1],
                    // result OK
                    check: |len, reply| len == 1 && reply.first() == Some(&0),
                }],
                bytes_per_round: None,
            }
        }
    };
    for t in &prepared.templates {
        setup_request(fe, name, prepared.queue, t)?;
    }
    Ok(prepared)
}

fn prepare_gpu(fe: &mut TestFrontend) -> Result<Prepared> {
    const NAME: &str = "gpu-2d";
    let (w, h) = (GPU_WIDTH, GPU_HEIGHT);
    let (scratch, scratch_len) = fe
        .queue(0)
        .map_err(Error::frontend("selecting the control queue"))?
        .scratch();
    if scratch_len < LEAN_AREA + GPU_FRAME_BYTES {
        return Err(Error::Failed(format!(
            "scratch area of {scratch_len} bytes cannot hold a frame"
        )));
    }
    let backing = scratch + LEAN_AREA;
    // A non-uniform picture, so the copy is not of a page of zeroes.
    let pixels: Vec<u8> = (0..GPU_FRAME_BYTES).map(|i| (i % 251) as u8).collect();
    fe.queue(0)
        .map_err(Error::frontend("selecting the control queue"))?
        .write_guest(backing, &pixels)
        .map_err(Error::frontend("writing the frame"))?;
    let setup = [
        Template {
            name: "RESOURCE_CREATE_2D",
            readable: vec![gpu_cmd(
                GPU_CMD_RESOURCE_CREATE_2D,
                &[GPU_RESOURCE_ID, GPU_FORMAT_B8G8R8X8_UNORM, w, h],
            )],
            writable: vec![24],
            check: gpu_ok,
        },
        Template {
            name: "RESOURCE_ATTACH_BACKING",
            readable: vec![{
                let mut v = gpu_cmd(GPU_CMD_RESOURCE_ATTACH_BACKING, &[GPU_RESOURCE_ID, 1]);
                v.extend(backing.to_le_bytes());
                v.extend(le(&[w * h * 4, 0]));
                v
            }],
            writable: vec![24],
            check: gpu_ok,
        },
        Template {
            name: "SET_SCANOUT",
            readable: vec![gpu_cmd(
                GPU_CMD_SET_SCANOUT,
                &[0, 0, w, h, 0, GPU_RESOURCE_ID],
            )],
            writable: vec![24],
            check: gpu_ok,
        },
    ];
    for t in &setup {
        setup_request(fe, NAME, 0, t)?;
    }
    let transfer = {
        let mut v = gpu_cmd(GPU_CMD_TRANSFER_TO_HOST_2D, &[0, 0, w, h]);
        v.extend(0u64.to_le_bytes()); // offset in the backing
        v.extend(le(&[GPU_RESOURCE_ID, 0]));
        v
    };
    Ok(Prepared {
        queue: 0,
        templates: vec![
            Template {
                name: "TRANSFER_TO_HOST_2D",
                readable: vec![transfer],
                writable: vec![24],
                check: gpu_ok,
            },
            Template {
                name: "RESOURCE_FLUSH",
                readable: vec![gpu_cmd(
                    GPU_CMD_RESOURCE_FLUSH,
                    &[0, 0, w, h, GPU_RESOURCE_ID, 0],
                )],
                writable: vec![24],
                check: gpu_ok,
            },
        ],
        bytes_per_round: Some(GPU_FRAME_BYTES),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_scenario_has_a_device() {
        for s in Scenario::value_variants() {
            assert_eq!(s.needs_daemon(), s.default_device().is_some(), "{s:?}");
            assert_eq!(Scenario::from_str(s.name(), false).unwrap(), *s);
        }
    }

    #[test]
    fn can_tx_has_the_spec_layout() {
        let v = can_tx(0x123, &[1, 2]);
        assert_eq!(v.len(), 16 + 2);
        assert_eq!(v.get(..4), Some(&[1u8, 0, 2, 0][..]));
        assert_eq!(u32_at(&v, 12), Some(0x123));
    }

    #[test]
    fn gpu_commands_have_the_spec_sizes() {
        assert_eq!(gpu_cmd(GPU_CMD_RESOURCE_CREATE_2D, &[1, 2, 3, 4]).len(), 40);
        assert_eq!(gpu_cmd(GPU_CMD_RESOURCE_FLUSH, &[0; 6]).len(), 48);
        assert!(gpu_ok(24, &le(&[GPU_RESP_OK_NODATA, 0])));
        assert!(!gpu_ok(24, &le(&[0x1200, 0])));
        assert!(!gpu_ok(4, &le(&[GPU_RESP_OK_NODATA])));
    }
}
