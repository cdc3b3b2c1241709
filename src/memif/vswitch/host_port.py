"""Ports to the Linux network stack: their shared nodes, and AF_PACKET host interfaces.

A host port (:class:`~memif.vswitch.tap_port.TapPort`, :class:`HostPort`) is a device
class behind the switch's :class:`~memif.vswitch.port.Port` protocol.  Every port of a
kind shares one input node (``tap-input``, ``host-input``: the generic device-input
with the kernel's errors) that the switch polls each turn; it asks each of its ports
to read up to a vector of frames straight into pool buffers.  Each port has its own
``<name>-output`` node (the generic interface-output, :class:`KernelOutput`) that
writes frames one system call each.  Python has no
``recvmmsg``/``sendmmsg``: one call per frame is the floor.

``create host-interface name <linux-if>`` opens an ``AF_PACKET``/``SOCK_RAW`` socket
bound to the Linux interface for every protocol (``ETH_P_ALL``), non-blocking,
promiscuous (``PACKET_ADD_MEMBERSHIP``), ignoring its own transmits
(``PACKET_IGNORE_OUTGOING``; the outgoing packet type is skipped as well, for kernels
without it).

Offloads: veth and most virtual devices hand frames to packet sockets as the stack
built them, relying on "hardware" that does not exist here: TCP/UDP checksums left
unfinished (``CHECKSUM_PARTIAL``) and TCP super-frames of up to 64 KiB (TSO/GSO).  The
socket asks for a ``virtio_net_hdr`` in front of each frame (``PACKET_VNET_HDR``),
which says so: an unfinished checksum is finished in place, a TCP super-frame (IPv4 or
IPv6) is cut into ``gso_size`` segments with their own headers and checksums, as the
kernel's software GSO does.  Any other GSO kind is dropped and counted.  Frames sent
get an all-zero header: complete frames, nothing for the kernel to finish.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np

from ..config import format_mac, random_mac
from ..packet import checksum
from ..queue import RxQueue
from .pool import INDEX
from .port import DeviceInput, InterfaceOutput
from .switch import SwitchError
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime
    from .switch import Switch

log = logging.getLogger("memifd")

VECTOR = 256  # frames per poll of one port (one system call each)

# <linux/if_packet.h>, <linux/if_ether.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
# <linux/virtio_net.h>: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR = struct.Struct("=BBHHHH")
VNET_F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_ECN = 0, 1, 4, 0x80
NO_VNET = bytes(VNET_HDR.size)
MAX_FRAME = 65536 + 512  # the largest GSO super-frame, with its headers
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>: beyond rmem_max (root)
# <linux/sockios.h>, <net/if.h>
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFMTU = 0x8913, 0x8914, 0x8921
IFF_UP = 0x1
IFNAMSIZ = 16

ETH_P_IPV4, ETH_P_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8)
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80


# ---------------------------------------------------------------------- shared nodes
class KernelInput(DeviceInput):
    """The input node of one kind of host port: the generic device-input, kernel errors."""

    errors = {
        "no-buffers": "switch buffer pool exhausted",
        "too-big": "frame larger than a switch buffer",
        "read-error": "read from the kernel failed",
        "interface-down": "interface admin-down",
    }


class KernelOutput(InterfaceOutput):
    """``<interface>-output`` of a host port: SPAN tx mirroring, then ``port.transmit``."""

    errors = {
        **InterfaceOutput.errors,
        "no-buffer-space": "the kernel had no room (EAGAIN, ENOBUFS)",
        "link-down": "the Linux interface is down (ENETDOWN, EIO, ENXIO)",
        "frame-too-big": "frame larger than the Linux interface's MTU (EMSGSIZE)",
        "write-error": "the kernel refused the frame",
    }


def write_error(exc: OSError) -> str:
    """The error counter an output failure goes to."""
    if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
        return "no-buffer-space"
    if exc.errno in (errno.ENETDOWN, errno.EIO, errno.ENXIO, errno.ENODEV):
        return "link-down"
    if exc.errno == errno.EMSGSIZE:
        return "frame-too-big"
    return "write-error"


class KernelPort:
    """What host ports share: the runtime, their interface, frame-at-a-time output, and
    the parts of the port protocol that are the same for every kernel device."""

    kind: ClassVar[str] = ""
    fault_action: ClassVar[str] = "kept open, the error recorded"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sw: SwInterface = None  # type: ignore[assignment]  # set by Switch.add_port
        self.output_node = 0  # set by Switch.add_port
        self.last_error = ""

    @property
    def held(self) -> int:
        """0: frames are copied in and out, no pool buffer stays with the port."""
        return 0

    def close(self) -> None:
        """Release the kernel side (each kind)."""

    def rx_queues(self) -> Sequence[RxQueue]:
        """None: the kernel's fd (``fds``) is readable when frames wait."""
        return ()

    def fault(self, reason: str) -> None:
        """Handling the port raised: remember why (``show`` prints it)."""
        self.last_error = reason

    def lost(self, why: str) -> None:
        """The kernel side is gone (device deleted): close, link down, stop polling it."""
        self.last_error = why
        self.close()
        self.rt.tables.refresh()
        log.warning("%s: %s: link down (delete it and create it again)", self.sw.name, why)

    def send_each(
        self, node: InterfaceOutput, idx: np.ndarray, send: Callable[[np.ndarray], object]
    ) -> None:
        """``send(frame)`` each frame; count, drop failures by error name, free the rest."""
        pool = self.rt.pool
        data = pool.data
        ids = idx.tolist()
        failed: dict[str, list[int]] = {}
        sent_bytes = 0
        for i, n in zip(ids, pool.length[idx].tolist(), strict=True):
            try:
                send(data[i, :n])
                sent_bytes += n
            except OSError as exc:
                failed.setdefault(write_error(exc), []).append(i)
                self.last_error = exc.strerror or str(exc)
        n_failed = sum(len(v) for v in failed.values())
        counters = self.sw.counters
        counters.tx_packets += len(ids) - n_failed
        counters.tx_bytes += sent_bytes
        if not n_failed:
            pool.free(idx)
            return
        counters.tx_errors += n_failed
        bad = np.array([i for v in failed.values() for i in v], INDEX)
        pool.free(np.setdiff1d(idx, bad, assume_unique=True))
        for name, which in failed.items():
            node.drop(np.array(which, INDEX), name)


