# rompy-tasks itself (flows + library) on top of the Veros image: what a Prefect docker work
# pool runs. Built from the repository root by `scripts/docker-engine flow-image`.
ARG VEROS_IMAGE=rompy-tasks/veros:1.7.0
FROM ${VEROS_IMAGE}
USER root
WORKDIR /opt/rompy-tasks
# Dependencies first, in a layer that stays cached while pyproject.toml is unchanged.
COPY pyproject.toml README.md prefect.toml ./
RUN mkdir -p rompy_tasks flows && touch rompy_tasks/__init__.py flows/__init__.py \
    && /opt/veros/bin/pip install --no-cache-dir --quiet . \
    && rm -rf rompy_tasks flows
COPY rompy_tasks rompy_tasks
COPY flows flows
COPY examples examples
RUN /opt/veros/bin/pip install --no-cache-dir --quiet --no-deps --force-reinstall .
USER modeller
