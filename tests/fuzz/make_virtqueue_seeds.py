#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the seed inputs of tests/fuzz/corpus/virtqueue_fuzz/:
#   tests/fuzz/make_virtqueue_seeds.py tests/fuzz/corpus/virtqueue_fuzz
import struct, os, sys
out = sys.argv[1]
R0 = 0x10000
def header(size_log2, flags, avail_base, desc_u16, avail_u2, used_u4, policy=0):
    return struct.pack('<BBHHHHB5x', size_log2, flags, avail_base, desc_u16, avail_u2, used_u4, policy)
def desc(addr, ln, fl, nxt): return struct.pack('<QIHH', addr, ln, fl, nxt)
def seed(name, size_log2, flags, descs, heads, avail_base=0, extra=b'', indirect_at=None, table=b''):
    n = 1 << size_log2
    mem = bytearray(0x10000)
    # desc table at 0, avail at 0x2000, used at 0x3000, data at 0x8000, tables at 0x6000
    for i, d in enumerate(descs): mem[i*16:(i+1)*16] = d
    av = 0x100
    idx = avail_base
    for h in heads:
        struct.pack_into('<H', mem, av + 4 + 2*(idx % n), h); idx = (idx + 1) & 0xffff
    struct.pack_into('<HH', mem, av, 0, idx)
    struct.pack_into('<H', mem, 0x200 + 2, avail_base)
    if table: mem[0x300:0x300+len(table)] = table
    data = header(size_log2, flags, avail_base, 0, av // 2, 0x200 // 4, 3) + bytes(mem[:0x500])
    open(os.path.join(out, name), 'wb').write(data)
D = R0 + 0x400
seed('simple', 3, 0, [desc(D, 16, 1, 1), desc(D+16, 32, 2, 0)], [0])
seed('two-chains-event-idx', 3, 1, [desc(D, 16, 0, 0), desc(D+16, 8, 1, 2), desc(D+32, 8, 2, 0)], [0, 1], avail_base=65534)
tbl = desc(D, 16, 1, 1) + desc(D+16, 16, 3, 2) + desc(D+32, 64, 2, 0)
seed('indirect', 4, 2, [desc(R0+0x300, len(tbl), 4, 0)], [0], table=tbl)
seed('direct-then-indirect', 4, 3, [desc(D, 4, 1, 1), desc(R0+0x300, len(tbl), 4, 0)], [0], table=tbl)
seed('straddle', 3, 4, [desc(R0 + 0x10000 - 8, 16, 2, 0)], [0])
seed('loop', 3, 0, [desc(D, 1, 1, 1), desc(D, 1, 1, 0)], [0])
# driver mode: used ring contents follow the header
open(os.path.join(out, 'driver-valid'), 'wb').write(header(3, 16, 0, 0, 0, 0) + struct.pack('<HH', 0, 2) + struct.pack('<II', 0, 64) + struct.pack('<II', 2, 10))
open(os.path.join(out, 'driver-bad-id'), 'wb').write(header(3, 16 | 2 | 1, 0, 0, 0, 0) + struct.pack('<HH', 0, 1) + struct.pack('<II', 9, 0))
