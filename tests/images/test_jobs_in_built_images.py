"""The k8s tier's digits e2e and own-script jobs again, every trial pod in its built image.

The same scenarios (tests/k8s/test_operator.py::run_digits_job,
tests/k8s/test_own_script_cluster.py::run_own_script_job): the real operator on this machine, the
emulated API server, and a kubelet that runs each trial pod in the root file system of the image
the pod names (the built trial image; for own-script the built own-script image, whose /app holds
train.py), as the pod's user, with its volumes. What /proc said of every process while it ran
(rootfs.sample) shows where it ran.
"""

from __future__ import annotations

import pytest
from image_store import TIMEOUT, Store
from test_operator import Operator, run_digits_job
from test_own_script_cluster import run_own_script_job

pytestmark = [TIMEOUT, pytest.mark.horovod]


@pytest.fixture
def operator_for_images(image_cluster, tmp_path):
    op = Operator(image_cluster, tmp_path)
    op.start()
    yield op
    op.stop()


def assert_ran_in(records: list[dict], images: Store, role: str) -> None:
    """Every process of `records` ran in the image's root file system, read-only, as uid 10001."""
    image = images.open(role)
    assert records and all(r["image"] == image.name for r in records), records
    # sampled while it ran (every 0.2 s): a pod deleted within moments of starting may not be
    sampled = [r for r in records if r.get("root_lowerdir")]
    assert len(sampled) >= len(records) - 1, records
    for r in sampled:
        assert (r["root_lowerdir"], r["root_read_only"], r["process_uid"]) == (str(image.rootfs), True, 10001), r


def test_the_digits_job_succeeds_with_every_trial_pod_in_the_trial_image(
    image_cluster, operator_for_images, images, tmp_path
):
    run_digits_job(image_cluster, operator_for_images, tmp_path, max_trials=3, pruning=False, name="digits-image")
    assert_ran_in([r for r in image_cluster.process_log if r["pod"].startswith("digits-image-t")], images, "trial")


@pytest.mark.slow
def test_own_script_succeeds_in_its_built_image(image_cluster, operator_for_images, images, tmp_path):
    runs = run_own_script_job(image_cluster, tmp_path, None)
    assert_ran_in(runs, images, "own-script")
