// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A TX chain decoded once into what it asks for.

use vhost_device_common::Reader;
use vm_memory::GuestMemory;

use crate::error::{Error, Result};
use crate::protocol::{rpmsg_hdr, rpmsg_ns_msg, Announcement, RPMSG_MTU, RPMSG_NS_ADDR};

/// One message from the guest.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A name-service message: the guest created or removed a channel.
    Ns {
        /// Sender (the guest's name-service endpoint, normally 53).
        src: u32,
        /// What it announced.
        ann: Announcement,
    },
    /// Data for a channel.
    Data {
        /// The guest endpoint.
        src: u32,
        /// The device endpoint.
        dst: u32,
        /// The payload, at most [`RPMSG_MTU`] bytes.
        payload: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Reads the header and payload of a TX chain. The payload is copied
    /// into `buf`, so no guest-sized allocation happens. A header that
    /// claims more than the MTU or more than the chain holds, and a
    /// name-service message that is not exactly one `rpmsg_ns_msg`, are
    /// errors.
    pub fn decode<M: GuestMemory + ?Sized>(
        reader: &mut Reader<'_, M>,
        buf: &'a mut [u8; RPMSG_MTU],
    ) -> Result<Self> {
        let hdr: rpmsg_hdr = reader.read_obj()?;
        let (src, dst) = (hdr.src.to_native(), hdr.dst.to_native());
        let len = usize::from(hdr.len.to_native());
        let available = reader.available();
        let payload = match buf.get_mut(..len) {
            Some(payload) if len <= available => payload,
            _ => {
                return Err(Error::Oversize {
                    src,
                    dst,
                    len,
                    available,
                })
            }
        };
        reader.read_exact(payload)?;
        if dst == RPMSG_NS_ADDR {
            if len != std::mem::size_of::<rpmsg_ns_msg>() {
                return Err(Error::MalformedNs { src, len });
            }
            let ann = Announcement::decode(payload).ok_or(Error::MalformedNs { src, len })?;
            return Ok(Message::Ns { src, ann });
        }
        Ok(Message::Data { src, dst, payload })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use vhost_device_common::mock::ChainBuilder;
    use vm_memory::ByteValued;

    use super::*;
    use crate::protocol::{header, NsOp};

    fn decode_bytes(bytes: &[u8]) -> std::result::Result<String, String> {
        let (mem, chain) = ChainBuilder::new().readable(bytes).build();
        let chain = chain.unwrap();
        let mut buf = [0u8; RPMSG_MTU];
        Message::decode(&mut chain.reader(&mem), &mut buf)
            .map(|m| format!("{m:?}"))
            .map_err(|e| e.to_string())
    }

    fn msg(src: u32, dst: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = header(src, dst, payload.len()).as_slice().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn data_and_ns() {
        let (mem, chain) = ChainBuilder::new()
            .readable(&msg(1024, 0x400, b"hi"))
            .build();
        let chain = chain.unwrap();
        let mut buf = [0u8; RPMSG_MTU];
        let m = Message::decode(&mut chain.reader(&mem), &mut buf).unwrap();
        assert_eq!(
            m,
            Message::Data {
                src: 1024,
                dst: 0x400,
                payload: b"hi"
            }
        );
        let ann = Announcement {
            name: "svc".into(),
            addr: 2000,
            op: NsOp::Create,
        };
        let bytes = msg(53, 53, ann.encode().as_slice());
        let (mem, chain) = ChainBuilder::new().readable(&bytes).build();
        let chain = chain.unwrap();
        let m = Message::decode(&mut chain.reader(&mem), &mut buf).unwrap();
        assert_eq!(m, Message::Ns { src: 53, ann });
    }

    #[test]
    fn the_largest_message_fits_and_one_more_byte_does_not() {
        let full = vec![7u8; RPMSG_MTU];
        decode_bytes(&msg(1024, 0x400, &full)).unwrap();
        let mut over = msg(1024, 0x400, &full);
        over.push(7);
        over[12] = 0xf1; // len = 497
        assert!(decode_bytes(&over).unwrap_err().contains("497"));
    }

    #[test]
    fn malformed_chains_are_errors() {
        // Header shorter than 16 bytes.
        decode_bytes(&[0u8; 10]).unwrap_err();
        // Length past the end of the chain.
        let mut short = msg(1024, 0x400, b"abc");
        short[12] = 10;
        assert!(decode_bytes(&short).unwrap_err().contains("holds 3"));
        // Name-service payloads of the wrong size or with bad flags.
        assert!(decode_bytes(&msg(53, 53, &[0u8; 39]))
            .unwrap_err()
            .contains("malformed"));
        let mut bad = Announcement {
            name: "x".into(),
            addr: 1,
            op: NsOp::Create,
        }
        .encode();
        bad.flags = 9.into();
        assert!(decode_bytes(&msg(53, 53, bad.as_slice()))
            .unwrap_err()
            .contains("malformed"));
    }
}
