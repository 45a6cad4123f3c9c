#!/usr/bin/env python3
"""Regenerates the hand-made seed corpora in fuzz/seeds/<target>/ from the repository's own
fixtures: properties/*.properties, the child lines of protocol-fixtures/*.txt, and KPL
aggregates built like the unit tests' encoder. lease_item's seeds are libFuzzer-found inputs
(its input is an `arbitrary` encoding, not a readable format) and are kept as they are.

Usage: python3 fuzz/seeds/generate.py   (from anywhere; rewrites the generated files)
"""
import glob
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- properties: the shipped files plus the tricky corners of the format
for path in sorted(glob.glob(os.path.join(REPO, "properties", "*.properties"))):
    with open(path, "rb") as f:
        write("properties", "file-" + os.path.basename(path), f.read())
corners = {
    "continuation": b"key = first \\\n    second\\\\\n  next:value\\\r\n\tcont\r\n",
    "escapes": b"a\\=b\\:c\\ d = \\u00e9\\uD83D\\uDE00\\t\\n\\\\ \n!comment\n#x\n",
    "malformed-unicode": b"k=\\u12G4\nk2=\\uD800 alone\nk3 = \\u\n",
    "separators": b"k1 v1\nk2:v2\nk3=v3\nk4 = = v4\n  \f k5\t:\t v5  \n=\n:\n",
    "latin1-crlf": b"name=caf\xe9\r\nother=\x80\x9f\xff\r\n\r\n",
    "trailing-backslash": b"k=v\\",
}
for name, data in corners.items():
    write("properties", name, data)

# ---- protocol_line: every child line of the protocol fixtures
lines = set()
for path in sorted(glob.glob(os.path.join(REPO, "protocol-fixtures", "*.txt"))):
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line.startswith("C> "):
                lines.add(line[3:].encode())
            elif line.startswith("C= "):
                lines.add(json.loads(line[3:]).encode())
for i, line in enumerate(sorted(lines)):
    write("protocol_line", "fixture-%03d" % i, line)

# ---- line_reader: [limit byte][read-pattern byte] + child output with mixed terminators
joined = b"".join(l + t for l, t in zip(sorted(lines), [b"\n", b"\r\n", b"\r"] * 1000))
write("line_reader", "fixtures-limit-64", bytes([63, 0x2A]) + joined[:4000])
write("line_reader", "fixtures-limit-8", bytes([7, 0x07]) + joined[:2000])
write("line_reader", "crlf-split", bytes([10, 0x00]) + b"a\r\nb\r\rc\n\r\n" + b"x" * 40 + b"\r\n")
write("line_reader", "no-terminator", bytes([3, 0x3F]) + b"abcdefgh")


# ---- kpl: [mode byte] + record (mode 0) or protobuf body (mode 1)
def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def len_field(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def varint_field(field, v):
    return varint(field << 3) + varint(v)


def body(pks, ehks, records):
    out = b"".join(len_field(1, pk) for pk in pks) + b"".join(len_field(2, e) for e in ehks)
    for pk, ehk, data in records:
        rec = varint_field(1, pk) + (varint_field(2, ehk) if ehk is not None else b"") + len_field(3, data)
        out += len_field(3, rec)
    return out


MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])
bodies = {
    "two-keys": body([b"pk-a", b"pk-b"], [], [(0, None, b"one"), (1, None, b"two"), (0, None, b"")]),
    "explicit-hash": body([b"pk"], [b"170141183460469231731687303715884105728"], [(0, 0, b"x" * 50)]),
    "bad-index": body([b"pk"], [], [(3, None, b"lost")]),
    "tags-and-unknown": len_field(1, b"k") + len_field(3, varint_field(1, 0) + len_field(3, b"d")
                                                        + len_field(4, len_field(1, b"t") + len_field(2, b"v")))
    + varint_field(9, 7) + varint(10 << 3 | 5) + b"\0\0\0\0",
    "empty-records": body([b"pk"], [], []),
}
for name, b in bodies.items():
    write("kpl", "body-" + name, bytes([1]) + b)
    write("kpl", "record-" + name, bytes([0]) + MAGIC + b + hashlib.md5(b).digest())
write("kpl", "record-bad-digest", bytes([0]) + MAGIC + bodies["two-keys"] + bytes(16))
write("kpl", "record-plain", bytes([0]) + b"just a plain record")
write("kpl", "structured", bytes([2]) + bytes(range(256)))
