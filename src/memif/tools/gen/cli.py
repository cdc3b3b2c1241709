"""``memif gen``: testpmd's forwarding engine for Python users.

Forwarding modes (the first argument, or ``--forward-mode`` as testpmd spells it):

* ``txonly``: send Ethernet/IPv4/UDP frames carrying a sequence header (below), and receive at
  the same time: frames that come back through a reflector (testpmd ``macswap``, ``memif gen
  macswap``, a VPP cross-connect...) give the round-trip latency, loss and reordering.
* ``rxonly``: count what arrives; frames with the header give loss, reordering, duplicates and
  one-way latency (the clock is ``CLOCK_MONOTONIC``, shared by every process of the host);
  frames without it (testpmd's ``txonly``) are counted as ``foreign``, never as lost.
* ``io``: send every received frame back unchanged on the queue of the same index.
* ``macswap``: the same with the Ethernet source and destination addresses swapped.

Header, right after the UDP header (bytes 42..61 of an Ethernet frame, 28..47 in ``ip`` mode),
all little-endian::

    u32 magic   "MGEN" (0x4E45474D)
    u64 seq     stream << 56 | packet number (stream = the sender's tx queue, numbers from 0)
    u64 stamp   time.monotonic_ns() when the burst was handed to the ring

Hot paths handle whole bursts with numpy: the frame template is written into every buffer of a
burst with one assignment (once per ring slot only, as a client: its buffers are its own), and
sequence numbers and stamps are written through ``uint64`` views of the burst matrix; receive
reads the header columns of ``RxBatch.headers`` (a view, or a vectorized gather). Jumbo frames go
out as buffer chains: a fixed size with one vectorized write per segment, a size mix containing
jumbo frames with ``TxQueue.send`` per packet.

``--count N`` stops after N packets (sent in ``txonly``, received otherwise), ``--duration``
after that many seconds; the generator then waits until the peer took every sent slot from the
ring (``--drain-timeout``) and stays connected for ``--linger`` seconds, still receiving in
``txonly``, so the peer's counters can be read. ``--reconnect`` (the default without
``--count``, but for a receiving or reflecting server): a disconnect
waits for the peer to come back, and the counters go on over the new connection
(``reconnects`` in the summary). Ctrl-C (or SIGTERM) ends the run at once, and
the summary is printed in every case.

Latency needs no special mode: ``txonly`` always receives, so run it against any reflector and
it reports the round trip (stamp at transmit to receive, one clock). Loss in ``txonly`` is sent
minus received-unique, and null while nothing came back (the peer is a sink: read its counters).
In the other modes loss is per stream, ``highest + 1 - unique``. The summary (``--json``: one
object on stdout) holds tx/rx packets, bytes, Mpps and Gbit/s (frame bytes), ``mpps``/``gbps``
of the mode's main direction, ``lost``, ``reordered``, ``duplicates``, ``sequenced``,
``foreign``, ``tx_drops`` (reflected frames the tx ring had no room for), ``rx_errors`` (bad
descriptors), latency ``min_us``/``p50_us``/``p99_us``/``p999_us``/``max_us``/``mean_us``
(null when not measured), ``in_flight`` (slots the peer had not taken back at the end) and
``seconds`` (the traffic phase, without the drain and the linger).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from ... import wire
from ...errors import MemifError
from ...loop import BUSY_VECTOR, MAX_COALESCE
from ..bench.charts import ChartError, check_path, pyplot
from ..common import (
    add_connection_args,
    add_reconnect_args,
    fail,
    ipv4_arg,
    mac_arg,
    one_line_errors,
    open_interface,
    print_json,
)
from .frames import IMIX, Frames
from .fwd import Generator
from .histogram import format_histogram, latency_histogram, plot_histogram

MODES = ("txonly", "rxonly", "io", "macswap")


def format_summary(s: dict[str, Any]) -> str:
    """The human summary of a run."""
    q = s["queues"]
    sizes = f", {','.join(map(str, s['sizes']))} B" if s["sizes"] else ""
    lines = [
        f"memif gen {s['mode']} ({s['role']}, {q} queue{'s' if q != 1 else ''}{sizes}): "
        f"{s['seconds']:.3f} s" + (", interrupted" if s["interrupted"] else ""),
        f"  tx {s['tx_packets']} packets {s['tx_bytes']} bytes  {s['tx_mpps']:.3f} Mpps "
        f"{s['tx_gbps']:.3f} Gbit/s  drops {s['tx_drops']}  in flight {s['in_flight']}",
        f"  rx {s['rx_packets']} packets {s['rx_bytes']} bytes  {s['rx_mpps']:.3f} Mpps "
        f"{s['rx_gbps']:.3f} Gbit/s  errors {s['rx_errors']}",
    ]
    if s["sequenced"]:
        lines.append(
            f"  sequenced {s['sequenced']} in {s['streams']} stream(s), foreign {s['foreign']}: "
            f"lost {s['lost']}, reordered {s['reordered']}, duplicates {s['duplicates']}"
        )
    else:
        lines.append(f"  no sequenced frames received (foreign {s['foreign']}): loss not measured")
    if s["latency_samples"]:
        lines.append(
            f"  {s['latency']} latency us: min {s['min_us']} p50 {s['p50_us']} p99 {s['p99_us']} "
            f"p99.9 {s['p999_us']} max {s['max_us']} mean {s['mean_us']} "
            f"({s['latency_samples']} samples)"
        )
    else:
        lines.append("  latency: not measured")
    if s["reconnects"]:
        lines.append(f"  reconnected {s['reconnects']} time(s) (the peer went away and came back)")
    if s["disconnected"]:
        lines.append(f"  peer disconnected: {s['disconnected']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ CLI


def parse_sizes(text: str) -> list[int]:
    """``64``, ``64,512,1500`` or ``imix`` to the list of sizes in sending order."""
    if text.strip().lower() == "imix":
        return list(IMIX)
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size list {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("empty size list")
    return sizes


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or math.isinf(v):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return v


EPILOG = """\
examples:
  memif gen txonly --socket /run/vpp/memif.sock --count 1000000 --size 64
  memif gen rxonly --role server --socket /tmp/m.sock --json
  memif gen macswap --role server --socket @refl        # a reflector
  memif gen txonly --socket @refl --rate 100000 --duration 5   # loss + round-trip latency
  memif gen txonly --socket @x --size imix              # 7x64, 4x594, 1x1518 bytes
  memif gen txonly --socket @x --size 9000              # chained 2048-byte buffers

