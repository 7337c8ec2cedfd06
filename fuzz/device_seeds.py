#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
"""Writes the seed corpora of the device targets (gpio, i2c, sound, gpu,
can, rpmsg, bluetooth): what the Linux drivers send, as the operations of
vhost_device_common::mock::program (crates/vhost-device-common/src/mock/
program.rs), one seed file per driver conversation; and of the vhost_user
target: a session as QEMU runs it, and hostile ones.

Usage: device_seeds.py [CORPUS_DIR]   (default corpus)
"""
import os
import struct
import sys

# The harness's guest memory: one ring page per queue from 0x1_0000, then
# buffer space. A gpu backing entry points into the buffer space.
DATA = 0x1_0000 + 2 * 0x1000


def post(queue, readable=(), writable=(), indirect=False, kick=True):
    """Operation 0: a chain of `readable` byte strings and `writable`
    lengths on `queue`, kicked unless `kick` is false."""
    shape = len(readable) | len(writable) << 2
    shape |= 0x10 if indirect else 0
    shape |= 0 if kick else 0x20
    out = bytes([queue << 3, shape])
    for data in readable:
        out += struct.pack("<H", len(data)) + data
    for length in writable:
        out += struct.pack("<H", length)
    return out


def kick(queue):
    return bytes([queue << 3 | 1])


def pump():
    return bytes([2])


def restart(queue):
    return bytes([queue << 3 | 3])


def reset():
    return bytes([4])


def get_config(offset, size):
    return bytes([5, offset, size])


def set_config(offset, data):
    return bytes([6, offset, len(data)]) + data


def republish(queue, pick=0):
    return bytes([queue << 3 | 7, pick])


def program(*ops, event_idx=True):
    return bytes([1 if event_idx else 0]) + b"".join(ops)


def u16(*v):
    return struct.pack("<%dH" % len(v), *v)


def u32(*v):
    return struct.pack("<%dI" % len(v), *v)


# virtio-gpio (request queue 0, event queue 1).
def gpio_req(kind, line, value=0):
    return struct.pack("<HHI", kind, line, value)


GPIO = {
    "names-and-values": program(
        get_config(0, 8),
        post(0, [gpio_req(1, 0)], [64]),
        post(0, [gpio_req(3, 2, 1)], [2]),
        post(0, [gpio_req(5, 2, 1)], [2]),
        post(0, [gpio_req(4, 2)], [2]),
        post(0, [gpio_req(2, 2)], [2]),
    ),
    "irq-edge": program(
        post(0, [gpio_req(3, 1, 2)], [2]),
        post(0, [gpio_req(6, 1, 3)], [2]),
        post(1, [u16(1)], [1]),
        republish(1),
        restart(1),
        post(1, [u16(1)], [1]),
        reset(),
        post(0, [gpio_req(4, 7)], [2]),
    ),
}

# virtio-i2c: out_hdr (addr << 1, padding, flags), buffer, status byte.
def i2c_hdr(addr, flags=0):
    return struct.pack("<HHI", addr << 1, 0, flags)


FAIL_NEXT, M_RD = 1, 2
I2C = {
    "eeprom-write-read": program(
        post(0, [i2c_hdr(0x50, FAIL_NEXT), b"\x00\x10abcd"], [1]),
        post(0, [i2c_hdr(0x50, FAIL_NEXT), b"\x00\x10"], [1], indirect=True),
        post(0, [i2c_hdr(0x50, M_RD)], [4, 1]),
    ),
    "lm75-zero-length-and-absent": program(
        post(0, [i2c_hdr(0x48, M_RD)], [2, 1]),
        post(0, [i2c_hdr(0x48)], [1]),
        post(0, [i2c_hdr(0x10, M_RD)], [1, 1]),
        restart(0),
        post(0, [i2c_hdr(0x48, FAIL_NEXT), b"\x00"], [1], kick=False),
        post(0, [i2c_hdr(0x48, M_RD)], [2, 1]),
    ),
}

# virtio-sound: control queue 0, event 1, tx 2, rx 3.
def snd_query(code, start=0, count=1, size=32):
    return u32(code, start, count, size)


def snd_params(stream, buffer_bytes=4096, period_bytes=1024, channels=2, fmt=5, rate=7):
    return u32(0x101, stream, buffer_bytes, period_bytes, 0) + bytes([channels, fmt, rate, 0])


def snd_pcm(code, stream):
    return u32(code, stream)


