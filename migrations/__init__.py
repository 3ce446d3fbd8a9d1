"""Alembic migrations. ``kai-messaging migrate`` runs them; ``env.py`` reads DATABASE_URL."""
