# The root filesystem of memberlog's managed Docker plugin (see plugin/build.sh, which builds
# the wheels this needs, runs this build, exports the result and creates the plugin).
#
# Builds with no network at all: everything is installed from wheels in the build context,
#   dist/pip/   one pip wheel (runs from the wheel itself, so the base needs no pip)
#   dist/deps/  memberlog's dependencies, for the base image's Python and platform
#   dist/app/   memberlog's own wheel
# Any glibc base with python3 >= 3.11 works: the official image (the default, for machines that
# reach a registry) or plugin/build.sh's local fallback, a debootstrapped Debian bookworm with
# Debian's python3 (no pip, no ensurepip, no python3-venv needed: the venv is made without pip).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv --without-pip /opt/memberlog
# Dependencies first, in their own layer: a change to memberlog alone rebuilds from here on.
COPY dist/pip/ /tmp/pip/
COPY dist/deps/ /tmp/deps/
RUN set -- /tmp/pip/pip-*.whl && /opt/memberlog/bin/python "$1/pip" install /tmp/deps/*.whl
COPY dist/app/ /tmp/app/
RUN set -- /tmp/pip/pip-*.whl \
    && /opt/memberlog/bin/python "$1/pip" install --no-deps /tmp/app/*.whl \
    && /opt/memberlog/bin/python "$1/pip" check \
    && /opt/memberlog/bin/memberlog-driver --help >/dev/null

FROM ${BASE_IMAGE}
# What the plugin never uses goes: pip, setuptools and wheel (the official image has them),
# ensurepip and its bundled wheels, IDLE, the stdlib's tests, docs, man pages, translations.
# Byte-compiled files stay: they make the driver start (and restart after a crash) faster.
RUN set -eu; \
    stdlib="$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"; \
    site="$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    rm -rf "$stdlib/ensurepip" "$stdlib/idlelib" "$stdlib/turtledemo" "$stdlib/test" \
        "$site"/pip "$site"/pip-*.dist-info "$site"/setuptools "$site"/setuptools-*.dist-info \
        "$site"/_distutils_hack "$site"/distutils-precedence.pth "$site"/pkg_resources \
        "$site"/wheel "$site"/wheel-*.dist-info \
        /usr/local/bin/pip /usr/local/bin/pip3* /usr/local/bin/wheel /usr/local/bin/idle* \
        /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
        /var/cache/apt/* /var/lib/apt/lists/* /root/.cache; \
    mkdir -p /var/lib/memberlog /run/docker/plugins
COPY --from=build /opt/memberlog /opt/memberlog
ENV PATH=/opt/memberlog/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/opt/memberlog/bin/memberlog-driver"]
CMD ["--socket", "/run/docker/plugins/memberlog.sock", "--state-dir", "/var/lib/memberlog"]
