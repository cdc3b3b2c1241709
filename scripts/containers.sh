#!/usr/bin/env bash
# The seed's topology in real containers (deploy/compose.yaml, docs/topology.md): memifd, DPDK
# testpmd A and C, and the monitor B, each in its own container and, for the peers, its own uid.
#
#   scripts/containers.sh up       # set everything up, start the four containers, show counters
#   scripts/containers.sh status   # the containers and memifd's interface counters
#   scripts/containers.sh down     # stop and remove the containers, the volumes and the network
#   scripts/containers.sh build    # only the set-up: packages, settings, base image, image
#   scripts/containers.sh test     # tests/test_containers.py (builds, brings up, checks, downs)
#   scripts/containers.sh sweep [--plot FILE] [--json] ...  # the rate sweep through memifd
#   scripts/containers.sh compose ARGS   # podman-compose ARGS in deploy/, this project's name
#
# Set-up, on a fresh Debian machine as root, one line per step: apt packages (podman runc
# catatonit mmdebstrap tshark python3-venv) when missing; the two podman settings some VMs
# need, added to /etc/containers/containers.conf only when a test container fails without
# them; a base image bootstrapped from Debian's mirror with mmdebstrap (no registry needed;
# reused when present); podman-compose 1.6.0 in a venv of its own (Debian's 1.0.3 mishandles
# network_mode: none); a wheel of the working tree; the image localhost/memif-topology:latest
# (podman build --pull=never; compose.yaml names it).
#
# Environment: BASE_IMAGE (default localhost/memif-debian:bookworm), COMPOSE_VENV (default
# build/podman-compose), PYTHON (builds the wheel; default .venv's, else COMPOSE_VENV's), MIRROR
# (default: the first Debian mirror in /etc/apt/sources.list*, else deb.debian.org).  With a
# registry and Docker instead: docker build --build-arg BASE=debian:bookworm (deploy/Containerfile).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPLOY=$ROOT/deploy
BASE_IMAGE=${BASE_IMAGE:-localhost/memif-debian:bookworm}
IMAGE=localhost/memif-topology:latest # the name compose.yaml runs
COMPOSE_VENV=${COMPOSE_VENV:-$ROOT/build/podman-compose}  # build/: ignored by git
COMPOSE_VERSION=1.6.0
CONF=/etc/containers/containers.conf
BASE_PACKAGES=python3,python3-venv,python3-numpy,dpdk-dev,librte-net-memif23
CLI=/run/memifd/cli.sock # memifd's CLI socket, in a volume only the memifd container mounts
export PODMAN_COMPOSE_PROVIDER= PODMAN_COMPOSE_WARNING_LOGS=false

step() { echo "containers: $*"; }
die() {
    echo "containers: error: $*" >&2
    exit 1
}

compose() {
    # Without systemd, podman cannot schedule healthchecks and says so on every command: hide
    # that line (podman < 4.6 ignores service_healthy anyway; each peer waits for its socket).
    # Through a file, not a pipe: the containers' conmon processes inherit podman's stderr.
    local err rc=0
    err=$(mktemp)
    (cd "$DEPLOY" && "$COMPOSE_VENV/bin/podman-compose" -p memif-topology "$@") 2>"$err" || rc=$?
    grep -v 'unable to get systemd connection\|no such \(container\|pod\)' "$err" >&2 || true
    rm -f "$err"
    return $rc
}

# ---------------------------------------------------------------------------------- set-up

