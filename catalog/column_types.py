"""Column types that store what Python holds losslessly on SQLite and on PostgreSQL.

File names are bytes on POSIX and need not be UTF-8; free text may quote such a
name; sizes and nanosecond mtimes overflow PostgreSQL's 32-bit ``integer``. These
types hide the difference so that the tables (:mod:`catalog.schema`) read the same
on both backends.
"""

from __future__ import annotations

import os

from sqlalchemy import BigInteger, Integer, LargeBinary, Text
from sqlalchemy.types import TypeDecorator

from catalog.paths import display_path, path_is_text


class FsPath(TypeDecorator):
    """A file path stored losslessly, whatever bytes its name holds.

    POSIX names are bytes and old libraries hold Latin-1 ones; Python decodes those
    bytes to lone surrogates, which SQLite's UTF-8 text refuses. A name that is valid
    UTF-8 is stored as TEXT, as always; any other is stored as its raw bytes (SQLite
    keeps a BLOB in a TEXT column as it is) and read back with ``os.fsdecode``, so
    it names the same file again. Comparisons bind the same way, so ``path == x``
    still finds it. Existing catalogs need no migration.

    PostgreSQL's ``text`` cannot hold a value that is not valid UTF-8 (nor a mixed
    column), so there the column is ``bytea`` (as the migrations create it) and every
    path is stored as its raw ``os.fsencode`` bytes. Ordering is then bytewise, as
    SQLite's BINARY collation orders UTF-8 text, so pages sort alike on both.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(LargeBinary())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value, dialect):
        if isinstance(value, str) and (dialect.name == "postgresql" or not path_is_text(value)):
            return os.fsencode(value)
        return value

    def process_result_value(self, value, dialect):
        if isinstance(value, bytes):
            return os.fsdecode(value)
        return value


class SafeText(TypeDecorator):
    """Free text that may quote an undecodable file name (an error, a tag): shown escaped.

    Unlike a path, such text is only ever shown, so its odd bytes become ``\\xNN``
    escapes (:func:`catalog.paths.display_path`) instead of failing the transaction.
    PostgreSQL refuses NUL in text (a tag can hold one); there it is shown as ``\\x00``.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, str) and not path_is_text(value):
            value = display_path(value)
        if isinstance(value, str) and dialect.name == "postgresql" and "\x00" in value:
            value = value.replace("\x00", "\\x00")
        return value


# 64-bit integers for nanosecond mtimes and byte sizes on PostgreSQL, whose ``integer``
# is 32-bit and overflows on any mtime in ns; SQLite's INTEGER is 64-bit already, so
# its DDL stays what it always was. (The migrations spell the same variants out
# themselves, as ``bytea`` for paths: a migration must not change with this module.)
BIG_INTEGER = Integer().with_variant(BigInteger(), "postgresql")
