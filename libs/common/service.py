"""How a service declares itself: its name, a handler per event type it consumes, and what each may publish.

A service module exposes ``build(config) -> Service`` and registers it in the ``beamflow.services``
entry-point group. The runtime does everything else. A handler raises ``PermanentError`` to dead-letter,
``TransientError`` (or anything else) to be retried with back-off, and returns normally to have the
message acked once every event it published is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from beamflow.common.config import BeamflowConfig
from beamflow.common.events import Event
from nats.js import JetStreamContext

if TYPE_CHECKING:
    from beamflow.common.runtime import Runtime

E = TypeVar("E", bound=Event)

ENTRY_POINT_GROUP = "beamflow.services"


class Publisher(Protocol):
    async def publish(self, event: Event) -> None: ...

    @property
    def js(self) -> JetStreamContext: ...


@dataclass
class Context:
    """What a handler gets beside its event: how to publish follow-ons, and facts about the delivery."""

    publisher: Publisher
    allowed: tuple[type[Event], ...]
    subject: str
    deliveries: int
    log: logging.LoggerAdapter[logging.Logger]

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context, for handlers that read state on the bus (the ledger, pending holds)."""
        return self.publisher.js

    async def publish(self, event: Event) -> None:
        """Publish a follow-on event; the message is acked only after every publish is stored."""
        if not isinstance(event, self.allowed):
            raise TypeError(f"this handler declares {[m.stage for m in self.allowed]}, not {event.stage}")
        await self.publisher.publish(event)


@dataclass(frozen=True)
class Handler(Generic[E]):
    name: str
    subject: str
    event: type[E]
    handle: Callable[[Context, E], Awaitable[None]]
    publishes: tuple[type[Event], ...] = ()


BackgroundTask = Callable[["Runtime"], Awaitable[None]]


@dataclass
class Service:
    name: str
    handlers: list[Handler[Any]] = field(default_factory=list)
    background: list[BackgroundTask] = field(default_factory=list)
    """Long-running producers (the watcher's observer); cancelled on shutdown."""
    needs_bus_at_start: bool = True
    """False for producers that must work while NATS is down (the watcher spools until it returns)."""
    emits: tuple[type[Event], ...] = ()
    """Events published outside any handler (a producer's: the watcher's ``scan.new``); with the handlers'
    ``publishes`` they are all this service's NATS user may publish."""
    kv_writes: tuple[str, ...] = ()
    """KV buckets this service writes (the ledger's LEDGER); others only read."""
    accounts: Callable[[BeamflowConfig], set[str]] | None = None
    """The endpoints, compute sites or ``catalog`` whose remote accounts this service logs in to: checked at
    start (``beamflow.common.credentials``), and the service refuses to start when one is rejected."""


ServiceFactory = Callable[[BeamflowConfig], Service]


def discover() -> dict[str, ServiceFactory]:
    """Every service installed in this environment, by name, from the entry-point group."""
    found: dict[str, ServiceFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return dict(sorted(found.items()))
