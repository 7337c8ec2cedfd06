// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! H:4 packets: decoding one from a guest buffer, and re-framing a byte
//! stream into packets.
//!
//! Every virtio buffer holds exactly one H:4 packet (`virtbt_tx_packet`
//! pushes the indicator byte in front of the HCI packet and sends it as one
//! descriptor; `virtbt_rx_handle` takes one packet per buffer). A byte
//! stream (a UART, `btvirt -s`, Rootcanal's TCP port) carries the same
//! packets back to back, so its boundaries come from the headers alone.

use std::collections::VecDeque;

use vm_memory::ByteValued;

use crate::error::{Error, Result};
use crate::protocol::{
    hci_acl_hdr, hci_command_hdr, hci_event_hdr, hci_iso_hdr, hci_sco_hdr, HCI_ACLDATA_PKT,
    HCI_COMMAND_PKT, HCI_EVENT_PKT, HCI_ISODATA_PKT, HCI_SCODATA_PKT, ISO_DLEN_MASK,
};

/// The kinds of H:4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// HCI command (host to controller).
    Command,
    /// ACL data (both ways).
    Acl,
    /// SCO data (both ways).
    Sco,
    /// HCI event (controller to host).
    Event,
    /// ISO data (both ways).
    Iso,
}

impl Kind {
    /// The kind an indicator byte names.
    pub fn from_indicator(byte: u8) -> Option<Self> {
        match byte {
            HCI_COMMAND_PKT => Some(Kind::Command),
            HCI_ACLDATA_PKT => Some(Kind::Acl),
            HCI_SCODATA_PKT => Some(Kind::Sco),
            HCI_EVENT_PKT => Some(Kind::Event),
            HCI_ISODATA_PKT => Some(Kind::Iso),
            _ => None,
        }
    }

    /// The indicator byte.
    pub fn indicator(self) -> u8 {
        match self {
            Kind::Command => HCI_COMMAND_PKT,
            Kind::Acl => HCI_ACLDATA_PKT,
            Kind::Sco => HCI_SCODATA_PKT,
            Kind::Event => HCI_EVENT_PKT,
            Kind::Iso => HCI_ISODATA_PKT,
        }
    }

    /// Length of the HCI header after the indicator.
    pub fn header_len(self) -> usize {
        match self {
            Kind::Command => std::mem::size_of::<hci_command_hdr>(),
            Kind::Acl => std::mem::size_of::<hci_acl_hdr>(),
            Kind::Sco => std::mem::size_of::<hci_sco_hdr>(),
            Kind::Event => std::mem::size_of::<hci_event_hdr>(),
            Kind::Iso => std::mem::size_of::<hci_iso_hdr>(),
        }
    }

    /// The payload length a complete header announces.
    fn payload_len(self, header: &[u8]) -> Option<usize> {
        Some(match self {
            Kind::Command => usize::from(read::<hci_command_hdr>(header)?.plen),
            Kind::Acl => usize::from(read::<hci_acl_hdr>(header)?.dlen.to_native()),
            Kind::Sco => usize::from(read::<hci_sco_hdr>(header)?.dlen),
            Kind::Event => usize::from(read::<hci_event_hdr>(header)?.plen),
            Kind::Iso => usize::from(read::<hci_iso_hdr>(header)?.dlen.to_native() & ISO_DLEN_MASK),
        })
    }
}

/// A header struct from the start of `bytes`.
fn read<T: ByteValued>(bytes: &[u8]) -> Option<T> {
    T::from_slice(bytes.get(..std::mem::size_of::<T>())?).copied()
}

/// The largest H:4 packet: an indicator, an ACL header and 65535 bytes.
pub const MAX_PACKET: usize = 1 + 4 + 0xffff;

/// One whole H:4 packet, indicator byte first, checked against its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    kind: Kind,
    bytes: Vec<u8>,
}

