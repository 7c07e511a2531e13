"""Declares the flight-check service for the runtime (entry point ``beamflow.services: flightcheck``)."""

from __future__ import annotations

from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import FlightChecked, FlightRequested, FlightScheduled
from beamflow.common.service import Handler, Service
from beamflow.flightcheck.handler import FlightChecker


def build(config: BeamflowConfig) -> Service:
    checker = FlightChecker(config)
    return Service(
        name="flightcheck",
        handlers=[
            Handler(
                name="flight-run",
                subject=subjects.flight_subject("run", "*"),
                event=FlightRequested,
                handle=checker.on_request,
                publishes=(FlightChecked,),
            ),
        ],
        background=[checker.place_schedules],
        emits=(FlightScheduled,),
    )
