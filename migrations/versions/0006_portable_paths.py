"""Artefact paths relative to the data directory; a waveform overview per track.

Heatmap (and any absolute stem) paths that point inside the data directory are
rewritten relative to it, so a copied, moved or re-mounted data directory keeps
its heatmaps and stems. An absolute path into another data directory (one copied
before this migration ran) is re-rooted when the same artefact file exists here.
Paths elsewhere are left as they are. ``tracks.overview`` holds a few hundred
min/max points of the waveform, computed at ingest, so the UI draws it without
decoding the file.

The data directory is what ``catalog.db`` hands over in ``config.attributes``
(``data_dir``), else the folder of the SQLite file; on a server database with
neither, paths are left to be resolved when read (``catalog.paths.resolve_stored``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from catalog.paths import path_is_text, resolve_stored, stored_path

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (table, key columns, path column)
PATH_COLUMNS = (
    ("tracks", ("id",), "heatmap_path"),
    ("stem_sets", ("id",), "directory"),
    ("stems", ("stem_set_id", "name"), "path"),
)


def _data_dir(bind) -> Path | None:
    given = context.config.attributes.get("data_dir")
    if given:
        return Path(given)
    if bind.dialect.name == "sqlite" and bind.engine.url.database not in (None, "", ":memory:"):
        return Path(bind.engine.url.database).absolute().parent
    return None


def _relativise(bind, root: Path) -> None:
    for table, keys, column in PATH_COLUMNS:
        t = sa.table(table, *(sa.column(k) for k in keys), sa.column(column))
        rows = bind.execute(sa.select(*(t.c[k] for k in keys), t.c[column])).all()
        for row in rows:
            value = row[-1]
            if isinstance(value, bytes):  # non-UTF-8, stored raw (catalog.column_types.FsPath)
                value = os.fsdecode(value)
            if not value or not Path(value).is_absolute():
                continue
            new = stored_path(root, resolve_stored(root, value))
            if new != value:
                where = sa.and_(*(t.c[k] == row[i] for i, k in enumerate(keys)))
                # stored as catalog.column_types.FsPath stores it: raw bytes unless valid UTF-8
                raw = new if path_is_text(new) else os.fsencode(new)
                bind.execute(sa.update(t).where(where).values({column: raw}))


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("overview", sa.LargeBinary))
    bind = op.get_bind()
    root = _data_dir(bind)
    if root is not None:
        _relativise(bind, root)


def downgrade() -> None:
    bind = op.get_bind()
    root = _data_dir(bind)
    if root is not None:  # back to absolute paths, as the older code expects
        for table, keys, column in PATH_COLUMNS:
            t = sa.table(table, *(sa.column(k) for k in keys), sa.column(column))
            for row in bind.execute(sa.select(*(t.c[k] for k in keys), t.c[column])).all():
                value = row[-1]
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    where = sa.and_(*(t.c[k] == row[i] for i, k in enumerate(keys)))
                    bind.execute(
                        sa.update(t).where(where).values({column: str(root / value)})
                    )
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("overview")
