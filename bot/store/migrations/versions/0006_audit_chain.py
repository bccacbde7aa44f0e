"""audit log: a hash chain, no REPLACE over an existing row, a serving role that may not rewrite

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

- ``prev_hash`` / ``row_hash`` on audit_log, backfilled for existing rows in id order (see
  bot.store.chain); new rows without them are refused by the database.
- SQLite: ``INSERT OR REPLACE`` / UPSERT over an existing id is refused (REPLACE deletes the old
  row without firing the DELETE trigger).
- PostgreSQL: the NOLOGIN role ``concierge_app`` may read and append to audit_log and do
  ordinary DML on the other tables, but not UPDATE, DELETE, TRUNCATE or ALTER the audit log.
  ``serve`` runs as a login member of it; ``db upgrade`` runs as the tables' owner:

      CREATE ROLE concierge_serve LOGIN PASSWORD '…' IN ROLE concierge_app;

  When the migrating role may not create roles, the role is skipped with a warning that
  gives the statements to run.
"""

import logging

import sqlalchemy as sa
from alembic import op

from bot.store import chain

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP_ROLE = "concierge_app"
APPEND_ONLY = "SELECT RAISE(ABORT, 'audit_log is append-only')"
log = logging.getLogger("concierge.migrations")

AUDIT = sa.table(
    "audit_log",
    sa.column("id", sa.Integer()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("subject", sa.String()),
    sa.column("reason", sa.Text()),
    sa.column("details", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("row_hash", sa.String()),
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
    _allow_updates(False)
    _backfill()
    _allow_updates(True)
    if postgres:
        op.execute(
            "ALTER TABLE audit_log ADD CONSTRAINT ck_audit_log_chained "
            "CHECK (prev_hash IS NOT NULL AND row_hash IS NOT NULL)"
        )
        _grant_app_role()
    else:
        op.execute(
            "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
            "WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
            f"BEGIN {APPEND_ONLY}; END"
        )
        op.execute(
            "CREATE TRIGGER audit_log_chained BEFORE INSERT ON audit_log "
            "WHEN NEW.prev_hash IS NULL OR NEW.row_hash IS NULL "
            "BEGIN SELECT RAISE(ABORT, 'audit_log rows are written through the hash chain'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _revoke_app_role()
        op.execute("ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS ck_audit_log_chained")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_chained")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_replace")
    _allow_updates(False)  # SQLite rebuilds the table to drop columns; its triggers go with it
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
    _allow_updates(True)


def _allow_updates(protect: bool) -> None:
    """Switch 0001's append-only UPDATE/DELETE triggers off (False) or back on (True)."""
    if op.get_bind().dialect.name == "postgresql":
        verb = "ENABLE" if protect else "DISABLE"
        op.execute(f"ALTER TABLE audit_log {verb} TRIGGER audit_log_append_only")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}")
        if protect:
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb} BEFORE {verb.upper()} ON audit_log "
                f"BEGIN {APPEND_ONLY}; END"
            )


def _backfill() -> None:
    """Chain the rows written before this revision, oldest first, keeping their ids."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(AUDIT).order_by(AUDIT.c.id)).mappings().all()
    prev = chain.GENESIS
    updates = []
    for row in rows:
        fields = chain.ChainFields(
            id=row["id"],
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            target=row["target"],
            subject=row["subject"],
            reason=row["reason"],
            details=row["details"],
        )
        digest = chain.row_hash(prev, fields)
        updates.append({"key": row["id"], "prev": prev, "digest": digest})
        prev = digest
    if updates:
        bind.execute(
            AUDIT.update()
            .where(AUDIT.c.id == sa.bindparam("key"))
            .values(prev_hash=sa.bindparam("prev"), row_hash=sa.bindparam("digest")),
            updates,
        )


def _grant_statements(schema: str, tables: dict[str, str], sequences: list[str]) -> list[str]:
    """What the app role may do: DML on every table but the audit log, which it may only read
    and append to; read the migration version; nothing on tables' structure or triggers.
    ``tables`` maps each name to its qualified, quoted form."""
    audit, version = tables.get("audit_log"), tables.get("alembic_version")
    writable = [q for name, q in tables.items() if name not in ("audit_log", "alembic_version")]
    out = [f"GRANT USAGE ON SCHEMA {schema} TO {APP_ROLE}"]
    if writable:
        out.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(writable)} TO {APP_ROLE}")
    # REVOKE ALL first: a role that existed before may have been given more by hand.
    if audit:
        out += [
            f"REVOKE ALL ON {audit} FROM {APP_ROLE}",
            f"GRANT SELECT, INSERT ON {audit} TO {APP_ROLE}",
        ]
    if version:
        out += [
            f"REVOKE ALL ON {version} FROM {APP_ROLE}",
            f"GRANT SELECT ON {version} TO {APP_ROLE}",
        ]
    if sequences:
        out.append(f"GRANT USAGE, SELECT ON SEQUENCE {', '.join(sequences)} TO {APP_ROLE}")
    # Tables a later revision creates (as the same owner) get ordinary DML too.
    out += [
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}",
    ]
    return out


def _owned(kind: str) -> tuple[str, dict[str, str]]:
    """The current schema (quoted) and its relations of ``kind`` that we own: each name and
    its qualified, quoted form."""
    bind = op.get_bind()
    schema = str(bind.execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one())
    rows = bind.execute(
        sa.text(
            "SELECT c.relname, quote_ident(c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = :kind "
            "AND pg_get_userbyid(c.relowner) = current_user ORDER BY c.relname"
        ),
        {"kind": kind},
    ).all()
    return schema, {str(name): f"{schema}.{quoted}" for name, quoted in rows}


def _grant_app_role() -> None:
    """Create the app role when allowed (roles are cluster-wide: it may exist already), then
    grant it its privileges on this database's tables."""
    bind = op.get_bind()
    schema, tables = _owned("r")
    _, sequences = _owned("S")
    statements = _grant_statements(schema, tables, list(sequences.values()))
    exists = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE})
    if exists.first() is None:
        may_create = bind.execute(
            sa.text("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()
        if not may_create:
            log.warning(
                "skipped the PostgreSQL role %s: %s may not create roles. To run serve without "
                "the power to rewrite the audit log, have a role administrator run "
                "CREATE ROLE %s NOLOGIN; then run as the tables' owner: %s",
                APP_ROLE,
                bind.execute(sa.text("SELECT current_user")).scalar(),
                APP_ROLE,
                "; ".join(statements),
            )
            return
        op.execute(
            f"DO $$ BEGIN CREATE ROLE {APP_ROLE} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    for statement in statements:
        op.execute(statement)


def _revoke_app_role() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first():
        schema, _ = _owned("r")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {APP_ROLE}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {APP_ROLE}")
        op.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
            f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}"
        )
        op.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
            f"REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}"
        )
        op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {APP_ROLE}")