SOUND = {
    "playback": program(
        get_config(0, 16),
        post(0, [snd_query(0x100, 0, 2, 32)], [4 + 2 * 32]),
        post(0, [snd_query(0x200, 0, 2, 24)], [4 + 2 * 24]),
        post(0, [snd_query(1, 0, 1, 24)], [4 + 24]),
        post(1, [], [8]),
        post(0, [snd_params(0)], [4]),
        post(0, [snd_pcm(0x102, 0)], [4]),
        post(2, [u32(0), bytes(1024)], [8]),
        post(2, [u32(0), bytes(1024)], [8], indirect=True),
        post(0, [snd_pcm(0x104, 0)], [4]),
        pump(),
        post(0, [snd_pcm(0x105, 0)], [4]),
        post(0, [snd_pcm(0x103, 0)], [4]),
    ),
    "capture-and-controls": program(
        post(0, [snd_params(1, 2048, 512, 1, 5, 3)], [4]),
        post(0, [snd_pcm(0x102, 1)], [4]),
        post(3, [u32(1)], [512, 8]),
        post(0, [snd_pcm(0x104, 1)], [4]),
        post(0, [snd_query(0x300, 0, 1, 40)], [4 + 40]),
        post(0, [snd_query(0x301, 0, 1, 40)], [4 + 40]),
        reset(),
        post(0, [snd_pcm(0x102, 1)], [4]),
    ),
}

# virtio-gpu: control queue 0, cursor queue 1; ctrl_hdr of 24 bytes.
def gpu_hdr(kind, flags=0, fence=0):
    return struct.pack("<IIQIB3x", kind, flags, fence, 0, 0)


def gpu(kind, *fields, flags=0, fence=0):
    return gpu_hdr(kind, flags, fence) + u32(*fields)


GPU = {
    "framebuffer": program(
        get_config(0, 16),
        post(0, [gpu(0x100)], [408]),
        post(0, [gpu(0x10a, 0, 0)], [24 + 8 + 1024]),
        post(0, [gpu(0x101, 1, 1, 64, 64)], [24]),
        post(0, [gpu(0x106, 1, 1) + struct.pack("<QII", DATA, 64 * 64 * 4, 0)], [24]),
        post(0, [gpu(0x103, 0, 0, 64, 64, 0, 1)], [24]),
        post(0, [gpu(0x105, 0, 0, 64, 64) + struct.pack("<QII", 0, 1, 0)], [24]),
        post(0, [gpu(0x104, 0, 0, 64, 64, 1, 0, flags=1, fence=7)], [24]),
        post(0, [gpu(0x107, 1, 0)], [24]),
        post(0, [gpu(0x102, 1, 0)], [24]),
    ),
    "cursor": program(
        post(0, [gpu(0x101, 2, 1, 64, 64)], [24]),
        post(1, [gpu(0x300, 0, 10, 10, 0, 2, 0, 0, 0)], []),
        post(1, [gpu(0x301, 0, 20, 20, 0, 2, 0, 0, 0)], []),
        post(0, [gpu(0x108, 0, 0)], [24 + 16]),
        set_config(4, u32(1)),
        reset(),
    ),
}

# virtio-can: tx 0, rx 1, control 2.
def can_tx(can_id, data, flags=0):
    return struct.pack("<HHBBHII", 1, len(data), 0, 0, 0, flags, can_id) + data


CAN = {
    "start-send-receive": program(
        get_config(0, 2),
        post(2, [u16(0x0201)], [1]),
        post(1, [], [80]),
        post(1, [], [80]),
        post(0, [can_tx(0x123, b"\x01\x02\x03")], [1]),
        post(0, [can_tx(0x80000123, bytes(8))], [1]),
        pump(),
        post(2, [u16(0x0202)], [1]),
    ),
    "fd-rtr-and-stop": program(
        post(2, [u16(0x0201)], [1]),
        post(0, [can_tx(0x7ff, bytes(64), 1 << 2)], [1]),
        post(0, [can_tx(0x10, b"", 1 << 1)], [1]),
        restart(1),
        post(1, [], [16]),
        reset(),
    ),
}

# virtio-rpmsg: rx 0 (guest buffers), tx 1; rpmsg_hdr then payload.
def rpmsg(src, dst, payload):
    return struct.pack("<IIIHH", src, dst, 0, len(payload), 0) + payload


