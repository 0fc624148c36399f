"""The process's one boto3 session, which every CloudWatch Logs client comes from.

One session, because each loads botocore's models again (about 10 MB). Its endpoint table is
cut down to the services a driver calls: botocore keeps every AWS service's endpoints in
memory (endpoints.json, about 6.7 MB of Python objects), and the driver talks to one service.
Clients find their URL by the service's own endpoint rules, not by this table; the table only
names regions and signing details, and a service left out gets its partition's defaults.
"""

from __future__ import annotations

import os
import threading

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from .limits import AWS_ENDPOINT_SERVICES

_session: boto3.session.Session | None = None
_lock = threading.Lock()  # a session is not thread-safe: clients are made one at a time


class _Loader(botocore.loaders.Loader):
    """botocore's data loader, keeping only AWS_ENDPOINT_SERVICES in the endpoint table."""

    def load_data_with_path(self, name: str) -> tuple[dict, str]:
        data, path = super().load_data_with_path(name)  # cached: trimmed once, in place
        if name == "endpoints":
            for partition in data.get("partitions", ()):
                services = partition.get("services", {})
                for service in [s for s in services if s not in AWS_ENDPOINT_SERVICES]:
                    del services[service]
        return data, path


def _new_session() -> boto3.session.Session:
    core = botocore.session.get_session()
    data_path = core.get_config_variable("data_path")  # AWS_DATA_PATH, as botocore reads it
    extra = data_path.split(os.pathsep) if data_path else None
    core.register_component("data_loader", _Loader(extra_search_paths=extra))
    return boto3.session.Session(botocore_session=core)


def logs_client(region: str | None, endpoint: str | None, config: Config) -> object:
    """A new CloudWatch Logs client: boto3's usual chain for credentials, region and endpoint
    (AWS_REGION, AWS_ENDPOINT_URL[_LOGS], keys, instance role), overridden by ``region`` and
    ``endpoint``. Callers keep the clients they make."""
    global _session
    with _lock:
        if _session is None:
            _session = _new_session()
        return _session.client(
            "logs",
            region_name=region or os.environ.get("AWS_REGION") or None,
            endpoint_url=endpoint or None,
            config=config,
        )
