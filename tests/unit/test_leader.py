"""The leader election's decision and Lease bodies (operator/openautoglm/k8s/leader.py), without a
server: who may take the Lease when, from whose clock, and what each write carries. The elector
against an API server, two real operator replicas and a hand-over: tests/k8s/test_replicas.py."""

from __future__ import annotations

import datetime as dt

import pytest

from openautoglm.k8s import leader
from openautoglm.k8s.leader import Action, Sighting, build_lease, build_released, decide, sight

ME, OTHER = "operator-a_1111", "operator-b_2222"
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=dt.UTC)


def _lease(holder: str | None, rv: str = "7", duration: int | None = 15, **spec: object) -> dict:
    body = build_lease("op", "ns", holder or "x", duration or 15, T0)
    body["metadata"]["resourceVersion"] = rv
    if holder is None:
        del body["spec"]["holderIdentity"]
    if duration is None:
        del body["spec"]["leaseDurationSeconds"]
    body["spec"].update(spec)
    return body


def test_no_lease_is_created() -> None:
    assert decide(None, ME, None, now=100.0, lease_seconds=15).action is Action.CREATE


def test_our_own_lease_is_renewed_whatever_the_clock_says() -> None:
    lease = _lease(ME)
    assert decide(lease, ME, Sighting("7", 0.0), now=1e6, lease_seconds=15).action is Action.RENEW


def test_a_released_lease_is_taken_at_once() -> None:
    lease = _lease(None)
    d = decide(lease, ME, sight(lease, None, 100.0), now=100.0, lease_seconds=15)
    assert d.action is Action.ACQUIRE and d.holder == ""


def test_a_live_holder_is_waited_for_until_its_lease_runs_out_from_when_we_saw_it() -> None:
    lease = _lease(OTHER)
    seen = sight(lease, None, 100.0)
    d = decide(lease, ME, seen, now=110.0, lease_seconds=15)
    assert (d.action, d.holder, d.wait_seconds) == (Action.WAIT, OTHER, pytest.approx(5.0))
    d = decide(lease, ME, seen, now=115.0, lease_seconds=15)
    assert (d.action, d.holder) == (Action.ACQUIRE, OTHER)


def test_a_renewal_restarts_the_standbys_clock_and_the_holders_timestamps_are_not_trusted() -> None:
    """The standby counts from when it saw the revision change, on its own clock: a holder whose
    node clock is hours behind (renewTime long past) is still waited for while it renews."""
    stale_clock = {"renewTime": "2001-01-01T00:00:00.000000Z", "acquireTime": "2001-01-01T00:00:00.000000Z"}
    first = _lease(OTHER, rv="7", **stale_clock)
    seen = sight(first, None, 100.0)
    assert decide(first, ME, seen, now=100.0, lease_seconds=15).action is Action.WAIT
    renewed = _lease(OTHER, rv="8", **stale_clock)
    seen = sight(renewed, seen, 112.0)
    assert seen == Sighting("8", 112.0)
    assert decide(renewed, ME, seen, now=120.0, lease_seconds=15).action is Action.WAIT  # 116 s: it would be over
    assert sight(renewed, seen, 125.0) is seen  # the same revision again: the clock runs on
    assert decide(renewed, ME, seen, now=127.0, lease_seconds=15).action is Action.ACQUIRE


def test_the_holders_own_duration_wins_over_ours() -> None:
    lease = _lease(OTHER, duration=40)
    seen = sight(lease, None, 0.0)
    assert decide(lease, ME, seen, now=30.0, lease_seconds=15).action is Action.WAIT
    lease = _lease(OTHER, duration=None)  # none written: ours
    assert decide(lease, ME, sight(lease, None, 0.0), now=15.0, lease_seconds=15).action is Action.ACQUIRE


def test_created_lease_names_us_with_times_and_no_resource_version() -> None:
    body = build_lease("op", "ns", ME, 15, T0)
    assert body["metadata"] == {"name": "op", "namespace": "ns"}
    assert body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2025-01-02T03:04:05.600000Z",
        "renewTime": "2025-01-02T03:04:05.600000Z",
        "leaseTransitions": 0,
    }


def test_renewal_keeps_acquire_time_and_transitions_and_carries_the_read_revision() -> None:
    ours = _lease(ME, rv="41", leaseTransitions=3)
    later = T0 + dt.timedelta(seconds=2)
    body = build_lease("op", "ns", ME, 15, later, ours)
    assert body["metadata"]["resourceVersion"] == "41"  # a replace fails if anyone wrote since
    assert body["spec"]["acquireTime"] == ours["spec"]["acquireTime"]
    assert body["spec"]["renewTime"] == "2025-01-02T03:04:07.600000Z"
    assert body["spec"]["leaseTransitions"] == 3


def test_takeover_counts_a_transition_and_starts_a_new_term() -> None:
    theirs = _lease(OTHER, rv="9", leaseTransitions=3)
    later = T0 + dt.timedelta(seconds=30)
    body = build_lease("op", "ns", ME, 15, later, theirs)
    assert body["metadata"]["resourceVersion"] == "9"
    assert body["spec"]["holderIdentity"] == ME
    assert body["spec"]["leaseTransitions"] == 4
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"] == "2025-01-02T03:04:35.600000Z"


def test_release_leaves_no_holder_says_who_released_and_is_taken_at_once() -> None:
    ours = _lease(ME, rv="50", leaseTransitions=2)
    released = build_released(ours, ME, T0)
    assert "holderIdentity" not in released["spec"]
    assert released["metadata"]["resourceVersion"] == "50"
    assert released["metadata"]["annotations"][leader.RELEASED_BY] == ME
    assert released["spec"]["leaseTransitions"] == 2
    released["metadata"]["resourceVersion"] = "51"
    d = decide(released, OTHER, sight(released, None, 0.0), now=0.0, lease_seconds=15)
    assert d.action is Action.ACQUIRE
    # The next holder's Lease does not keep the note: a later takeover is not reported as a release.
    assert "annotations" not in build_lease("op", "ns", OTHER, 15, T0, released)["metadata"]


@pytest.mark.parametrize(("retry", "renew", "lease"), [(2, 10, 10), (2, 20, 15), (0, 10, 15), (10, 10, 15)])
def test_timings_that_would_let_two_leaders_overlap_are_refused(retry: float, renew: float, lease: int) -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease duration"):
        leader.LeaseConfig("op", "ns", lease, renew, retry)


def test_leadership_status_says_whom_it_took_over_from_and_how() -> None:
    assert leader.Leadership(ME, "t").status() == {"replica": ME, "leaderSince": "t"}
    assert leader.Leadership(ME, "t", OTHER, "LeaseExpired").status() == {
        "replica": ME,
        "leaderSince": "t",
        "previousReplica": OTHER,
        "handover": "LeaseExpired",
    }
