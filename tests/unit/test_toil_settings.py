"""Where the Toil batch system sends jobs: its options, else the SHOAL_* environment, else the stack's outputs."""

from __future__ import annotations

import pytest

from shared.domain.jobs import parse_job
from shared.toil.settings import ShoalToilConfigError, ShoalToilSettings, static_key_warning

ENV = {
    "SHOAL_CLUSTER_NAME": "env-cluster",
    "SHOAL_TABLE_NAME": "env-table",
    "SHOAL_QUEUE_URL": "https://sqs/env",
    "SHOAL_REGION": "eu-west-1",
}


def no_lookup(cluster: str, region: str | None) -> tuple[str, str, str]:
    raise AssertionError("no stack lookup expected")


def test_the_environment_is_used_when_no_option_is_given() -> None:
    settings = ShoalToilSettings.read(lambda name: None, ENV)
    config = settings.submit_config(no_lookup)
    assert (config.cluster, config.table_name, config.queue_url, config.region) == (
        "env-cluster",
        "env-table",
        "https://sqs/env",
        "eu-west-1",
    )
    assert (settings.poll_interval, settings.default_wall_time, settings.job_image) == (1.0, 600.0, None)


def test_options_win_over_the_environment() -> None:
    options = {"shoal_cluster": "flag-cluster", "shoal_poll_interval": "2s", "shoal_default_wall_time": "1h"}
    settings = ShoalToilSettings.read(options.get, ENV)
    assert (settings.cluster, settings.table_name) == ("flag-cluster", "env-table")
    assert (settings.poll_interval, settings.default_wall_time) == (2.0, 3600.0)


def test_a_cluster_name_alone_is_looked_up_in_its_stack() -> None:
    asked: list[tuple[str, str | None]] = []

    def lookup(cluster: str, region: str | None) -> tuple[str, str, str]:
        asked.append((cluster, region))
        return "stack-table", "https://sqs/stack", "us-east-2"

    config = ShoalToilSettings.read({"shoal_cluster": "named"}.get, {}).submit_config(lookup)
    assert asked == [("named", None)]
    assert (config.table_name, config.queue_url, config.region) == ("stack-table", "https://sqs/stack", "us-east-2")


def test_no_cluster_says_which_option_and_variable_to_set() -> None:
    with pytest.raises(ShoalToilConfigError, match=r"--shoalCluster NAME or set SHOAL_CLUSTER_NAME"):
        ShoalToilSettings.read(lambda name: None, {})


def test_a_bad_interval_names_the_option_and_variable() -> None:
    with pytest.raises(ShoalToilConfigError, match=r"--shoalPollInterval / SHOAL_TOIL_POLL_INTERVAL"):
        ShoalToilSettings.read(lambda name: None, {**ENV, "SHOAL_TOIL_POLL_INTERVAL": "soon"})


def test_a_jobs_feed_survives_the_job_format() -> None:
    job = parse_job({"id": "a", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": "1m", "feed": "toil-x"})
    assert job.feed == "toil-x"
    assert parse_job(job.to_dict()) == job
    with pytest.raises(ValueError, match="field 'feed' must be a string"):
        parse_job({**job.to_dict(), "feed": 3})


def test_a_leader_with_static_keys_is_told_they_would_reach_every_job() -> None:
    warning = static_key_warning({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/root"})
    assert warning is not None
    assert "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in warning and "environment.pickle" in warning


def test_a_leader_without_static_keys_is_told_nothing() -> None:
    assert (
        static_key_warning({"AWS_PROFILE": "work", "AWS_SHARED_CREDENTIALS_FILE": "/c", "AWS_ACCESS_KEY_ID": ""})
        is None
    )
