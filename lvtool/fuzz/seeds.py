#!/usr/bin/env python3
"""Turns PV devices written by real lvm2 (or lvtool) into fuzz seeds.

usage: seeds.py OUT_DIR NAME DEV...
Writes, per device with committed metadata:
  OUT_DIR/vg_text/NAME-<i>.txt      the committed text (NUL dropped)
  OUT_DIR/config_text/NAME-<i>.txt  the same text
  OUT_DIR/pv_image/NAME-<i>[-wrap]  a compact image: flags byte, then the label sectors, an mda
                                    shrunk to fit, the text (plain: flags 0; wrapping around the
                                    end of the mda: flags 0x0b, CRC fix-ups and a commit)
and, for the whole VG, OUT_DIR/pv_image/NAME-pair: flags 0x0f (two devices), len(A) u32, A, B.
"""
import os
import struct
import sys
import zlib

SEED = 0xF597A6CF
MASK = 0xFFFFFFFF


def lvm_crc(data, crc=SEED):
    # zlib inverts on entry and exit; lvm2 does neither.
    return (~zlib.crc32(data, ~crc & MASK)) & MASK


def read_dev(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def label(path):
    head = read_dev(path, 0, 2048)
    for s in range(4):
        sec = head[s * 512:(s + 1) * 512]
        if sec[:8] == b"LABELONE":
            return s, bytearray(sec)
    raise SystemExit(f"{path}: no label")


def areas(sec, pos):
    out = []
    while True:
        o, n = struct.unpack_from("<QQ", sec, pos)
        pos += 16
        if o == 0:
            return out, pos
        out.append((o, n))


def committed_text(path):
    s, sec = label(path)
    hdr_off = struct.unpack_from("<I", sec, 20)[0]
    pos = hdr_off + 40
    _, pos = areas(sec, pos)
    mdas, _ = areas(sec, pos)
    start, _ = mdas[0]
    hdr = read_dev(path, start, 512)
    size = struct.unpack_from("<Q", hdr, 32)[0]
    off, tsize, _, _ = struct.unpack_from("<QQII", hdr, 40)
    first = min(tsize, size - off)
    text = read_dev(path, start + off, first) + read_dev(path, start + 512, tsize - first)
    return s, sec, text


# lvm2 puts the first mda at 4096; right after the four label sectors keeps seeds small.
MDA_AT = 2048


def image(s, sec, text, wrap):
    """Label sector s as found, mda at MDA_AT just big enough; text at 512 or wrapping."""
    text = text if text.endswith(b"\0") else text + b"\0"
    n = len(text)
    # max text = (size - 512) / 2 - 512, so this size always fits one copy.
    size = ((2 * (n + 512) + 512 + 1023) // 512) * 512
    sec = bytearray(sec)
    hdr_off = struct.unpack_from("<I", sec, 20)[0]
    _, pos = areas(sec, hdr_off + 40)
    struct.pack_into("<QQ", sec, pos, MDA_AT, size)  # first mda: here, shrunk
    struct.pack_into("<I", sec, 16, lvm_crc(bytes(sec[20:512])))
    img = bytearray(MDA_AT + size)
    img[s * 512:(s + 1) * 512] = sec
    if wrap:
        off = size - (n // 2 // 512) * 512 - 512 if n > 1024 else size - 512
        first = size - off
        img[MDA_AT + off:MDA_AT + size] = text[:first]
        img[MDA_AT + 512:MDA_AT + 512 + n - first] = text[first:]
    else:
        off = 512
        img[MDA_AT + off:MDA_AT + off + n] = text
    hdr = bytearray(512)
    hdr[4:20] = b" LVM2 x[5A%r0N*>"
    struct.pack_into("<IQQ", hdr, 20, 1, MDA_AT, size)
    struct.pack_into("<QQII", hdr, 40, off, n, lvm_crc(text), 0)
    struct.pack_into("<I", hdr, 0, lvm_crc(bytes(hdr[4:])))
    img[MDA_AT:MDA_AT + 512] = hdr
    # Trim trailing zeros past the text: the harness pads nothing, so keep what is read.
    end = MDA_AT + (max(off + n, 1024) if not wrap else size)
    return bytes(img[:end])


def main():
    out, name, devs = sys.argv[1], sys.argv[2], sys.argv[3:]
    # PV images only from small texts (SEEDS_NO_IMAGES=1 for big VGs): corpus size.
    images = not os.environ.get("SEEDS_NO_IMAGES")
    for d in ("vg_text", "config_text", "pv_image"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    plain = []
    for i, dev in enumerate(devs):
        s, sec, text = committed_text(dev)
        body = text.rstrip(b"\0")
        for d in ("vg_text", "config_text"):
            with open(os.path.join(out, d, f"{name}-{i}.txt"), "wb") as f:
                f.write(body)
        if not images:
            continue
        img = image(s, sec, text, False)
        plain.append(img)
        with open(os.path.join(out, "pv_image", f"{name}-{i}"), "wb") as f:
            f.write(b"\0" + img)
        with open(os.path.join(out, "pv_image", f"{name}-{i}-wrap"), "wb") as f:
            f.write(b"\x0b" + image(s, sec, text, True))
    if len(plain) >= 2:
        with open(os.path.join(out, "pv_image", f"{name}-pair"), "wb") as f:
            f.write(b"\x0f" + struct.pack("<I", len(plain[0])) + plain[0] + plain[1])


if __name__ == "__main__":
    main()
