"""Two small transformers trained here, in nanoGPT's layout (Karpathy's `model.py`).

- gpt_tiny: a causal decoder over bytes: forward(idx[B, T]) -> logits[B, T, 256].
- vit_tiny: a vision transformer (Dosovitskiy et al. 2021, arXiv 2010.11929) for 8x8 digits
  and 16x16 cifar10_small: patches -> pre-LN blocks -> mean of the tokens -> a linear head.

The layout is a contract that pruning code relies on (heads and MLP neurons as structures):
each `blocks[i]` has `ln_1`, `attn`, `ln_2`, `mlp`; `attn.c_attn` is Linear(n_embd,
3 * n_head * head_dim) whose output rows are [q | k | v], head h owning rows
h*head_dim:(h+1)*head_dim within each of q, k and v; `attn.c_proj`'s input columns
h*head_dim:(h+1)*head_dim belong to head h; `mlp.c_fc` row j and `mlp.c_proj` column j are
hidden neuron j. Attention is written out (no fused kernel) so a head's slices are plain to see
and its map can be kept for Inspect. `remove_heads` / `remove_neurons` cut them physically and
update `n_head` / the hidden width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError

BYTES = 256


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = BYTES  # bytes, not learned tokens: any text encodes, no tokenizer to ship
    block_size: int = 64     # context; 64 bytes spans a sentence and keeps a CPU step ~10 ms
    n_layer: int = 4         # enough depth for heads to specialise, cheap on 2 cores
    n_head: int = 4          # 4 heads of 16 dims: a head is a unit worth pruning and a grid cell
    n_embd: int = 64         # residual width; 64 trains to a perplexity far below bytes' 256
    mlp_ratio: int = 4       # hidden = 4 * n_embd, as GPT-2: the neurons MLP pruning removes
    bias: bool = True        # biases on every linear: pruned structures zero theirs too


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 8      # side of the square input (8: digits, 16: cifar10_small)
    in_channels: int = 1     # 1 for grayscale digits, 3 for RGB
    patch: int = 2           # 2 on 8x8 and 4 on 16x16: 16 tokens either way, cheap attention
    num_classes: int = 10
    n_layer: int = 4         # 4 pre-LN blocks: the smallest depth that beats a linear probe
    n_head: int = 4          # 4 heads, the head grid's width
    n_embd: int = 64         # token width; 64 keeps a step on 2 cores in milliseconds
    mlp_ratio: int = 2       # hidden 128: images of 16 tokens need less MLP than text
    bias: bool = True


class SelfAttention(nn.Module):
    """Multi-head self-attention written out; `causal` masks the future (the decoder's kind)."""

    def __init__(self, n_embd: int, n_head: int, causal: bool, bias: bool = True) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ConfigError(f"n_embd {n_embd} must be a multiple of n_head {n_head}.")
        self.n_embd, self.n_head, self.head_dim, self.causal = (
            n_embd, n_head, n_embd // n_head, causal)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.keep_attention = False               # Inspect sets it to read `attention`
        self.attention: torch.Tensor | None = None  # [B, n_head, T, T] of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        inner = self.n_head * self.head_dim       # n_embd until heads are removed
        q, k, v = self.c_attn(x).split(inner, dim=2)
        q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(future, float("-inf"))
        att = F.softmax(att, dim=-1)
        if self.keep_attention:
            self.attention = att.detach()
        y = (att @ v).transpose(1, 2).reshape(b, t, inner)
        return self.c_proj(y)


CausalSelfAttention = SelfAttention


class MLP(nn.Module):
    def __init__(self, n_embd: int, hidden: int, bias: bool = True) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, hidden: int, causal: bool, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, causal, bias)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, hidden, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def _init(model: nn.Module, n_layer: int) -> None:
    """GPT-2's init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)."""
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
        elif p.dim() >= 2 or "wpe" in name or "pos" in name:
            nn.init.normal_(p, 0.0, 0.02)
        elif name.endswith("bias") and "ln_" not in name:
            nn.init.zeros_(p)


class GPT(nn.Module):
    modality: ClassVar[str] = "text"

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.mlp_ratio * config.n_embd
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config.n_embd, config.n_head, hidden, True, config.bias)
                                    for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        _init(self, config.n_layer)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.is_floating_point():
            # FLOP counters, latency probes and exports feed random float tensors of the
            # input's shape: read them as (valid) token ids rather than special-case them all.
            idx = idx.long().abs() % self.config.vocab_size
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, n: int) -> torch.Tensor:
        """Greedy continuation of idx[B, T] by `n` tokens (the context window slides)."""
        for _ in range(n):
            logits = self(idx[:, -self.config.block_size:])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx


