# Sourced, not run, by scripts/setup, scripts/try, scripts/test,
# scripts/gen-protos, deploy/install.sh and .ci/: where shoal is installed
# on a machine, and the few steps these scripts share.
#
# The installed layout (the README's "What setup installs"):
#   /opt/shoal/venv                 a virtual environment holding shoal and its
#                                   Python packages. scripts/setup and
#                                   deploy/install.sh install shoal into it as a
#                                   wheel; scripts/setup --dev installs the
#                                   checkout editable, with the dev packages.
#   /usr/local/bin/shoal            a link to /opt/shoal/venv/bin/shoal
#   /opt/shoal/debian-packages      the Debian packages scripts/setup installed,
#                                   one a line, for uninstalling them
# A venv of our own, because Debian's Python refuses `pip install` into the
# system (PEP 668), and so that apt and pip never fight over the same files.

SHOAL_PREFIX=/opt/shoal
SHOAL_VENV=$SHOAL_PREFIX/venv
SHOAL_LINK=/usr/local/bin/shoal
SHOAL_DEBS=$SHOAL_PREFIX/debian-packages

# Messages carry the script's name: "setup: ...".
me=${0##*/}
say() { printf '%s: %s\n' "$me" "$*"; }
fail() {
    printf '%s: %s\n' "$me" "$*" >&2
    exit 1
}

# debs_missing PKG...: prints those of the Debian packages PKG... that are
# not installed.
debs_missing() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$pkg"
    done
}

# apt_install PKG...: installs Debian packages without questions (as root).
# Services that the packages start are Debian's business: shoal starts its
# own etcd and needs only the binary.
# Written as one && chain, so that it fails where a step fails even when
# called where set -e does not apply (in a condition, or with ||).
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# docker_io_needed: succeeds when Debian's docker.io should be installed:
# the docker CLI is missing, or no engine answers and none is installed.
docker_io_needed() {
    ! command -v docker >/dev/null || { ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; }
}

# docker_engine_up LOG: makes sure a Docker Engine answers `docker info`.
# When none does, it starts one: with systemd where systemd runs, otherwise
# dockerd in the background (containers have no systemd) logging to LOG.
# An engine reached through a mounted socket or DOCKER_HOST counts: then no
# second engine is started.
docker_engine_up() {
    docker info >/dev/null 2>&1 && return 0
    if [ -d /run/systemd/system ]; then
        say "starting docker.service"
        systemctl start docker || return 1
    else
        command -v dockerd >/dev/null || {
            echo "no Docker Engine answers and dockerd is not installed (apt-get install docker.io)" >&2
            return 1
        }
        say "starting dockerd (log: $1)"
        nohup dockerd >"$1" 2>&1 &
    fi
    local _
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "the Docker Engine did not answer within 60 s (log: $1, or journalctl -u docker)" >&2
    return 1
}

# copy_source_tree SRC DEST: copies a source tree for building a wheel from.
# setuptools writes build/ and *.egg-info into the tree it builds from; a
# copy leaves the source tree (perhaps a checkout owned by someone else) as
# it was.
copy_source_tree() {
    tar -C "$1" --exclude=./.git --exclude=./.venv --exclude=build --exclude=dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
        --exclude=.ruff_cache --exclude=.pytest_cache -cf - . | tar -C "$2" -xf -
}
