"""Feeding batches to the trainer: a split held as one time-first tensor on the device, or a DataLoader.

Small splits (FSDD, digits, S-MNIST column-wise...) are stacked once into ``X [T, N, C]`` on the training device
(spike data as uint8, 4x smaller than float32) and batches are gathered with one index operation: no worker
processes, no per-item collation, no host-to-device copy per batch. Larger splits go through
``dendrix.data.make_loader``. The order of every epoch is a function of ``(seed, epoch)`` only, so a resumed run
sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import json
from typing import Iterator

import torch
from torch import Tensor

__all__ = ["Batches", "open_dataset", "batches_for"]

IN_MEMORY_LIMIT_BYTES = 1 << 30


_DATASET_CACHE: dict[str, object] = {}
_DATASET_CACHE_SIZE = 6


def open_dataset(data_cfg: dict, split: str, seed: int = 0, cache: bool = True):
    """``dendrix.data.get_dataset`` for the config's ``data`` section.

    The last few data sets opened are kept (they are read-only), so comparisons that train several kinds on the
    same task decode the data once.
    """
    from ..data import get_dataset

    options = dict(data_cfg.get("options") or {})
    key = json.dumps([data_cfg["name"], split, data_cfg.get("root"), seed, options, id(get_dataset)],
                     sort_keys=True, default=str)
    if cache and key in _DATASET_CACHE:
        return _DATASET_CACHE[key]
    ds = get_dataset(data_cfg["name"], split=split, root=data_cfg.get("root"), seed=seed, **options)
    if cache:
        _DATASET_CACHE[key] = ds
        while len(_DATASET_CACHE) > _DATASET_CACHE_SIZE:
            _DATASET_CACHE.pop(next(iter(_DATASET_CACHE)))
    return ds


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
    """

    def __init__(self, dataset, batch_size: int, device: torch.device | str = "cpu", in_memory="auto"):
        self.dataset, self.batch_size, self.device = dataset, int(batch_size), torch.device(device)
        self.info = getattr(dataset, "info", None)
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

    def __len__(self) -> int:
        """Number of samples in the split."""
        return len(self.dataset)

    def num_batches(self, world: int = 1, drop_last: bool = False) -> int:
        per_rank = -(-len(self) // world)
        return per_rank // self.batch_size if drop_last else -(-per_rank // self.batch_size)

    def iterate(self, *, shuffle: bool = False, seed: int = 0, epoch: int = 0, rank: int = 0, world: int = 1,
                drop_last: bool = False, pad: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of this process's shard. Training pads shards to equal length (DDP needs equal step
        counts); evaluation passes ``pad=False`` so every sample counts once."""
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

        if world > 1 and not pad:
            loader = make_loader(Subset(self.dataset, range(rank, len(self.dataset), world)), self.batch_size,
                                 shuffle=False, seed=seed, drop_last=drop_last)
        elif world > 1:
            sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
            sampler.set_epoch(epoch)
            loader = make_loader(self.dataset, self.batch_size, shuffle=False, seed=seed, drop_last=drop_last,
                                 sampler=sampler)
        else:
            loader = make_loader(self.dataset, self.batch_size, shuffle=shuffle, seed=seed * 100_003 + epoch,
                                 drop_last=drop_last)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True).float(), y.to(self.device, non_blocking=True)


def batches_for(data_cfg: dict, split: str, device, batch_size: int | None = None, seed: int = 0) -> Batches:
    """Open ``split`` of the data set described by ``data_cfg`` as :class:`Batches` on ``device`` (batch size
    ``batch_size``, default the config's ``eval_batch_size``)."""
    ds = open_dataset(data_cfg, split, seed=seed)
    return Batches(ds, batch_size or data_cfg.get("eval_batch_size", 256), device,
                   in_memory=data_cfg.get("in_memory", "auto"))
