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

/// Packets up to this size are stored inline: every command and SCO packet
/// (indicator, 3-byte header, up to 255 bytes) and every event (258 at
/// most). A command and its reply then cost no heap allocation; ACL and
/// ISO data usually go to the heap.
pub const INLINE: usize = 1 + 3 + 255;

/// A packet's bytes: inline when they fit, else on the heap.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // inline on purpose: a box is an allocation
enum Bytes {
    Inline { len: u16, buf: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Bytes {
    /// A copy of `data`, inline if it fits.
    fn copy_of(data: &[u8]) -> Self {
        let mut buf = [0; INLINE];
        match (buf.get_mut(..data.len()), u16::try_from(data.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(data);
                Bytes::Inline { len, buf }
            }
            _ => Bytes::Heap(data.to_vec()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Bytes::Heap(v) => v,
        }
    }

    fn into_vec(self) -> Vec<u8> {
        match self {
            Bytes::Inline { .. } => self.as_slice().to_vec(),
            Bytes::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

/// One whole H:4 packet, indicator byte first, checked against its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    kind: Kind,
    bytes: Bytes,
}

impl Packet {
    /// Checks `bytes` as one complete packet: a known indicator, a whole
    /// header, and exactly the payload the header announces.
    pub fn decode(bytes: Vec<u8>) -> Result<Self> {
        let kind = check(&bytes)?;
        Ok(Packet {
            kind,
            bytes: Bytes::Heap(bytes),
        })
    }

    /// [`Packet::decode`] on a copy of `bytes`, inline if it fits.
    pub fn decode_slice(bytes: &[u8]) -> Result<Self> {
        let kind = check(bytes)?;
        Ok(Packet {
            kind,
            bytes: Bytes::copy_of(bytes),
        })
    }

    /// Checks a packet from the guest: also refuses events, which only a
    /// controller sends.
    pub fn from_guest(bytes: &[u8]) -> Result<Self> {
        Self::one_way(bytes, Kind::Event)
    }

    /// [`Packet::from_guest`] for a packet already on the heap (a large
    /// one), kept where it is.
    pub fn from_guest_vec(bytes: Vec<u8>) -> Result<Self> {
        let packet = Self::decode(bytes)?;
        if packet.kind == Kind::Event {
            return Err(Error::WrongDirection(Kind::Event));
        }
        Ok(packet)
    }

    /// Checks a packet from a controller: also refuses commands.
    pub fn from_controller(bytes: &[u8]) -> Result<Self> {
        Self::one_way(bytes, Kind::Command)
    }

    /// A copy of `bytes` as a packet of any kind but `never`.
    fn one_way(bytes: &[u8], never: Kind) -> Result<Self> {
        let kind = check(bytes)?;
        if kind == never {
            return Err(Error::WrongDirection(kind));
        }
        Ok(Packet {
            kind,
            bytes: Bytes::copy_of(bytes),
        })
    }

    /// An event with these parameters.
    pub fn event(code: u8, params: &[u8]) -> Self {
        Self::event_parts(code, &[params])
    }

    /// An event whose parameters are `parts` one after the other, built in
    /// place (replies are on every command's path). Parameters past 255
    /// bytes are cut.
    pub fn event_parts(code: u8, parts: &[&[u8]]) -> Self {
        let mut buf = [0; INLINE];
        let mut at = 3;
        for part in parts {
            let Some(dst) = buf.get_mut(at..) else { break };
            let n = part.len().min(dst.len());
            if let (Some(d), Some(s)) = (dst.get_mut(..n), part.get(..n)) {
                d.copy_from_slice(s);
            }
            at += n;
        }
        // At most 255 parameter bytes: INLINE leaves room for 256.
        let len = (at - 3).min(255);
        if let Some(header) = buf.get_mut(..3) {
            header.copy_from_slice(&[Kind::Event.indicator(), code, len as u8]);
        }
        Packet {
            kind: Kind::Event,
            bytes: Bytes::Inline {
                len: (3 + len) as u16,
                buf,
            },
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The whole packet, indicator first.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The packet without its indicator.
    pub fn hci(&self) -> &[u8] {
        self.bytes().get(1..).unwrap_or_default()
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        self.bytes()
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
        self.bytes.into_vec()
    }
}

/// Checks `bytes` as one complete packet: a known indicator, a whole
/// header, and exactly the payload the header announces.
fn check(bytes: &[u8]) -> Result<Kind> {
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
    Ok(kind)
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
                out.push_back(if self.from_controller {
                    Packet::from_controller(&self.partial)
                } else {
                    Packet::from_guest(&self.partial)
                });
                self.partial.clear();
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
            Packet::from_guest(&[4, 0x0e, 0]),
            Err(Error::WrongDirection(Kind::Event))
        ));
        assert!(matches!(
            Packet::from_controller(&[1, 3, 0x0c, 0]),
            Err(Error::WrongDirection(Kind::Command))
        ));
    }

    #[test]
    fn commands_and_events_are_stored_inline_and_big_packets_on_the_heap() {
        let command = [&[1, 0x13, 0x0c, 248][..], &[b'x'; 248]].concat();
        let p = Packet::from_guest(&command).unwrap();
        assert!(matches!(p.bytes, Bytes::Inline { .. }));
        assert_eq!(p.bytes(), command);
        let event = Packet::event_parts(0x0e, &[&[1, 2], &[7; 300]]);
        assert!(matches!(event.bytes, Bytes::Inline { .. }));
        assert_eq!(event.bytes().len(), 3 + 255);
        assert_eq!(&event.bytes()[..5], &[4, 0x0e, 255, 1, 2]);
        let acl = [&[2, 1, 0, 0x00, 0x01][..], &[5; 256]].concat();
        let p = Packet::from_guest(&acl).unwrap();
        assert!(matches!(p.bytes, Bytes::Heap(_)));
        assert_eq!(p.clone().into_bytes(), acl);
        assert_eq!(Packet::from_guest_vec(acl.clone()).unwrap(), p);
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
