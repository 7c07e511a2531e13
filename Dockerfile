# syntax=docker/dockerfile:1
#
# One image for every beamflow service, the operator commands, the status page and the local SciCat:
#   docker run IMAGE run mover --config /etc/beamflow/beamflow.yaml --health-port 8080
#   docker run IMAGE status-page --config /etc/beamflow/beamflow.yaml --port 8780
#   docker run --entrypoint python IMAGE -m beamflow.scicat_local --db /var/lib/beamflow/scicat/catalog.sqlite
# One image means one build, one scan and one tag to roll out; a service is chosen by its arguments, as
# `beamflow up` chooses it on one machine (decision 0028).
#
# The image holds no configuration and no secrets: the config file is mounted at /etc/beamflow, secrets
# come as environment variables or files that the orchestrator provides at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment with beamflow and the OTLP exporter, nothing else -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/beamflow
WORKDIR /src
# Only what the package is built from (the readme is the project's long description); .dockerignore keeps
# everything else, a developer's .venv and any .env or secrets file included, out of the build context.
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
# A regular (not editable) install: the image must not depend on /src, which the final stage leaves out.
# The otlp extra lets OTEL_TRACES_EXPORTER=otlp work without another image.
RUN /opt/beamflow/bin/pip install ".[otlp]"

# --- run ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# A fixed, unprivileged UID/GID: Kubernetes checks runAsNonRoot against a numeric user, and volumes can be
# prepared for it (fsGroup, or a named volume that copies this image's folder ownership on first use).
ARG BEAMFLOW_UID=10001
RUN groupadd --system --gid "${BEAMFLOW_UID}" beamflow \
 && useradd --system --uid "${BEAMFLOW_UID}" --gid "${BEAMFLOW_UID}" --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin beamflow \
 && install -d -o "${BEAMFLOW_UID}" -g "${BEAMFLOW_UID}" -m 0750 /var/lib/beamflow \
 && install -d -m 0755 /etc/beamflow

COPY --from=build /opt/beamflow /opt/beamflow

# The root filesystem may be read-only: bytecode was compiled at install time, HOME points at the /tmp
# volume for any library that wants a cache, and every path beamflow writes (endpoint roots, state_dir)
# is under a volume mounted at /var/lib/beamflow by the deployment.
# BEAMFLOW_HEALTH_PORT/PATH only feed the HEALTHCHECK below; a container whose server listens elsewhere
# (the status page, the local SciCat) sets them to its own port and path.
ENV PATH=/opt/beamflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    BEAMFLOW_HEALTH_PORT=8080 \
    BEAMFLOW_HEALTH_PATH=/healthz

USER ${BEAMFLOW_UID}:${BEAMFLOW_UID}
WORKDIR /var/lib/beamflow
EXPOSE 8080

# Docker and Compose use this; Kubernetes ignores it and probes /healthz and /readyz itself. The standard
# library is enough: the slim base has no curl or wget, and nothing extra should be installed for a probe.
# The start period covers a service's start: credential checks, connecting, provisioning streams.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ['BEAMFLOW_HEALTH_PORT'] + os.environ['BEAMFLOW_HEALTH_PATH'], timeout=4)"]

ENTRYPOINT ["beamflow"]
CMD ["--help"]