impl Packet {
    /// Checks `bytes` as one complete packet: a known indicator, a whole
    /// header, and exactly the payload the header announces.
    pub fn decode(bytes: Vec<u8>) -> Result<Self> {
        let first = *bytes.first().ok_or(Error::Malformed("empty buffer"))?;
        let kind = Kind::from_indicator(first).ok_or(Error::UnknownIndicator(first))?;
        let header = bytes
            .get(1..1 + kind.header_len())
            .ok_or(Error::Malformed("shorter than its header"))?;
        let payload = kind
            .payload_len(header)
            .ok_or(Error::Malformed("shorter than its header"))?;
        let expected = 1 + kind.header_len() + payload;
        if bytes.len() != expected {
            return Err(Error::LengthMismatch {
                kind,
                header: expected,
                actual: bytes.len(),
            });
        }
        Ok(Packet { kind, bytes })
    }

    /// Checks a packet from the guest: also refuses events, which only a
    /// controller sends.
    pub fn from_guest(bytes: Vec<u8>) -> Result<Self> {
        let packet = Self::decode(bytes)?;
        if packet.kind == Kind::Event {
            return Err(Error::WrongDirection(Kind::Event));
        }
        Ok(packet)
    }

    /// Checks a packet from a controller: also refuses commands.
    pub fn from_controller(bytes: Vec<u8>) -> Result<Self> {
        let packet = Self::decode(bytes)?;
        if packet.kind == Kind::Command {
            return Err(Error::WrongDirection(Kind::Command));
        }
        Ok(packet)
    }

    /// An event with these parameters.
    pub fn event(code: u8, params: &[u8]) -> Self {
        Self::event_parts(code, &[params])
    }

