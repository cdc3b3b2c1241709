"""Tests of memif.tools.testpmd, the DPDK testpmd driver, with testpmd talking to testpmd.

The parsing tests use output captured from DPDK 22.11's testpmd and need no testpmd. The tests
marked ``testpmd`` run real testpmd instances; without testpmd (scripts/setup.sh installs it)
they skip, or fail when the environment variable CI is ``true`` (the ``testpmd_binary`` fixture).
"""

from __future__ import annotations

import os
import socket
import stat
import time
import uuid
from pathlib import Path

import pytest

from memif.tools.testpmd import (
    MemifPort,
    Testpmd,
    TestpmdError,
    parse_link_up,
    parse_port_stats,
)

# What `show port stats 0` printed on a testpmd server (rxonly) while forwarding.
STATS_OUTPUT = """
  ######################## NIC statistics for port 0  ########################
  RX-packets: 32525440   RX-missed: 0          RX-bytes:  2081628160
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 0          TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:     13555936          Rx-bps:   6940639344
  Tx-pps:            0          Tx-bps:            0
  ############################################################################
"""  # noqa: W291 (testpmd's own trailing blanks)


def test_parse_port_stats() -> None:
    s = parse_port_stats(STATS_OUTPUT)
    assert (s.rx_packets, s.rx_missed, s.rx_bytes) == (32525440, 0, 2081628160)
    assert (s.rx_errors, s.rx_nombuf) == (0, 0)
    assert (s.tx_packets, s.tx_errors, s.tx_bytes) == (0, 0, 0)
    assert (s.rx_pps, s.rx_bps, s.tx_pps, s.tx_bps) == (13555936, 6940639344, 0, 0)


def test_parse_port_stats_without_throughput_block() -> None:
    text = STATS_OUTPUT.split("  Throughput")[0]
    s = parse_port_stats(text)
    assert s.rx_packets == 32525440
    assert s.rx_pps is None and s.tx_bps is None


def test_parse_errors() -> None:
    invalid = "Invalid port 5\nThe valid ports array is [ 0 ]\n"
    with pytest.raises(TestpmdError, match="Invalid port 5"):
        parse_port_stats(invalid)
    with pytest.raises(TestpmdError):
        parse_link_up(invalid)
    assert parse_link_up("Driver name: net_memif\nLink status: up\nLink speed: 100 Gbps\n")
    assert not parse_link_up("Link status: down\n")


def test_vdev_strings() -> None:
    assert MemifPort("server", socket="/tmp/m.sock").vdev(0) == (
        "net_memif0,role=server,id=0,socket=/tmp/m.sock,socket-abstract=no"
    )
    port = MemifPort(
        "slave", id=7, socket="@mif", bsize=1024, rsize=11, mac="02:00:00:00:00:01",
        secret="pw", zero_copy=True,
    )  # fmt: skip
    assert port.role == "client" and port.is_abstract and port.socket_name == "mif"
    assert port.vdev(1) == (
        "net_memif1,role=client,id=7,socket=mif,socket-abstract=yes,bsize=1024,rsize=11,"
        "mac=02:00:00:00:00:01,secret=pw,zero-copy=yes"
    )
    plain_abstract = MemifPort("server", socket="mif", abstract=True)
    assert "socket=mif,socket-abstract=yes" in plain_abstract.vdev(0)
    with pytest.raises(ValueError):
        MemifPort("server", socket="/tmp/m.sock", zero_copy=True)
    with pytest.raises(ValueError):
        MemifPort("server", socket="/tmp/a,b.sock")
    with pytest.raises(ValueError):
        MemifPort("peer", socket="/tmp/m.sock")


def _server_to_client_run(binary: str, sock: str, seconds: float) -> None:
    """testpmd server (rxonly) <- testpmd client (txonly, 64 B): every packet sent arrives."""
    server = Testpmd(
        [MemifPort("server", socket=sock)], forward_mode="rxonly", main_lcore=0, binary=binary
    )
    with server:
        if not sock.startswith("@"):
            assert stat.S_ISSOCK(os.stat(sock).st_mode)  # exists once the constructor returns
        client = Testpmd(
            [MemifPort("client", socket=sock)],
            forward_mode="txonly",
            txpkts=64,
            main_lcore=1,
            binary=binary,
        )
        with client:
            client.wait_link_up(0)
            server.wait_link_up(0)
            # Clear while idle: a clear during forwarding races the forwarding lcore's
            # counter updates and can be lost.
            server.clear_stats(0)
            client.clear_stats(0)
            server.start()
            client.start()
            server.port_stats(0)  # starts the "since last show" interval of the rates
            time.sleep(seconds)
            during = server.port_stats(0)
            assert during.rx_packets > 0
            assert during.rx_pps is not None and during.rx_pps > 0
            # testpmd derives pps and bps from separately timed deltas: close, not equal
            assert during.rx_bps == pytest.approx(during.rx_pps * 64 * 8, rel=1e-3)

            client.stop()  # the sender first; the receiver drains what is left in the ring
            time.sleep(0.2)
            sent = client.port_stats(0)
            got = server.port_stats(0)
            server.stop()  # both stopped before either side disconnects (testpmd crashes else)
            after = server.port_stats(0)

            assert sent.tx_packets > 0
            assert got.rx_packets == sent.tx_packets
            assert got.rx_bytes == sent.tx_bytes == 64 * sent.tx_packets
            assert after.rx_packets == got.rx_packets
            assert (sent.rx_packets, got.tx_packets) == (0, 0)
            assert (sent.tx_errors, got.rx_errors, got.rx_missed, got.rx_nombuf) == (0, 0, 0, 0)
        assert client.returncode == 0, client.output[-2000:]
        assert "Bye..." in client.output  # quit cleanly; the output outlives the process
    assert server.returncode == 0, server.output[-2000:]
    if not sock.startswith("@"):
        assert not os.path.exists(sock)


@pytest.mark.testpmd
def test_testpmd_pair_filesystem_socket(testpmd_binary: str, tmp_path: Path) -> None:
    _server_to_client_run(testpmd_binary, str(tmp_path / "memif.sock"), 1.0)


@pytest.mark.testpmd
def test_testpmd_pair_abstract_socket(testpmd_binary: str) -> None:
    _server_to_client_run(testpmd_binary, f"@memif-test-{uuid.uuid4().hex[:12]}", 1.0)


@pytest.mark.testpmd
def test_stale_socket_file_is_removed(testpmd_binary: str, tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(path)  # left behind when closed, like a crashed server's socket
    assert os.path.exists(path)
    with Testpmd(
        [MemifPort("server", socket=path)], forward_mode="rxonly", binary=testpmd_binary
    ) as server:
        assert not server.link_up(0)
    assert server.returncode == 0
    assert not os.path.exists(path)


@pytest.mark.testpmd
def test_client_without_server_fails_clearly(testpmd_binary: str, tmp_path: Path) -> None:
    with pytest.raises(TestpmdError, match="is the server running") as info:
        Testpmd([MemifPort("client", socket=str(tmp_path / "nobody.sock"))], binary=testpmd_binary)
    assert "Failed to connect socket" in str(info.value)
