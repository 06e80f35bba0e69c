"""Datasets, reproducible batching and batch augmentation.

- :mod:`attnas.data.paths` -- where data files are found (``--data-dir`` / ``$ATTNAS_DATA_DIR``).
- :mod:`attnas.data.datasets` -- :func:`load_dataset` -> :class:`ImageData` (uint8 tensors).
- :mod:`attnas.data.loader` -- :func:`split_indices`, :class:`Batches`.
- :mod:`attnas.data.augment` -- :class:`BatchAugment`, :func:`default_augment`.
- :mod:`attnas.data.stream` -- :class:`StreamingData`, :class:`StreamBatches`: large image folders
  and WebDataset shards decoded and augmented in DataLoader workers (:mod:`attnas.data.transforms`);
  :mod:`attnas.data.pack` writes the shards (``attnas data pack``).
"""
from attnas.data.augment import BatchAugment, default_augment
from attnas.data.datasets import (
    ImageData,
    balanced_subset,
    cache_dir,
    channel_stats,
    dataset_names,
    load_dataset,
    resize_images,
)
from attnas.data.loader import Batches, split_indices
from attnas.data.paths import require_file, resolve_data_dir
from attnas.data.stream import StreamBatches, StreamingData, is_streaming

__all__ = [
    "BatchAugment",
    "Batches",
    "ImageData",
    "balanced_subset",
    "cache_dir",
    "channel_stats",
    "dataset_names",
    "default_augment",
    "load_dataset",
    "require_file",
    "resize_images",
    "resolve_data_dir",
    "split_indices",
    "StreamBatches",
    "StreamingData",
    "is_streaming",
]
