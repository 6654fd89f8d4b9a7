"""The `tsq` commands around a server: --version, stop, and the config file."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from tests.conftest import tsq


def test_version(tmp_path: Path) -> None:
    shown = tsq(tmp_path, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"tsq {version('tsq')}\n"


def test_serve_refuses_a_bad_config_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("workers = 2\nlog_levle = 'debug'\n")
    bad = tsq(tmp_path, "serve", "--config", str(tmp_path / "bad.toml"))
    assert bad.returncode == 3
    assert bad.stderr == (f"error: {tmp_path / 'bad.toml'}: unknown key 'log_levle'; did you "
                          f"mean 'log_level'? the keys are host, port, allowed_hosts, "
                          f"outbound_allow, auth, workers, worker_memory_mb, max_body_mb, "
                          f"max_result_kb, query_timeout_s, max_query_points, "
                          f"max_queued_queries, max_queued_runs, max_project_runs, project_runs_per_minute, "
                          f"project_points_per_s, project_query_s_per_minute, max_concurrent_writes, "
                          f"pipeline_max_depth, "
                          f"pipeline_max_steps, log_level, "
                          f"log_format, database_url, store_head_minutes, store_past_points, store_cache_mb, cluster, role, store_url, cluster_name, "
                          f"cluster_ack_wait_s, cluster_max_deliver, cluster_lease_ttl_s\n")
    assert not (tmp_path / "server.json").exists()


def test_serve_flags_are_checked_like_the_file(tmp_path: Path) -> None:
    (tmp_path / "tsq.toml").write_text("workers = 2\n")
    bad = tsq(tmp_path, "serve", "--workers", "0", "--port", "0")
    assert bad.returncode == 3
    assert bad.stderr == ("error: --workers = 0 is out of range; expected a whole number from 1 "
                          "to 256\n")
