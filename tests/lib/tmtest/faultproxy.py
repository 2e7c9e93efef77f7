"""A small fault-injecting HTTP proxy on loopback, for retry tests.

It sits between the code under test and a real server (e.g. S3Server) and,
per request, either passes it through or injects a fault:

    with FaultProxy(upstream_port) as fp:
        fp.reset_next(2)      # next 2 requests: TCP reset (RST) after the head
        fp.slowdown_next(3)   # next 3 requests: 503 SlowDown (body read first)
        fp.stall_next(1, 5)   # next request: silence for 5 s, then reset
        fp.break_all()        # every request from now on is reset; open ones too
        fp.pass_all()         # back to passing everything
        fp.endpoint, fp.requests, fp.faults, fp.upstream_bytes

Each client connection carries one request: the proxy forwards it with
"Connection: close", so faults are counted per request even though clients
use keep-alive. Request bodies must have a Content-Length (no chunked
uploads; the S3 backend always sends Content-Length).
"""

import socket
import struct
import threading
import time

SLOWDOWN_BODY = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
                 b"<Message>Please reduce your request rate.</Message></Error>")


def _rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._resets = 0
        self._slowdowns = 0
        self._stalls = 0
        self._stall_s = 0.0
        self._broken = False
        self._active = set()
        self.requests = 0
        self.faults = 0
        self.upstream_bytes = 0  # request bytes forwarded upstream
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self.port = self._srv.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self._stop = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # -- control -------------------------------------------------------------
    def pass_all(self):
        with self._lock:
            self._resets = self._slowdowns = self._stalls = 0
            self._broken = False

    def reset_next(self, n):
        with self._lock:
            self._resets = n

    def slowdown_next(self, n):
        with self._lock:
            self._slowdowns = n

    def stall_next(self, n, seconds):
        with self._lock:
            self._stalls = n
            self._stall_s = seconds

    def break_all(self):
        """Reset every new request and cut every open connection now."""
        with self._lock:
            self._broken = True
            active = list(self._active)
        for s in active:
            _rst_close(s)

    def close(self):
        self._stop = True
        self.break_all()
        try:
            self._srv.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- serving -------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _pick_fault(self):
        with self._lock:
            self.requests += 1
            if self._broken:
                self.faults += 1
                return "reset", 0
            if self._resets > 0:
                self._resets -= 1
                self.faults += 1
                return "reset", 0
            if self._slowdowns > 0:
                self._slowdowns -= 1
                self.faults += 1
                return "slowdown", 0
            if self._stalls > 0:
                self._stalls -= 1
                self.faults += 1
                return "stall", self._stall_s
            return "pass", 0

    def _serve(self, c):
        with self._lock:
            self._active.add(c)
        up = None
        try:
            head, rest = self._read_head(c)
            if head is None:
                return
            kind, arg = self._pick_fault()
            if kind == "reset":
                _rst_close(c)
                return
            if kind == "stall":
                time.sleep(arg)
                _rst_close(c)
                return
            lines = head.split(b"\r\n")
            clen = 0
            out = [lines[0]]
            for ln in lines[1:]:
                name = ln.split(b":", 1)[0].strip().lower()
                if name == b"content-length":
                    clen = int(ln.split(b":", 1)[1])
                if name in (b"connection", b"keep-alive"):
                    continue
                out.append(ln)
            out.append(b"Connection: close")
            if kind == "slowdown":
                self._drain(c, rest, clen)
                c.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(SLOWDOWN_BODY)
                          + SLOWDOWN_BODY)
                return
            up = socket.create_connection(self.upstream, timeout=120)
            with self._lock:
                self._active.add(up)
            up.sendall(b"\r\n".join(out) + b"\r\n\r\n")
            left = clen
            if rest:
                chunk = rest[:left]
                up.sendall(chunk)
                left -= len(chunk)
                self._count(len(chunk))
            while left > 0:
                data = c.recv(min(left, 1 << 16))
                if not data:
                    return
                up.sendall(data)
                left -= len(data)
                self._count(len(data))
            while True:
                data = up.recv(1 << 16)
                if not data:
                    break
                c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self._lock:
                self._active.discard(c)
                if up is not None:
                    self._active.discard(up)
            for s in (c, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _count(self, n):
        with self._lock:
            self.upstream_bytes += n

    @staticmethod
    def _read_head(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = c.recv(65536)
            if not data:
                return None, None
            buf += data
            if len(buf) > 1 << 20:
                return None, None
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head, rest

    @staticmethod
    def _drain(c, rest, clen):
        left = clen - len(rest)
        while left > 0:
            data = c.recv(min(left, 1 << 16))
            if not data:
                return
            left -= len(data)
