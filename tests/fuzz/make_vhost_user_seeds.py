#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the seed inputs of tests/fuzz/corpus/vhost_user_fuzz/ (see the
# input format at the top of vhost_user_fuzz.cpp):
#   tests/fuzz/make_vhost_user_seeds.py tests/fuzz/corpus/vhost_user_fuzz
import os
import struct
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

VERSION, REPLY, NEED_REPLY = 0x1, 0x4, 0x8
REPLY_ACK, CONFIG, BACKEND_REQ, MQ, SLOTS, INFLIGHT = 1 << 3, 1 << 9, 1 << 5, 1, 1 << 15, 1 << 12


def msg(req, payload=b'', flags=VERSION):
    return struct.pack('<III', req, flags, len(payload)) + payload


def u64(v): return struct.pack('<Q', v)
def state(i, n): return struct.pack('<II', i, n)
def region(gpa, size, uva, off): return struct.pack('<QQQQ', gpa, size, uva, off)
def config(off, size, flags=0, data=None): return struct.pack('<III', off, size, flags) + (data or bytes(size))
def inflight(size, off, nq, qs): return struct.pack('<QQHHI', size, off, nq, qs, 0)


def seed(name, control, stream):
    with open(os.path.join(out, name), 'wb') as f:
        f.write(bytes([control]) + stream)


# The request order QEMU 7.2 uses for vhost-user-blk (see
# ../shared/data/qemu-7.2-vhost-user-blk-sequence.log), with valid payloads.
features = (1 << 30) | (1 << 32)
protocol = MQ | REPLY_ACK | CONFIG | BACKEND_REQ | SLOTS | INFLIGHT
mem = region(0, 0x10000, 0x7f0000000000, 0)
qemu = b''.join([
    msg(1), msg(15), msg(16, u64(protocol)), msg(17), msg(36),
    msg(21, flags=VERSION | NEED_REPLY), msg(3), msg(1),
    msg(13, u64(0)), msg(14, u64(0)), msg(24, config(0, 60)),
    msg(2, u64(features)), msg(37, u64(0) + mem, VERSION | NEED_REPLY),
    msg(8, state(0, 128)), msg(10, state(0, 0)),
    msg(9, struct.pack('<IIQQQQ', 0, 0, 0x7f0000001000, 0x7f0000003000, 0x7f0000002000, 0)),
    msg(12, u64(0)), msg(18, state(0, 1)), msg(18, state(0, 0)), msg(11, state(0, 0)),
])
seed('qemu-blk-socket', 0x00, qemu)
seed('qemu-blk-direct', 0x10, qemu)
seed('qemu-blk-missing-fd', 0x10 | (2 << 2) | 0, msg(13, u64(0)) + qemu)

# Everything else a back-end handles, valid, REPLY_ACK on (control bit 6).
rest = b''.join([
    msg(5, struct.pack('<II', 2, 0) + mem + region(0x100000, 0x1000, 0x7f0000100000, 0),
        VERSION | NEED_REPLY),
    msg(6, struct.pack('<QQ', 4096, 0)), msg(7), msg(12, u64(0x100)), msg(20, u64(1500)),
    msg(19, u64(0x1122334455)), msg(22, struct.pack('<QQQBB6x', 0x1000, 0x1000, 0x7f00, 3, 2)),
    msg(23, state(0, 1)), msg(25, config(4, 4, 0, b'\1\2\3\4'), VERSION | NEED_REPLY),
    msg(31, inflight(0, 0, 1, 128)), msg(32, inflight(4096, 0, 1, 128)), msg(34),
    msg(35, state(0, 0)), msg(38, u64(0) + mem), msg(39, u64(0x0f)), msg(40),
    msg(42, state(0, 0)), msg(43), msg(99, flags=VERSION | NEED_REPLY), msg(4),
])
seed('all-requests-ack', 0x50, rest)
seed('all-requests-socket', 0x40, rest)

# The replies a back-end sends to the front-end's call sequence in the
# fuzzer (get_features ... get_max_mem_slots), REPLY_ACK on after the third.
R = VERSION | REPLY
replies = b''.join([
    msg(1, u64(features), R), msg(15, u64(protocol), R), msg(3, u64(0), R),
    msg(17, u64(1), R), msg(24, config(0, 16, 0, bytes(range(16))), R), msg(5, u64(0), R),
    msg(8, u64(0), R), msg(12, u64(0), R), msg(11, state(0, 7), R),
    msg(31, inflight(4096, 0, 1, 128), R), msg(40, u64(0x0f), R), msg(36, u64(8), R),
])
seed('frontend-replies', 0x20, replies)

# Back-end channel requests as the front-end receives them.
channel = b''.join([
    msg(2, flags=VERSION | NEED_REPLY), msg(4, state(1, 0)), msg(5, state(0, 0)),
    msg(3, struct.pack('<QQQ', 0x100 | 1, 4096, 0)), msg(6, bytes(16)), msg(9),
])
seed('backend-channel', 0x70, channel)
