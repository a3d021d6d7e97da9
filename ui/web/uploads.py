"""The web UI's uploads: the only files its handlers open, kept under a size cap.

Apart from the widgets because it is the UI's security boundary (see ``Uploads``),
and the tests check it on its own.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr
from gradio import utils as gradio_utils
from gradio_client import utils as gradio_client_utils

# The one answer to any file that is not a live upload of this UI: the same words whether
# the path exists, is a directory, is audio or is /etc/shadow, so it tells nothing.
NOT_AN_UPLOAD = "Upload an audio file first (each upload is analysed once, then deleted)."


class Uploads:
    """This UI's uploads in Gradio's upload folder: the only files its handlers open.

    Gradio copies any file a request names (``{"path": ..., "meta": {"_type":
    "gradio.FileData"}}``, in *any* input, a text box too) into its cache before a
    handler runs, and a mounted app never switches on Gradio's own "uploaded by a
    user" check (it waits for ``launch()``), so a request could read any file of
    the server. ``confine`` refuses such inputs before Gradio touches the path;
    ``resolve`` is the handlers' own check. Analysed uploads are deleted at once;
    ``trim`` keeps the rest under ``cap_bytes`` (Gradio's ``delete_cache`` bounds
    their age).
    """

    def __init__(self, cap_bytes: int, folder: str | os.PathLike | None = None) -> None:
        self.cap_bytes = cap_bytes
        # Where Gradio writes uploads: $GRADIO_TEMP_DIR, else <tempdir>/gradio.
        self.folder = os.path.realpath(folder or gradio_utils.get_upload_folder())
        self.blocks: gr.Blocks | None = None
        self._lock = threading.Lock()

    def resolve(self, path: object) -> Path | None:
        """The real file ``path`` names if it lies inside the upload folder, else None.

        Symlinks are resolved first, so a link in the folder cannot point out of it;
        nothing outside the folder is ever stat'ed, so refusals disclose nothing.
        """
        if not isinstance(path, str) or not path or "://" in path or "\0" in path:
            return None
        real = os.path.realpath(path)
        if real == self.folder or os.path.commonpath([real, self.folder]) != self.folder:
            return None
        return Path(real)

    def confine(self, demo: gr.Blocks) -> None:
        """Refuse every event whose inputs name a file that is not one of the uploads."""
        self.blocks = demo
        original = demo.preprocess_data

        def check(file_data: dict) -> dict:
            if self.resolve(file_data.get("path")) is None:
                raise gr.Error(NOT_AN_UPLOAD, print_exception=False)
            return file_data

        async def preprocess_data(block_fn, inputs, *args, **kwargs):
            for value in inputs:
                gradio_client_utils.traverse(
                    value, check, gradio_client_utils.is_file_obj_with_meta
                )
            return await original(block_fn, inputs, *args, **kwargs)

        demo.preprocess_data = preprocess_data

    def discard(self, path: Path) -> None:
        """Delete an analysed upload (and the folder Gradio made for it, once empty)."""
        with self._lock:
            path.unlink(missing_ok=True)
            if path.parent != Path(self.folder):
                try:
                    path.parent.rmdir()
                except OSError:
                    pass  # not empty: another upload of the same content
            if self.blocks is not None:
                for files in self.blocks.temp_file_sets:
                    files.discard(str(path))

    def trim(self) -> int:
        """Delete this UI's oldest uploads until they total at most ``cap_bytes``; bytes freed.

        Called before each upload is received, so the folder holds at most the cap
        plus the upload arriving.
        """
        if self.blocks is None:
            return 0
        with self._lock:
            found = []
            for files in self.blocks.temp_file_sets:
                for name in list(files):
                    try:
                        st = os.lstat(name)
                    except OSError:
                        files.discard(name)
                        continue
                    found.append((st.st_mtime, st.st_size, name))
            total = sum(size for _, size, _ in found)
            freed = 0
            for _, size, name in sorted(found):
                if total - freed <= self.cap_bytes:
                    break
                Path(name).unlink(missing_ok=True)
                for files in self.blocks.temp_file_sets:
                    files.discard(name)
                freed += size
            return freed
