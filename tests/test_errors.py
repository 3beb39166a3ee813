"""The project's one error family: every kind a person can meet is a ``DashappError``."""

from __future__ import annotations

import pickle

import pytest

from dashapp import errors
from dashapp.cluster import ClusterError
from dashapp.cluster.siblings import OwnerGone
from dashapp.cluster.slurm import SlurmError
from dashapp.data import errors as data_errors
from dashapp.workloads import InvalidPlan, StationError, SweepError, plan_sweep


@pytest.mark.parametrize("name", errors.__all__)
def test_every_kind_is_a_dashapp_error(name):
    kind = getattr(errors, name)
    assert issubclass(kind, errors.DashappError)
    # a kind survives pickling (a sweep's StationError comes back from a Dask worker)
    again = pickle.loads(pickle.dumps(kind("a message")))
    assert type(again) is kind
    assert str(again) == "a message"


def test_cluster_slurm_sibling_and_sweep_errors_join_the_family():
    for kind in (ClusterError, SlurmError, OwnerGone, StationError, SweepError, InvalidPlan):
        assert issubclass(kind, errors.DashappError), kind
    assert issubclass(SlurmError, ClusterError)
    assert issubclass(OwnerGone, ClusterError)
    # the built-in classes code caught before are still there
    assert issubclass(errors.OwnerTimeout, TimeoutError)
    assert issubclass(errors.ClusterTimeout, ClusterError)
    assert issubclass(InvalidPlan, ValueError)
    assert issubclass(StationError, RuntimeError)


def test_data_layer_import_path_is_the_same_classes():
    for name in data_errors.__all__:
        assert getattr(data_errors, name) is getattr(errors, name)


def test_a_bad_sweep_plan_is_a_dashapp_error_with_a_sentence():
    with pytest.raises(errors.DashappError, match="station grid needs ny, nx >= 1"):
        plan_sweep(ny=0, nx=3)
