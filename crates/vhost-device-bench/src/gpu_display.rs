// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! QEMU's side of the vhost-user-gpu display socket, as far as a benchmark
//! needs it: protocol features are answered (none), SCANOUT sizes a
//! surface, and each UPDATE is read and copied into that surface, as
//! QEMU's `hw/display/vhost-user-gpu.c` does before it shows it. Other
//! messages are read and dropped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

/// `VHOST_USER_GPU_GET_PROTOCOL_FEATURES`.
const GET_PROTOCOL_FEATURES: u32 = 1;
/// `VHOST_USER_GPU_SCANOUT`.
const SCANOUT: u32 = 7;
/// `VHOST_USER_GPU_UPDATE`.
const UPDATE: u32 = 8;
/// Reply flag of a vhost-user-gpu header.
const FLAG_REPLY: u32 = 1 << 2;
/// The largest message we take (a 4096x4096 UPDATE and its header).
const MAX_PAYLOAD: usize = 4096 * 4096 * 4 + 20;

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// The surface of the one scanout we show.
#[derive(Default)]
struct Surface {
    width: usize,
    pixels: Vec<u8>,
}

impl Surface {
    /// Copies the rows of an UPDATE (`x, y, width, height` in `body`'s
    /// first 20 bytes after the scanout id) into the surface.
    fn update(&mut self, body: &[u8]) {
        let [x, y, w] = [4, 8, 12].map(|at| u32_at(body, at) as usize);
        let row = w * 4;
        let Some(rows) = body.get(20..) else { return };
        if row == 0 {
            return;
        }
        for (i, src) in rows.chunks_exact(row).enumerate() {
            let at = ((y + i) * self.width + x) * 4;
            if let Some(dst) = self.pixels.get_mut(at..at + row) {
                dst.copy_from_slice(src);
            }
        }
    }
}

fn serve(mut sock: UnixStream) -> std::io::Result<()> {
    let mut hdr = [0u8; 12];
    let mut payload = Vec::new();
    let mut surface = Surface::default();
    loop {
        sock.read_exact(&mut hdr)?;
        let (request, size) = (u32_at(&hdr, 0), u32_at(&hdr, 8) as usize);
        if size > MAX_PAYLOAD {
            return Err(std::io::Error::other(format!("{size}-byte message")));
        }
        payload.resize(size, 0);
        sock.read_exact(&mut payload)?;
        match request {
            GET_PROTOCOL_FEATURES => {
                let mut reply = Vec::with_capacity(20);
                for v in [GET_PROTOCOL_FEATURES, FLAG_REPLY, 8] {
                    reply.extend(v.to_le_bytes());
                }
                reply.extend(0u64.to_le_bytes());
                sock.write_all(&reply)?;
            }
            SCANOUT => {
                let (w, h) = (u32_at(&payload, 4) as usize, u32_at(&payload, 8) as usize);
                surface.width = w;
                surface.pixels.clear();
                surface.pixels.resize(w * h * 4, 0);
            }
            UPDATE => surface.update(&payload),
            _ => {}
        }
    }
}

/// Serves `sock` on a thread of its own until the daemon closes it.
pub fn spawn(sock: UnixStream) -> std::io::Result<()> {
    thread::Builder::new()
        .name("bench-display".into())
        .spawn(move || {
            let _ = serve(sock);
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_lands_in_its_rectangle() {
        let mut s = Surface {
            width: 4,
            pixels: vec![0; 4 * 3 * 4],
        };
        let mut body: Vec<u8> = [0u32, 1, 1, 2, 2]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        body.extend([7u8; 16]);
        s.update(&body);
        let lit: Vec<usize> = (0..12)
            .filter(|p| s.pixels.get(p * 4) == Some(&7))
            .collect();
        assert_eq!(lit, [5, 6, 9, 10]);
    }
}
