#!/usr/bin/env bash
# Build memberlog as a managed Docker plugin and install it in the daemon that DOCKER_HOST
# names (default: the local one); with --push, also push it to a registry.
#
#   plugin/build.sh [--no-enable] [--base IMAGE|auto|local] [--reset-settings] \
#       [--settings-file FILE] [NAME[:TAG]] [KEY=VALUE ...]
#   plugin/build.sh --push [--no-enable] [...] REGISTRY/NAME[:TAG] [KEY=VALUE ...]
#
#   NAME[:TAG]        the plugin's name (default memberlog:latest). TAG defaults to `latest`,
#                     so that `--log-driver memberlog` finds a plugin built as plain `memberlog`
#   --push            then `docker plugin push` it: the name must say where, e.g.
#                     127.0.0.1:5000/memberlog; TAG defaults to the version in pyproject.toml
#                     (registries keep one plugin per version; `docker plugin upgrade` moves
#                     hosts from one to the next). Settings (KEY=VALUE) are not pushed: hosts
#                     give theirs to `docker plugin install`
#   KEY=VALUE         `docker plugin set` before enabling, e.g. AWS_REGION=eu-west-1 or
#                     state.source=/var/lib/memberlog-2 (the host dir for the state mount).
#                     Not for secrets: any local user reads a command line (/proc/PID/cmdline),
#                     so a key naming a SECRET, TOKEN or PASSWORD (AWS_SECRET_ACCESS_KEY...) is
#                     refused here: give it in a --settings-file
#   --settings-file FILE  KEY=VALUE lines (blank and #-comment lines skipped), set like the
#                     above and before them; FILE - reads them from stdin. Values only ever
#                     travel through pipes to the daemon's API (plugin/plugin_set.py), never on
#                     a command line. Keep FILE readable by root only (chmod 600)
#   --no-enable       leave the plugin disabled (to `docker plugin set` it, or for secrets
#                     `plugin/plugin_set.py NAME < FILE`, then enable)
#   --reset-settings  a rebuilt plugin keeps the settings of the one it replaces unless told so
#   --from-image IMG  skip the build: make the plugin from rootfs image IMG, already on this
#                     daemon (e.g. copied from another host with docker save | docker load)
#   --base IMAGE      base image with python3 >= 3.11 on glibc (env BASE_IMAGE does the same):
#       auto          (default) python:3.11-slim-bookworm if present or pullable, else `local`
#       local         memberlog-base-bookworm:1, debootstrapped here by
#                     tests/support/dockerenv.py when missing (needs root and debootstrap; no
#                     registry needed)
#   env PYTHON        the host Python whose pip fetches the wheels and that runs plugin/*.py
#                     (default .venv/bin/python, then python3); env DOCKER: the docker CLI
#                     (default /usr/bin/docker)
#
# Steps: wheels on the host (memberlog's own, plus its dependencies from PyPI for the base
# image's Python version and platform), an offline `docker build` of the Dockerfile at the top
# of the repository (image <NAME>-rootfs:<TAG>, NAME without its registry, kept as the next
# build's cache), `docker export` of it as the plugin's rootfs, then `docker plugin create`
# (replacing a plugin of that name; its config.json stamped with MEMBERLOG_JOURNAL_VERSION, the
# newest journal format the driver in the rootfs reads, for plugin/upgrade.sh to check), the
# settings (plugin/plugin_set.py), `docker plugin enable` and, with
# --push, `docker plugin push`. Run it as root: the rootfs is unpacked on this machine keeping
# its files' owners.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
official_base=python:3.11-slim-bookworm
local_base=memberlog-base-bookworm:1

name=memberlog:latest
enable=1
keep_settings=1
base=${BASE_IMAGE:-auto}
from_image=
push=0
named=0
settings=()
settings_files=()
# Keys whose values are secrets, never taken as arguments (upper-cased before matching).
secret_key() { [[ ${1^^} == *SECRET* || ${1^^} == *TOKEN* || ${1^^} == *PASSWORD* ]]; }
while [ $# -gt 0 ]; do
  case $1 in
    --no-enable) enable=0 ;;
    --push) push=1 ;;
    --reset-settings) keep_settings=0 ;;
    --base) base=${2:?--base needs an image}; shift ;;
    --base=*) base=${1#--base=} ;;
    --from-image) from_image=${2:?--from-image needs an image}; shift ;;
    --settings-file) settings_files+=("${2:?--settings-file needs a file}"); shift ;;
    --settings-file=*) settings_files+=("${1#--settings-file=}") ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *=*)
      if secret_key "${1%%=*}"; then
        echo "build.sh: ${1%%=*} is a secret: as an argument its value is on the command line," \
          "where any local user reads it (/proc/PID/cmdline). Put it in a file of KEY=VALUE" \
          "lines that only root reads and pass --settings-file FILE (or --settings-file - and" \
          "give the lines on stdin)" >&2
        exit 2
      fi
      settings+=("$1") ;;
    *) name=$1 named=1 ;;
  esac
  shift