--mode is the memif interface mode (ethernet, ip); the forwarding mode is FWD_MODE.
Gbit/s counts frame bytes only (no preamble, gap or FCS). Without --count a disconnect (a port
flap) does not end the run (a --duration still does): the generator waits for the peer, saying
"reconnecting", and its counters go on; but a server receiving or reflecting (rxonly, io,
macswap) ends when its client leaves, unless --reconnect. Exit status: 0 when the run ends by
--count, --duration, Ctrl-C or (rxonly, io, macswap without --count) the peer leaving; 1 on
an error (no peer, the peer left before the end), with a one-line message.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``memif gen``."""
    p = subparsers.add_parser(
        "gen",
        help="traffic generator and reflector (testpmd's txonly/rxonly/io/macswap)",
        description="Traffic generator and reflector: testpmd's forwarding modes over memif, "
        "with sequence numbers, loss, reordering and latency.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "fwd_pos",
        nargs="?",
        choices=MODES,
        metavar="FWD_MODE",
        help="forwarding mode: txonly (send, and measure what comes back), rxonly (count and "
        "check sequences), io (echo back unchanged), macswap (echo with MACs swapped); "
        "default txonly",
    )
    p.add_argument(
        "--forward-mode",
        dest="fwd_opt",
        choices=MODES,
        metavar="FWD_MODE",
        help="the forwarding mode, spelled as testpmd does (same as the FWD_MODE argument)",
    )
    add_connection_args(p, role="client")
    one_line_errors(p, "gen")
    g = p.add_argument_group("traffic")
    g.add_argument(
        "--size",
        type=parse_sizes,
        default=[64],
        metavar="N[,N...]|imix",
        help="frame bytes, one size or a mix sent in turn (64,512,1500), or imix; frames larger "
        "than a buffer are chained (default 64; at least 62, 48 in ip mode)",
    )
    g.add_argument(
        "--burst", type=_positive_int, default=256, help="packets per burst (default 256)"
    )
    g.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="PPS",
        help="send at most PPS packets per second over all queues (a token bucket holding 10 ms "
        "of packets, sent every 0.5 ms in bursts of at most --burst); 0 or absent: flat out",
    )
    g.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop after N packets: sent (txonly) or received (rxonly, io, macswap)",
    )
    g.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after SECONDS")
    g.add_argument(
        "--linger",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="after the end (--count/--duration) and the drain, stay connected this long so "
        "the peer's counters can be read; txonly keeps receiving (default 1)",
    )
    g.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="longest wait at the end for the peer to take every sent slot (default 5)",
    )
    g.add_argument(
        "--start-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long after connecting before moving traffic (default 0)",
    )
    g.add_argument(
        "--src-mac",
        type=mac_arg,
        default=b"\x02\0\0\0\0\x01",
        help="source MAC (default 02:00:00:00:00:01)",
    )
    g.add_argument(
        "--dst-mac",
        type=mac_arg,
        default=b"\x02\0\0\0\0\x02",
        help="destination MAC (default 02:00:00:00:00:02)",
    )
    g.add_argument(
        "--src-ip",
        type=ipv4_arg,
        default=bytes([198, 18, 0, 1]),
        help="source IPv4 (default 198.18.0.1)",
    )
    g.add_argument(
        "--dst-ip",
        type=ipv4_arg,
        default=bytes([198, 18, 0, 2]),
        help="destination IPv4 (default 198.18.0.2)",
    )
    g.add_argument(
        "--rx-mode",
        choices=("interrupt", "polling", "adaptive"),
        default=None,
        help="how an idle turn waits for packets: interrupt (sleep on the queue's eventfd "
        f"once a turn brings fewer than {BUSY_VECTOR}), polling (spin, a whole CPU), "
        "adaptive (memifd's rule: spin near the peak, nap up to "
        f"{MAX_COALESCE * 1e6:g} us for bigger vectors under load, sleep on interrupts "
        "when idle or for a trickle); default interrupt, polling with --polling",
    )
    add_reconnect_args(g)
    g.add_argument(
        "--histogram",
        action="store_true",
        help="print the latency histogram at the end (log-spaced bins; with --json: its "
        "edges_us and counts in the summary)",
    )
    g.add_argument(
        "--plot",
        metavar="FILE",
        help="draw the latency histogram into FILE (.png, .svg, .pdf); needs matplotlib "
        "(pip install 'memif[plot]')",
    )
    g.add_argument("--quiet", "-q", action="store_true", help="no live line on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``memif gen``: connect, move traffic, print the summary."""
    if args.fwd_pos and args.fwd_opt and args.fwd_pos != args.fwd_opt:
        return fail(f"forwarding mode given twice: {args.fwd_pos} and {args.fwd_opt}")
    args.fwd = args.fwd_pos or args.fwd_opt or "txonly"
    if args.rate < 0 or math.isnan(args.rate):
        return fail(f"--rate {args.rate} must be >= 0")
    try:
        ip_mode = wire.Mode.parse(args.mode) is wire.Mode.IP
    except ValueError as exc:
        return fail(str(exc))
    if ip_mode and args.fwd == "macswap":
        return fail("macswap needs Ethernet frames: not in ip mode")
    try:
        frames = Frames(
            args.size, not ip_mode, args.src_mac, args.dst_mac, args.src_ip, args.dst_ip
        )
    except ValueError as exc:
        return fail(str(exc))
    if args.plot:
        try:  # before any traffic: a chart that cannot be drawn fails the run at once
            check_path(args.plot)
            pyplot()
        except ChartError as exc:
            return fail(str(exc))
    try:
        sock, iface = open_interface(args, "memif-gen")
    except (TimeoutError, MemifError, OSError) as exc:
        return fail(str(exc))
    gen = Generator(args, sock, iface, frames)
    error = None
    try:
        with gen.stop.installed():
            gen.run()
    except MemifError as exc:
        error = str(exc)
    finally:
        summary = gen.summary()
        gen.finish_live(summary)
        sock.close()
    hist = latency_histogram(gen.an.latency) if args.histogram or args.plot else None
    if hist is not None and args.histogram:
        summary["histogram"] = hist
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary), flush=True)
        if hist is not None and args.histogram:
            print(format_histogram(hist, summary["latency"] or "no"), flush=True)
    if hist is not None and args.plot:
        plot_histogram(hist, summary["latency"] or "no", args.plot)
        print(f"memif gen: latency chart written to {args.plot}", file=sys.stderr, flush=True)
    if error:
        return fail(error)
    # A receiver or reflector whose peer leaves has simply reached the end of the traffic,
    # unless it was told to wait for more packets; a sender has not finished.
    if gen.disconnected and (args.fwd == "txonly" or (args.count and gen.done < args.count)):
        return fail(f"peer disconnected before the end: {gen.disconnected}")
    return 0