class ViT(nn.Module):
    modality: ClassVar[str] = "image"

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if config.image_size % config.patch:
            raise ConfigError(f"vit_tiny needs an image side that is a multiple of its patch "
                              f"({config.patch}); got {config.image_size}.")
        self.config = config
        tokens = (config.image_size // config.patch) ** 2
        # A strided conv is the patch embedding: every patch flattened times one linear map.
        self.patch = nn.Conv2d(config.in_channels, config.n_embd, config.patch, config.patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, config.n_embd))
        hidden = config.mlp_ratio * config.n_embd
        self.blocks = nn.ModuleList(Block(config.n_embd, config.n_head, hidden, False,
                                          config.bias) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.num_classes)
        _init(self, config.n_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x).mean(dim=1))


def gpt_tiny(in_channels: int, image_size: int, num_classes: int) -> GPT:
    """The models.py factory signature: for text, in_channels is 0, image_size the context and
    num_classes the vocabulary."""
    if in_channels:
        raise ConfigError("gpt_tiny is a language model: pick a text dataset (pydoc or "
                          "text:PATH), or an image model such as vit_tiny for images.")
    return GPT(GPTConfig(vocab_size=num_classes, block_size=image_size))


def vit_tiny(in_channels: int, image_size: int, num_classes: int) -> ViT:
    if not in_channels:
        raise ConfigError("vit_tiny classifies images: pick an image dataset (digits, "
                          "cifar10_small, ...), or gpt_tiny for text.")
    patch = 2 if image_size <= 8 else 4 if image_size <= 16 else 8
    if image_size % patch:
        patch = next(p for p in (4, 2, 1) if image_size % p == 0)
    return ViT(ViTConfig(image_size=image_size, in_channels=in_channels, patch=patch,
                         num_classes=num_classes))


TEXT_MODELS = ("gpt_tiny",)
TRANSFORMERS = ("gpt_tiny", "vit_tiny")


def is_transformer(model: nn.Module) -> bool:
    return isinstance(model, (GPT, ViT))


# -- structures: heads and MLP neurons ------------------------------------------------------
def head_rows(attn: SelfAttention, h: int) -> torch.Tensor:
    """Indices of head h's rows in c_attn's output: its q, k and v slices."""
    inner, d = attn.n_head * attn.head_dim, attn.head_dim
    own = torch.arange(h * d, (h + 1) * d)
    return torch.cat([own, own + inner, own + 2 * inner])


def head_cols(attn: SelfAttention, h: int) -> torch.Tensor:
    """Indices of head h's input columns of c_proj."""
    return torch.arange(h * attn.head_dim, (h + 1) * attn.head_dim)


def structures(model: nn.Module) -> list[tuple[str, str, int]]:
    """Every prunable structure as (block prefix, kind, count): ("blocks.0", "head", 4), ..."""
    out = []
    for i, block in enumerate(model.blocks):
        out.append((f"blocks.{i}", "head", block.attn.n_head))
        out.append((f"blocks.{i}", "neuron", block.mlp.c_fc.out_features))
    return out


def _slice_linear(lin: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None
                  ) -> nn.Linear:
    w = lin.weight.detach()
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None,
                    device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach() if rows is None else lin.bias.detach()[rows])
    return new


