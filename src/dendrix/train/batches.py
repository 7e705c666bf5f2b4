"""Feeding batches to the trainer: a split held as one time-first tensor on the device, or a DataLoader.

Small splits (FSDD, digits, S-MNIST column-wise...) are stacked once into ``X [T, N, C]`` on the training device
(spike data as uint8, 4x smaller than float32) and batches are gathered with one index operation: no worker
processes, no per-item collation, no host-to-device copy per batch. Larger splits go through
``dendrix.data.make_loader`` (a real DataLoader when ``data.num_workers`` > 0 or ``data.pin_memory``). The order of
every epoch is a function of ``(seed, epoch)`` only, so a resumed run sees exactly the batches it would have seen
without the interruption. Training batches can be augmented (``data.augment``, :class:`dendrix.data.SpikeAugment`),
seeded by ``(seed, epoch, batch)`` as well.
"""

from __future__ import annotations

import json
from typing import Iterator

import torch
from torch import Tensor

__all__ = ["Batches", "open_dataset", "batches_for", "dataset_options_for", "SPEAKER_SPLIT_DEFAULT"]

# The speaker held out by ``data.split: speaker`` when data.options.test_speaker is not given (FSDD's first
# speaker in alphabetical order; set data.options.test_speaker to hold out another one).
SPEAKER_SPLIT_DEFAULT = "george"

IN_MEMORY_LIMIT_BYTES = 1 << 30


_DATASET_CACHE: dict[str, object] = {}
_DATASET_CACHE_SIZE = 6


def open_dataset(data_cfg: dict, split: str, seed: int = 0, cache: bool = True):
    """``dendrix.data.get_dataset`` for the config's ``data`` section.

    The last few data sets opened are kept (they are read-only), so comparisons that train several kinds on the
    same task decode the data once.
    """
    from ..data import DatasetError, dataset_factory, get_dataset

    options = dataset_options_for(data_cfg)
    try:
        factory = id(dataset_factory(data_cfg["name"]))  # a re-registered user data set is opened anew
    except DatasetError:
        factory = None  # unknown name: get_dataset below says so (or a test's stand-in answers it)
    key = json.dumps([data_cfg["name"], split, data_cfg.get("root"), seed, options, id(get_dataset), factory],
                     sort_keys=True, default=str)
    if cache and key in _DATASET_CACHE:
        return _DATASET_CACHE[key]
    ds = get_dataset(data_cfg["name"], split=split, root=data_cfg.get("root"), seed=seed, **options)
    if cache:
        _DATASET_CACHE[key] = ds
        while len(_DATASET_CACHE) > _DATASET_CACHE_SIZE:
            _DATASET_CACHE.pop(next(iter(_DATASET_CACHE)))
    return ds


def dataset_options_for(data_cfg: dict) -> dict:
    """The keywords for ``get_dataset``: ``data.options`` plus what ``data.split`` asks for (``speaker``: the
    data set's ``split_mode="speaker"``, holding out ``data.options.test_speaker``, default
    :data:`SPEAKER_SPLIT_DEFAULT`)."""
    from ..data import DatasetError, dataset_options

    options = dict(data_cfg.get("options") or {})
    split = data_cfg.get("split", "official")
    if split == "official":  # the data set's own split (or whatever data.options.split_mode says)
        return options
    if split != "speaker":
        raise DatasetError(f"data.split must be 'official' or 'speaker', got {split!r}")
    name = data_cfg["name"]
    if "split_mode" not in dataset_options(name):
        raise DatasetError(f"data.split=speaker needs a data set with speaker splits (fsdd); {name!r} has none")
    if options.get("split_mode", "speaker") != "speaker":
        raise DatasetError(f"data.split=speaker conflicts with data.options.split_mode={options['split_mode']!r}")
    options["split_mode"] = "speaker"
    options.setdefault("test_speaker", SPEAKER_SPLIT_DEFAULT)
    return options


def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> Tensor:
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return torch.randperm(n, generator=g)


