"""The databases a gateway test may run on: the run's PostgreSQL (row-level security on, as
the application role) or a fresh SQLite file (the embedded default, no row-level security)."""

from __future__ import annotations

from pathlib import Path

from migrations.migrate import upgrade
from shared.config import Settings
from tests.conftest import settings_with

#: The backends, for ``pytest.fixture(params=BACKENDS)``.
BACKENDS = ["postgresql", "sqlite"]


def on_backend(backend: str, settings: Settings, directory: Path) -> Settings:
    """``settings`` as they are (PostgreSQL), or pointed at a migrated SQLite database in
    ``directory``."""
    if backend == "postgresql":
        return settings
    url = f"sqlite:///{directory / 'gateway.db'}"
    upgrade(url)
    return settings_with(settings, database_url=url, migration_database_url=None)
