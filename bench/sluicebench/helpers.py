"""Small socket programs the harness runs as their own processes (``python3 -m
sluicebench.helpers COMMAND``), so their sockets and CPU never count against a forwarder.

- ``hold-server``: the upstream of the idle test. Accepts, echoes what it reads, keeps every
  connection open until its peer closes.
- ``hold-client``: opens N connections to a port one after another, sends 16 bytes on each and
  waits for the echo (so every connection has carried data end to end), prints ``ready``, holds
  them until a line arrives on stdin, closes them all.
- ``listeners``: the health-check targets. Binds N listeners on 127.0.0.1, accepts and closes
  whatever connects, and writes its accept count to a status file once a second.

Every one binds or connects to 127.0.0.1 only and exits by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import sys
import time

PAYLOAD = b"sluicebench-idle"  # 16 bytes


def hold_server(port: int, max_seconds: float) -> None:
    """Accept on 127.0.0.1:``port``, echo, hold until the peer closes, for at most ``max_seconds``."""
    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            if key.data is None:
                while True:
                    try:
                        conn, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE: let the backlog wait
                        print(f"accept: {e}", flush=True)
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                try:
                    conn.send(data)  # 16 bytes into an empty send buffer: never partial
                except OSError:
                    pass
            else:
                sel.unregister(conn)
                conn.close()


def hold_client(port: int, count: int, max_seconds: float) -> None:
    """Open ``count`` connections to 127.0.0.1:``port``, each carrying one echo, then hold them.

    Prints one JSON line: ``{"opened": n, "seconds": t}`` plus ``"error"`` if a connection
    failed. Then waits for a line on stdin (or ``max_seconds``) and closes everything.
    """
    socks = []
    opened = 0
    started = time.monotonic()
    error = None
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(PAYLOAD)
            got = b""
            while len(got) < len(PAYLOAD):
                chunk = s.recv(len(PAYLOAD) - len(got))
                if not chunk:
                    raise ConnectionError("closed before the echo came back")
                got += chunk
            opened += 1
    except OSError as e:
        error = f"connection {opened + 1}: {e}"
    result = {"opened": opened, "seconds": round(time.monotonic() - started, 3)}
    if error:
        result["error"] = error
    print(json.dumps(result), flush=True)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    sel.select(timeout=max_seconds)
    for s in socks:
        s.close()


def listeners(count: int, ports_file: str, status_file: str, max_seconds: float) -> None:
    """Bind ``count`` listeners on 127.0.0.1, write their ports, accept-and-close until the end."""
    sel = selectors.DefaultSelector()
    ports = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        ports.append(s.getsockname()[1])
    tmp = ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.rename(tmp, ports_file)  # the driver polls for the file: it appears complete or not at all

    accepted = 0
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + max_seconds
    next_status = 0.0
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            while True:
                try:
                    conn, _ = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                conn.close()
                accepted += 1
        now = time.monotonic()
        if now >= next_status:
            with open(status_file + ".tmp", "w") as f:
                json.dump({"accepted": accepted, "t": now}, f)
            os.rename(status_file + ".tmp", status_file)
            next_status = now + 1.0


def main() -> None:
    """Command line: ``hold-server``, ``hold-client`` or ``listeners``."""
    p = argparse.ArgumentParser(prog="sluicebench.helpers")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("hold-server")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--max-seconds", type=float, default=900)
    b = sub.add_parser("hold-client")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--count", type=int, required=True)
    b.add_argument("--max-seconds", type=float, default=300)
    c = sub.add_parser("listeners")
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--ports-file", required=True)
    c.add_argument("--status-file", required=True)
    c.add_argument("--max-seconds", type=float, default=900)
    args = p.parse_args()
    if args.cmd == "hold-server":
        hold_server(args.port, args.max_seconds)
    elif args.cmd == "hold-client":
        hold_client(args.port, args.count, args.max_seconds)
    else:
        listeners(args.count, args.ports_file, args.status_file, args.max_seconds)


if __name__ == "__main__":
    main()
