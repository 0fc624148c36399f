"""The log driver's state: which containers are logging, and one shipper per stream.

The HTTP layer calls ``start``/``stop``; this module turns requests into pipelines and keeps
shippers shared, so two containers of one member on this host feed one ordered stream.
"""

from __future__ import annotations

import logging
import os
import stat
import threading

from botocore.exceptions import NoRegionError

from . import options
from .limits import STOP_DRAIN_TIMEOUT_S
from .member import static_member
from .options import DriverConfig
from .pipeline import ContainerLog
from .ship import Destination, Shipper, group_exists, logs_client
from .state import StateDir

log = logging.getLogger(__name__)


class DriverError(Exception):
    """A request the driver cannot serve; the text goes back to the daemon (and the user)."""


class Driver:
    """Starts and stops container pipelines and owns the shared shippers."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.state = StateDir(state_dir)
        self._containers: dict[str, ContainerLog] = {}
        self._shippers: dict[Destination, Shipper] = {}
        self._lock = threading.RLock()  # a new pipeline may attach while start() holds it

    def start(
        self,
        fifo: str,
        info: dict,
        resumed: bool = False,
        stream: str | None = None,
        carry: dict | None = None,
    ) -> None:
        """StartLogging: check the options, then read the FIFO in the background.

        ``resumed``: from the state record, after a restart; ``stream`` and ``carry`` too."""
        try:
            cfg = options.parse(info.get("Config"))
            member = stream or static_member(cfg, info.get("ContainerEnv"))
        except options.OptionError as e:
            raise DriverError(f"memberlog: {e}") from None
        try:
            client = logs_client(cfg.region, cfg.endpoint)  # fail now, not in a shipper thread
        except NoRegionError:
            raise DriverError(
                "memberlog: no AWS region: set log-opt region, or AWS_REGION in the plugin's "
                "environment (docker plugin set memberlog AWS_REGION=...)"
            ) from None
        if not cfg.create_group and not group_exists(client, cfg.group):
            raise DriverError(
                f"memberlog: log group {cfg.group} does not exist and log-opt create-group=false"
            )
        try:
            mode = os.stat(fifo).st_mode
        except OSError as e:
            raise DriverError(f"memberlog: cannot open log FIFO {fifo}: {e.strerror}") from None
        if not stat.S_ISFIFO(mode):
            raise DriverError(f"memberlog: {fifo} is not a FIFO")
        with self._lock:
            if fifo in self._containers:
                raise DriverError(f"memberlog: already logging {fifo}")
            self.state.save(fifo, info)  # first: the pipeline may record its stream at once
            try:
                container = ContainerLog(
                    fifo, info, cfg, member, self.state_dir,
                    lambda stream, cfg: self._attach(fifo, info, stream, cfg), resumed, carry,
                )  # fmt: skip
            except OSError as e:
                self.state.forget(fifo)
                raise DriverError(f"memberlog: cannot open log FIFO {fifo}: {e}") from None
            self._containers[fifo] = container

    def stop(self, fifo: str) -> None:
        """StopLogging: drain and flush this container (bounded), then let it go."""
        with self._lock:
            container = self._containers.pop(fifo, None)
        self.state.forget(fifo)
        if container is None:
            return  # unknown or already stopped: the daemon only wants it gone
        if not container.stop(STOP_DRAIN_TIMEOUT_S):
            log.warning(
                "container %s: events still shipping after %gs; they will follow",
                container.container_id[:12], STOP_DRAIN_TIMEOUT_S,
            )  # fmt: skip
        if container.shipper is not None:
            self._detach(container.shipper)

    def resume(self) -> int:
        """After a restart: reopen every FIFO the daemon still has; returns how many."""
        resumed = 0
        for rec in self.state.known():
            fifo = rec["File"]
            try:
                self.start(fifo, rec["Info"], True, rec["Stream"], rec["Carry"])
                resumed += 1
            except DriverError as e:
                log.info("not resuming %s: %s", fifo, e)
                self.state.forget(fifo)
        return resumed

    def _attach(self, fifo: str, info: dict, stream: str, cfg: DriverConfig) -> Shipper:
        self.state.save(fifo, info, stream)
        dest = Destination(cfg.group, stream, cfg.region, cfg.endpoint)
        with self._lock:
            shipper = self._shippers.get(dest)
            if shipper is None:
                shipper = Shipper(dest, cfg.flush_interval, cfg.create_group, cfg.retention_days)
                self._shippers[dest] = shipper
            shipper.flush_interval = min(shipper.flush_interval, cfg.flush_interval)
            shipper.users += 1
            return shipper

    def _detach(self, shipper: Shipper) -> None:
        with self._lock:
            shipper.users -= 1
            if shipper.users > 0:
                return
            del self._shippers[shipper.dest]
        shipper.spool.close()  # the thread ships what is left, then ends

    def close(self, timeout: float) -> None:
        """Shutdown while containers run on: read their FIFOs dry, ship what has a stream
        (bounded), and record what is left for the next start to carry on from."""
        with self._lock:
            running = list(self._containers.items())
            self._containers.clear()
        for fifo, container in running:
            carry = container.suspend(timeout)
            stream = container.shipper.dest.stream if container.shipper else None
            self.state.save(fifo, container.info, stream, carry)
        with self._lock:
            shippers = list(self._shippers.values())
        for s in shippers:
            s.spool.flush()
        for s in shippers:
            s.close(timeout)
