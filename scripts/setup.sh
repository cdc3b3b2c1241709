#!/usr/bin/env bash
# Set up everything on a fresh Debian machine: a virtual environment with memif and
# its test tools, and DPDK testpmd (the interop peer) from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# iproute2 and ping: the host-interface tests build network namespaces and ping across them;
# tshark: Wireshark's reader checks the pcap files memif monitor writes
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 &&
   { ! command -v ip >/dev/null 2>&1 || ! command -v ping >/dev/null 2>&1 ||
     ! command -v tshark >/dev/null 2>&1; }; then
    apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        iproute2 iputils-ping tshark >/dev/null
fi

if ! command -v dpdk-testpmd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing DPDK testpmd from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            dpdk-dev librte-net-memif23 >/dev/null
    else
        echo "setup: dpdk-testpmd missing and cannot install it (needs root and apt-get)" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || {
        # Debian's python3 ships venv separately
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv .venv
    }
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