packages() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null || missing+=(catatonit)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v tshark >/dev/null || missing+=(tshark)
    python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv) # podman-compose's venv
    if [ ${#missing[@]} = 0 ]; then
        step "packages: podman runc catatonit mmdebstrap tshark python3-venv already installed"
        return
    fi
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
        die "missing ${missing[*]}: installing them needs root and apt-get"
    step "packages: apt-get install ${missing[*]}"
    apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

mirror() {
    if [ -n "${MIRROR:-}" ]; then
        echo "$MIRROR"
        return
    fi
    # The first Debian mirror apt uses here (one-line or deb822 sources), else the default one.
    local found
    local re='(URIs:|^deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+/debian/?([[:space:]]|$)'
    found=$(grep -hoE "$re" \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
        grep -oE 'https?://[^[:space:]]+' | head -n1 || true)
    echo "${found:-http://deb.debian.org/debian}"
}

base_image() {
    if podman image exists "$BASE_IMAGE"; then
        step "base image: $BASE_IMAGE already present (podman rmi it to bootstrap it again)"
        return
    fi
    local rootfs url
    rootfs=$(mktemp -d /tmp/memif-rootfs.XXXXXX)
    url=$(mirror)
    step "base image: mmdebstrap bookworm ($BASE_PACKAGES) from $url, podman import $BASE_IMAGE"
    mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
        --aptopt='APT::Install-Recommends "false"' bookworm "$rootfs" "$url"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

# Add "key = value" to [section] of containers.conf unless the key is set there already.
conf_add() {
    python3 - "$CONF" "$1" "$2" "$3" <<'EOF'
import re, sys
path, section, key, value = sys.argv[1:]
try:
    text = open(path).read()
except FileNotFoundError:
    text = ""
m = re.search(rf"^\[{section}\][^\n]*\n", text, re.MULTILINE)
if m is None:
    text += ("" if text.endswith("\n") or not text else "\n") + f"\n[{section}]\n{key} = {value}\n"
else:
    end = re.search(r"^\[", text[m.end():], re.MULTILINE)
    body = text[m.end(): m.end() + end.start() if end else len(text)]
    if re.search(rf"^\s*{key}\s*=", body, re.MULTILINE):
        sys.exit(0)  # set by someone already: leave it
    text = text[: m.end()] + f"{key} = {value}\n" + text[m.end():]
open(path, "w").write(text)
print(f"{path}: [{section}] {key} = {value}")
EOF
}

probe() { podman run --rm --pull=never --network none "$BASE_IMAGE" true >/dev/null 2>&1; }

settings() {
    if probe; then
        step "podman settings: a test container runs, $CONF left as it is"
        return
    fi
    # crun cannot set its default RLIMIT_NOFILE above a low hard limit and refuses hybrid
    # cgroups (v1 + v2): runc and explicit limits fix both (shared/peers.md).
    step "podman settings: a test container fails; adding runtime = runc and ulimits to $CONF"
    mkdir -p "$(dirname "$CONF")"
    local nofile
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    [ "$nofile" -gt 1048576 ] && nofile=1048576
    conf_add engine runtime '"runc"'
    conf_add containers default_ulimits "[\"nofile=$nofile:$nofile\", \"nproc=32768:32768\"]"
    probe || die "podman still cannot run a container: podman run --rm $BASE_IMAGE true"
}

compose_venv() {
    if [ -x "$COMPOSE_VENV/bin/podman-compose" ] &&
        "$COMPOSE_VENV/bin/podman-compose" --version 2>/dev/null | grep -q "$COMPOSE_VERSION"; then
        step "podman-compose $COMPOSE_VERSION: already in $COMPOSE_VENV"
        return
    fi
    step "podman-compose $COMPOSE_VERSION: pip install into $COMPOSE_VENV"
    python3 -m venv "$COMPOSE_VENV"
    "$COMPOSE_VENV/bin/pip" install -q "podman-compose==$COMPOSE_VERSION"
}

wheel() {
    local py leftovers=() d
    py=$(python)
    step "wheel: memif from the working tree into deploy/wheels/"
    for d in "$ROOT"/build/lib "$ROOT/build/bdist.linux-$(uname -m)" "$ROOT"/src/memif.egg-info; do
        [ -e "$d" ] || leftovers+=("$d") # what setuptools leaves behind, unless it was there
    done
    rm -rf "$DEPLOY/wheels"
    "$py" -m pip wheel -q --no-deps -w "$DEPLOY/wheels" "$ROOT" >/dev/null
    rm -rf "${leftovers[@]}"
}

image() {
    step "image: podman build --pull=never --build-arg BASE=$BASE_IMAGE -t $IMAGE deploy/"
    podman build -q --pull=never --network=none --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" \
        -f "$DEPLOY/Containerfile" "$DEPLOY" >/dev/null
    # The previous build, now untagged, is ~30 MB of layers each time: remove it.
    podman image prune -f --filter label=io.github.memif-python.image=memif-topology >/dev/null
}

setup() {
    packages
    base_image
    settings
    compose_venv
    wheel
    image
}

# ---------------------------------------------------------------------------------- the rest

# $PYTHON, else the project's (scripts/setup.sh's .venv), else podman-compose's venv (has pip).
python() {
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
    elif [ -x "$ROOT/.venv/bin/python" ]; then
        echo "$ROOT/.venv/bin/python"
    else
        echo "$COMPOSE_VENV/bin/python"
    fi
}

memifctl() { podman exec memif-topology_memifd_1 memifctl -s "$CLI" "$@"; }

up() {
    setup
    mkdir -p "$DEPLOY/captures" && chown 1002:1002 "$DEPLOY/captures" # monitor-b's uid writes there
    step "up: podman-compose up -d (memifd, then monitor-b and testpmd-c, then testpmd-a)"
    compose up -d >/dev/null
    step "up: waiting for A and C to exchange frames"
    local i
    for i in $(seq 120); do
        if memifctl --json show interface memif1/0 2>/dev/null | grep -q '"tx_packets": [1-9]'; then
            status
            return
        fi
        sleep 1
    done
    compose ps
    die "no frames between A and C after 120 s (scripts/containers.sh status; podman logs ...)"
}

# The rate sweep (scripts/containers_sweep.py --help): set-up, then compose.yaml with
# compose.bench.yaml (A and C idle, each with its own /bench directory), the sweep from this host
# (source in A, sink in C, memifd through its CLI socket), then down. Every line of ours goes
# to stderr: stdout is the sweep's table or --json.
sweep() {
    local py rc=0 i
    case " $* " in *" -h "* | *" --help "*)
        PYTHONPATH="$ROOT/src" exec "$(python)" "$ROOT/scripts/containers_sweep.py" --help ;;
    esac
    setup >&2
    down >&2
    py=$(python)
    BENCH_DIR=$(mktemp -d /tmp/memif-sweep.XXXXXX)
    export BENCH_DIR
    trap 'down >&2; rm -rf "$BENCH_DIR"' EXIT
    install -d -m 0700 -o 1001 -g 1001 "$BENCH_DIR/a" # the source's control block, uid 1001's
    install -d -m 0700 -o 1003 -g 1003 "$BENCH_DIR/c" # the sink's, uid 1003's
    step "sweep: podman-compose up -d (compose.yaml + compose.bench.yaml: A and C idle)" >&2
    compose -f compose.yaml -f compose.bench.yaml up -d >/dev/null
    for i in $(seq 120); do
        memifctl show version >/dev/null 2>&1 && break
        [ "$i" = 120 ] && die "memifd's CLI did not answer in 120 s (podman logs memif-topology_memifd_1)"
        sleep 1
    done
    step "sweep: scripts/containers_sweep.py $* (source in A, sink in C, memifd's CLI)" >&2
    PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" "$py" "$ROOT/scripts/containers_sweep.py" \
        --bench-dir "$BENCH_DIR" "$@" || rc=$?
    return $rc
}

status() {
    compose ps
    memifctl show interface
}

down() {
    local label=label=io.podman.compose.project=memif-topology
    if ! command -v podman >/dev/null ||
        [ -z "$(podman ps -a -q --filter "$label")$(podman volume ls -q --filter "$label")" ]; then
        step "down: no container or volume of memif-topology"
        return
    fi
    step "down: podman-compose down -v (containers, then volumes)"
    compose down -v -t 10 >/dev/null
}

case "${1:-}" in
up) up ;;
status) status ;;
down) down ;;
build) setup ;;
sweep)
    shift
    sweep "$@"
    ;;
wheel) wheel ;;
compose) # podman-compose in deploy/ with this project's name: compose -f compose.yaml ps
    shift
    compose "$@"
    ;;
test)
    shift
    setup
    py=$(python)
    step "test: pytest tests/test_containers.py"
    cd "$ROOT" && exec "$py" -m pytest -q -p no:cacheprovider tests/test_containers.py "$@"
    ;;
*)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
