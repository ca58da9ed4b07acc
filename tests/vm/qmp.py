#!/usr/bin/env python3
"""QEMU monitor (QMP) access for the VM tier.

  qmp.py watch SOCK LOG          log every event as one JSON line with the host time, until QEMU
                                 exits; waits up to 120 s for the socket to appear
  qmp.py cmd SOCK COMMAND [ARGS] run one command (ARGS: a JSON object), print its "return"

QEMU serves one client per QMP socket, so each VM gets two: one for watch, one for cmd.
"""
import json
import socket
import sys
import time


def connect(path, wait_s):
    deadline = time.time() + wait_s
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            break
        except OSError:
            s.close()
            if time.time() > deadline:
                sys.exit(f"qmp.py: no QMP socket at {path} after {wait_s} s")
            time.sleep(0.1)
    f = s.makefile("rwb", buffering=0)
    json.loads(f.readline())  # greeting
    f.write(b'{"execute": "qmp_capabilities"}\n')
    reply(f)
    return f


def reply(f):
    """The next command reply; events arriving meanwhile are skipped."""
    for line in f:
        msg = json.loads(line)
        if "return" in msg:
            return msg["return"]
        if "error" in msg:
            sys.exit(f"qmp.py: {msg['error'].get('desc', msg['error'])}")
    sys.exit("qmp.py: QEMU closed the connection")


def watch(path, log_path):
    with open(log_path, "a", buffering=1) as log:
        f = connect(path, 120)
        log.write(json.dumps({"t": time.time(), "event": "CONNECTED"}) + "\n")
        for line in f:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "event" in msg:
                log.write(json.dumps({"t": time.time(), "event": msg["event"], "data": msg.get("data", {})}) + "\n")
        log.write(json.dumps({"t": time.time(), "event": "CLOSED"}) + "\n")


def cmd(path, command, args):
    f = connect(path, 10)
    msg = {"execute": command}
    if args:
        msg["arguments"] = json.loads(args)
    f.write(json.dumps(msg).encode() + b"\n")
    print(json.dumps(reply(f)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "cmd":
        cmd(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) == 5 else None)
    else:
        sys.exit(__doc__)
