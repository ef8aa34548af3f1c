# syntax=docker/dockerfile:1.7
# Operator image: the kopf operator that runs TuningJobs in a cluster (deploy/manager/manager.yaml).
# It never trains, so no Horovod: the project wheel with its `operator`, `postgres` and `dashboard`
# extras (the last: optuna-dashboard, which deploy/dashboard runs from this same image). The
# `operator` extra includes torch, CPU build only, because Optuna's GPSampler (sampler: gp, which
# the CRD admits) computes with it; it is imported only when a gp job asks for a trial. The wheel
# also carries openautoglm_trial, whose contract and task registry the operator imports (cheap).
# Build from the repository root:  docker build -t openautoglm/operator:0.1 .
# checkov findings accepted, with reasons (tests/k8s/test_deploy_checks.py runs checkov and hadolint):
# checkov:skip=CKV_DOCKER_7:FROM ${PYTHON_IMAGE}, whose default above is the pinned python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the pod's probes (deploy/, the trial builders) check health
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the project wheel and every dependency as a wheel ------------------------------
FROM ${PYTHON_IMAGE} AS builder
# The CPU build of torch (the default index serves a multi-GB CUDA build).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (no tests, no local virtualenvs or egg-info).
COPY pyproject.toml README.md ./
COPY operator/openautoglm ./operator/openautoglm
COPY trial_image/openautoglm_trial ./trial_image/openautoglm_trial
RUN pip wheel --wheel-dir /wheels --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && pip wheel --wheel-dir /wheels --find-links /wheels ".[operator,postgres,dashboard]"

# --- runtime: slim Python, wheels only, non-root ---------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# --no-index: only the wheels built above can be installed, so they are the pins.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "openautoglm-tune[operator,postgres,dashboard]" \
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