# ---------------------------------------------------------------------- Linux helpers
def ifreq(name: str, data: bytes = b"") -> bytes:
    """A ``struct ifreq`` (40 bytes): the interface name, then ``data``."""
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise SwitchError(f"bad Linux interface name {name!r}: 1..15 characters")
    return struct.pack(f"{IFNAMSIZ}s24s", raw, data)


def set_link_up(name: str) -> None:
    """``ip link set dev <name> up`` (in the daemon's network namespace), by ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq(name))
        (flags,) = struct.unpack_from("H", got, IFNAMSIZ)
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifreq(name, struct.pack("H", flags | IFF_UP)))


def link_mtu(name: str) -> int | None:
    """The MTU of a Linux interface (in the daemon's network namespace); None if unknown."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            got = fcntl.ioctl(s.fileno(), SIOCGIFMTU, ifreq(name))
    except (OSError, SwitchError):
        return None
    return struct.unpack_from("i", got, IFNAMSIZ)[0]


def check_ifname(name: str) -> str:
    """A valid Linux interface name, or SwitchError."""
    if not 0 < len(name.encode()) < IFNAMSIZ or "/" in name or ":" in name or name.strip() != name:
        raise SwitchError(f"bad Linux interface name {name!r}: 1..15 characters, no / : or space")
    return name


# ---------------------------------------------------------------------- offloads
def ones_sum(a: np.ndarray) -> int:
    """The folded 16-bit one's complement sum of bytes ``a`` (big-endian words)."""
    n = len(a)
    total = int(a[: n & ~1].view(">u2").sum(dtype=np.uint64))
    if n & 1:
        total += int(a[n - 1]) << 8
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def finish_checksum(row: np.ndarray, length: int, start: int, offset: int) -> bool:
    """Finish a ``CHECKSUM_PARTIAL`` frame in place (the field holds the pseudo-header sum).

    False when the offsets do not fit the frame.
    """
    pos = start + offset
    if not 0 < start < length or pos + 2 > length:
        return False
    value = ~ones_sum(row[start:length]) & 0xFFFF or 0xFFFF
    row[pos] = value >> 8
    row[pos + 1] = value & 0xFF
    return True


def gso_segment(frame: bytes, gso_type: int, gso_size: int, csum_start: int) -> list[bytes] | None:
    """Cut a TCP super-frame into ``gso_size`` segments, as Linux's software GSO does.

    Each segment gets the headers with its own lengths, IPv4 id and checksum, sequence
    number, flags (FIN and PSH on the last only, CWR on the first only) and a full TCP
    checksum.  None for anything but TCP over IPv4/IPv6 (optionally VLAN-tagged).
    """
    if gso_size <= 0 or len(frame) < 14:
        return None
    l3, etype = 14, int.from_bytes(frame[12:14], "big")
    while etype in VLAN_TPIDS and len(frame) >= l3 + 4:
        etype = int.from_bytes(frame[l3 + 2 : l3 + 4], "big")
        l3 += 4
    kind = gso_type & ~GSO_ECN
    if kind == GSO_TCPV4 and etype == ETH_P_IPV4 and len(frame) >= l3 + 20:
        v4 = True
        l4 = csum_start or l3 + (frame[l3] & 0x0F) * 4
        if frame[l3 + 9] != socket.IPPROTO_TCP:
            return None
        src, dst = frame[l3 + 12 : l3 + 16], frame[l3 + 16 : l3 + 20]
        ip_id = int.from_bytes(frame[l3 + 4 : l3 + 6], "big")
    elif kind == GSO_TCPV6 and etype == ETH_P_IPV6 and len(frame) >= l3 + 40:
        v4 = False
        l4 = csum_start or l3 + 40
        src, dst = frame[l3 + 8 : l3 + 24], frame[l3 + 24 : l3 + 40]
        ip_id = 0
    else:
        return None
    if len(frame) < l4 + 20:
        return None
    thl = (frame[l4 + 12] >> 4) * 4
    hlen = l4 + thl
    if thl < 20 or len(frame) < hlen:
        return None
    payload = memoryview(frame)[hlen:]
    seq = int.from_bytes(frame[l4 + 4 : l4 + 8], "big")
    tflags = frame[l4 + 13]
    count = max(1, -(-len(payload) // gso_size))
    segments = []
    for k in range(count):
        chunk = payload[k * gso_size : (k + 1) * gso_size]
        h = bytearray(frame[:hlen])
        tcp_len = thl + len(chunk)
        if v4:
            struct.pack_into("!HH", h, l3 + 2, hlen - l3 + len(chunk), (ip_id + k) & 0xFFFF)
            h[l3 + 10 : l3 + 12] = b"\0\0"
            struct.pack_into("!H", h, l3 + 10, checksum(bytes(h[l3:l4])))
            pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, tcp_len)
        else:
            struct.pack_into("!H", h, l3 + 4, hlen - l3 - 40 + len(chunk))
            pseudo = src + dst + struct.pack("!IxxxB", tcp_len, socket.IPPROTO_TCP)
        flags = tflags
        if k < count - 1:
            flags &= ~(TCP_FIN | TCP_PSH)
        if k:
            flags &= ~TCP_CWR
        struct.pack_into("!I", h, l4 + 4, (seq + k * gso_size) & 0xFFFFFFFF)
        h[l4 + 13] = flags
        h[l4 + 16 : l4 + 18] = b"\0\0"
        struct.pack_into("!H", h, l4 + 16, checksum(pseudo + h[l4:] + chunk))
        segments.append(bytes(h) + chunk)
    return segments


# ---------------------------------------------------------------------- AF_PACKET
class HostInput(KernelInput):
    """``host-input``: every host-interface (AF_PACKET) port."""

    name = "host-input"
    kind = "af_packet"
    errors = {
        **KernelInput.errors,
        "gso-unsupported": "super-frame of a GSO kind other than TCP (dropped)",
        "bad-offload": "checksum offsets outside the frame (dropped)",
    }


class HostPort(KernelPort):
    """``host-<linux-if>``: an AF_PACKET socket on a Linux interface (a veth end, a NIC)."""

    kind = "af_packet"

    def __init__(self, rt: Runtime, linux_if: str) -> None:
        super().__init__(rt)
        self.linux_if = check_ifname(linux_if)
        try:
            self.ifindex = socket.if_nametoindex(linux_if)
        except OSError:
            raise SwitchError(f"no Linux interface named {linux_if!r}") from None
        # protocol 0 until bound: an unbound ETH_P_ALL socket would see every interface
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            set_link_up(linux_if)  # before bind: binding to a down link reports ENETDOWN
            self.vnet_hdr = _try_setsockopt(sock, PACKET_VNET_HDR, 1)
            self.ignore_outgoing = _try_setsockopt(sock, PACKET_IGNORE_OUTGOING, 1)
            for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                    break
            sock.bind((linux_if, ETH_P_ALL))
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SwitchError(f"host interface {linux_if}: {exc.strerror or exc}") from None
        self.sock: socket.socket | None = sock
        self.host_mac = _read_mac(linux_if)
        self._hdr = bytearray(VNET_HDR.size)
        self._spill = bytearray(MAX_FRAME)
        self.segmented = 0  # GSO super-frames cut into segments
        self.segments = 0  # segments they made
        self.checksums = 0  # unfinished checksums finished

    # ------------------------------------------------------------------ protocol
    @property
    def link_up(self) -> bool:
        """The socket is open (the Linux interface's own state is not followed)."""
        return self.sock is not None

    @property
    def mtu(self) -> int | None:
        """The Linux interface's MTU (what ``show interface`` prints)."""
        return link_mtu(self.linux_if)

    def fds(self) -> list[int]:
        """The socket: readable when frames wait."""
        return [self.sock.fileno()] if self.sock is not None else []

    def set_admin(self, up: bool) -> None:
        """Admin-up also brings the Linux interface up (admin-down leaves it alone)."""
        if up:
            with contextlib.suppress(OSError, SwitchError):
                set_link_up(self.linux_if)

    def gone(self) -> bool:
        """The Linux interface was deleted (or replaced by another of the same name)."""
        try:
            return socket.if_nametoindex(self.linux_if) != self.ifindex
        except OSError:
            return True

    def close(self) -> None:
        """Close the socket (the kernel drops its promiscuous membership)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ------------------------------------------------------------------ input
    def receive(self, node: DeviceInput) -> int:
        """Read up to a vector of frames into pool buffers and hand them to the graph."""
        sock = self.sock
        if sock is None:
            return 0
        pool = self.rt.pool
        idx = pool.alloc(VECTOR)
        if not len(idx):
            return 0
        ids = idx.tolist()
        data, length, size = pool.data, pool.length, pool.data_size
        hdr, spill, vnet = self._hdr, self._spill, self.vnet_hdr
        recv = sock.recvmsg_into
        taken: list[int] = []  # buffers with frames, in arrival order
        pos = tries = 0
        while pos < len(ids) and tries < 2 * VECTOR:
            tries += 1
            i = ids[pos]
            row = data[i]
            try:
                nbytes, _, mflags, addr = recv((hdr, row, spill) if vnet else (row, spill))
            except BlockingIOError:
                break
            except OSError as exc:
                node.error_counts["read-error"] += 1
                self.last_error = exc.strerror or str(exc)
                if exc.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO) and self.gone():
                    self.lost(f"Linux interface {self.linux_if} is gone")
                    break
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # our own transmit (kernels without PACKET_IGNORE_OUTGOING)
            n = nbytes - VNET_HDR.size if vnet else nbytes
            if mflags & socket.MSG_TRUNC or n < 0:
                node.error_counts["too-big"] += 1
                continue
            flags, gso_type, _, gso_size, cstart, coff = (
                VNET_HDR.unpack(hdr) if vnet else (0, GSO_NONE, 0, 0, 0, 0)
            )
            if gso_type != GSO_NONE:
                frame = bytes(row[: min(n, size)]) + bytes(spill[: max(n - size, 0)])
                segs = gso_segment(frame, gso_type, gso_size, cstart)
                if segs is None:
                    node.error_counts["gso-unsupported"] += 1
                    continue
                if any(len(s) > size for s in segs):
                    node.error_counts["too-big"] += 1
                    continue
                more = pool.alloc(len(segs) - 1)
                if len(more) < len(segs) - 1:
                    node.error_counts["no-buffers"] += len(segs) - 1 - len(more)
                for b, seg in zip([i, *more.tolist()], segs, strict=False):
                    data[b, : len(seg)] = np.frombuffer(seg, np.uint8)
                    length[b] = len(seg)
                self.segmented += 1
                self.segments += len(segs)
                taken += [i, *more.tolist()]  # segments in order, after the first
                pos += 1
                continue
            if n > size:
                node.error_counts["too-big"] += 1
                continue
            length[i] = n
            if flags & VNET_F_NEEDS_CSUM:
                if not finish_checksum(row, n, cstart, coff):
                    node.error_counts["bad-offload"] += 1
                    continue
                self.checksums += 1
            taken.append(i)
            pos += 1
        if pos < len(ids):
            pool.free(idx[pos:])
        return node.deliver(self.sw, np.array(taken, INDEX))

    # ------------------------------------------------------------------ output
    def transmit(self, node: InterfaceOutput, idx: np.ndarray) -> None:
        """Send each frame on the socket (behind an all-zero virtio header)."""
        sock = self.sock
        if sock is None:
            node.drop(idx, "link-down")
            return
        # (numpy arrays are buffers: the casts only tell the type checker)
        if self.vnet_hdr:
            sendmsg = cast("Callable[[tuple[bytes, np.ndarray]], int]", sock.sendmsg)

            def send(frame: np.ndarray) -> None:
                sendmsg((NO_VNET, frame))

            self.send_each(node, idx, send)
        else:
            self.send_each(node, idx, cast("Callable[[np.ndarray], int]", sock.send))

    def details(self) -> dict[str, object]:
        """What ``show packet-sockets`` prints."""
        return {
            "linux_if": self.linux_if,
            "ifindex": self.ifindex,
            "host_mac": format_mac(self.host_mac) if self.host_mac else None,
            "fd": self.sock.fileno() if self.sock is not None else -1,
            "vnet_hdr": self.vnet_hdr,
            "ignore_outgoing": self.ignore_outgoing,
            "gso_segmented": self.segmented,
            "gso_segments": self.segments,
            "checksums_finished": self.checksums,
            "last_error": self.last_error,
        }


def _try_setsockopt(sock: socket.socket, opt: int, value: int) -> bool:
    try:
        sock.setsockopt(SOL_PACKET, opt, value)
    except OSError:
        return False
    return True


def _read_mac(linux_if: str) -> bytes | None:
    try:
        with open(f"/sys/class/net/{linux_if}/address") as f:
            return bytes.fromhex(f.read().strip().replace(":", ""))
    except (OSError, ValueError):
        return None


def create_host_interface(switch: Switch, linux_if: str, hw_addr: bytes | None) -> SwInterface:
    """``create host-interface name <linux-if> [hw-addr <mac>]`` -> ``host-<linux-if>``."""
    name = f"host-{linux_if}"
    if name in switch.tables.by_name:
        raise SwitchError(f"interface {name} already exists")
    port = HostPort(switch.runtime, linux_if)
    try:
        switch.input_node(HostInput)
        return switch.add_port(name, hw_addr or random_mac(), port, KernelOutput)
    except BaseException:
        port.close()
        raise