RPMSG = {
    "ns-and-echo": program(
        get_config(0, 8),
        post(0, [], [512]),
        post(0, [], [512]),
        post(0, [], [512]),
        post(1, [rpmsg(1024, 0x400, b"hello")], []),
        post(1, [rpmsg(1025, 0x401, b"tty")], []),
        pump(),
        post(1, [rpmsg(1026, 53, bytes(32) + u32(1026, 0))], []),
    ),
    "unknown-destination": program(
        post(0, [], [64]),
        post(1, [rpmsg(1024, 0x999, b"x" * 100)], []),
        restart(0),
        post(0, [], [16]),
        post(1, [rpmsg(1024, 0x400, b"y")], []),
    ),
}

# virtio-bt: tx 0 (H:4 packets), rx 1.
def hci_cmd(opcode, params=b""):
    return bytes([1]) + struct.pack("<HB", opcode, len(params)) + params


BT = {
    "init": program(
        get_config(0, 8),
        post(1, [], [260]),
        post(1, [], [260]),
        post(1, [], [260]),
        post(0, [hci_cmd(0x0c03)], []),
        post(0, [hci_cmd(0x1001)], []),
        post(0, [hci_cmd(0x1009)], []),
        post(0, [hci_cmd(0x1003)], []),
        post(0, [hci_cmd(0x0c01, bytes(8))], []),
        pump(),
    ),
    "le-scan-acl-and-junk": program(
        post(1, [], [260]),
        post(0, [hci_cmd(0x200b, b"\x01\x10\x00\x10\x00\x00\x00")], []),
        post(0, [hci_cmd(0x200c, b"\x01\x00")], []),
        post(0, [bytes([2]) + struct.pack("<HH", 0x0001, 4) + b"abcd"], []),
        post(0, [bytes([9, 1, 2, 3])], []),
        post(1, [], [4]),
        reset(),
    ),
}

# vhost_user: frontend messages (fuzz_targets/vhost_user.rs). An operation
# is its index in MESSAGES there (bit 5: NEED_REPLY), or one of the four
# extra operations after them.
(GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_VRING_NUM,
 SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL,
 SET_VRING_ERR, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM,
 SET_VRING_ENABLE, SET_BACKEND_REQ_FD, GET_CONFIG, SET_CONFIG, RESET_DEVICE,
 GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG, SET_STATUS, GET_STATUS,
 GET_INFLIGHT_FD, SET_INFLIGHT_FD, GPU_SET_SOCKET, RAW, KICK, POKE, SETUP) = range(32)
NO_FD, EVENTFD, MEMFD, DEV_NULL, PIPE, DEAD_SOCKET = range(6)
NEED = 0x20


def msg(op, body=b"", fd=None, reply=False):
    out = bytes([op | (NEED if reply else 0)]) + body
    return out + (bytes([fd]) if fd is not None else b"")


def u64(*v):
    return struct.pack("<%dQ" % len(v), *v)


def state(index, num):
    return u32(index, num)


def vring_addr(index, flags, desc, used, avail, log=0):
    return u32(index, flags) + u64(desc, used, avail, log)


def region(gpa, size, uaddr, offset):
    return u64(gpa, size, uaddr, offset)


def config(offset, size, data=b"", flags=0):
    return u32(offset, size, flags) + data


def poke(offset, data):
    return bytes([POKE]) + struct.pack("<HB", offset, len(data)) + data


def setup(size_log, desc, avail, used, base=0):
    """A sane queue 0 setup; desc in 16-byte, avail and used in 64-byte steps."""
    return bytes([SETUP, size_log, desc, avail, used]) + struct.pack("<H", base)


def echo_request():
    """A readable "ping" and a writable 64-byte buffer, published at avail
    0x400 (queue set up with desc 0, avail 0x400, used 0x800)."""
    return (poke(0x1000, b"ping")
            + poke(0, struct.pack("<QIHH", 0x1000, 4, 1, 1))
            + poke(16, struct.pack("<QIHH", 0x2000, 64, 2, 0))
            + poke(0x400, struct.pack("<HHH", 0, 1, 0)))


