# The Veros model in a container, for the docker backend. Built by scripts/docker-engine on
# top of the local debootstrap base image (there is no Docker Hub here).
ARG BASE_IMAGE=rompy-tasks/base:bookworm
FROM ${BASE_IMAGE}
ARG VEROS_VERSION=1.7.0
RUN python3 -m venv /opt/veros \
    && /opt/veros/bin/pip install --no-cache-dir --quiet "veros==${VEROS_VERSION}" \
    && useradd --uid 1000 --create-home --shell /bin/bash modeller
ENV PATH=/opt/veros/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp
USER modeller
WORKDIR /home/modeller
