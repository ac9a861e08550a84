# syntax=docker/dockerfile:1
# The IFC services: ifcflow with the [ifc] extra (ifcopenshell, ifcclash, ifctester, ifcdiff, ifccsv, ifc5d).
#   docker build -f docker/ifcservices.Dockerfile -t ifcflow-ifcservices .
#   one tool:  python -m ifcservices ifcconvert --host 0.0.0.0 --port 8080
#   all tools: python -m ifcservices all --host 0.0.0.0 --port 8080   (under /<tool>)
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first: the heavy ifcopenshell layer is rebuilt only when pyproject.toml or the lock file changes.
# The lock's pins (-c): the image gets the versions CI tested, not whatever the ranges allow today.
COPY pyproject.toml requirements.lock README.md* ./
RUN mkdir -p contracts && touch contracts/__init__.py \
    && pip install -c requirements.lock ".[ifc]" \
    && pip uninstall --yes ifcflow \
    && rm -rf contracts
# contracts, settings, store and workflows: the packages every ifcflow image carries beside its own.
COPY contracts ./contracts
COPY settings ./settings
COPY storage ./storage
COPY access ./access
COPY store ./store
COPY workflows ./workflows
COPY ifcservices ./ifcservices
RUN pip install --no-deps . && python -c "import ifcopenshell, ifcservices, settings"

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    IFCFLOW_DATA_DIR=/data \
    IFCFLOW_LOG_JSON=true
# libstdc++ (ifcopenshell's geometry kernels) is already in the slim image; the wheels bring the rest.
RUN groupadd --system --gid 10001 ifcflow \
    && useradd --system --uid 10001 --gid ifcflow --home-dir /app --shell /usr/sbin/nologin ifcflow \
    && mkdir -p /app /data \
    && chown ifcflow:ifcflow /app /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
CMD ["python", "-m", "ifcservices", "all", "--host", "0.0.0.0", "--port", "8080"]
