// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Several seqpacket messages per system call (`sendmmsg`, `recvmmsg`).
//!
//! A message round trip used to cost the daemon one `send` and one `recv`,
//! and on a VM those two system calls were most of its CPU per message.
//! Everything the guest queued in one kick now leaves in one `sendmmsg`, and
//! everything the host program wrote since the last wake-up (up to the free
//! RX buffers) arrives in one `recvmmsg`. Message boundaries are the
//! socket's, as with one call per message.

use std::io;
use std::os::fd::RawFd;

use crate::protocol::MAX_RPMSG_BUF_SIZE;

/// Messages moved per system call at most. The driver posts 256 buffers
/// per queue; 64 keeps the stack arrays below small while a pipelined
/// guest still pays one call per 64 messages.
pub const BATCH: usize = 64;

/// One host message as received: room for a full buffer, so that a message
/// over the MTU is told apart.
pub type HostBuf = [u8; MAX_RPMSG_BUF_SIZE];

/// One header per iovec, each naming its own iovec. The headers hold raw
/// pointers into `iovs`, which must stay where it is until the call.
fn headers(iovs: &mut [libc::iovec; BATCH]) -> [libc::mmsghdr; BATCH] {
    // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid
    // value (no name, no control data, no flags).
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = std::ptr::from_mut(iov);
        h.msg_hdr.msg_iovlen = 1;
    }
    hdrs
}

const NO_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// The flags argument of `sendmmsg`/`recvmmsg`: a `c_int` in glibc, a
/// `c_uint` in musl.
#[cfg(not(target_env = "musl"))]
const fn flags(f: libc::c_int) -> libc::c_int {
    f
}

#[cfg(target_env = "musl")]
const fn flags(f: libc::c_int) -> libc::c_uint {
    // MSG_* flags are small and positive.
    f as libc::c_uint
}

fn vlen(n: usize) -> libc::c_uint {
    libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX)
}

/// Sends `msgs` in order on the seqpacket socket `fd`, as many as it takes
/// now (at most [`BATCH`]). Returns how many were sent, at least one;
/// `WouldBlock` if the socket took none.
pub fn send_many(fd: RawFd, msgs: &[&[u8]]) -> io::Result<usize> {
    let msgs = msgs.get(..BATCH).unwrap_or(msgs);
    if msgs.is_empty() {
        return Ok(0);
    }
    let mut iovs = [NO_IOV; BATCH];
    for (iov, msg) in iovs.iter_mut().zip(msgs) {
        // The kernel only reads through it (sendmmsg).
        iov.iov_base = msg.as_ptr().cast_mut().cast();
        iov.iov_len = msg.len();
    }
    let mut hdrs = headers(&mut iovs);
    // SAFETY: `hdrs` holds `msgs.len()` valid headers, each pointing at one
    // iovec that points into a live slice of `msgs`; all outlive the call.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            vlen(msgs.len()),
            flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT),
        )
    };
    // Every message of a seqpacket socket goes whole or not at all.
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Receives up to `bufs.len()` (at most [`BATCH`]) messages from the
/// seqpacket socket `fd` without blocking, writing each one's length to
/// `lens`. Returns how many arrived, at least one; `WouldBlock` if none
/// waits. A length of 0 is the peer's hang-up: the entries after it mean
/// nothing.
pub fn recv_many(fd: RawFd, bufs: &mut [HostBuf], lens: &mut [usize]) -> io::Result<usize> {
    let n = bufs.len().min(lens.len()).min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs = [NO_IOV; BATCH];
    for (iov, buf) in iovs.iter_mut().zip(bufs.iter_mut()) {
        iov.iov_base = buf.as_mut_ptr().cast();
        iov.iov_len = buf.len();
    }
    let mut hdrs = headers(&mut iovs);
    // SAFETY: `hdrs` holds `n` valid headers, each pointing at one iovec
    // that points at a distinct, writable buffer of `bufs`; all outlive
    // the call. No timeout is passed.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            vlen(n),
            flags(libc::MSG_DONTWAIT),
            std::ptr::null_mut(),
        )
    };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    for (len, h) in lens.iter_mut().zip(hdrs.iter()).take(got) {
        *len = usize::try_from(h.msg_len).unwrap_or(usize::MAX);
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::os::fd::AsRawFd;

    use socket2::{Domain, Socket, Type};

    use super::*;

    #[test]
    fn batches_keep_boundaries_order_and_hang_up() {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let mut bufs = vec![[0u8; MAX_RPMSG_BUF_SIZE]; 4];
        let mut lens = [0usize; 4];
        assert_eq!(
            recv_many(b.as_raw_fd(), &mut bufs, &mut lens)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        let big = [9u8; 600];
        let msgs: [&[u8]; 3] = [b"one", b"", &big];
        assert_eq!(send_many(a.as_raw_fd(), &msgs).unwrap(), 3);
        assert_eq!(send_many(a.as_raw_fd(), &[b"four"]).unwrap(), 1);
        // Room for two: the rest stays in the socket.
        assert_eq!(
            recv_many(b.as_raw_fd(), &mut bufs[..2], &mut lens).unwrap(),
            2
        );
        assert_eq!((lens[0], &bufs[0][..3]), (3, &b"one"[..]));
        assert_eq!(lens[1], 0);
        assert_eq!(recv_many(b.as_raw_fd(), &mut bufs, &mut lens).unwrap(), 2);
        // Cut to the buffer: the caller sees a full buffer.
        assert_eq!(lens[0], MAX_RPMSG_BUF_SIZE);
        assert_eq!((lens[1], &bufs[1][..4]), (4, &b"four"[..]));
        drop(a);
        assert_eq!(recv_many(b.as_raw_fd(), &mut bufs, &mut lens).unwrap(), 4);
        assert_eq!(lens[0], 0);
    }

    #[test]
    fn a_full_socket_takes_part_of_a_batch() {
        let (a, _b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        a.set_send_buffer_size(4096).unwrap();
        let msg = [1u8; 400];
        let msgs = [&msg[..]; BATCH];
        let mut total = 0;
        loop {
            match send_many(a.as_raw_fd(), &msgs) {
                Ok(n) => {
                    assert!(n > 0);
                    total += n;
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
            assert!(total < 100_000, "the socket never filled");
        }
        assert!(total > 0);
    }
}
