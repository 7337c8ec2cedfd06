#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
"""Writes the seed corpus of the `chain` target: the descriptor chains the
Linux drivers of our devices build, laid out as fuzz_targets/chain.rs reads
its input (an 8-byte header, then guest memory from its first byte).

Usage: seed_corpus.py [DIR]   (default corpus/chain)
"""
import os
import struct
import sys

BASE = 0x1_0000
NEXT, WRITE, INDIRECT = 1, 2, 4


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def seed(regions=1, gap=0, pages=4, qlog=8, head=0, table_slot=0, steps=0, writes=()):
    """`writes` are (offset from BASE, bytes) put into guest memory."""
    header = bytes([regions - 1, gap, pages - 1, qlog]) + struct.pack("<H", head)
    header += bytes([table_slot, steps])
    body = bytearray()
    for off, data in writes:
        if len(body) < off + len(data):
            body.extend(b"\0" * (off + len(data) - len(body)))
        body[off:off + len(data)] = data
    return header + bytes(body)


def chain(descs, at=0):
    """Descriptors in consecutive table slots starting at `at`."""
    return (at * 16, b"".join(descs))


SEEDS = {
    # virtio-gpio: request (type, gpio, value) then a 2-byte response.
    "gpio-get-value": seed(writes=[
        chain([desc(BASE + 0x800, 8, NEXT, 1), desc(BASE + 0x900, 2, WRITE)]),
        (0x800, struct.pack("<HHI", 2, 0, 0)),
    ]),
    # virtio-gpio irq event: one writable buffer, held until an interrupt.
    "gpio-irq-event": seed(qlog=6, writes=[
        chain([desc(BASE + 0x800, 4, NEXT, 1), desc(BASE + 0x900, 1, WRITE)]),
    ]),
    # virtio-i2c read: out_hdr, the buffer to fill, the status byte.
    "i2c-read": seed(steps=3, writes=[
        chain([desc(BASE + 0x800, 8, NEXT, 1), desc(BASE + 0x900, 16, WRITE | NEXT, 2),
               desc(BASE + 0xa00, 1, WRITE)]),
        (0x800, struct.pack("<HHI", 0x50, 0, 1)),
    ]),
    # Linux uses an indirect table for any multi-buffer request.
    "i2c-write-indirect": seed(steps=1, writes=[
        chain([desc(BASE + 0x400, 48, INDIRECT)]),
        (0x400, desc(BASE + 0x800, 8, NEXT, 1) + desc(BASE + 0x900, 2, NEXT, 2)
         + desc(BASE + 0xa00, 1, WRITE)),
    ]),
    # virtio-snd tx: xfer header, a period of PCM, the status.
    "sound-tx-period": seed(qlog=6, steps=0x12, writes=[
        chain([desc(BASE + 0x40, 4, NEXT, 1), desc(BASE + 0x1000, 1920, NEXT, 2),
               desc(BASE + 0x900, 8, WRITE)], at=0),
    ]),
    # virtio-gpu control: a 24-byte header and its response, from slot 5.
    "gpu-ctrl-head-5": seed(head=5, steps=2, writes=[
        chain([desc(BASE + 0x800, 24, NEXT, 6), desc(BASE + 0x900, 24, WRITE)], at=5),
        (0x800, struct.pack("<IIQII", 0x100, 0, 0, 0, 0)),
    ]),
    # A buffer across two adjacent memory regions (a DIMM boundary).
    "across-regions": seed(regions=2, pages=1, steps=7, writes=[
        chain([desc(BASE + 0xff0, 0x20, NEXT, 1), desc(BASE + 0x1010, 0x40, WRITE)]),
    ]),
    # Hostile: a loop, a nested indirect table, and readable after writable.
    "loop": seed(writes=[chain([desc(BASE + 0x800, 4, NEXT, 0)])]),
    "nested-indirect": seed(writes=[
        chain([desc(BASE + 0x400, 16, INDIRECT)]),
        (0x400, desc(BASE + 0x400, 16, INDIRECT)),
    ]),
    "readable-after-writable": seed(writes=[
        chain([desc(BASE + 0x800, 4, WRITE | NEXT, 1), desc(BASE + 0x900, 4)]),
    ]),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "chain")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
