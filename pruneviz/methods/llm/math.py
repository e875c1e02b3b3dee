"""Pure scores and updates of Wanda, SparseGPT and gradient head importance (docs/methods.md,
"Wanda, SparseGPT, head importance"). No model, no hooks: tensors in, tensors out.

A layer is seen as a matrix W (rows = outputs, columns = inputs) and its calibration inputs as
X (tokens x columns). A Linear's weight is that matrix; a conv's is flattened channels-last,
(out, kh, kw, in), and its input unfolded the same way, so a column is one input channel at
one kernel position and an N:M group is M consecutive input channels there (masks.nm_groups'
order, the one NVIDIA's 2:4 kernels use).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...masks import nm_mask

BLOCKSIZE = 128         # SparseGPT's column block (sparsegpt.py fasterprune, blocksize=128)
PERCDAMP = 0.01         # SparseGPT's damping, a fraction of mean(diag H)


# -- layers as matrices ------------------------------------------------------------------------
def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A Linear's (out, in) weight as is; a conv's (out, in, kh, kw) as (out, kh*kw*in)."""
    if weight.dim() == 4:
        return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight


def matrix_weight(matrix: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The inverse of weight_matrix: back to the layer's weight shape."""
    if len(shape) == 4:
        out, cin, kh, kw = shape
        return matrix.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return matrix.reshape(shape)


def input_rows(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """A layer's input as (tokens, columns), columns in weight_matrix's order: a Linear's
    input flattened over every leading dimension; a conv's unfolded (nn.Unfold) and reordered
    channels-last: our extension, sparsegpt.py add_batch takes Linear inputs only."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(inp, module.kernel_size, dilation=module.dilation,
                        padding=module.padding, stride=module.stride)    # (B, in*kh*kw, L)
        kh, kw = module.kernel_size
        b, _, n = cols.shape
        cols = cols.view(b, module.in_channels, kh, kw, n).permute(0, 4, 2, 3, 1)
        return cols.reshape(-1, kh * kw * module.in_channels)
    return inp.reshape(-1, inp.shape[-1])


class InputStats:
    """Running statistics of one layer's calibration inputs, as the authors accumulate them.

    `nsamples` counts batch items (sequences or images), the unit both codes average over.
    sq_norms: the running mean over samples of ||X_j||^2 (Wanda's `scaler_row`,
    lib/layerwrapper.py add_batch). H: SparseGPT's (2 / nsamples) sum X^T X (sparsegpt.py
    add_batch), kept only when `hessian` is set; then sq_norms is diag(H) / 2, the same sum."""

    def __init__(self, columns: int, hessian: bool, device: torch.device | None = None) -> None:
        self.nsamples = 0
        self.tokens = 0
        self.sq_norms = torch.zeros(columns, device=device)
        self.H = torch.zeros(columns, columns, device=device) if hessian else None

    def add(self, rows: torch.Tensor, samples: int) -> None:
        """Fold in `rows` (tokens, columns) coming from `samples` batch items."""
        rows = rows.float()
        total = self.nsamples + samples
        if self.H is not None:      # H <- H n/(n+b) + (2/(n+b)) X^T X in one fused op
            self.H = torch.addmm(self.H, rows.t(), rows, beta=self.nsamples / total,
                                 alpha=2 / total)
            self.sq_norms = torch.diagonal(self.H) / 2
        else:
            self.sq_norms *= self.nsamples / total
            self.sq_norms += rows.pow(2).sum(0) / total
        self.nsamples = total
        self.tokens += rows.shape[0]

    @property
    def norms(self) -> torch.Tensor:
        """sqrt(scaler_row): ||X_j||_2 / sqrt(nsamples), the factor of Wanda's score."""
        return self.sq_norms.sqrt()


# -- scores and masks ------------------------------------------------------------------------
def wanda_scores(w: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """S_ij = |W_ij| * ||X_j||_2 (lib/prune.py prune_wanda: |W| * sqrt(scaler_row))."""
    return w.abs() * norms.view(1, -1)


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep mask (0/1) pruning, in every output row, the int(columns * sparsity) lowest scores
    (a stable sort of each row: lib/prune.py prune_wanda's unstructured branch)."""
    k = int(scores.shape[1] * sparsity)
    keep = torch.ones_like(scores)
    if k > 0:
        idx = torch.sort(scores, dim=-1, stable=True).indices[:, :k]
        keep.scatter_(1, idx, 0.0)
    return keep


def layer_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep mask of per-layer magnitude as the Wanda repository's baseline: prune every score <=
    the int(numel * sparsity)-th smallest (lib/prune.py prune_magnitude)."""
    if sparsity <= 0:
        return torch.ones_like(scores)
    thresh = torch.sort(scores.flatten()).values[int(scores.numel() * sparsity)]
    return (scores > thresh).to(scores.dtype)


def group_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M keep mask over a (rows, columns) matrix: in every group of m consecutive columns of a
    row keep the n highest scores (the authors prune the m - n lowest of each group: the same
    set for 2:4 and 4:8, whose n = m - n)."""
    return nm_mask(scores, n, m)


def prune_mask(scores: torch.Tensor, sparsity: float, pattern: tuple[int, int] | None
               ) -> torch.Tensor:
    """Wanda's and row magnitude's mask: per-row unstructured, or N:M groups."""
    return row_mask(scores, sparsity) if pattern is None else group_mask(scores, *pattern)


# -- SparseGPT -------------------------------------------------------------------------------
def prepare_hessian(H: torch.Tensor, w: torch.Tensor, percdamp: float = PERCDAMP
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W with dead inputs' columns zeroed, the upper Cholesky factor of the damped H^-1, the
    dead-input mask). Dead inputs (H_jj = 0) get H_jj = 1; damping 0.01 * mean(diag H) on the
    diagonal; then cholesky, cholesky_inverse, cholesky(upper=True) (sparsegpt.py
    fasterprune; the inverse: see below)."""
    H = H.clone()
    w = w.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    w[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(H.shape[0], device=H.device)
    H[diag, diag] += damp
    L = torch.linalg.cholesky(H)
    # H^-1 from the factor: cholesky_solve(I, L) is the authors' cholesky_inverse(L), which
    # takes ~100 ms even at 128 x 128 on CPU
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_solve(eye, L), upper=True)
    return w, Hinv, dead


def sparsegpt(w: torch.Tensor, H: torch.Tensor, sparsity: float,
              pattern: tuple[int, int] | None = None, blocksize: int = BLOCKSIZE,
              percdamp: float = PERCDAMP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SparseGPT on one layer (sparsegpt.py fasterprune, without quantization): returns (the
    updated W with its pruned entries zero, the keep mask, the per-row loss
    sum (w - q)^2 / [Hinv]_jj^2 / 2).

    Columns in blocks of `blocksize`, left to right. Unstructured: each block's mask at once,
    every entry whose W^2 / [Hinv]_jj^2 is <= the int(numel * sparsity)-th smallest of the
    block (so int(numel * s) + 1 per block, ties more: the authors' `<=`). N:M `pattern` (n
    kept of m): a group's mask is chosen when the loop reaches its first column, from the
    weights as updated so far. Each column j: q = w_j masked, err = (w_j - q) / [Hinv]_jj,
    W[:, j:] -= err Hinv[j, j:] inside the block; then W[:, i2:] -= Err Hinv[i1:i2, i2:]."""
    W, Hinv, _ = prepare_hessian(H, w.float(), percdamp)
    rows, columns = W.shape
    prune_n, prune_m = (0, 0) if pattern is None else (pattern[1] - pattern[0], pattern[1])
    losses = torch.zeros(rows, device=W.device)
    pruned = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        if prune_n == 0 and sparsity > 0:
            tmp = W1 ** 2 / d1.reshape(1, -1) ** 2
            # the authors' sort(tmp)[int(numel s)], found without sorting the block
            thresh = torch.kthvalue(tmp.flatten(), int(tmp.numel() * sparsity) + 1).values
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        # err_j = (w_j - q_j) / d_j: w_j / d_j where pruned, 0 where kept
        scale = mask1 / d1.reshape(1, -1)
        for i in range(i2 - i1):
            if prune_n != 0 and i % prune_m == 0:
                tmp = W1[:, i:i + prune_m] ** 2 / d1[i:i + prune_m].reshape(1, -1) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
                scale[:, i:i + prune_m] = mask1[:, i:i + prune_m] / d1[i:i + prune_m]
            err1 = W1[:, i] * scale[:, i]
            W1[:, i:].addr_(err1, Hinv1[i, i:], alpha=-1)
            Err1[:, i] = err1
        # column i after its own update is q_i (kept entries untouched, pruned ones ~0): the
        # authors' Q1, exactly once the pruned entries are zeroed; their Losses1 is err^2
        W[:, i1:i2] = W1 * ~mask1
        pruned[:, i1:i2] = mask1
        losses += torch.sum(Err1 ** 2, 1) / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, (~pruned).to(W.dtype), losses


def reconstruction_error(w: torch.Tensor, w_new: torch.Tensor, H: torch.Tensor,
                         nsamples: int) -> float:
    """||W X - W' X||_F^2 summed over every calibration token, from the running H alone:
    X^T X = H * nsamples / 2, so the error is (nsamples / 2) tr(D H D^T), D = W - W'."""
    d = w - w_new
    return float(((d @ H) * d).sum()) * nsamples / 2


# -- head importance (Michel et al. 2019) ------------------------------------------------------
def normalize_importance(importance: torch.Tensor) -> torch.Tensor:
    """(layers, heads) accumulated |dL/d xi| divided by each layer's L2 norm (the paper's
    normalisation; a layer of zeros stays zero)."""
    norm = importance.norm(dim=-1, keepdim=True)
    return importance / torch.where(norm > 0, norm, torch.ones_like(norm))


def least_important(importance: torch.Tensor, active: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k active entries with the lowest importance (ties: lower index first),
    one ranking over every layer."""
    flat = torch.where(active, importance, torch.inf).flatten()
    out = torch.zeros_like(flat, dtype=torch.bool)
    k = min(k, int(active.sum()))
    if k > 0:
        out[torch.argsort(flat, stable=True)[:k]] = True
    return out.view_as(active)


def round_counts(total: int, rounds: int) -> list[int]:
    """`total` removals split into `rounds` rounds as evenly as possible, the larger first."""
    rounds = max(1, min(rounds, total)) if total else 1
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]