VHOST_USER = {
    "qemu-session": b"".join([
        msg(GET_FEATURES), msg(SET_OWNER), msg(GET_PROTOCOL_FEATURES),
        msg(SET_PROTOCOL_FEATURES, u64(0x2209)), msg(GET_QUEUE_NUM),
        msg(GET_CONFIG, config(0, 8, bytes(8))),
        msg(SET_CONFIG, config(4, 4, u32(7)), reply=True),
        setup(4, 0, 0x10, 0x20), echo_request(), bytes([KICK, 0]),
        msg(GET_VRING_BASE, state(0, 0)), msg(RESET_DEVICE), msg(GET_STATUS),
    ]),
    "memory-past-the-fd": msg(SET_MEM_TABLE, bytes([1]) + region(0, 1 << 40, 0, 0xfff0)),
    "overlapping-regions": msg(
        SET_MEM_TABLE, bytes([2]) + region(0, 0x10000, 0, 0) + region(0x8000, 0x10000, 0, 0)),
    "bogus-rings-and-config": b"".join([
        msg(SET_FEATURES, u64(1 << 32 | 1 << 30)),
        msg(SET_PROTOCOL_FEATURES, u64(0x209)),
        msg(GET_CONFIG, config(6, 8, bytes(8))),
        msg(SET_CONFIG, config(0xffffffff, 4, u32(1)), reply=True),
        msg(SET_VRING_NUM, state(5, 3)),
        msg(SET_VRING_NUM, state(0, 0)),
        msg(SET_VRING_ADDR, vring_addr(0, 0, 0xffffffffffffff00, 0xfffffffffffff000, 0x10)),
        msg(SET_VRING_BASE, state(0, 0xfff0)),
        setup(4, 0, 0x10, 0x20, 0x8000), echo_request(), bytes([KICK, 0]),
        msg(SET_VRING_ENABLE, state(0, 0)),
        msg(SET_VRING_ENABLE, state(9, 1)),
    ]),
    "odd-fds": b"".join([
        setup(3, 0, 0x10, 0x20),
        msg(SET_VRING_KICK, u64(0), DEV_NULL), msg(SET_VRING_KICK, u64(0), PIPE),
        msg(SET_VRING_KICK, u64(0), DEAD_SOCKET), msg(SET_VRING_CALL, u64(0x100), NO_FD),
        msg(SET_VRING_ERR, u64(0), MEMFD), msg(SET_BACKEND_REQ_FD, fd=DEAD_SOCKET),
        msg(GPU_SET_SOCKET, fd=PIPE), msg(SET_INFLIGHT_FD, u64(0x1000, 0) + u32(1), MEMFD),
        msg(GET_INFLIGHT_FD, u64(1 << 40, 0) + u32(0xffff)),
        msg(ADD_MEM_REG, u64(0) + region(0x100000, 0x10000, 0, 0)),
        msg(REM_MEM_REG, u64(0) + region(0x100000, 0x10000, 0, 0)),
        msg(GET_MAX_MEM_SLOTS), msg(SET_STATUS, u64(0xf)), msg(RESET_OWNER),
        bytes([RAW]) + u32(99) + bytes([3, 1, 2, 3]),
        echo_request(), bytes([KICK, 1]),
    ]),
}

# Inputs that found a bug, written as regression-*: each fails on the code
# before its fix, on its own.
UADDR = 0x7000_0000_0000
FEATURES = 1 << 32 | 1 << 28 | 1 << 29 | 1 << 30
VHOST_USER_REGRESSIONS = {
    # Two memory regions, so the used ring across their boundary cannot be
    # mapped and virtio-queue's path is taken; it refuses an available ring
    # at guest address 0, and the drain used to spin.
    "avail-ring-at-zero": b"".join([
        msg(SET_FEATURES, u64(FEATURES)),
        msg(SET_MEM_TABLE, bytes([2]) + region(0, 0x8000, UADDR, 0)
            + region(0x8000, 0x8000, UADDR + 0x8000, 0x8000)),
        msg(SET_VRING_NUM, state(0, 4)),
        msg(SET_VRING_ADDR, vring_addr(0, 0, UADDR + 0x1000, UADDR + 0x7ffc, UADDR)),
        msg(SET_VRING_BASE, state(0, 0)),
        msg(SET_VRING_KICK, u64(0), EVENTFD),
        msg(SET_VRING_CALL, u64(0), EVENTFD),
        msg(SET_VRING_ENABLE, state(0, 1)),
        poke(2, struct.pack("<H", 1)),
        bytes([KICK, 0]),
    ]),
}

CORPORA = {
    "gpio": GPIO,
    "i2c": I2C,
    "sound": SOUND,
    "gpu": GPU,
    "can": CAN,
    "rpmsg": RPMSG,
    "bluetooth": BT,
    "vhost_user": VHOST_USER,
}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "corpus"
    for target, seeds in CORPORA.items():
        directory = os.path.join(root, target)
        os.makedirs(directory, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(directory, "seed-" + name), "wb") as f:
                f.write(data)
    directory = os.path.join(root, "vhost_user")
    for name, data in VHOST_USER_REGRESSIONS.items():
        with open(os.path.join(directory, "regression-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
