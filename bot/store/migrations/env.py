"""Alembic environment: the engine is handed in by bot.store.db (no alembic.ini needed)."""

from alembic import context

from bot.store.models import Base

config = context.config
engine = config.attributes["engine"]


def include_object(
    obj: object, name: str | None, kind: str, reflected: bool, compare_to: object
) -> bool:
    """APScheduler's job table is created by a migration but described by APScheduler."""
    table = getattr(obj, "table", obj)
    return getattr(table, "name", name) != "apscheduler_jobs"


with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
    )
    context.run_migrations()
