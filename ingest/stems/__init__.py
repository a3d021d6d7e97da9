"""Stem separation with Demucs, streamed in bounded memory, with a cache the catalog keeps.

Laid out like Demucs itself, one job per module (model-free split apart from weight
loading, both apart from orchestration), with this module as the small api that
callers import from:

- :mod:`~ingest.stems.settings`: :class:`StemSettings`, the cache key and its folder,
  the errors;
- :mod:`~ingest.stems.weights`: loading the weights (``pretrained.py``; the device rule
  is :mod:`embeddings.device`);
- :mod:`~ingest.stems.split`: the streamed overlap-add split (``apply.py``);
- :mod:`~ingest.stems.separator`: separating one file (``api.py``'s ``Separator``);
- :mod:`~ingest.stems.cache`: the content-keyed cache, batches and pruning;
- :mod:`~ingest.stems.audio`: multichannel block decode, resampling and stem writing
  (``audio.py``);
- :mod:`~ingest.stems.remix`: mixing cached stems with per-stem gains.

The names below are re-exported, so ``from ingest.stems import separate_track`` keeps
working. To intercept ``apply_model`` or ``load_demucs_model``, patch them in
:mod:`ingest.stems.separator`, where they are looked up, not here.
"""

from embeddings.device import pick_device
from ingest.stems.cache import (
    BatchProgress,
    BatchSummary,
    StemResult,
    cached_stems,
    current_hash,
    prune_stems,
    separate_many,
    separate_track,
)
from ingest.stems.remix import (
    RemixError,
    RemixResult,
    mix_stems,
    preview_mix,
    remix_track,
    resolve_gains,
)
from ingest.stems.separator import ChunkProgress, Progress, SeparatedFile, StemSeparator
from ingest.stems.settings import (
    DEFAULT_MODEL,
    MODELS_DIR_ENV,
    PIPELINE_VERSION,
    StemSeparationError,
    StemSettings,
    StemsNotAvailable,
    StemWeightsError,
    stem_directory,
)
from ingest.stems.split import ShiftedSplit, SplitStream
from ingest.stems.weights import load_demucs_model, model_segment

__all__ = [
    "DEFAULT_MODEL",
    "MODELS_DIR_ENV",
    "PIPELINE_VERSION",
    "BatchProgress",
    "BatchSummary",
    "ChunkProgress",
    "Progress",
    "RemixError",
    "RemixResult",
    "SeparatedFile",
    "ShiftedSplit",
    "SplitStream",
    "StemResult",
    "StemSeparationError",
    "StemSeparator",
    "StemSettings",
    "StemWeightsError",
    "StemsNotAvailable",
    "cached_stems",
    "current_hash",
    "load_demucs_model",
    "mix_stems",
    "model_segment",
    "pick_device",
    "preview_mix",
    "prune_stems",
    "remix_track",
    "resolve_gains",
    "separate_many",
    "separate_track",
    "stem_directory",
]
