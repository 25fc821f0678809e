"""A TCP proxy in front of the test PostgreSQL: cutting it is a database outage the tests control.

The embedded server listens on a Unix socket; the proxy listens on a loopback port and forwards
each connection to it. ``cut()`` closes the listening socket and every open connection (clients see
the server vanish, as on a crash); ``restore()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import threading
from urllib.parse import parse_qs, urlsplit


def _target(url: str) -> tuple[int, object]:
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    if host.startswith("/"):
        [path] = [p for p in glob.glob(os.path.join(host, ".s.PGSQL.*")) if not p.endswith(".lock")]
        return socket.AF_UNIX, path
    return socket.AF_INET, (host, parts.port or 5432)


class Proxy:
    def __init__(self, url: str) -> None:
        self.family, self.address = _target(url)
        parts = urlsplit(url)
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.port = 0
        self.restore()
        self.url = f"postgresql://{parts.username}:{parts.password or ''}@127.0.0.1:{self.port}{parts.path}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
            listener, self._listener = self._listener, None
        for s in [listener, *sockets]:
            if s is None:
                continue
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                server.connect(self.address)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
