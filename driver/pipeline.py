"""One container's way through the driver: FIFO -> decode -> member -> spool.

A thread per container takes the FIFO reader's chunks, decodes frames into lines, holds them
until the member is known, then turns them into events in that member's stream's spool. The
shipper on the other side of the spool does the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .batch import to_events
from .fifo import FifoReader
from .framing import CorruptFrame, FrameDecoder, Line
from .limits import READ_AHEAD_BYTES
from .member import MemberResolver, unresolved_stream
from .options import DriverConfig
from .ship import Shipper

log = logging.getLogger(__name__)

Attach = Callable[[str, DriverConfig], Shipper]  # (stream, config) -> that stream's shipper


class ContainerLog:
    """The log of one running container, from StartLogging to StopLogging."""

    def __init__(
        self,
        fifo_path: str,
        info: dict,
        cfg: DriverConfig,
        member: str | None,
        state_dir: str,
        attach: Attach,
        resumed: bool = False,
        carry: dict | None = None,
    ) -> None:
        """``resumed``: a FIFO this driver read before it was restarted. ``carry`` is what
        ``suspend`` returned in that previous life, if anything: without it the FIFO may start
        mid-frame and the decoder must find its footing."""
        self.info = info  # the StartLogging request's Info, for the driver's state record
        self.container_id = info.get("ContainerID") or "unknown"
        self.cfg = cfg
        self.shipper: Shipper | None = None
        self._attach = attach
        self._position = 0  # spool position after this container's last event
        self._resolver = MemberResolver(cfg, state_dir)
        self._held: list[Line] = [tuple(x) for x in carry["held"]] if carry else []
        self._decoder = FrameDecoder(self.cfg.max_event_size, resync=resumed and not carry)
        if carry:
            self._decoder.restore(carry["decoder"])
        self._suspending = False
        if member is None:
            member = self._resolver.from_file()
        if member is not None:
            self._use(member)
        self._reader = FifoReader(fifo_path, READ_AHEAD_BYTES)
        self._thread = threading.Thread(
            target=self._run, name=f"decode {self.container_id[:12]}", daemon=True
        )
        self._thread.start()

    def _use(self, member: str | None) -> None:
        if member is None:
            stream = unresolved_stream(self.container_id)
            log.warning(
                "container %s named no service member within %gs: its log goes to %s/%s",
                self.container_id[:12], self.cfg.member_wait, self.cfg.group, stream,
            )  # fmt: skip
        else:
            stream = member
        self.shipper = self._attach(stream, self.cfg)
        held, self._held = self._held, []
        self._ship(held)

    def _ship(self, lines: list[Line]) -> None:
        if lines:
            self._position = self.shipper.spool.put(to_events(lines, self.cfg.max_event_size))

    def _run(self) -> None:
        decoder = self._decoder
        corrupt = False
        while True:
            wait = 1.0 if self.shipper else self._resolver.next_check(time.monotonic())
            data = self._reader.get(wait)
            if data is None:
                break
            lines: list[Line] = []
            if data and not corrupt:
                try:
                    lines = decoder.feed(data)
                except CorruptFrame as e:
                    # No way to find the next frame boundary: keep draining the FIFO so the
                    # container does not block, but stop decoding it.
                    corrupt = True
                    lines = e.lines
                    log.error(
                        "container %s: corrupt log stream, discarding the rest: %s",
                        self.container_id[:12], e,
                    )  # fmt: skip
            if self.shipper:
                self._ship(lines)
            else:
                self._held.extend(lines)
                decided, member = self._resolver.offer(lines, time.monotonic())
                if decided:
                    self._use(member)
        if self._suspending and not corrupt:
            return  # the driver is going down: decoder state and held lines are carried over
        try:
            tail = [] if corrupt else decoder.finish()
        except CorruptFrame as e:
            tail = e.lines
            log.error("container %s: %s", self.container_id[:12], e)
        if self.shipper:
            self._ship(tail)
        else:
            self._held.extend(tail)
            self._use(self._resolver.decide(time.monotonic(), final=True)[1])

    def stop(self, timeout: float) -> bool:
        """Drain the FIFO, then wait until this container's events have shipped (bounded).

        The daemon has written everything before it calls StopLogging but closes the FIFO only
        after the reply, so waiting for EOF here would deadlock.
        """
        deadline = time.monotonic() + timeout
        self._reader.stop()
        self._thread.join(timeout)
        if self._thread.is_alive() or self.shipper is None:
            return False
        self.shipper.spool.flush()
        return self.shipper.spool.wait_acked(self._position, deadline - time.monotonic())

    def suspend(self, timeout: float) -> dict:
        """Driver shutdown while the container runs on: read what the FIFO holds, ship what
        has a stream, and return what must outlive this process (held lines, a frame cut in
        half by the last read, open partial lines) for ``carry`` in the next one."""
        self._suspending = True
        self.stop(timeout)
        return {"held": self._held, "decoder": self._decoder.state()}
