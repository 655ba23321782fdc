#!/usr/bin/env bash
# Install shoal on one host: a Python venv in /opt/shoal/venv, the link
# /usr/local/bin/shoal (the layout of scripts/setup, see scripts/lib.sh),
# the systemd units, and example settings in /etc/shoal. Running it again
# upgrades shoal and refreshes the units. Settings already in /etc/shoal are
# kept. It enables and starts nothing; it prints what to do next.
#
#   sudo deploy/install.sh                  # an agent host
#   sudo deploy/install.sh --with-etcd      # a manager host that runs etcd too
#   sudo deploy/install.sh --source /tmp/shoal-0.1.0-py3-none-any.whl
#
# See deploy/README.md for setting up a cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../scripts/lib.sh"

usage() {
    cat <<EOF
Usage: $0 [--with-etcd] [--source PATH|URL] [--prefix DIR] [--no-apt] [--root DIR]

  --with-etcd    also install etcd (Debian packages etcd-server, etcd-client),
                 for hosts that run an etcd member next to a manager
  --source SPEC  what pip installs: a source tree, a wheel, or a URL
                 (default: the repository this script belongs to, $(dirname "$here"))
  --prefix DIR   the venv goes in DIR/venv (default: $SHOAL_PREFIX)
  --no-apt       do not run apt-get; python3 and python3-venv must already be there
  --root DIR     install under DIR instead of / (for trying the script out):
                 no apt-get, no user creation, no systemctl; the venv's
                 scripts keep DIR in their paths
  -h, --help     show this help
EOF
}

with_etcd=0
use_apt=1
source_spec=""
prefix=$SHOAL_PREFIX
root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --with-etcd) with_etcd=1 ;;
        --no-apt) use_apt=0 ;;
        --source) source_spec="${2:?--source needs a value}"; shift ;;
        --source=*) source_spec="${1#*=}" ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift ;;
        --prefix=*) prefix="${1#*=}" ;;
        --root) root="${2:?--root needs a value}"; shift ;;
        --root=*) root="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

if [ -n "$root" ]; then
    root="$(mkdir -p "$root" && cd "$root" && pwd)"
    use_apt=0
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo), or use --root DIR"
fi

if [ -z "$source_spec" ]; then
    source_spec="$(dirname "$here")"
    [ -f "$source_spec/pyproject.toml" ] ||
        die "no pyproject.toml in $source_spec; give --source PATH|URL"
fi

# ---------------------------------------------------------------- packages

packages=(python3 python3-venv)
if [ "$with_etcd" -eq 1 ]; then
    packages+=(etcd-server etcd-client)
fi
if [ "$use_apt" -eq 1 ]; then
    missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}"
    else
        say "packages already installed: ${packages[*]}"
    fi
elif [ "$with_etcd" -eq 1 ] && ! command -v etcd >/dev/null; then
    echo "install.sh: warning: --with-etcd without apt-get, and no etcd on PATH" >&2
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "$python not found (apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "shoal needs Python 3.11 or newer; $python is $("$python" -V 2>&1)"

# ---------------------------------------------------------------- venv

venv="$root$prefix/venv"
if [ -f "$root$prefix/pyvenv.cfg" ]; then
    echo "install.sh: note: $prefix holds the venv of an older install.sh; shoal now lives in $prefix/venv." \
        "Remove $prefix/{bin,include,lib,lib64,pyvenv.cfg} when nothing uses them." >&2
fi
if [ ! -x "$venv/bin/python" ]; then
    say "creating the venv $venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" || die "could not create a venv (is python3-venv installed?)"
else
    say "using the existing venv $venv"
fi
say "installing shoal from $source_spec"
pip_target="$source_spec"
if [ -d "$source_spec" ]; then
    workdir="$(mktemp -d)"
    trap 'rm -rf "$workdir"' EXIT
    copy_source_tree "$source_spec" "$workdir"
    pip_target="$workdir"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$pip_target"
"$venv/bin/shoal" --version >/dev/null || die "shoal does not run from $venv/bin/shoal"

install -d -m 0755 "$root$(dirname "$SHOAL_LINK")"
ln -sfn "$prefix/venv/bin/shoal" "$root$SHOAL_LINK"
say "linked $SHOAL_LINK -> $prefix/venv/bin/shoal"

# ---------------------------------------------------------------- user, units, settings

# The manager runs as "shoal" (see shoal-manager.service). The agent runs as root.
if [ -z "$root" ] && ! getent passwd shoal >/dev/null; then
    say "creating the system user shoal"
    useradd --system --user-group --home-dir /var/lib/shoal --no-create-home \
        --shell /usr/sbin/nologin --comment "shoal manager" shoal
fi

install -d -m 0755 "$root/etc/systemd/system"
for unit in shoal-manager.service shoal-agent.service; do
    # The units belong to shoal and are replaced on every run. Keep local
    # changes in drop-ins (systemctl edit shoal-agent).
    install -m 0644 "$here/$unit" "$root/etc/systemd/system/$unit"
done
say "installed shoal-manager.service and shoal-agent.service"

install -d -m 0755 "$root/etc/shoal"
for name in manager agent; do
    target="$root/etc/shoal/$name.env"
    if [ -e "$target" ]; then
        say "kept the existing /etc/shoal/$name.env"
    else
        # 0600: the agent's file holds the join token.
        install -m 0600 "$here/$name.env.example" "$target"
        say "wrote /etc/shoal/$name.env (from $name.env.example)"
    fi
done

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

# ---------------------------------------------------------------- next steps

cat <<EOF

shoal $("$venv/bin/shoal" --version 2>/dev/null | awk '{print $NF}') is installed. Next steps (deploy/README.md has the details):
EOF
if [ "$with_etcd" -eq 1 ]; then
    cat <<'EOF'

  etcd: set its members and URLs in /etc/default/etcd (ETCD_* variables), then
      systemctl restart etcd
      etcdctl endpoint health

EOF
fi
cat <<'EOF'
  A manager host:
      edit /etc/shoal/manager.env    (SHOAL_ETCD, SHOAL_ADVERTISE, etcd certificates: deploy/README.md)
      systemctl enable --now shoal-manager
      shoal --host 127.0.0.1:2377 --tls-dir /var/lib/shoal/manager/admin join-token worker

  An agent host:
      edit /etc/shoal/agent.env      (SHOAL_JOIN, SHOAL_JOIN_TOKEN, SHOAL_ADVERTISE_ADDR)
      systemctl enable --now shoal-agent

  Logs: journalctl -u shoal-manager -u shoal-agent
EOF
