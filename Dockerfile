# syntax=docker/dockerfile:1.7
# Operator image: the kopf operator that runs TuningJobs in a cluster (deploy/manager/manager.yaml).
# It never trains, so no Horovod: the project wheel with its `operator`, `postgres` and `dashboard`
# extras (the last: optuna-dashboard, which deploy/dashboard runs from this same image). The
# `operator` extra includes torch, CPU build only, because Optuna's GPSampler (sampler: gp, which
# the CRD admits) computes with it; it is imported only when a gp job asks for a trial. The wheel
# also carries openautoglm_trial, whose contract and task registry the operator imports (cheap).
# Build from the repository root:  docker build -t openautoglm/operator:0.1 .
#   or scripts/build-images.sh (docker, else buildah; --base, --wheels for a local torch wheel).
# Build arguments:
#   PYTHON_IMAGE     the base of both stages (a Debian bookworm Python 3.11 with `python` and `pip`)
#   TORCH_VERSION    torch's public version; the constraints file pins the build (2.13.0+cpu)
#   TORCH_INDEX_URL  the index torch is taken from (the PyTorch CPU index; a CUDA image names its own)
#   CONSTRAINTS      the pins every pip line runs with (PIP_CONSTRAINT), a path in the build context;
#                    a CUDA torch names another file (its torch==X+cuNNN), with its TORCH_INDEX_URL
#   PIP_FIND_LINKS   unset by default; a directory of local wheels mounted into the builder
#                    (buildah bud --volume DIR:/wheels-local:ro --build-arg PIP_FIND_LINKS=/wheels-local)
#   PIP_CERT         unset by default; a CA bundle mounted into the builder for an index behind a TLS
#                    proxy (buildah bud --volume FILE:/run/pip-ca.crt:ro --build-arg PIP_CERT=/run/pip-ca.crt)
# checkov findings accepted, with reasons (tests/k8s/test_deploy_checks.py runs checkov and hadolint):
# checkov:skip=CKV_DOCKER_7:FROM ${PYTHON_IMAGE}, whose default above is the pinned python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the pod's probes (deploy/, the trial builders) check health
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CONSTRAINTS=constraints/cpu.txt

# --- builder: the project wheel and every dependency as a wheel ------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG CONSTRAINTS
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONSTRAINT=/etc/openautoglm/constraints.txt
COPY ${CONSTRAINTS} /etc/openautoglm/constraints.txt
WORKDIR /src
# The CPU build of torch (PyPI's torch bundles CUDA: gigabytes); the constraints admit no other.
RUN pip wheel --wheel-dir /wheels --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
# Every dependency of the image's extras, read from pyproject.toml: this layer (the downloads) is
# rebuilt when the dependencies change, not on every edit of the source.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [r for e in ('operator', 'postgres', 'dashboard') for r in p['optional-dependencies'][e]]; \
print('\n'.join(p['dependencies'] + extras))" > /wheels/requirements.txt \
 && pip wheel --wheel-dir /wheels --find-links /wheels -r /wheels/requirements.txt \
 && sha256sum /wheels/* > /SHA256SUMS.wheels
# Only what the wheel is built from (no tests, no local virtualenvs or egg-info).
COPY operator/openautoglm ./operator/openautoglm
COPY trial_image/openautoglm_trial ./trial_image/openautoglm_trial
RUN pip wheel --wheel-dir /project --no-deps . \
 && sha256sum /project/*.whl > /SHA256SUMS.project

# --- runtime: slim Python, wheels only, non-root ---------------------------------------------
FROM ${PYTHON_IMAGE}
ARG CONSTRAINTS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONSTRAINT=/etc/openautoglm/constraints.txt
COPY ${CONSTRAINTS} /etc/openautoglm/constraints.txt
# --no-index: only the wheels built above can be installed, and the constraints pin those. Two
# layers, each after the checksums of what it installs (so that a layer cache, buildah --layers,
# reuses it only while they are the same): the dependencies, rebuilt when pyproject.toml or the
# pins change; then the project, rebuilt on every edit of its source (seconds).
COPY --from=builder /SHA256SUMS.wheels /etc/openautoglm/wheels.sha256
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels -r /wheels/requirements.txt
COPY --from=builder /SHA256SUMS.project /etc/openautoglm/project.sha256
# The project unpinned (DL3013): the one wheel just built from this source.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/project,target=/project \
    pip install --no-index --find-links /wheels --find-links /project "openautoglm-tune[operator,postgres,dashboard]" \
 && python -c "import sys, openautoglm.cli, openautoglm.k8s.handlers; \
assert 'torch' not in sys.modules, 'the operator must not import torch'"
# uid 10001 as in the Deployment's securityContext; the studies volume is mounted at
# /var/lib/openautoglm (fsGroup 10001 makes it writable), /tmp is an emptyDir there.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin openautoglm \
 && mkdir -p /var/lib/openautoglm/studies /opt/openautoglm \
 && chown -R 10001:10001 /var/lib/openautoglm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENAUTOGLM_STUDY_DIR=/var/lib/openautoglm/studies \
    OPENAUTOGLM_OPERATOR_HEALTH_PORT=8080 \
    OPENAUTOGLM_OPERATOR_METRICS_PORT=8000
# Not the studies volume: nothing a tenant names may land among every team's journals by a
# relative path. Root-owned and empty: the operator writes only where its settings say.
WORKDIR /opt/openautoglm
USER 10001:10001
# 8080: /healthz (liveness, readiness); 8000: the operator's /metrics.
EXPOSE 8080 8000
ENTRYPOINT ["openautoglm"]
CMD ["operator"]
