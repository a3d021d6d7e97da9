"""Which model a checkpoint file holds, remembered by the catalog as the file is now.

Loading torch and a network only to learn a checkpoint's model id costs seconds; an
ingest with nothing to do should cost none. So the identity read from a checkpoint
is kept in a ``catalog_meta`` row keyed by the file's real path, with its size and
mtime: while those still match, the identity is taken from the row. ``sonic
explain`` also finds, through the same rows, a file that holds the model that
analysed a track.

A mixin of :class:`catalog.store.Catalog`, over the rows of :mod:`catalog.meta_store`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from catalog.meta_store import MetaStore

CHECKPOINT_PREFIX = "checkpoint:"


class CheckpointMemory(MetaStore):
    """Checkpoint identities by real path, size and mtime (a mixin of ``Catalog``)."""

    @staticmethod
    def _checkpoint_key(path: Path) -> tuple[str, os.stat_result]:
        real = os.path.realpath(path)
        digest = hashlib.sha1(os.fsencode(real)).hexdigest()
        return f"{CHECKPOINT_PREFIX}{digest}", os.stat(real)

    def remembered_checkpoint(self, path: Path) -> dict | None:
        """What :meth:`remember_checkpoint` stored for ``path``, if the file is unchanged.

        Lets an ingest plan a run (and find nothing to do) without loading torch and
        the network just to learn the model's id. Size and mtime must match.
        """
        try:
            key, stat = self._checkpoint_key(path)
        except OSError:
            return None
        raw = self.meta(key)
        data = json.loads(raw) if raw else None
        if not data or (data.get("size"), data.get("mtime_ns")) != (
            stat.st_size, stat.st_mtime_ns,
        ):  # fmt: skip
            return None
        return data["identity"]

    def remember_checkpoint(self, path: Path, identity: dict) -> None:
        """Remember the identity of the model in checkpoint ``path`` as the file is now."""
        key, stat = self._checkpoint_key(path)
        value = {
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "identity": identity,
            "path": os.path.realpath(path),
        }  # fmt: skip
        with self.sessions.begin() as s:
            self._set_meta(s, key, json.dumps(value))

    def checkpoint_of_model(self, model_id: str) -> Path | None:
        """A checkpoint file this catalog has seen that holds model ``model_id``, unchanged.

        What ``sonic explain`` loads by default: the model that analysed the track.
        None when no remembered file still holds it (moved, rewritten, or remembered
        before paths were recorded).
        """
        for key, raw in self._meta_snapshot().items():
            if not key.startswith(CHECKPOINT_PREFIX):
                continue
            data = json.loads(raw)
            path = data.get("path")
            if not path or data.get("identity", {}).get("model_id") != model_id:
                continue
            if self.remembered_checkpoint(Path(path)) is not None:  # the file is unchanged
                return Path(path)
        return None
