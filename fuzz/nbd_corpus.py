#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/nbd_fuzzer.c (fuzz/corpora/nbd/): client
byte streams that reach every option and command, well-formed and not."""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go(name, infos=(), o=7):
    n = name.encode()
    return opt(o, struct.pack(">I", len(n)) + n +
               struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(o, name, queries):
    n = name.encode()
    q = b"".join(struct.pack(">I", len(x)) + x.encode() for x in queries)
    return opt(o, struct.pack(">I", len(n)) + n +
               struct.pack(">I", len(queries)) + q)


def req(t, off, ln, flags=0, data=b""):
    return struct.pack(">IHHQQI", REQ, flags, t, 1, off, ln) + data


FLAGS = struct.pack(">I", 3)
START = FLAGS + opt(8) + meta(10, "ro", ["base:allocation"])
seeds = {
    "list": FLAGS + opt(3) + meta(9, "", []) + meta(9, "ro", ["base:"]) +
    opt(2),
    "info": FLAGS + go("ro", (0, 1, 2, 3), 6) + go("nope", (), 6) +
    go("", (3,), 6) + opt(99) + opt(5) + opt(2),
    "export_name": struct.pack(">I", 1) + opt(1, b"ro") +
    req(0, 0, 4096) + req(0, 1 << 20, 1) + req(2, 0, 0),
    "read_ro": START + go("ro", (3,)) + req(0, 0, 4096) +
    req(0, 60000, 200000) + req(0, (1 << 20) - 1, 2) + req(0, 0, 0) +
    req(7, 0, 1 << 20) + req(7, 4096, 100, 8) + req(1, 0, 4, 0, b"abcd") +
    req(4, 0, 4096) + req(3, 0, 0) + req(9, 0, 0) + req(2, 0, 0),
    "write_rw": FLAGS + opt(8) + meta(10, "rw", ["base:allocation"]) +
    go("rw") + req(1, 100, 8, 1, b"12345678") + req(1, 4096, 4096, 0,
                                                   b"x" * 4096) +
    req(6, 10, 70000, 2) + req(4, 0, 8192) + req(3, 0, 0) +
    req(0, 0, 8192) + req(7, 0, 1 << 20) + req(1, (1 << 20) - 2, 4, 0,
                                               b"zzzz") +
    req(2, 0, 0),
    "simple_reads": FLAGS + go("rw") + req(0, 0, 100) +
    req(0, 1 << 19, 1 << 19) + req(7, 0, 10) + req(2, 0, 0),
    "bad_lengths": FLAGS + opt(7, b"\xff\xff\xff\xff") +
    opt(10, b"\0\0\0\0\0\0\0\x05") + opt(3, b"x") + opt(8, b"y") +
    opt(9, b"\0\0\0\0\x7f\xff\xff\xff") +
    struct.pack(">QII", IHAVEOPT, 7, 0x7fffffff),
}
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "corpora", "nbd")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