def _shard(order: Tensor, rank: int, world: int, pad: bool = True) -> Tensor:
    """Every process gets the same number of indices (padding by wrapping around, like DistributedSampler);
    ``pad=False`` (evaluation) gives every index exactly once over all processes."""
    if world == 1:
        return order
    if not pad:
        return order[rank::world]
    per_rank = -(-len(order) // world)
    total = per_rank * world
    if total > len(order):
        order = torch.cat([order, order[: total - len(order)]])
    return order[rank:total:world]


class Batches:
    """Time-first batches ``(x [T, B, C] float32, y [B] int64)`` of one split.

    Args:
        dataset: a dendrix data set (items ``(x [T, C], label)``).
        batch_size: samples per batch (per process).
        device: where batches are produced.
        in_memory: ``"auto"`` (if the split fits in ``IN_MEMORY_LIMIT_BYTES``), True or False.
        augment: a :class:`dendrix.data.SpikeAugment` applied to every batch of a shuffled pass (training);
            None: no augmentation.
        num_workers, pin_memory: for splits not held in memory (``dendrix.data.make_loader``).
    """

    def __init__(self, dataset, batch_size: int, device: torch.device | str = "cpu", in_memory="auto",
                 augment=None, num_workers: int = 0, pin_memory: bool = False):
        self.dataset, self.batch_size, self.device = dataset, int(batch_size), torch.device(device)
        self.info = getattr(dataset, "info", None)
        self.augment = augment if augment is not None and augment.active else None
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        if in_memory == "auto":
            in_memory = self._estimated_bytes() <= IN_MEMORY_LIMIT_BYTES
        if in_memory:
            self._load()

    def _estimated_bytes(self) -> int:
        if len(self.dataset) == 0:
            return 0
        x0, _ = self.dataset[0]
        spikes = getattr(self.info, "input_kind", "analog") == "spikes"
        return len(self.dataset) * x0.numel() * (1 if spikes else 4)

    def _load(self) -> None:
        n = len(self.dataset)
        if hasattr(self.dataset, "get_batch"):  # dendrix SequenceDataset: the whole split in one call
            x, y = self.dataset.get_batch(list(range(n)))
            ys = [int(v) for v in y.tolist()]
        else:
            xs, ys = [], []
            for i in range(n):
                xi, yi = self.dataset[i]
                xs.append(torch.as_tensor(xi))
                ys.append(int(yi))
            x = torch.stack(xs)
        x = x.transpose(0, 1)  # [T, N, C]
        if x.is_floating_point() and x.numel() and bool(((x == x.round()) & (x >= 0) & (x <= 255)).all()):
            x = x.to(torch.uint8)           # spike/count data: exact in uint8
        self.x = x.contiguous().to(self.device)
        self.y = torch.tensor(ys, dtype=torch.int64, device=self.device)

    @classmethod
    def from_config(cls, dataset, data_cfg: dict, device, batch_size: int | None = None, train: bool = False
                    ) -> "Batches":
        """Batches of ``dataset`` as the config's ``data`` section says (``in_memory``, ``num_workers``,
        ``pin_memory``; ``augment`` when ``train``). ``batch_size``: default the ``eval_batch_size``."""
        from ..data import SpikeAugment

        augment = SpikeAugment.from_config(data_cfg.get("augment"), getattr(dataset, "info", None)) if train else None
        return cls(dataset, batch_size or data_cfg.get("eval_batch_size", 256), device,
                   in_memory=data_cfg.get("in_memory", "auto"), augment=augment,
                   num_workers=data_cfg.get("num_workers", 0), pin_memory=data_cfg.get("pin_memory", False))

    def __len__(self) -> int:
        """Number of samples in the split."""
        return len(self.dataset)

    def num_batches(self, world: int = 1, drop_last: bool = False) -> int:
        per_rank = -(-len(self) // world)
        return per_rank // self.batch_size if drop_last else -(-per_rank // self.batch_size)

    def iterate(self, *, shuffle: bool = False, seed: int = 0, epoch: int = 0, rank: int = 0, world: int = 1,
                drop_last: bool = False, pad: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of this process's shard. Training pads shards to equal length (DDP needs equal step
        counts); evaluation passes ``pad=False`` so every sample counts once. A shuffled pass of Batches made
        with ``augment`` yields augmented batches (targets ``[B, classes]`` with mixup)."""
        batches = self._iterate_plain(shuffle, seed, epoch, rank, world, drop_last, pad)
        if self.augment is None or not shuffle:
            yield from batches
            return
        stream = seed * 7_919 + rank  # every process draws its own augmentation
        for i, (x, y) in enumerate(batches):
            yield self.augment(x, y, seed=stream, epoch=epoch, batch=i)

    def _iterate_plain(self, shuffle, seed, epoch, rank, world, drop_last, pad):
        if self.x is None:
            yield from self._iterate_loader(shuffle, seed, epoch, rank, world, drop_last, pad)
            return
        order = _shard(_epoch_order(len(self), seed, epoch, shuffle), rank, world, pad).to(self.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if drop_last and len(idx) < self.batch_size:
                break
            yield self.x[:, idx].float(), self.y[idx]

    def __iter__(self):
        return self.iterate()

    def _iterate_loader(self, shuffle, seed, epoch, rank, world, drop_last, pad=True):
        from torch.utils.data import Subset
        from torch.utils.data.distributed import DistributedSampler

        from ..data import make_loader

        workers = {"num_workers": self.num_workers, "pin_memory": self.pin_memory and self.device.type == "cuda"}
        if world > 1 and not pad:
            loader = make_loader(Subset(self.dataset, range(rank, len(self.dataset), world)), self.batch_size,
                                 shuffle=False, seed=seed, drop_last=drop_last, **workers)
        elif world > 1:
            sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
            sampler.set_epoch(epoch)
            loader = make_loader(self.dataset, self.batch_size, shuffle=False, seed=seed, drop_last=drop_last,
                                 sampler=sampler, **workers)
        else:
            loader = make_loader(self.dataset, self.batch_size, shuffle=shuffle, seed=seed * 100_003 + epoch,
                                 drop_last=drop_last, **workers)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True).float(), y.to(self.device, non_blocking=True)


def batches_for(data_cfg: dict, split: str, device, batch_size: int | None = None, seed: int = 0) -> Batches:
    """Open ``split`` of the data set described by ``data_cfg`` as :class:`Batches` on ``device`` (batch size
    ``batch_size``, default the config's ``eval_batch_size``)."""
    ds = open_dataset(data_cfg, split, seed=seed)
    return Batches.from_config(ds, data_cfg, device, batch_size)
