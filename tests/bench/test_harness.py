import psycopg
import pytest

from bench.harness import drop_database, isolated_settings


def _databases(url: str) -> set[str]:
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres") as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_a_runs_database_is_dropped_with_a_connection_still_open(stack):
    settings = isolated_settings(stack, "drop")
    name = settings.database_url.rsplit("/", 1)[1]
    assert name in _databases(settings.database_url)
    with psycopg.connect(settings.database_url) as held:  # a job that has not let go yet
        drop_database(settings)
        assert name not in _databases(settings.database_url)
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    drop_database(settings)  # dropping twice is not an error


def test_only_the_harness_databases_are_dropped(stack):
    settings = isolated_settings(stack, "keep")
    other = settings.model_copy(
        update={"database_url": settings.database_url.rsplit("/", 1)[0] + "/postgres"}
    )
    with pytest.raises(ValueError, match="not a database of isolated_settings"):
        drop_database(other)
    assert "postgres" in _databases(settings.database_url)
