#!/usr/bin/env bash
# Install what memberlog's tests and demo need on a fresh Debian machine (run as root), then
# make the project's virtualenv in .venv. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
[ -x /usr/bin/docker ] || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v shellcheck >/dev/null || need_pkgs+=(shellcheck)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)  # the tests' tiny image
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)  # plugin push/install
command -v docker-compose >/dev/null || need_pkgs+=(docker-compose)  # Compose members
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  if [[ " ${need_pkgs[*]} " == *" docker-registry "* ]]; then
    # Debian's docker-registry service (its config: port 5000 on every address, htpasswd auth)
    # is not the registry the tests and the demo use: tests/support/dockerenv.py runs its own,
    # on 127.0.0.1:5000 only. Where the package's install started the service, stop it for good.
    if [ -d /run/systemd/system ]; then
      systemctl disable --now docker-registry >/dev/null 2>&1 || true
    else
      update-rc.d docker-registry disable >/dev/null 2>&1 || true
      deb-systemd-helper disable docker-registry.service >/dev/null 2>&1 || true
      if [ -s /var/run/docker-registry.pid ]; then
        service docker-registry stop >/dev/null 2>&1 || true
      fi
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.memberlog-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # PYTHONWARNINGS: setuptools' notes about editable installs are not for the user.
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --upgrade pip
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

# dockerd: start Debian's when none answers (tests/support/dockerenv.py knows how and waits).
.venv/bin/python tests/support/dockerenv.py ensure
