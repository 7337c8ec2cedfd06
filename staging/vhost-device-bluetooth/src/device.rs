// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio device: TX buffers are decoded into packets and handed to the
//! backend; packets from the backend fill RX buffers one each.

use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queues, RateLimited, VirtioDevice,
};
use vm_memory::{ByteValued, Le16};

use crate::backend::HciBackend;
use crate::error::{Error, Result};
use crate::packet::{Packet, INLINE, MAX_PACKET};
use crate::protocol::{
    virtio_bt_config, virtio_bt_config_v2, NUM_QUEUES, RX_QUEUE, TX_QUEUE,
    VIRTIO_BT_CONFIG_TYPE_PRIMARY, VIRTIO_BT_F_AOSP_EXT, VIRTIO_BT_F_CONFIG_V2,
    VIRTIO_BT_F_MSFT_EXT, VIRTIO_BT_F_VND_HCI,
};
use crate::rx::Rx;

/// Largest queue the device accepts.
const QUEUE_SIZE: u16 = 256;
/// The config space QEMU's generic device asks for (`config_size=6`): the
/// v2 layout, or the packed v1 layout and a zero byte.
const CONFIG_SIZE: usize = 6;

/// The optional vendor features, offered only when asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vendor {
    /// `VIRTIO_BT_F_VND_HCI` with this `vendor` value.
    pub vendor: Option<u16>,
    /// `VIRTIO_BT_F_MSFT_EXT` with this opcode.
    pub msft_opcode: Option<u16>,
    /// `VIRTIO_BT_F_AOSP_EXT`.
    pub aosp: bool,
}

impl Vendor {
    /// The feature bits these offer, with CONFIG_V2 always.
    pub fn features(&self) -> u64 {
        let mut f = VIRTIO_BT_F_CONFIG_V2;
        if self.vendor.is_some() {
            f |= VIRTIO_BT_F_VND_HCI;
        }
        if self.msft_opcode.is_some() {
            f |= VIRTIO_BT_F_MSFT_EXT;
        }
        if self.aosp {
            f |= VIRTIO_BT_F_AOSP_EXT;
        }
        f
    }

    /// The config space in the layout `v2` selects.
    pub fn config(&self, v2: bool) -> [u8; CONFIG_SIZE] {
        let vendor = Le16::from(self.vendor.unwrap_or(0));
        let msft_opcode = Le16::from(self.msft_opcode.unwrap_or(0));
        let mut out = [0; CONFIG_SIZE];
        let bytes = if v2 {
            virtio_bt_config_v2 {
                type_: VIRTIO_BT_CONFIG_TYPE_PRIMARY,
                alignment: 0,
                vendor,
                msft_opcode,
            }
            .as_slice()
            .to_vec()
        } else {
            virtio_bt_config {
                type_: VIRTIO_BT_CONFIG_TYPE_PRIMARY,
                vendor,
                msft_opcode,
            }
            .as_slice()
            .to_vec()
        };
        for (dst, src) in out.iter_mut().zip(bytes) {
            *dst = src;
        }
        out
    }
}

/// One guest's Bluetooth device.
#[derive(Debug)]
pub struct BtDevice {
    backend: Box<dyn HciBackend>,
    vendor: Vendor,
    config: [u8; CONFIG_SIZE],
    rx: Rx,
    log: RateLimited,
}

impl BtDevice {
    /// A device over `backend`, holding up to `backlog` packets for the
    /// guest.
    pub fn new(backend: Box<dyn HciBackend>, vendor: Vendor, backlog: usize) -> Self {
        BtDevice {
            backend,
            vendor,
            config: vendor.config(false),
            rx: Rx::new(backlog),
            log: RateLimited::default(),
        }
    }

    /// The RX side, for tests.
    pub fn rx(&self) -> &Rx {
        &self.rx
    }

    /// One TX buffer: a packet for the controller. Returns the used length
    /// (0: the driver only frees the buffer).
    pub fn handle_tx(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        if let Err(e) = self.tx(chain, mem) {
            self.log.warn(|| format!("TX packet dropped: {e}"));
        }
        0
    }

    fn tx(&mut self, chain: &DescChain, mem: &GuestMem) -> Result<()> {
        if !chain.writable().is_empty() {
            return Err(Error::Buffer("TX buffer with a writable part"));
        }
        let mut reader = chain.reader(mem);
        if reader.available() > MAX_PACKET {
            return Err(Error::Buffer("TX buffer larger than any H:4 packet"));
        }
        let unreadable = |_| Error::Buffer("TX buffer not readable");
        // Commands (and SCO) fit on the stack: no allocation on their way.
        let mut small = [0; INLINE];
        let packet = match small.get_mut(..reader.available()) {
            Some(bytes) => {
                reader.read_exact(bytes).map_err(unreadable)?;
                Packet::from_guest(bytes)?
            }
            None => Packet::from_guest_vec(reader.read_to_vec(MAX_PACKET).map_err(unreadable)?)?,
        };
        self.backend.send(packet, &mut self.rx)
    }

    /// One RX buffer posted: held until a packet fills it.
    pub fn handle_rx_buffer(&mut self, chain: DescChain) -> Option<u32> {
        self.rx.post(chain)
    }

    /// A backend fd is ready.
    pub fn handle_backend_event(&mut self, token: u16) {
        if let Err(e) = self.backend.ready(token, &mut self.rx) {
            log::warn!("controller: {e}");
        }
    }

