#!/usr/bin/env python3
"""expiry.py - how long the loop stalls when many silent consoles expire at once.

Starts BINARY on loopback with idle_timeout 3 and the per-source limit lifted, upgrades N
WebSocket consoles (from 127.0.0.2..) that then send nothing, and probes /healthz from a
thread every 5 ms until every console was closed. Prints one line: the longest /healthz
answer and the number of probes slower than 100 ms, while they expired.

With --silent the N connections send nothing at all (no request: lws's own 5 s timeout
ends them), from one source address, and the daemon keeps its default per-source limit.

usage: expiry.py [--silent] BINARY N   (127.0.0.1 only; raise `ulimit -n` above N first)
"""
import base64
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

PER_SOURCE = 20000  # connections per 127.0.0.x source, inside the ephemeral port range


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def healthz(port, timeout=10.0):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return time.monotonic() - t0, data.startswith(b"HTTP/1.1 200")


def upgrade(port, i):
    src = "127.0.0.%d" % (2 + i // PER_SOURCE)
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("upgrade %d refused: %r" % (i, head[:40]))
    return s


def silent(port, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
    return s


def main():
    quiet = sys.argv[1] == "--silent"
    binary, n = sys.argv[1 + quiet], int(sys.argv[2 + quiet])
    d = tempfile.mkdtemp(prefix="gpsrelay-expiry-")
    ws = free_port(socket.SOCK_STREAM)
    with open(os.path.join(d, "devices.csv"), "w") as f:
        f.write("device_id,agency_id,label,source_addr\n")
    with open(os.path.join(d, "gpsrelay.conf"), "w") as f:
        f.write("listen_udp 127.0.0.1:%d\nlisten_ws 127.0.0.1:%d\nmapping_file devices.csv\n"
                "auth none\nlog_level error\nidle_timeout 3\n%s" % (
                    free_port(socket.SOCK_DGRAM), ws,
                    "" if quiet else "max_connections_per_source 1000000\n"))
    wrap = os.environ.get("EXPIRY_WRAP", "").split()
    daemon = subprocess.Popen(wrap + [binary, "-c", os.path.join(d, "gpsrelay.conf")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if healthz(ws, 1)[1]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("daemon not ready")
            time.sleep(0.02)
        consoles = [(silent if quiet else upgrade)(ws, i) for i in range(n)]
        # One heartbeat each, all at once, then silence: they expire together, in bulk.
        beat = b'[null,"1","phoenix","heartbeat",{}]'
        frame = bytes([0x81, 0x80 | len(beat), 0, 0, 0, 0]) + beat  # zero mask key
        for s in consoles if not quiet else []:
            s.sendall(frame)
        opened = time.monotonic()
        # The probe is a process of its own: a thread would wait for this one's GIL.
        prober = subprocess.Popen([sys.executable, __file__, "--probe", str(ws)],
                                  stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        for s in consoles:  # wait for each to be closed by the daemon (idle_timeout)
            s.settimeout(30)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
        took = time.monotonic() - opened
        out, _ = prober.communicate("stop\n")
        print("consoles=%d expired_within=%.2fs %s" % (n, took, out.strip()))
    finally:
        daemon.terminate()
        daemon.wait()
        subprocess.run(["rm", "-rf", d])


def probe_main(port):
    """Probes /healthz every 5 ms until a line arrives on stdin; prints the summary."""
    worst, slow, probes = 0.0, 0, 0
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.is_set():
        took, _ = healthz(port)
        worst, probes = max(worst, took), probes + 1
        slow += took > 0.1
        time.sleep(0.005)
    print("healthz_probes=%d healthz_max=%.3fs healthz_over_100ms=%d" % (probes, worst, slow))


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        probe_main(int(sys.argv[2]))
    else:
        main()
