"""beamflow.common: everything two or more services share.

Events and subjects, the service runtime, configuration, endpoints and their transfer controllers,
checksums, telemetry, the embedded NATS server and the CLI. Nothing here imports a service; services are
found through the ``beamflow.services`` entry-point group.
"""
