"""What an orchestrator's own labels say of a container: its member and, under Swarm, its service.

Docker passes a container's labels to StartLogging (``Info.ContainerLabels``), so these answers
are there before the first line: nothing waits for them.

- **Swarm** labels every task container. ``com.docker.swarm.task.name`` is
  ``<service>.<slot>.<task id>`` for a replicated service: the member is ``<service>-<slot>``,
  the same whichever node the slot is rescheduled to. A global service has the node's ID in place
  of the slot: one task per node, so the member is ``<service>-<host name>`` (the plugin's
  ``HOST_NAME`` setting, else the machine's name).
- **Compose** labels ``com.docker.compose.service`` and ``com.docker.compose.container-number``:
  the member is ``<service>-<number>``.
- **The group under Swarm**: ``service`` defaults to the Swarm service's name and
  ``service-uuid`` to :func:`swarm_service_uuid` of its ID, so a Swarm service needs no group
  log-opt once the plugin's ``CLUSTER`` setting names the cluster.
"""

from __future__ import annotations

import uuid

from .names import InvalidName, check_stream

SWARM_SERVICE_NAME = "com.docker.swarm.service.name"
SWARM_SERVICE_ID = "com.docker.swarm.service.id"
SWARM_TASK_NAME = "com.docker.swarm.task.name"
SWARM_NODE_ID = "com.docker.swarm.node.id"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"
# The UUID of a Swarm service is uuid5(NAMESPACE_URL, SWARM_UUID_PREFIX + <service ID>): stable
# for the service's life (its ID), new for a service removed and created again under its name.
SWARM_UUID_PREFIX = "docker-swarm-service:"

Labels = dict[str, str]


def swarm_service_uuid(service_id: str) -> str:
    """The service-uuid of a Swarm service, from its ID (``docker service inspect -f {{.ID}}``).

    The same on every node and in every plugin version, so all of a service's tasks share one
    group; ``python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL,
    "docker-swarm-service:<ID>"))'`` computes it anywhere."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, SWARM_UUID_PREFIX + service_id))


def swarm_member(labels: Labels, host: str) -> str | None:
    """``<service>-<slot>`` of a replicated service's task, ``<service>-<host>`` of a global
    one's; None for a container Swarm did not start (or a name CloudWatch would refuse)."""
    service = labels.get(SWARM_SERVICE_NAME, "")
    task = labels.get(SWARM_TASK_NAME, "")
    if not service or not task.startswith(service + "."):
        return None
    slot = task[len(service) + 1 :].split(".", 1)[0]
    if slot.isascii() and slot.isdigit():
        member = f"{service}-{int(slot)}"
    elif slot and slot == labels.get(SWARM_NODE_ID, slot):  # global: the node's ID
        member = f"{service}-{host}"
    else:
        return None
    return _valid(member)


def compose_member(labels: Labels) -> str | None:
    """``<service>-<number>`` of a Compose container; None for others."""
    service = labels.get(COMPOSE_SERVICE, "")
    number = labels.get(COMPOSE_NUMBER, "")
    if not service or not (number.isascii() and number.isdigit()):
        return None
    return _valid(f"{service}-{int(number)}")


def _valid(member: str) -> str | None:
    try:
        return check_stream(member)
    except InvalidName:
        return None


def group_defaults(labels: Labels, cluster: str) -> dict[str, str]:
    """log-opts a container gets unless it sets them: ``cluster`` from the plugin's ``CLUSTER``
    setting; under Swarm, ``service`` and ``service-uuid`` from its service."""
    defaults: dict[str, str] = {}
    if cluster:
        defaults["cluster"] = cluster
    name, service_id = labels.get(SWARM_SERVICE_NAME), labels.get(SWARM_SERVICE_ID)
    if name and service_id:
        defaults["service"] = name
        defaults["service-uuid"] = swarm_service_uuid(service_id)
    return defaults
