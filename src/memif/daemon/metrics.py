"""memifd's Prometheus endpoint (``memifd --metrics HOST:PORT``): ``GET /metrics``.

The exposition format is prometheus_client's (the ``metrics`` extra): a collector reads the
same figures the CLI shows (``show interface``, ``show memif`` queues, ``show runtime``,
``show errors``, the buffer pool) at each scrape, plus the process's CPU, memory and fds.

The HTTP side is served from the switch's main loop, like the CLI: a non-blocking listening
socket and at most :data:`MAX_CLIENTS` connections, each with a bounded request
(:data:`MAX_REQUEST` bytes), closed after one answer or :data:`IDLE_TIMEOUT` seconds; when
every slot is taken the oldest connection makes room.  A scraper that never reads its answer
holds one slot and at most one answer's bytes: it cannot stall forwarding, grow memifd's
memory or fds without bound, or lock out the next scrape.  Nothing a client sends raises out
of here; refusals are counted under ``metrics`` in ``show errors``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..vswitch.graph import CounterNode
from ..vswitch.memif_port import MemifPort
from .commands import Context

log = logging.getLogger("memifd")

MAX_CLIENTS = 16
MAX_REQUEST = 8192  # bytes of request line and headers
IDLE_TIMEOUT = 5.0  # seconds a connection may take to send its request and read the answer
READ_SIZE = 4096

INSTALL_HINT = "memifd --metrics needs prometheus_client: pip install 'memif[metrics]'"


class MetricsCounters(CounterNode):
    """``show errors`` for the metrics endpoint (never gets vectors)."""

    name = "metrics"
    errors = {
        "bad-request": "metrics: request not a GET of /metrics, or malformed (answered 4xx)",
        "too-large": "metrics: request longer than the limit (closed)",
        "idle-timeout": "metrics: connection idle too long (closed)",
        "evicted": "metrics: every slot taken; the oldest connection was closed",
    }


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError with a one-line text."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9482")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be 0..65535")
    return host, int(port)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    since: float
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytes = b""
    sent: int = 0


class MetricsServer:
    """``GET /metrics`` on ``host:port``, served from the switch's main loop."""

    def __init__(
        self,
        ctx: Context,
        host: str,
        port: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from prometheus_client import CollectorRegistry  # the 'metrics' extra
        from prometheus_client.process_collector import ProcessCollector

        self.ctx = ctx
        self.switch = ctx.switch
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SwitchCollector(ctx))
        ProcessCollector(namespace="memifd", registry=self.registry)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(MAX_CLIENTS)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from None
        self._listener = sock
        self.address = sock.getsockname()[:2]
        self.conns: dict[int, _Conn] = {}
        self.counters = self.switch.graph.error_counters(MetricsCounters)
        self.switch.add_fd(sock.fileno(), self._accept)
        log.info("metrics on http://%s:%d/metrics", *self.address)

    def close(self) -> None:
        """Close every connection and the listening socket."""
        for fd in list(self.conns):
            self._close(fd)
        self.switch.remove_fd(self._listener.fileno())
        self._listener.close()

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _addr = self._listener.accept()
            except OSError:  # BlockingIOError: nobody else waiting; others: try next turn
                return
            sock.setblocking(False)
            if len(self.conns) >= MAX_CLIENTS:
                oldest = min(self.conns.values(), key=lambda c: c.since)
                self.counters["evicted"] += 1
                self._close(oldest.sock.fileno())
            fd = sock.fileno()
            self.conns[fd] = _Conn(sock, self.clock())
            self.switch.add_fd(fd, functools.partial(self._readable, fd))

    def _close(self, fd: int) -> None:
        conn = self.conns.pop(fd, None)
        if conn is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.switch.remove_fd(fd)
        conn.sock.close()

    def _readable(self, fd: int) -> None:
        conn = self.conns.get(fd)
        if conn is None or conn.outbuf:
            return  # answered already: what it sends now is ignored until we close
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._close(fd)
            return
        if not data:
            self._close(fd)
            return
        conn.inbuf += data
        if b"\r\n\r\n" not in conn.inbuf and b"\n\n" not in conn.inbuf:
            if len(conn.inbuf) > MAX_REQUEST:
                self.counters["too-large"] += 1
                self._close(fd)
            return
        conn.outbuf = self._answer(bytes(conn.inbuf))
        self._flush(fd, conn)

    def _answer(self, request: bytes) -> bytes:
        line = request.split(b"\n", 1)[0].strip().split()
        if len(line) != 3 or not line[2].startswith(b"HTTP/"):
            self.counters["bad-request"] += 1
            return _response(400, "Bad Request", b"bad request\n")
        method, target = line[0], line[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self.counters["bad-request"] += 1
            return _response(405, "Method Not Allowed", b"GET /metrics\n")
        if target != b"/metrics":
            self.counters["bad-request"] += 1
            return _response(404, "Not Found", b"memifd: GET /metrics\n")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.registry)
        return _response(200, "OK", body if method == b"GET" else b"", CONTENT_TYPE_LATEST,
                         length=len(body))  # fmt: skip

    def _flush(self, fd: int, conn: _Conn) -> None:
        try:
            conn.sent += conn.sock.send(conn.outbuf[conn.sent :])
        except BlockingIOError:
            return
        except OSError:
            self._close(fd)
            return
        if conn.sent >= len(conn.outbuf):
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            self._close(fd)

    def service(self) -> None:
        """Each loop turn: go on writing answers that did not fit, close idle connections."""
        if not self.conns:
            return
        now = self.clock()
        for fd, conn in list(self.conns.items()):
            if conn.outbuf:
                self._flush(fd, conn)
            if fd in self.conns and now - conn.since > IDLE_TIMEOUT:
                self.counters["idle-timeout"] += 1
                self._close(fd)


