from __future__ import annotations

import pytest

from shared.domain.settings import ClusterSettings, SettingsError
from shared.domain.units import GiB


def test_settings_from_loose_values() -> None:
    settings = ClusterSettings.from_mapping(
        {
            "name": "genomics-1",
            "node_types": "c5.4xlarge:0.42,t3.large",
            "min_nodes": "0,1",
            "max_nodes": [10, 5],
            "target_time": "30m",
            "node_storage": 100,
            "beta_inertia": "0.2",
        }
    )
    assert settings.min_nodes == (0, 1) and settings.max_nodes == (10, 5)
    assert settings.target_time == 1800 and settings.node_storage == 100 * GiB and settings.beta_inertia == 0.2


def test_the_largest_root_volume_is_in_gib_and_never_below_node_storage() -> None:
    base = {"name": "a", "node_types": "t3.large"}
    assert ClusterSettings.from_mapping(base).largest_node_storage == 1024 * GiB  # grown up to 1 TiB unless told
    small = ClusterSettings.from_mapping({**base, "max_node_storage": 50})
    assert small.max_node_storage == 50 * GiB and small.largest_node_storage == small.node_storage
    below = ClusterSettings.from_mapping({**base, "node_storage": "200", "max_node_storage": "100GiB"})
    assert below.largest_node_storage == 200 * GiB  # node_storage is always allowed
    assert ClusterSettings.from_mapping(below.to_mapping()) == below
    with pytest.raises(SettingsError, match="max_node_storage must be at most 16384 GiB"):
        ClusterSettings.from_mapping({**base, "max_node_storage": "17TiB"})
    with pytest.raises(SettingsError, match="setting 'max_node_storage'"):
        ClusterSettings.from_mapping({**base, "max_node_storage": "lots"})


def test_round_trip_through_plain_values() -> None:
    settings = ClusterSettings.from_mapping(
        {"name": "a", "node_types": "t3.large", "min_nodes": "1", "zone": "us-west-2a"}
    )
    assert ClusterSettings.from_mapping(settings.to_mapping()) == settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad_Name"}, "cluster name 'Bad_Name' is not valid"),
        ({"node_types": "c9.huge"}, "unknown instance type 'c9.huge'"),
        ({"min_nodes": "5", "max_nodes": "2"}, "not a valid range"),
        ({"region": "mars-1"}, "region 'mars-1' has no prices"),
        ({"beta_inertia": 1.5}, "beta_inertia must be in"),
        ({"scale_interval": "10s"}, "scale_interval must be at least 60 seconds"),
        ({"target_time": "soon"}, "setting 'target_time'"),
        ({"colour": "blue"}, "unknown setting 'colour'"),
        ({"node_types": ""}, "setting 'node_types' is required"),
    ],
)
def test_bad_settings_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ClusterSettings.from_mapping({"name": "ok", "node_types": "t3.large", **change})
