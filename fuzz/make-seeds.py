#!/usr/bin/env python3
"""Writes the seed corpus of the daemons' fuzz targets: one file per seed, a byte stream a
client could write on the socket (4-byte big-endian length, JSON body, repeated).

Seeds named valid-* hold only well-formed requests (tests/corpus.rs checks that each of their
frames decodes); the others are malformed on purpose: truncated, oversized, bad JSON, wrong
types. Run from anywhere: ./make-seeds.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
U64_MAX = 2**64 - 1


def frame(obj_or_bytes):
    body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


AREA = {
    "sector_size": 512,
    "align_bytes": 1 << 20,
    # A path that does not exist: replaying never opens a real device.
    "pieces": [{"lv_start": 0, "len": 256 << 20, "pv_path": "/nonexistent/fuzz-pv", "pv_start": 1 << 20}],
}
LV = {"kind": "lv", "uuid": "Zm9v-YmFy-dXVp-ZA", "offset": 67 << 20, "name": "lv1"}

LOCKD = {
    "hello": {"op": "hello", "version": 1},
    "hello-other-version": {"op": "hello", "version": 99},
    "lock-start": {"op": "lock_start", "vg": "vg1", "vg_uuid": "vg-uuid", "area": AREA},
    "lock-stop": {"op": "lock_stop", "vg": "vg1", "force": False},
    "lock-stop-force": {"op": "lock_stop", "vg": "vg1", "force": True},
    "lock-gl-sh": {"op": "lock", "vg": "", "resource": {"kind": "gl"}, "mode": "sh", "persistent": False, "area": None},
    "lock-vg-ex": {"op": "lock", "vg": "vg1", "resource": {"kind": "vg"}, "mode": "ex", "persistent": False, "area": None},
    "lock-vg-persistent": {"op": "lock", "vg": "vg1", "resource": {"kind": "vg"}, "mode": "ex", "persistent": True, "area": None},
    "lock-lv-ex": {"op": "lock", "vg": "vg1", "resource": LV, "mode": "ex", "persistent": True, "area": AREA},
    "lock-lv-un": {"op": "lock", "vg": "vg1", "resource": LV, "mode": "un", "persistent": True, "area": None},
    "init-lv": {"op": "init_lv", "vg": "vg1", "lv_uuid": "Zm9v-YmFy-dXVp-ZA", "area": None},
    "free-lv": {"op": "free_lv", "vg": "vg1", "lv_uuid": "Zm9v-YmFy-dXVp-ZA", "offset": 67 << 20, "area": AREA},
    "vg-update": {"op": "vg_update", "vg": "vg1", "version": 42},
    "gl-enable": {"op": "gl_enable", "vg": "vg1"},
    "gl-disable": {"op": "gl_disable", "vg": "vg1"},
    "repair": {"op": "repair", "vg": "vg1", "keep": ["Zm9v-YmFy-dXVp-ZA"]},
    "status": {"op": "status"},
}

WDMD = {
    "register": {"op": "register", "name": "lockd_lvm_vg1:1:1", "takeover": False, "fire_timeout_secs": 60},
    "register-takeover": {"op": "register", "name": "lockd_lvm_vg1:1:1", "takeover": True, "fire_timeout_secs": 60},
    "register-other-w": {"op": "register", "name": "x", "takeover": False, "fire_timeout_secs": 30},
    "set-expiry": {"op": "set_expiry", "renewal_ms": 1_000_000, "expiry_ms": 1_080_000},
    "clear": {"op": "set_expiry", "renewal_ms": 0, "expiry_ms": 0},
    "status": {"op": "status"},
    "unregister": {"op": "unregister"},
}


def malformed(target, valid_stream):
    write(target, "truncated-prefix", valid_stream[:2])
    write(target, "truncated-body", valid_stream[: max(5, len(valid_stream) // 2)])
    write(target, "oversized-prefix", struct.pack(">I", 0xFFFFFFFF) + b"{}")
    write(target, "just-over-limit", struct.pack(">I", (1 << 20) + 1 if target == "lockd_request" else 64 * 1024 + 1))
    write(target, "bad-json", frame(b"not json") + frame(b"{\"op\":") + frame(b""))
    write(target, "unknown-op", frame({"op": "frobnicate"}) + frame({"no_op": 1}))
    write(target, "nested", frame(b"[" * 200 + b"]" * 200))


def main():
    for name, req in LOCKD.items():
        write("lockd_request", "valid-" + name, frame(req))
    # A command's session: hello, GL, VG, an LV, update, status.
    session = b"".join(frame(LOCKD[k]) for k in ["hello", "lock-gl-sh", "lock-vg-ex", "init-lv", "lock-lv-ex", "vg-update", "status"])
    write("lockd_request", "valid-session", session)
    write("lockd_request", "wrong-types", frame({"op": "lock", "vg": 1}) + frame({"op": "vg_update", "vg": "v", "version": -1}))
    write("lockd_request", "huge-numbers", frame({"op": "free_lv", "vg": "v", "lv_uuid": "u", "offset": U64_MAX, "area": None}))
    malformed("lockd_request", session)

    for name, req in WDMD.items():
        write("wdmd_request", "valid-" + name, frame(req))
    # Frames alternate between two connections: A registers and reports, B asks for status.
    s = WDMD["status"]
    session = b"".join(
        frame(r)
        for r in [WDMD["register"], s, WDMD["set-expiry"], s, WDMD["clear"], s, WDMD["unregister"], s]
    )
    write("wdmd_request", "valid-session", session)
    # Registered on both connections with one name, expiry set, connection gone.
    write("wdmd_request", "valid-name-in-use", frame(WDMD["register"]) + frame(WDMD["register"]) + frame(WDMD["set-expiry"]))
    write("wdmd_request", "valid-never-fence", frame(WDMD["register"]) + frame(s) + frame({"op": "set_expiry", "renewal_ms": 1, "expiry_ms": U64_MAX}))
    write("wdmd_request", "wrong-types", frame({"op": "register", "name": 5}) + frame({"op": "set_expiry", "renewal_ms": "x"}))
    write("wdmd_request", "bad-name", frame({"op": "register", "name": "a b\n", "takeover": False, "fire_timeout_secs": 60}))
    malformed("wdmd_request", session)


if __name__ == "__main__":
    main()