done
die() { echo "build.sh: $*" >&2; exit 1; }
# The files' settings, before the arguments' (a later KEY=VALUE wins). Read by the shell
# itself: the values stay in this process's memory and pipes.
from_files=()
for file in ${settings_files[@]+"${settings_files[@]}"}; do
  src=$file
  [ "$file" != - ] || src=/dev/stdin
  [ -r "$src" ] || { echo "build.sh: cannot read settings file $file" >&2; exit 2; }
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
    if [[ ! $line =~ ^[A-Za-z_][A-Za-z0-9_.]*= ]]; then
      echo "build.sh: $file line $n is not KEY=VALUE" >&2
      exit 2
    fi
    from_files+=("$line")
  done <"$src"
done
settings=(${from_files[@]+"${from_files[@]}"} ${settings[@]+"${settings[@]}"})
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then PYTHON=$repo/.venv/bin/python; else PYTHON=python3; fi
fi
if [[ ${name##*/} != *:* ]]; then
  if [ "$push" = 1 ]; then
    version=$("$PYTHON" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml") \
      || die "cannot read the version from pyproject.toml (with $PYTHON)"
    name=$name:$version
  else
    name=$name:latest
  fi
fi
if [ "$push" = 1 ] && { [ "$named" = 0 ] || [[ $name != */* ]]; }; then
  die "--push needs the name to push as, REGISTRY/NAME[:TAG], e.g. 127.0.0.1:5000/memberlog"
fi
# The rootfs image is a local build cache, never pushed: named without the plugin's registry
# and path (127.0.0.1:5000/memberlog:0.1.0 -> memberlog-rootfs:0.1.0).
repo_name=${name%:*}
image="${repo_name##*/}-rootfs:${name##*:}"

if [ -n "${DOCKER:-}" ]; then :
elif [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker  # Debian's CLI: no buildx needed
else DOCKER=docker
fi
# A CLI whose `docker build` wants buildx, when buildx is missing: use the classic builder.
if ! "$DOCKER" buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}; fi

t_start=$SECONDS
step() { printf '==> [%3ds] %s\n' $((SECONDS - t_start)) "$*"; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

"$DOCKER" version >/dev/null || die "no Docker daemon answers at ${DOCKER_HOST:-the default socket}"
[ -n "$from_image" ] || "$PYTHON" -m pip --version >/dev/null 2>&1 \
  || die "$PYTHON has no pip (set PYTHON=...)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/memberlog-plugin.XXXXXX")
cid=
cleanup() {
  if [ -n "$cid" ]; then "$DOCKER" rm -f "$cid" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$from_image" ]; then
  have_image "$from_image" || die "no image $from_image on this daemon"
  image=$from_image base="(prebuilt)"
else
# --- the base image ------------------------------------------------------------------------
case $base in
  auto)
    if have_image "$official_base"; then
      base=$official_base
    else
      step "pulling $official_base"
      if "$DOCKER" pull -q "$official_base" >/dev/null 2>&1; then
        base=$official_base
      else
        step "no $official_base and no registry: using the local Debian base $local_base"
        base=local
      fi
    fi
    ;;
esac
if [ "$base" = local ]; then
  base=$local_base
  if ! have_image "$base"; then
    step "building $base with debootstrap (once; ~75 s)"
    MEMBERLOG_DOCKER_CLI=$DOCKER "$PYTHON" "$repo/tests/support/dockerenv.py" debian
  fi
fi
probe='import sys, platform
print("%d.%d" % sys.version_info[:2], platform.machine(), *platform.libc_ver())'
facts=$("$DOCKER" run --rm --network none --entrypoint python3 "$base" -c "$probe") \
  || die "cannot run python3 in $base"
# shellcheck disable=SC2086  # four words, split on purpose
set -- $facts
pyver=$1 arch=$2 libc=${3:-} glibc=${4:-}
[ "$libc" = glibc ] || die "$base: python3 is not on glibc ($libc): no manylinux wheels fit"
step "base $base: Python $pyver, $arch, glibc $glibc"

# --- wheels, on the host (containers may not reach PyPI) -----------------------------------
ctx=$work/context
mkdir -p "$ctx/dist/pip" "$ctx/dist/deps" "$ctx/dist/app" "$work/src"
# The files pyproject.toml packages (driver/, cli/ map to memberlog.driver, memberlog.cli),
# copied so that the build leaves no build/ or *.egg-info in the repository.
srcs=(pyproject.toml README.md driver cli)
for f in "$repo"/LICEN[CS]E* "$repo"/NOTICE*; do [ -e "$f" ] && srcs+=("${f##*/}"); done
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - "${srcs[@]}" | tar -C "$work/src" -xf -
# The same sources give the same wheel, so Docker's cache keeps the app layer.
SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 315532800)
export SOURCE_DATE_EPOCH
step "building memberlog's wheel"
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$ctx/dist/app" "$work/src"

platforms=()
for ((m = ${glibc#*.}; m >= 17; m--)); do platforms+=(--platform "manylinux_2_${m}_$arch"); done
platforms+=(--platform "manylinux2014_$arch")
case $arch in x86_64 | i686) platforms+=(--platform "manylinux2010_$arch" --platform "manylinux1_$arch") ;; esac
target=(--only-binary=:all: --python-version "$pyver" --implementation cp --abi "cp${pyver/./}")
step "fetching dependency wheels for cp${pyver/./} ${arch}"
"$PYTHON" -m pip download -q --disable-pip-version-check "${target[@]}" "${platforms[@]}" \
  -d "$ctx/dist/deps" "$ctx"/dist/app/*.whl
rm -f "$ctx"/dist/deps/memberlog-*.whl
"$PYTHON" -m pip download -q --disable-pip-version-check "${target[@]}" --no-deps \
  -d "$ctx/dist/pip" pip

# --- the rootfs ----------------------------------------------------------------------------
step "docker build -t $image (FROM $base)"
"$DOCKER" build --build-arg BASE_IMAGE="$base" -t "$image" -f "$repo/Dockerfile" "$ctx"
fi

step "exporting the rootfs"
pdir=$work/plugin
mkdir -p "$pdir/rootfs"
cid=$("$DOCKER" create "$image")
"$DOCKER" export "$cid" | tar -C "$pdir/rootfs" --numeric-owner -xpf -
"$DOCKER" rm "$cid" >/dev/null
cid=
cp "$repo/plugin/config.json" "$pdir/config.json"
journal_version=$("$PYTHON" "$repo/plugin/journal_format.py" --stamp "$pdir") \
  || die "cannot stamp the plugin's journal format version"
rootfs_size=$(du -sh "$pdir/rootfs" | cut -f1)

# --- the plugin ----------------------------------------------------------------------------
if "$DOCKER" plugin inspect "$name" >/dev/null 2>&1; then
  if [ "$keep_settings" = 1 ]; then
    # Keep what `docker plugin set` gave the old plugin, for the settings the new one has.
    settable=" $("$PYTHON" -c 'import json, sys
c = json.load(open(sys.argv[1]))
print(*[e["name"] for e in c.get("env", []) if "value" in e.get("settable", [])],
      *[m["name"] + ".source" for m in c.get("mounts", []) if "source" in m.get("settable", [])])
' "$pdir/config.json") "
    old=()
    while IFS= read -r kv; do
      if [ -n "$kv" ] && [[ $settable == *" ${kv%%=*} "* ]]; then old+=("$kv"); fi
    done < <("$DOCKER" plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}{{range .Settings.Mounts}}{{if .Name}}{{.Name}}.source={{.Source}}{{println}}{{end}}{{end}}' "$name")
    settings=(${old[@]+"${old[@]}"} ${settings[@]+"${settings[@]}"})
  fi
  step "replacing plugin $name"
  "$DOCKER" plugin disable -f "$name" >/dev/null 2>&1 || true
  "$DOCKER" plugin rm -f "$name" >/dev/null
fi
step "docker plugin create $name"
"$DOCKER" plugin create "$name" "$pdir" >/dev/null
if [ ${#settings[@]} -gt 0 ]; then
  # Not `docker plugin set NAME K=V...`: that puts the values on a command line.
  step "setting ${settings[*]%%=*}"
  printf '%s\n' "${settings[@]}" | "$PYTHON" "$repo/plugin/plugin_set.py" "$name" \
    || die "cannot set $name's settings"
fi
# The state mount's host dir must exist, or enabling fails. A daemon on a unix socket runs on
# this machine: make it here (for another machine's daemon, make it there).
if [[ ${DOCKER_HOST:-unix://} == unix://* ]]; then
  while IFS= read -r dir; do
    if [[ $dir == /* ]] && [ ! -d "$dir" ]; then
      mkdir -p "$dir" && chmod 0700 "$dir" && step "made state dir $dir"
    fi
  done < <("$DOCKER" plugin inspect -f '{{range .Settings.Mounts}}{{.Source}}{{println}}{{end}}' "$name")
fi
if [ "$enable" = 1 ]; then
  step "docker plugin enable $name"
  "$DOCKER" plugin enable "$name" >/dev/null
fi

if [ "$push" = 1 ]; then
  step "docker plugin push $name"
  "$DOCKER" plugin push "$name" >"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; die "push failed"; }
fi

image_size=$("$DOCKER" image inspect -f '{{.Size}}' "$image")
step "done: plugin $name ($( [ "$enable" = 1 ] && echo enabled || echo disabled)$( [ "$push" = 1 ] && echo ", pushed"), journal format v$journal_version), rootfs $rootfs_size, image $image $((image_size / 1000000)) MB, base $base"
