# The Veros model in a container, for the docker backend. Built by scripts/docker-engine on
# top of the local debootstrap base image (there is no Docker Hub here).
# With Open MPI, mpi4py and h5py built against parallel HDF5, so `mpiexec: mpiexec` with
# `cpu: N` runs Veros on N ranks (Veros writes its outputs through h5py's mpio driver).
ARG BASE_IMAGE=rompy-tasks/base:bookworm
FROM ${BASE_IMAGE}
ARG VEROS_VERSION=1.7.0
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config gcc python3-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/veros \
    && /opt/veros/bin/pip install --no-cache-dir --quiet "veros==${VEROS_VERSION}" mpi4py \
       "Cython>=3" pkgconfig "setuptools>=77" wheel \
    && H5PY_VERSION=$(/opt/veros/bin/python -c 'import importlib.metadata as m; print(m.version("h5py"))') \
    && CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-openmpi /opt/veros/bin/pip install --no-cache-dir \
       --quiet --no-binary h5py --no-build-isolation --no-deps --force-reinstall "h5py==${H5PY_VERSION}" \
    && /opt/veros/bin/python -c 'import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)' \
    && useradd --uid 1000 --create-home --shell /bin/bash modeller
# Containers have no network but loopback and no ptrace between ranks: Open MPI's shared-memory
# transport copies through its own segments instead of cross-memory attach.
ENV PATH=/opt/veros/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp \
    OMPI_MCA_btl_vader_single_copy_mechanism=none
USER modeller
WORKDIR /home/modeller