def _response(
    status: int, reason: str, body: bytes, ctype: str = "text/plain", length: int | None = None
) -> bytes:
    head = (
        f"HTTP/1.0 {status} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


# ---------------------------------------------------------------------- the figures
class SwitchCollector:
    """The switch's counters as Prometheus metric families, read at each scrape."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        """Every family: interfaces, memif queues, nodes, errors, buffers."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        switch = self.ctx.switch
        labels = ["interface"]
        ifc = {
            key: CounterMetricFamily(f"memifd_interface_{key}", text, labels=labels)
            for key, text in (
                ("rx_packets", "packets received by the interface"),
                ("rx_bytes", "bytes received by the interface"),
                ("tx_packets", "packets sent by the interface"),
                ("tx_bytes", "bytes sent by the interface"),
                ("drops", "packets dropped on the interface"),
                ("tx_errors", "packets the interface could not send"),
            )
        }
        admin = GaugeMetricFamily("memifd_interface_admin_up", "admin state (1 up)", labels=labels)
        link = GaugeMetricFamily("memifd_interface_link_up", "link state (1 up)", labels=labels)
        qlabels = ["interface", "direction", "queue"]
        qpackets = CounterMetricFamily("memifd_queue_packets", "packets per memif queue",
                                       labels=qlabels)  # fmt: skip
        qbytes = CounterMetricFamily("memifd_queue_bytes", "bytes per memif queue", labels=qlabels)
        qdrops = CounterMetricFamily("memifd_queue_drops", "drops per memif queue, by reason",
                                     labels=[*qlabels, "reason"])  # fmt: skip
        for sw in switch.tables.interfaces.values():
            c = sw.counters
            for key, fam in ifc.items():
                fam.add_metric([sw.name], getattr(c, key))
            admin.add_metric([sw.name], int(sw.admin_up))
            link.add_metric([sw.name], int(sw.link_up))
            if not isinstance(sw.port, MemifPort) or not sw.port.iface.connected:
                continue
            iface = sw.port.iface
            for direction, queues in (("rx", iface.rx_queues), ("tx", iface.tx_queues)):
                for q, queue in enumerate(queues):
                    st = queue.stats
                    where = [sw.name, direction, str(q)]
                    qpackets.add_metric(where, st.packets)
                    qbytes.add_metric(where, st.bytes)
                    for reason, n in st.errors.items():
                        qdrops.add_metric([*where, reason], n)
        yield from (*ifc.values(), admin, link, qpackets, qbytes, qdrops)

        nlabels = ["node"]
        calls = CounterMetricFamily("memifd_node_calls", "node calls (show runtime)",
                                    labels=nlabels)  # fmt: skip
        vectors = CounterMetricFamily("memifd_node_vectors", "packets through the node",
                                      labels=nlabels)  # fmt: skip
        seconds = CounterMetricFamily("memifd_node_seconds", "time spent in the node",
                                      labels=nlabels)  # fmt: skip
        errors = CounterMetricFamily("memifd_errors", "error counters (show errors)",
                                     labels=["node", "error"])  # fmt: skip
        for node in switch.graph.nodes:
            if node.name == "(deleted)":
                continue
            calls.add_metric([node.node_name], node.calls)
            vectors.add_metric([node.node_name], node.vectors)
            seconds.add_metric([node.node_name], node.ns / 1e9)
            for error, n in node.error_counts.items():
                errors.add_metric([node.node_name, error], n)
        yield from (calls, vectors, seconds, errors)

        pool = switch.pool
        buffers = GaugeMetricFamily("memifd_buffers", "packet buffers of the switch's pool",
                                    labels=["state"])  # fmt: skip
        buffers.add_metric(["free"], pool.n_free)
        buffers.add_metric(["used"], pool.n_buffers - pool.n_free)
        yield buffers