    /// An event whose parameters are `parts` one after the other, built in
    /// one allocation (replies are on every command's path). Parameters
    /// past 255 bytes are cut.
    pub fn event_parts(code: u8, parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum::<usize>().min(255);
        let mut bytes = Vec::with_capacity(3 + len);
        bytes.extend([Kind::Event.indicator(), code, len as u8]);
        for part in parts {
            let room = 3 + len - bytes.len();
            bytes.extend(part.iter().take(room));
        }
        Packet {
            kind: Kind::Event,
            bytes,
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The whole packet, indicator first.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The packet without its indicator.
    pub fn hci(&self) -> &[u8] {
        self.bytes.get(1..).unwrap_or_default()
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        self.bytes
            .get(1 + self.kind.header_len()..)
            .unwrap_or_default()
    }

    /// A command's opcode, for commands.
    pub fn opcode(&self) -> Option<u16> {
        match self.kind {
            Kind::Command => Some(read::<hci_command_hdr>(self.hci())?.opcode.to_native()),
            _ => None,
        }
    }

    /// Consumes the packet into its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Re-frames a byte stream into packets.
///
/// It holds at most one partial packet. A byte that is not a known
/// indicator where a packet should start cannot be resynchronised from (H:4
/// has no sync pattern), so it is reported and the framer starts over at
/// the next byte, as BlueZ's `btproxy` does.
#[derive(Debug, Default)]
pub struct Framer {
    partial: Vec<u8>,
    /// Whether the stream runs from a controller (events allowed) or to one.
    from_controller: bool,
}

impl Framer {
    /// A framer for the packets a controller sends.
    pub fn from_controller() -> Self {
        Framer {
            partial: Vec::new(),
            from_controller: true,
        }
    }

    /// A framer for packets a host sends.
    pub fn from_host() -> Self {
        Framer::default()
    }

    /// Bytes of an incomplete packet held.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Forgets any partial packet (the stream was reconnected).
    pub fn clear(&mut self) {
        self.partial.clear();
    }

    /// Feeds bytes; whole packets (or the errors of bad ones) go to `out`
    /// in stream order.
    pub fn push(&mut self, mut data: &[u8], out: &mut VecDeque<Result<Packet>>) {
        while let Some((&first, rest)) = data.split_first() {
            if self.partial.is_empty() && Kind::from_indicator(first).is_none() {
                out.push_back(Err(Error::UnknownIndicator(first)));
                data = rest;
                continue;
            }
            let need = self.needed();
            let take = need.min(data.len());
            let (head, tail) = data.split_at(take);
            self.partial.extend_from_slice(head);
            data = tail;
            if self.needed() == 0 {
                let bytes = std::mem::take(&mut self.partial);
                out.push_back(if self.from_controller {
                    Packet::from_controller(bytes)
                } else {
                    Packet::from_guest(bytes)
                });
            }
        }
    }

    /// Bytes still missing from the partial packet (at least one while
    /// its header is incomplete).
    fn needed(&self) -> usize {
        let Some(kind) = self.partial.first().copied().and_then(Kind::from_indicator) else {
            return 1;
        };
        let header_end = 1 + kind.header_len();
        match self.partial.get(1..header_end) {
            Some(header) => {
                let total = header_end + kind.payload_len(header).unwrap_or(0);
                total.saturating_sub(self.partial.len())
            }
            None => header_end - self.partial.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn each_kind_is_checked_against_its_header() {
        let good: [&[u8]; 5] = [
            &[1, 0x03, 0x0c, 0],
            &[2, 0x01, 0x20, 2, 0, 0xaa, 0xbb],
            &[3, 0x01, 0x00, 1, 0xcc],
            &[4, 0x0e, 1, 0x01],
            &[5, 0x01, 0x00, 1, 0xc0, 0xdd],
        ];
        for bytes in good {
            let p = Packet::decode(bytes.to_vec()).unwrap();
            assert_eq!(p.bytes(), bytes);
        }
        assert_eq!(
            Packet::decode(good[0].to_vec()).unwrap().opcode(),
            Some(0x0c03)
        );
        // ISO length is 14 bits: 0xc001 announces one byte.
        assert_eq!(Packet::decode(good[4].to_vec()).unwrap().payload(), [0xdd]);
    }

    #[test]
    fn events_are_built_whole_and_capped() {
        let e = Packet::event_parts(0x0e, &[&[1], &[3, 0x0c], &[0]]);
        assert_eq!(e.bytes(), [4, 0x0e, 4, 1, 3, 0x0c, 0]);
        let long = vec![7u8; 300];
        let e = Packet::event_parts(0x0e, &[&[1], &long]);
        assert_eq!(e.bytes().len(), 258);
        Packet::decode(e.into_bytes()).unwrap();
    }

    #[test]
    fn malformed_packets_are_refused() {
        for bytes in [
            &[][..],
            &[0x00, 1, 2, 3],
            &[0x06, 1, 2, 3],
            &[1, 0x03],
            &[1, 0x03, 0x0c, 1],
            &[1, 0x03, 0x0c, 0, 9],
            &[2, 0x01, 0x00, 5, 0, 1],
        ] {
            assert!(Packet::decode(bytes.to_vec()).is_err(), "{bytes:?}");
        }
        assert!(matches!(
            Packet::from_guest(vec![4, 0x0e, 0]),
            Err(Error::WrongDirection(Kind::Event))
        ));
        assert!(matches!(
            Packet::from_controller(vec![1, 3, 0x0c, 0]),
            Err(Error::WrongDirection(Kind::Command))
        ));
    }

    #[test]
    fn a_stream_is_reframed_one_byte_at_a_time() {
        let stream: Vec<u8> = [
            &[4, 0x0e, 4, 1, 0x03, 0x0c, 0][..],
            &[2, 0x01, 0x20, 3, 0, 7, 8, 9],
            &[4, 0x05, 0],
        ]
        .concat();
        let mut framer = Framer::from_controller();
        let mut out = VecDeque::new();
        for b in &stream {
            framer.push(std::slice::from_ref(b), &mut out);
        }
        let packets: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[1].kind(), Kind::Acl);
        assert_eq!(packets[1].payload(), [7, 8, 9]);
        assert_eq!(packets[2].bytes(), [4, 0x05, 0]);
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn garbage_between_packets_is_reported_and_skipped() {
        let mut framer = Framer::from_controller();
        let mut out = VecDeque::new();
        framer.push(&[0xff, 4, 0x0e, 0, 0x00, 4, 1], &mut out);
        let kinds: Vec<_> = out.iter().map(Result::is_ok).collect();
        assert_eq!(kinds, [false, true, false]);
        assert_eq!(framer.pending(), 2);
        framer.clear();
        assert_eq!(framer.pending(), 0);
    }
}