    /// Fills RX buffers and completes them; lets a waiting backend go on.
    fn flush_rx(&mut self, queues: &mut Queues<'_>) {
        for _ in 0..2 {
            self.fill_rx(queues);
            if !self.rx.take_resume() {
                return;
            }
            if let Err(e) = self.backend.resume(&mut self.rx) {
                log::warn!("controller: {e}");
            }
        }
    }

    /// Puts waiting packets into RX buffers. The device asks for RX kicks
    /// only while packets wait for buffers; otherwise it takes the buffers
    /// the driver re-posted straight from the ring once it has a packet for
    /// them. A command's round trip then costs the driver no RX kick and
    /// this thread no wake-up and eventfd read for it (Linux re-posts its
    /// one RX buffer after every packet).
    fn fill_rx(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(RX_QUEUE) else {
            return;
        };
        loop {
            while self.rx.backlog() > self.rx.held() {
                let Some(chain) = queue.pop() else { break };
                let head = chain.head();
                if let Some(len) = self.rx.post(chain) {
                    queue.complete(head, len);
                }
            }
            self.rx.deliver(queue.memory());
            if self.rx.has_done() {
                queue.complete_all(self.rx.take_done());
            }
            if self.rx.backlog() == 0 {
                queue.set_kicks(false);
                return;
            }
            // Packets wait: a kick must say when a buffer comes, unless
            // one came meanwhile.
            if !queue.set_kicks(true) {
                return;
            }
        }
    }
}

impl VirtioDevice for BtDevice {
    /// Stream backends connect to a Unix or TCP socket, and the HCI user
    /// channel binds an AF_BLUETOOTH socket, per connection.
    fn seccomp_policy() -> vhost_device_common::SeccompPolicy {
        vhost_device_common::SeccompPolicy {
            extra: &[libc::SYS_socket, libc::SYS_connect, libc::SYS_bind],
            ..Default::default()
        }
    }

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> u16 {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        self.vendor.features()
    }

    fn set_acked_features(&mut self, features: u64) {
        self.config = self.vendor.config(features & VIRTIO_BT_F_CONFIG_V2 != 0);
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        self.backend.activate(events)?;
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        match index {
            TX_QUEUE => {
                let tx = queues.get(TX_QUEUE).map(|mut queue| {
                    queue.drain(|chain, mem| Some(self.handle_tx(&chain, mem)));
                    queue
                });
                // The replies go out before the TX completions are signalled
                // (when `tx` is dropped): the driver waits for the event,
                // while a TX completion only frees the command's buffer.
                self.flush_rx(queues);
                drop(tx);
            }
            // The buffers stay in the ring until a packet needs one (see
            // fill_rx): draining would re-arm the kick for every re-post.
            RX_QUEUE => self.flush_rx(queues),
            _ => {}
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        self.handle_backend_event(token);
        self.flush_rx(queues);
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        if index == RX_QUEUE {
            self.rx.forget_buffers();
        }
    }

    fn reset(&mut self) {
        self.rx.clear();
        self.backend.reset();
        self.config = self.vendor.config(false);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use vhost_device_common::mock::ChainBuilder;

    use super::*;
    use crate::backend::builtin::radio::Radio;
    use crate::backend::builtin::{Builtin, Identity};

    fn device(vendor: Vendor) -> BtDevice {
        let identity = Identity {
            addr: [1, 2, 3, 4, 5, 6],
            name: "t".into(),
        };
        BtDevice::new(
            Box::new(Builtin::new(&Radio::new(), identity).unwrap()),
            vendor,
            4,
        )
    }

    #[test]
    fn config_v1_and_v2() {
        let vendor = Vendor {
            vendor: Some(2),
            msft_opcode: Some(0xfd70),
            aosp: true,
        };
        let mut d = device(vendor);
        assert_eq!(d.features(), 0b1111);
        assert_eq!(d.config(), [0, 2, 0, 0x70, 0xfd, 0]);
        d.set_acked_features(VIRTIO_BT_F_CONFIG_V2);
        assert_eq!(d.config(), [0, 0, 2, 0, 0x70, 0xfd]);
        d.reset();
        assert_eq!(d.config()[1], 2);
        let plain = device(Vendor::default());
        assert_eq!(plain.features(), VIRTIO_BT_F_CONFIG_V2);
        assert_eq!(plain.config(), [0; 6]);
    }

    #[test]
    fn tx_packets_are_checked_and_answered() {
        let mut b = ChainBuilder::new();
        let mut d = device(Vendor::default());
        // Read BD_ADDR: one reply waits in the backlog.
        let chain = b.push_readable(&[1, 0x09, 0x10, 0]).chain().unwrap();
        assert_eq!(d.handle_tx(&chain, b.memory()), 0);
        assert_eq!(d.rx().backlog(), 1);
        // Malformed ones are dropped without a reply.
        for bad in [&[1, 0x09, 0x10, 1][..], &[4, 0x0e, 0], &[9], &[]] {
            let chain = b.push_readable(bad).chain().unwrap();
            assert_eq!(d.handle_tx(&chain, b.memory()), 0);
        }
        let chain = b
            .push_readable(&[1, 3, 0x0c, 0])
            .push_writable(4)
            .chain()
            .unwrap();
        d.handle_tx(&chain, b.memory());
        assert_eq!(d.rx().backlog(), 1);
        // The RX buffer gets the reply.
        let rx = b.push_writable(1000).chain().unwrap();
        assert_eq!(d.handle_rx_buffer(rx), None);
        d.rx.deliver(b.memory());
        let done: Vec<_> = d.rx.take_done().collect();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].1, 3 + 4 + 6);
    }
}