@torch.no_grad()
def head_mask(attn: SelfAttention, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weight-shaped 0/1 masks (keys c_attn.weight, c_attn.bias, c_proj.weight) that zero the
    heads whose `keep` entry is 0: their q, k, v rows and their c_proj columns."""
    rows = torch.ones(attn.c_attn.out_features)
    cols = torch.ones(attn.c_proj.in_features)
    for h in torch.nonzero(keep == 0).flatten().tolist():
        rows[head_rows(attn, h)] = 0
        cols[head_cols(attn, h)] = 0
    out = {"c_attn.weight": rows[:, None].expand_as(attn.c_attn.weight).clone(),
           "c_proj.weight": cols[None, :].expand_as(attn.c_proj.weight).clone()}
    if attn.c_attn.bias is not None:
        out["c_attn.bias"] = rows
    return out


@torch.no_grad()
def remove_heads(attn: SelfAttention, keep: list[int]) -> None:
    """Physically keep only the heads in `keep` (in order); n_head follows."""
    rows = torch.cat([head_rows(attn, h) for h in keep]) if keep else torch.zeros(0).long()
    # q rows of every kept head, then k rows, then v rows: the [q | k | v] layout again
    d, n = attn.head_dim, len(keep)
    rows = rows.view(n, 3, d).transpose(0, 1).reshape(-1)
    cols = torch.cat([head_cols(attn, h) for h in keep]) if keep else torch.zeros(0).long()
    attn.c_attn = _slice_linear(attn.c_attn, rows, None)
    attn.c_proj = _slice_linear(attn.c_proj, None, cols)
    attn.n_head = n


@torch.no_grad()
def remove_neurons(mlp: MLP, keep: list[int]) -> None:
    """Physically keep only the hidden neurons in `keep`: c_fc rows and c_proj columns."""
    idx = torch.tensor(keep, dtype=torch.long)
    mlp.c_fc = _slice_linear(mlp.c_fc, idx, None)
    mlp.c_proj = _slice_linear(mlp.c_proj, None, idx)


def _head_v_rows(attn: SelfAttention, h: int) -> torch.Tensor:
    return head_rows(attn, h)[2 * attn.head_dim:]


@torch.no_grad()
def dead_heads(attn: SelfAttention) -> list[int]:
    """Heads whose output is exactly zero: v rows (and bias) all zero, or c_proj columns all
    zero. Removing them leaves the block's function unchanged."""
    out = []
    for h in range(attn.n_head):
        v = _head_v_rows(attn, h)
        v_zero = not attn.c_attn.weight[v].any() and (
            attn.c_attn.bias is None or not attn.c_attn.bias[v].any())
        if v_zero or not attn.c_proj.weight[:, head_cols(attn, h)].any():
            out.append(h)
    return out


@torch.no_grad()
def dead_neurons(mlp: MLP) -> list[int]:
    """Hidden neurons with no effect: c_fc row and bias zero (GELU(0) = 0) or c_proj column
    zero."""
    row = mlp.c_fc.weight.any(1)
    if mlp.c_fc.bias is not None:
        row = row | (mlp.c_fc.bias != 0)
    return torch.nonzero(~row | ~mlp.c_proj.weight.any(0)).flatten().tolist()


def remove_dead_structures(model: nn.Module) -> dict[str, int]:
    """Physically remove every dead head and neuron (one of each block stays: a block never
    becomes empty); returns the counts removed."""
    heads = neurons = 0
    for block in model.blocks:
        dh = dead_heads(block.attn)[:block.attn.n_head - 1]
        if dh:
            remove_heads(block.attn, [h for h in range(block.attn.n_head) if h not in dh])
        dn = dead_neurons(block.mlp)[:block.mlp.c_fc.out_features - 1]
        if dn:
            remove_neurons(block.mlp, [j for j in range(block.mlp.c_fc.out_features)
                                       if j not in set(dn)])
        heads, neurons = heads + len(dh), neurons + len(dn)
    return {"heads_removed": heads, "neurons_removed": neurons}


@torch.no_grad()
def structure_scores(model: nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    """(module name, "head" or "neuron", L2 norm of each structure over all its weights and
    biases but the shared output bias), per block: the filter methods' score, extended."""
    out = []
    for i, block in enumerate(model.blocks):
        attn, mlp = block.attn, block.mlp
        sq = attn.c_attn.weight.square().sum(1)
        if attn.c_attn.bias is not None:
            sq = sq + attn.c_attn.bias.square()
        proj = attn.c_proj.weight.square().sum(0)
        heads = torch.stack([sq[head_rows(attn, h)].sum() + proj[head_cols(attn, h)].sum()
                             for h in range(attn.n_head)]).sqrt()
        n = mlp.c_fc.weight.square().sum(1) + mlp.c_proj.weight.square().sum(0)
        if mlp.c_fc.bias is not None:
            n = n + mlp.c_fc.bias.square()
        out += [(f"blocks.{i}.attn", "head", heads), (f"blocks.{i}.mlp", "neuron", n.sqrt())]
    return out


def structure_param_masks(model: nn.Module, name: str, kind: str, keep: torch.Tensor
                          ) -> dict[str, torch.Tensor]:
    """Masks keyed by parameter name that zero the structures whose `keep` entry is 0."""
    module = model.get_submodule(name)
    if kind == "head":
        return {f"{name}.{k}": m.to(keep.device) for k, m in head_mask(module, keep).items()}
    w1, w2 = module.c_fc.weight, module.c_proj.weight
    out = {f"{name}.c_fc.weight": keep[:, None].expand_as(w1).clone(),
           f"{name}.c_proj.weight": keep[None, :].expand_as(w2).clone()}
    if module.c_fc.bias is not None:
        out[f"{name}.c_fc.bias"] = keep.clone()
    return out
