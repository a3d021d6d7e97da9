"""The alternative architectures the source projects compared with ResNet18.

Each has the interface of :class:`embeddings.model.GenreResNet18` (``embed``,
``classify``, ``forward``, ``embedding_dim``, ``cam_layer``, ``classifier``) so training, ingest,
sound-alike search and Grad-CAM work with any of them, and each is registered in
``embeddings.model.ARCHITECTURES`` under the name ``sonic train --arch`` takes.

- ``vgg``: a VGG-style CNN trained from scratch (stacks of 3x3 convolutions),
- ``crnn``: convolutions for local timbre, then a bidirectional GRU over time,
- ``transformer``: a small spectrogram transformer (AST-like patches, CLS token).

They are deliberately small: the training sets are hundreds of clips, not millions.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(cin: int, cout: int, pool: tuple[int, int], convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers, nn.MaxPool2d(pool))


class _HeadedNetwork(nn.Module):
    """The head half of the interface, for networks that keep their genre head in ``head``.

    Only ``embed`` and ``cam_layer`` differ between architectures; the head, and
    ``forward`` as head-of-embedding, must not, or Grad-CAM and training would
    see a different network than sound-alike search does.
    """

    head: nn.Module

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def classifier(self) -> nn.Module:
        return self.head

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


class GenreVGG(_HeadedNetwork):
    """VGG-style 3x3 stacks (32-64-128-256 channels), global mean+max pooling.

    The first block has a single convolution: a second one at full resolution
    would double the training cost on CPU for no gain on clips this short.
    """

    embedding_dim = 256

    def __init__(self, n_genres: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(1, 32, (2, 2), convs=1),
            _conv_block(32, 64, (2, 2)),
            _conv_block(64, 128, (2, 2)),
            _conv_block(128, 256, (2, 2)),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.embedding_dim, n_genres))

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[-1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # mean + max keeps both sustained texture and short salient events
        return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


class GenreCRNN(_HeadedNetwork):
    """Three conv blocks that pool frequency away, then a BiGRU over the time axis."""

    embedding_dim = 256

    def __init__(self, n_genres: int, hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv_block(1, 32, (4, 2), convs=1),
            _conv_block(32, 64, (4, 2)),
            _conv_block(64, 128, (4, 1)),
        )
        # 128 mel bands / 64 = 2 bands left, each with 128 channels
        self.gru = nn.GRU(128 * 2, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_genres))
        self.embedding_dim = 2 * hidden

    @property
    def cam_layer(self) -> nn.Module:
        return self.conv[-1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (b, c, f, t)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)
        # the recurrence runs in fp32: under autocast it gets the lower-precision
        # conv output, and fp32 keeps the GRU's long sums stable
        out, _ = self.gru(x.float())
        return out.mean(dim=1)


class GenreTransformer(_HeadedNetwork):
    """A small spectrogram transformer: 16x16 patches, 4 layers, a CLS token."""

    embedding_dim = 192

    def __init__(
        self,
        n_genres: int,
        n_mels: int = 128,
        frames: int = 130,
        patch: int = 16,
        dim: int = 192,
        depth: int = 4,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        n_patches = (n_mels // patch) * (frames // patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=dim * 4, dropout=dropout, batch_first=True,
            norm_first=True, activation="gelu",
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_genres)
        self.embedding_dim = dim

    @property
    def cam_layer(self) -> nn.Module:
        # the patch grid is the only spatial map this network has
        return self.patch_embed

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (b, dim, f/16, t/16)
        x = x.flatten(2).transpose(1, 2)
        n = x.shape[1]
        pos = self.pos[:, : n + 1]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1) + pos
        x = self.encoder(x)
        return self.norm(x[:, 0])
