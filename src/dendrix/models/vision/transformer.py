"""A small spike-driven Transformer (SDT, Yao et al. 2023, NeurIPS) with DLIF's bilinear fusion head.

Tokens are time-first ``[T, B, N, D]``. The patch embedding (``conv norm neuron pool`` per stage, then a
conv-norm relative position embedding on the spikes) turns images ``[T, B, C, H, W]`` into N = H'W' tokens of D
features; each block has the membrane shortcut of SDT (the residual stream is real-valued, every branch starts
with a neuron)::

    x = x + BN(Linear(SDSA(sn(x))))          SDSA(Q, K, V) = Q ⊙ sn(Σ_n K ⊙ V),  Q, K, V = sn(BN(Linear(s)))
    x = x + BN(Linear(sn(BN(Linear(sn(x))))))

Spike-driven self-attention: Q, K and V are spikes, ``K ⊙ V`` is a mask, its column sum over tokens a count, so
the attention needs no multiplication (Yao et al. 2023, Eq. 13). The head averages the tokens, turns them into
spikes and maps them to the classes with DLIF's bilinear current ``W s + b + sᵀ K_o s`` (the bilinear fusion of
the spike features; a plain Linear with ``bilinear_head=False``, the default for kinds other than DLIF).
"""

from __future__ import annotations

from torch import Tensor, nn

from ...validation import check_int
from .blocks import BilinearLinear, NeuronFactory, TimeDistributed, make_conv, make_norm
from .net import VisionNet

__all__ = ["SpikeDrivenTransformer", "TokenBatchNorm", "SpikeDrivenSelfAttention"]


class TokenBatchNorm(nn.BatchNorm1d):
    """Batch norm of tokens ``[T, B, N, D]`` over T·B·N per feature."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def _linear_norm(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out, bias=False), TokenBatchNorm(d_out))


class SpikeDrivenSelfAttention(nn.Module):
    """SDSA on spikes ``[T, B, N, D]``: ``Q ⊙ sn(Σ_n K ⊙ V)`` then the output projection (Linear + BN)."""

    def __init__(self, dim: int, factory: NeuronFactory):
        super().__init__()
        self.q, self.k, self.v = _linear_norm(dim, dim), _linear_norm(dim, dim), _linear_norm(dim, dim)
        self.q_neuron, self.k_neuron, self.v_neuron = (factory.token_neuron(dim) for _ in range(3))
        self.attention_neuron = factory.token_neuron(dim)
        self.proj = _linear_norm(dim, dim)

    def forward(self, s: Tensor) -> Tensor:
        q, k, v = self.q_neuron(self.q(s)), self.k_neuron(self.k(s)), self.v_neuron(self.v(s))
        kv = self.attention_neuron((k * v).sum(dim=2, keepdim=True))  # [T, B, 1, D]: per-feature token count
        return self.proj(q * kv)


class _Block(nn.Module):
    def __init__(self, dim: int, mlp_ratio: int, factory: NeuronFactory):
        super().__init__()
        self.attention_input = factory.token_neuron(dim)
        self.attention = SpikeDrivenSelfAttention(dim, factory)
        self.mlp_input = factory.token_neuron(dim)
        self.mlp_hidden = _linear_norm(dim, dim * mlp_ratio)
        self.mlp_neuron = factory.token_neuron(dim * mlp_ratio)
        self.mlp_out = _linear_norm(dim * mlp_ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.attention_input(x))
        return x + self.mlp_out(self.mlp_neuron(self.mlp_hidden(self.mlp_input(x))))


class _Head(nn.Module):
    """Token average -> neuron -> bilinear (or linear) current per step ``[T, B, classes]``."""

    def __init__(self, dim: int, num_classes: int, factory: NeuronFactory, bilinear: bool, sparsity: float):
        super().__init__()
        self.neuron = factory.token_neuron(dim)
        self.fc = BilinearLinear(dim, num_classes, sparsity=sparsity) if bilinear else nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.neuron(x.mean(dim=2)))


class SpikeDrivenTransformer(VisionNet):
    """Spike-driven Transformer ``x [T, B, C, H, W] -> logits [B, classes]`` (see the module docstring).

    Args:
        in_channels, num_classes: input channels and classes.
        dim: token features D. ``depth``: blocks. ``mlp_ratio``: hidden size of the MLP as a multiple of D.
        patch_stages: ``conv norm neuron pool`` stages of the patch embedding (each halves H and W).
        kind, neuron_kw, per_channel: the neuron (any registered kind; DLIF uses its soma in the blocks).
        norm: the patch embedding's norm (``"tdbn"`` | ``"bn"`` | ``"none"``); the blocks use BN over T·B·N.
        bilinear_head: DLIF's bilinear fusion head (default: True for ``kind="dlif"``); ``bilinear_sparsity``
            its fraction of absent pairs (default 0, dense K).
        readout: ``"mean"`` or ``"tet"``. ``time_steps``: T for static ``[B, C, H, W]`` input.
    """

    def __init__(self, in_channels: int, num_classes: int, kind: str = "lif", neuron_kw: dict | None = None,
                 dim: int = 64, depth: int = 2, mlp_ratio: int = 4, patch_stages: int = 2, norm: str = "tdbn",
                 bilinear_head: bool | None = None, bilinear_sparsity: float | None = None,
                 per_channel: bool = False, readout: str = "mean", time_steps: int | None = None):
        super().__init__()
        self._setup(in_channels, num_classes, kind, readout, time_steps)
        dim, depth = check_int("dim", dim, minimum=2), check_int("depth", depth, minimum=1)
        mlp_ratio = check_int("mlp_ratio", mlp_ratio, minimum=1)
        patch_stages = check_int("patch_stages", patch_stages, minimum=0)
        if bilinear_head is None:
            bilinear_head = kind == "dlif"
        if not isinstance(bilinear_head, bool):
            raise TypeError(f"bilinear_head must be a bool or None, got {bilinear_head!r}")
        factory = NeuronFactory(kind, neuron_kw, time_steps, per_channel, bilinear_sparsity)
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(patch_stages):
            layers += [make_conv(channels, dim, 3), make_norm(norm, dim, v_threshold=factory.v_threshold),
                       factory.neuron(dim), TimeDistributed(nn.MaxPool2d(2))]
            channels = dim
        if patch_stages == 0:
            layers += [make_conv(channels, dim, 3), make_norm(norm, dim, v_threshold=factory.v_threshold)]
        self.patch_embed = nn.Sequential(*layers)
        self.position = nn.Sequential(make_conv(dim, dim, 3), make_norm("bn", dim))
        self.blocks = nn.ModuleList(_Block(dim, mlp_ratio, factory) for _ in range(depth))
        self.head = _Head(dim, num_classes, factory, bilinear_head, factory.synapse_kw.get("sparsity", 0.0))
        self.dim, self.depth, self.bilinear_head = dim, depth, bilinear_head

    def features(self, x: Tensor) -> Tensor:
        maps = self.patch_embed(x)
        maps = maps + self.position(maps)  # relative position embedding (conv on the embedded maps)
        tokens = maps.flatten(3).transpose(2, 3)  # [T, B, N, D]
        for block in self.blocks:
            tokens = block(tokens)
        return tokens
