"""Work out which service member a container is, so its lines go to that member's stream.

Order: log-opt ``member``; the container's ``SERVICE_MEMBER`` env; the member file
``<state-dir>/members/<service-uuid>/member`` (``SERVICE_MEMBER=<name>``, written by a volume
plugin or host tooling, which may lag the container's start a little); the Swarm task slot;
the Compose container number (orchestrator.py); the container's own ``SERVICE_MEMBER=<name>``
startup line among its first lines. Lines printed before the answer is known are held, then
shipped to the member's stream. With no answer in ``member-wait`` seconds the lines go to
``unresolved/<hostname>/<container-id-12>``. log-opt ``member-from`` picks which of the steps
after the log-opt are taken (the order stays).

The orchestrator's labels are known at StartLogging, so a container they name never waits: the
member file wins over them only when it is there at StartLogging.
"""

from __future__ import annotations

import logging
import os
import time

from .framing import TEXT, Line
from .limits import MAX_HELD_BYTES, MEMBER_FILE_WAIT_S, MEMBER_MARKER_SCAN_LINES
from .names import InvalidName, check_stream, parse_member_marker
from .options import DriverConfig, OptionError
from .orchestrator import compose_member, swarm_member

log = logging.getLogger(__name__)

ENV_NAME = "SERVICE_MEMBER"


def member_file(state_dir: str, service_uuid: str) -> str:
    """Where host tooling writes the member of the container about to start."""
    return os.path.join(state_dir, "members", service_uuid, "member")


def read_member_file(path: str) -> str | None:
    """The member a member file names, or None when absent or unusable (logged)."""
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError:
        return None
    for line in data.splitlines():
        member = parse_member_marker(line.strip())
        if member:
            return member
    log.warning("member file %s has no valid SERVICE_MEMBER=<name> line", path)
    return None


def static_member(cfg: DriverConfig, env: list[str] | None) -> str | None:
    """The member known before the container prints anything: log-opt, then env."""
    if cfg.member:
        return cfg.member
    if "env" not in cfg.member_from:
        return None
    prefix = ENV_NAME + "="
    for item in env or ():
        if item.startswith(prefix):
            try:
                return check_stream(item[len(prefix) :])
            except InvalidName as e:
                raise OptionError(f"container env {ENV_NAME}: {e}") from None
    return None


def known_member(
    cfg: DriverConfig, info: dict, state_dir: str, host: str
) -> tuple[str | None, str]:
    """The member known at StartLogging and how (opt, env, file, swarm, compose), or
    ``(None, "")`` when the container's lines (or a late member file) have to tell."""
    member = static_member(cfg, info.get("ContainerEnv"))
    if member is not None:
        return member, "opt" if cfg.member else "env"
    labels = info.get("ContainerLabels") or {}
    sources = cfg.member_from
    if "file" in sources and cfg.service_uuid:
        member = read_member_file(member_file(state_dir, cfg.service_uuid))
        if member is not None:
            return member, "file"
    if "swarm" in sources and (member := swarm_member(labels, host)) is not None:
        return member, "swarm"
    if "compose" in sources and (member := compose_member(labels)) is not None:
        return member, "compose"
    return None, ""


def unresolved_stream(container_id: str, host: str) -> str:
    """Where lines of a container whose member never became known go."""
    return f"unresolved/{host}/{container_id[:12]}"


class MemberResolver:
    """Watches a container's first lines (and the member file) until the member is known."""

    def __init__(self, cfg: DriverConfig, state_dir: str, started: float | None = None) -> None:
        now = time.monotonic() if started is None else started
        use_file = bool(cfg.service_uuid) and "file" in cfg.member_from
        self.path = member_file(state_dir, cfg.service_uuid) if use_file else None
        self.use_line = "line" in cfg.member_from
        self.file_deadline = now + MEMBER_FILE_WAIT_S if self.path else now
        self.deadline = now + cfg.member_wait
        self.marker: str | None = None
        self.scanned = 0
        self.held_bytes = 0

    def from_file(self) -> str | None:
        """The member file's answer, if it is there now."""
        return read_member_file(self.path) if self.path else None

    def offer(self, lines: list[Line], now: float) -> tuple[bool, str | None]:
        """Look at newly read lines; return (decided, member). member None means unresolved."""
        for line in lines:
            if self.scanned >= MEMBER_MARKER_SCAN_LINES or self.marker or not self.use_line:
                break
            self.scanned += 1
            self.marker = parse_member_marker(line[TEXT])
        self.held_bytes += sum(len(line[TEXT]) for line in lines)
        return self.decide(now, final=False)

    def method(self, member: str | None) -> str:
        """How ``member`` was decided, for the metrics: file, line or unresolved."""
        if member is None:
            return "unresolved"
        return "line" if member == self.marker and member != self.from_file() else "file"

    def decide(self, now: float, final: bool) -> tuple[bool, str | None]:
        """Apply the order of precedence; ``final`` forces an answer (end of the stream)."""
        member = self.from_file()
        if member:
            return True, member
        file_settled = final or now >= self.file_deadline
        if self.marker and file_settled:
            return True, self.marker
        gave_up = (
            final
            or not self.use_line
            or now >= self.deadline
            or self.held_bytes > MAX_HELD_BYTES
            or (self.scanned >= MEMBER_MARKER_SCAN_LINES and not self.marker)
        )
        if gave_up and file_settled:
            return True, self.marker
        return False, None

    def next_check(self, now: float) -> float:
        """Seconds until the answer could change without new lines (file or deadline)."""
        if self.marker or (self.path and now < self.file_deadline):
            return max(0.05, min(0.2, self.file_deadline - now))
        return max(0.05, min(1.0, self.deadline - now))
