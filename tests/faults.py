"""A TCP proxy in front of the test Redis that loses a chosen reply on the network.

It forwards bytes both ways. Once armed with some bytes (a job id), the first reply from Redis that
contains them is never delivered: the proxy closes that client connection instead, after Redis has
already executed the command. That is the classic way RQ loses jobs: Redis moved the job, the worker
never heard of it.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class ReplyDroppingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._armed: bytes | None = None
        self._lock = threading.Lock()
        self.dropped = threading.Event()
        self._closing = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, needle: bytes) -> None:
        with self._lock:
            self._armed = needle
            self.dropped.clear()

    def _take_if_armed(self, data: bytes) -> bool:
        with self._lock:
            if self._armed is not None and self._armed in data:
                self._armed = None
                return True
            return False

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, is_reply: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if is_reply and self._take_if_armed(data):
                    self.dropped.set()
                    break  # the reply is lost; both ends see the connection close
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        for s in self._sockets:
            # shutdown first: a bare close() leaves a socket that a thread is blocked reading from
            # open, and Redis would keep serving the dead worker's blocked BLMOVE into the next test.
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
