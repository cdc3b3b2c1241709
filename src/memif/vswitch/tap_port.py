"""tap ports: a Linux tap device per switch interface (VPP's ``create tap``).

``create tap id <n>`` opens ``/dev/net/tun`` as a tap (``IFF_TAP | IFF_NO_PI``: bare
Ethernet frames, no offload header), non-blocking.  The device lives as long as the
file descriptor: deleting the interface (or the daemon exiting) removes it, in
whatever network namespace it was moved to.

The host side is set up with iproute2's ``ip``: moved to ``host-ns`` (an existing
named namespace, ``ip netns add <name>``), given ``host-ip4-addr``, brought up.  Its
carrier follows the switch interface's admin state (``TUNSETCARRIER``), as VPP's tap
does: until ``set interface state tap<n> up`` the host sees ``NO-CARRIER``.

A tap without ``IFF_VNET_HDR`` offers no offloads to the kernel, so what the host
sends is already segmented and checksummed: frames go between the tap and pool buffers
unchanged, one ``readv``/``write`` each.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np

from ..config import format_mac, random_mac
from ..packet import ip4_str
from .host_port import (
    IFNAMSIZ,
    VECTOR,
    KernelInput,
    KernelOutput,
    KernelPort,
    check_ifname,
    ifreq,
    link_mtu,
    set_link_up,
)
from .port import DeviceInput, InterfaceOutput
from .switch import SwitchError
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime
    from .switch import Switch

TUN_PATH = "/dev/net/tun"
# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETCARRIER = 0x400454E2
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
# <linux/sockios.h>
SIOCGIFHWADDR, SIOCSIFHWADDR = 0x8927, 0x8924
ARPHRD_ETHER = 1


class TapInput(KernelInput):
    """``tap-input``: every tap port."""

    name = "tap-input"
    kind = "tap"


class TapPort(KernelPort):
    """``tap<n>``: one tap device, its host side configured at creation."""

    kind = "tap"

    def __init__(self, rt: Runtime, id: int, fd: int, host_if_name: str) -> None:
        super().__init__(rt)
        self.id = id
        self.fd = fd
        self.host_if_name = host_if_name
        self.host_ns: str | None = None
        self.host_ip4: tuple[bytes, int] | None = None
        self.host_mac: bytes | None = None
        self.mtu: int | None = None  # the host side's, at creation
        self.carrier = False

    # ------------------------------------------------------------------ protocol
    @property
    def link_up(self) -> bool:
        """The tap device exists (its fd is open)."""
        return self.fd >= 0

    def fds(self) -> list[int]:
        """The tap's fd: readable when the host has sent frames."""
        return [self.fd] if self.fd >= 0 else []

    def set_admin(self, up: bool) -> None:
        """The host side's carrier follows the admin state."""
        self.carrier = set_carrier(self.fd, up) and up

    def close(self) -> None:
        """Close the fd: the kernel deletes the device."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # ------------------------------------------------------------------ data path
    def receive(self, node: DeviceInput) -> int:
        """Read up to a vector of frames into pool buffers and hand them to the graph."""
        fd = self.fd
        if fd < 0:
            return 0
        pool = self.rt.pool
        idx = pool.alloc(VECTOR)
        data, length, readv = pool.data, pool.length, os.readv
        n = 0
        for i in idx.tolist():
            try:
                length[i] = readv(fd, (data[i],))
            except BlockingIOError:
                break
            except OSError as exc:
                node.error_counts["read-error"] += 1
                self.last_error = exc.strerror or str(exc)
                if exc.errno in (errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EIO):
                    pool.free(idx[n:])
                    self.lost(f"tap device {self.host_if_name} is gone ({self.last_error})")
                    return node.deliver(self.sw, idx[:n])
                break
            n += 1
        if n < len(idx):
            pool.free(idx[n:])
        return node.deliver(self.sw, idx[:n])

    def transmit(self, node: InterfaceOutput, idx: np.ndarray) -> None:
        """Write each frame to the tap."""
        if self.fd < 0:
            node.drop(idx, "link-down")
            return
        write = cast("Callable[[int, np.ndarray], int]", os.write)  # arrays are buffers
        self.send_each(node, idx, functools.partial(write, self.fd))

    def details(self) -> dict[str, object]:
        """What ``show tap`` prints."""
        return {
            "id": self.id,
            "host_if_name": self.host_if_name,
            "host_ns": self.host_ns,
            "host_ip4": f"{ip4_str(self.host_ip4[0])}/{self.host_ip4[1]}"
            if self.host_ip4
            else None,
            "host_mac": format_mac(self.host_mac) if self.host_mac else None,
            "host_carrier": self.carrier,
            "host_mtu": self.mtu,
            "fd": self.fd,
            "last_error": self.last_error,
        }


# ---------------------------------------------------------------------- kernel side
def open_tap(name: str) -> int:
    """A new tap device ``name``: its non-blocking fd (the device goes with the fd)."""
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SwitchError(
            f"{TUN_PATH} is missing: load the tun module (modprobe tun) or create it "
            f"(mknod {TUN_PATH} c 10 200)"
        ) from None
    except OSError as exc:
        raise SwitchError(f"{TUN_PATH}: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifreq(name, struct.pack("H", IFF_TAP | IFF_NO_PI)))
    except OSError as exc:
        os.close(fd)
        raise SwitchError(f"cannot create tap {name}: {exc.strerror}") from None
    return fd


def set_carrier(fd: int, up: bool) -> bool:
    """Carrier on/off (Linux >= 5.0); False when the kernel refused."""
    try:
        fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", 1 if up else 0))
    except OSError:
        return False
    return True


def tap_mac(fd: int, name: str, mac: bytes | None = None) -> bytes:
    """Set (when ``mac`` is given) and read the host side's MAC address, on the tap's fd."""
    if mac is not None:
        fcntl.ioctl(fd, SIOCSIFHWADDR, ifreq(name, struct.pack("H6s", ARPHRD_ETHER, mac)))
    got = fcntl.ioctl(fd, SIOCGIFHWADDR, ifreq(name))
    return bytes(got[IFNAMSIZ + 2 : IFNAMSIZ + 8])


def ip_command(*args: str) -> None:
    """Run ``ip args...``; SwitchError with its message when it fails."""
    ip = shutil.which("ip")
    if ip is None:
        raise SwitchError("the 'ip' command (iproute2) is needed for host-ns and host-ip4-addr")
    res = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10, check=False)
    if res.returncode != 0:
        why = " ".join((res.stderr or res.stdout).split()) or f"exit status {res.returncode}"
        raise SwitchError(f"ip {' '.join(args)}: {why}")


def netns_exists(name: str) -> bool:
    """A named network namespace (``ip netns add``) exists."""
    return "/" not in name and os.path.exists(os.path.join("/run/netns", name))


def _exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def create_tap(
    switch: Switch,
    *,
    id: int | None = None,
    host_if_name: str | None = None,
    host_ns: str | None = None,
    host_ip4: tuple[bytes, int] | None = None,
    host_mac: bytes | None = None,
    hw_addr: bytes | None = None,
) -> SwInterface:
    """``create tap ...`` -> interface ``tap<id>`` (admin-down, host side up)."""
    if id is None:
        used = {p.id for p in switch.ports.of_kind(TapPort.kind) if isinstance(p, TapPort)}
        id = next(n for n in range(len(used) + 1) if n not in used)
    name = f"tap{id}"
    if name in switch.tables.by_name:
        raise SwitchError(f"interface {name} already exists")
    ifname = check_ifname(host_if_name or name)
    if host_ns is not None and not netns_exists(host_ns):
        raise SwitchError(
            f"network namespace {host_ns!r} does not exist (create it: ip netns add {host_ns})"
        )
    if _exists(ifname):
        raise SwitchError(f"a Linux interface named {ifname} already exists")
    fd = open_tap(ifname)
    try:
        set_carrier(fd, False)  # until admin-up
        mtu = link_mtu(ifname)  # while it is still in our namespace
        try:
            mac = tap_mac(fd, ifname, host_mac)
        except OSError as exc:
            raise SwitchError(f"tap {ifname}: MAC address: {exc.strerror}") from None
        if host_ns is not None:
            ip_command("link", "set", "dev", ifname, "netns", host_ns)
            ip_command("-n", host_ns, "link", "set", "dev", ifname, "up")
        else:
            try:
                set_link_up(ifname)
            except OSError as exc:
                raise SwitchError(f"tap {ifname}: link up: {exc.strerror}") from None
        if host_ip4 is not None:
            where = ["-n", host_ns] if host_ns is not None else []
            prefix = f"{ip4_str(host_ip4[0])}/{host_ip4[1]}"
            ip_command(*where, "addr", "add", prefix, "dev", ifname)
        port = TapPort(switch.runtime, id, fd, ifname)
        port.host_ns, port.host_ip4, port.host_mac, port.mtu = host_ns, host_ip4, mac, mtu
        switch.input_node(TapInput)
        return switch.add_port(name, hw_addr or random_mac(), port, KernelOutput)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
