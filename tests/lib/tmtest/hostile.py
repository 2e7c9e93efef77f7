"""Hostile RPC clients on loopback, held open while a test (or the RPC
benchmark) runs real traffic: each kind misbehaves differently, and a
connection the server closes is replaced at once, so COUNT stay open.

Kinds (round robin):
  nonreader  SP handshake, then pipelines heartbeats with a bad credential
             and never reads a reply (tiny receive buffer): once its TCP
             buffers are full the server's replies to it cannot be sent.
             `floods` of them send as fast as the server reads (so their
             replies back up within seconds: ~4 MiB of socket buffers), the
             others `rate` requests a second.
  slowloris  SP handshake, then a request trickled one byte a second.
  halfopen   4 bytes of the SP header, then nothing.
  oversize   SP handshake, then a length prefix of 1 TiB.
  random     random bytes instead of the SP header.
  tls_halfopen  (only with tls_port) a TLS record header announcing a
             ClientHello that never comes.

Every connection records when it opened and when the server closed it
(EOF/RST seen by reading, or a failed write for the non-reader).

  python3 hostile.py --port P [--tls-port T] [--count N] [--seconds S]
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import threading
import time

KINDS = ["nonreader", "slowloris", "halfopen", "oversize", "random"]
SP_REQ_HEADER = b"\x00SP\x00\x00\x30\x00\x00"  # REQ0 (protocol 48)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def heartbeat_frame(req_id):
    """One SP/TCP frame: a well-formed Heartbeat envelope, bad credential."""
    cred = _field(1, b"agt-0000000000000000") + _field(2, b"0" * 64)
    env = (_varint(1 << 3) + _varint(1) + _field(2, b"Coordinator.Heartbeat")
           + _field(5, cred) + _field(6, _varint(1 << 3) + _varint(req_id)))
    payload = struct.pack(">I", 0x80000000 | (req_id & 0x7FFFFFFF)) + env
    return struct.pack(">Q", len(payload)) + payload


class Conn:
    def __init__(self, kind, sock):
        self.kind = kind
        self.sock = sock
        self.opened = time.monotonic()
        self.closed = None
        self.pending = b""
        self.flood = False
        self.next_id = 1
        self.trickle = b""
        self.last_trickle = 0.0


class Hostile:
    def __init__(self, port, count=200, tls_port=None, rate=100, floods=2, host="127.0.0.1"):
        self.port, self.tls_port, self.count, self.rate, self.host = port, tls_port, count, rate, host
        self.floods = floods
        self.block = b"".join(heartbeat_frame(i + 1) for i in range(600))  # ~64 KiB
        self.kinds = KINDS + (["tls_halfopen"] if tls_port else [])
        self.live = []
        self.done = []
        self.connect_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    # -- opening --
    def _open(self, kind):
        port = self.tls_port if kind == "tls_halfopen" else self.port
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if kind == "nonreader":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(2)
        try:
            s.connect((self.host, port))
        except OSError:
            self.connect_failures += 1
            s.close()
            return None
        s.setblocking(False)
        c = Conn(kind, s)
        if kind == "nonreader":
            c.flood = sum(1 for o in self.live if o.flood) < self.floods
        try:
            if kind in ("nonreader", "slowloris", "oversize"):
                s.send(SP_REQ_HEADER)
            if kind == "halfopen":
                s.send(SP_REQ_HEADER[:4])
            elif kind == "oversize":
                s.send(struct.pack(">Q", 1 << 40))
            elif kind == "random":
                s.send(os.urandom(64))
            elif kind == "slowloris":
                c.trickle = heartbeat_frame(1)
            elif kind == "tls_halfopen":
                s.send(b"\x16\x03\x01\x02\x00")  # handshake record of 512 bytes, never sent
        except OSError:
            pass
        return c

    def _close(self, c, now):
        c.closed = now
        fd = c.sock.fileno()
        if fd >= 0:
            self.poller.unregister(fd)
            del self.by_fd[fd]
        try:
            c.sock.close()
        except OSError:
            pass
        self.live.remove(c)
        self.done.append(c)

    # -- the loop --
    def _tick(self, now):
        poller, by_fd = self.poller, self.by_fd
        per_tick = max(1, self.rate // 10)
        for c in list(self.live):
            try:
                if c.kind == "nonreader" and c.flood:
                    while True:  # until the socket would block
                        if not c.pending:
                            c.pending = self.block
                        n = c.sock.send(c.pending)
                        c.pending = c.pending[n:]
                elif c.kind == "nonreader":
                    if len(c.pending) < 65536:
                        for _ in range(per_tick):
                            c.pending += heartbeat_frame(c.next_id)
                            c.next_id += 1
                    n = c.sock.send(c.pending)
                    c.pending = c.pending[n:]
                elif c.kind == "slowloris" and c.trickle and now - c.last_trickle >= 1.0:
                    c.sock.send(c.trickle[:1])
                    c.trickle = c.trickle[1:]
                    c.last_trickle = now
            except BlockingIOError:
                pass
            except OSError:
                self._close(c, now)
        for fd, ev in poller.poll(0):
            c = by_fd.get(fd)
            if c is None or c.closed is not None:
                continue
            if c.kind == "nonreader":
                if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                    self._close(c, now)
                continue
            try:
                if c.sock.recv(65536) == b"":
                    self._close(c, now)
            except BlockingIOError:
                pass
            except OSError:
                self._close(c, now)

    def _loop(self):
        self.poller = poller = select.poll()
        self.by_fd = by_fd = {}
        i = 0
        while not self._stop.is_set():
            now = time.monotonic()
            while len(self.live) < self.count and not self._stop.is_set():
                kind = self.kinds[i % len(self.kinds)]
                i += 1
                c = self._open(kind)
                if c is None:
                    break
                self.live.append(c)
                by_fd[c.sock.fileno()] = c
                poller.register(c.sock.fileno(), select.POLLIN | select.POLLRDHUP)
            self._tick(time.monotonic())
            time.sleep(0.1)
        for c in list(self.live):
            c.sock.close()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        return self.stats()

    def stats(self):
        """Per kind: opened, closed by the server, the longest lifetime of a
        closed one, the oldest still open (at stop)."""
        now = time.monotonic()
        out = {}
        for k in self.kinds:
            closed = [c.closed - c.opened for c in self.done if c.kind == k]
            live = [now - c.opened for c in self.live if c.kind == k]
            if k == "nonreader":
                fl = [c.closed - c.opened for c in self.done if c.kind == k and c.flood]
                out["nonreader_flood"] = {
                    "opened": len(fl) + sum(1 for c in self.live if c.flood), "closed": len(fl),
                    "max_lifetime_s": round(max(fl), 2) if fl else None}
            out[k] = {"opened": len(closed) + len(live), "closed": len(closed),
                      "max_lifetime_s": round(max(closed), 2) if closed else None,
                      "oldest_open_s": round(max(live), 2) if live else None}
        out["connect_failures"] = self.connect_failures
        return out


def main():
    ap = argparse.ArgumentParser(description="hold hostile RPC connections open")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=int, default=100, help="requests/s per non-reader")
    ap.add_argument("--floods", type=int, default=2, help="non-readers sending flat out")
    a = ap.parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)
    h = Hostile(a.port, a.count, a.tls_port, a.rate, a.floods).start()
    try:
        time.sleep(a.seconds)
    except KeyboardInterrupt:
        pass
    print("hostile connections: " + json.dumps(h.stop()), flush=True)


if __name__ == "__main__":
    main()
