"""Making and judging genre models: training, pretraining, teachers, evaluation, quantization.

Apart from the runtime in :mod:`embeddings` (front end, networks, checkpoints,
inference, attributions) so that analysing a library never imports it: only the
commands that train or evaluate (``sonic train``, ``sonic pretrain``,
``sonic evaluate-similarity``, ``tools/``) do, and its heavy dependencies
(scikit-learn) come with the ``train`` extra. ``tests/test_layers.py`` checks it.
"""
