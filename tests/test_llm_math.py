"""Wanda's and SparseGPT's math against the authors' own code as oracles: the functions below
are copied from locuslab/wanda (commit 8e8fc87) and IST-DASLab/sparsegpt (commit 147d215), with
only the CUDA calls, prints, quantizer and transformers.Conv1D branch removed, and fed the same
tensors as ours."""

import math

import pytest
import torch
import torch.nn as nn

from pruneviz.methods.llm.math import (
    BLOCKSIZE,
    InputStats,
    input_rows,
    layer_mask,
    least_important,
    matrix_weight,
    normalize_importance,
    prepare_hessian,
    prune_mask,
    reconstruction_error,
    round_counts,
    sparsegpt,
    wanda_scores,
    weight_matrix,
)


# -- the authors' code ---------------------------------------------------------------------------
class AuthorsWrappedGPT:
    """locuslab/wanda lib/layerwrapper.py lines 10-35 (WrappedGPT.__init__, add_batch)."""

    def __init__(self, layer):
        self.layer = layer
        self.rows = layer.weight.data.shape[0]
        self.columns = layer.weight.data.shape[1]
        self.scaler_row = torch.zeros((self.columns))  # noqa: UP034 (verbatim)
        self.nsamples = 0

    def add_batch(self, inp, out):
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        if isinstance(self.layer, nn.Linear):
            if len(inp.shape) == 3:
                inp = inp.reshape((-1, inp.shape[-1]))
            inp = inp.t()
        self.scaler_row *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = inp.type(torch.float32)
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


def authors_wanda_mask(W, scaler_row, sparsity_ratio, prune_n=0, prune_m=0):
    """locuslab/wanda lib/prune.py lines 166-202 (prune_wanda, use_variant off): True = pruned."""
    W_metric = torch.abs(W) * torch.sqrt(scaler_row.reshape((1, -1)))
    W_mask = (torch.zeros_like(W_metric) == 1)
    if prune_n != 0:
        for ii in range(W_metric.shape[1]):
            if ii % prune_m == 0:
                tmp = W_metric[:, ii:(ii + prune_m)].float()
                W_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
    else:
        sort_res = torch.sort(W_metric, dim=-1, stable=True)
        indices = sort_res[1][:, :int(W_metric.shape[1] * sparsity_ratio)]
        W_mask.scatter_(1, indices, True)
    return W_mask


def authors_magnitude_mask(W, sparsity_ratio):
    """locuslab/wanda lib/prune.py lines 113-123 (prune_magnitude, unstructured): True = pruned."""
    W_metric = torch.abs(W)
    thresh = torch.sort(W_metric.flatten())[0][int(W.numel() * sparsity_ratio)]
    return W_metric <= thresh


class AuthorsSparseGPT:
    """IST-DASLab/sparsegpt sparsegpt.py lines 19-46 (SparseGPT.__init__, add_batch) and
    48-142 (fasterprune)."""

    def __init__(self, layer):
        self.layer = layer
        W = layer.weight.data.clone()
        if isinstance(self.layer, nn.Conv2d):
            W = W.flatten(1)
        self.rows = W.shape[0]
        self.columns = W.shape[1]
        self.H = torch.zeros((self.columns, self.columns))
        self.nsamples = 0

    def add_batch(self, inp, out, blocksize=1024):
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        if isinstance(self.layer, nn.Linear):
            if len(inp.shape) == 3:
                inp = inp.reshape((-1, inp.shape[-1]))
            inp = inp.t()
        if isinstance(self.layer, nn.Conv2d):   # not in sparsegpt.py (Linear only): the
            # unfold of the conv's input that fasterprune's W.flatten(1) (line 53) pairs with
            unfold = nn.Unfold(self.layer.kernel_size, dilation=self.layer.dilation,
                               padding=self.layer.padding, stride=self.layer.stride)
            inp = unfold(inp)
            inp = inp.permute([1, 0, 2])
            inp = inp.flatten(1)
        self.H *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = math.sqrt(2 / self.nsamples) * inp.float()
        self.H += inp.matmul(inp.t())

    def fasterprune(self, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=.01):
        W = self.layer.weight.data.clone()
        if isinstance(self.layer, nn.Conv2d):
            W = W.flatten(1)
        W = W.float()
        H = self.H
        del self.H
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        Losses = torch.zeros(self.rows)
        damp = percdamp * torch.mean(torch.diag(H))
        diag = torch.arange(self.columns)
        H[diag, diag] += damp
        H = torch.linalg.cholesky(H)
        H = torch.cholesky_inverse(H)
        H = torch.linalg.cholesky(H, upper=True)
        Hinv = H
        self.Hinv = Hinv.clone()
        mask = None
        for i1 in range(0, self.columns, blocksize):
            i2 = min(i1 + blocksize, self.columns)
            count = i2 - i1
            W1 = W[:, i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Losses1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            if prunen == 0:
                if mask is not None:
                    mask1 = mask[:, i1:i2]
                else:
                    tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
                    thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
                    mask1 = tmp <= thresh
            else:
                mask1 = torch.zeros_like(W1) == 1
            for i in range(count):
                w = W1[:, i]
                d = Hinv1[i, i]
                if prunen != 0 and i % prunem == 0:
                    tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2  # noqa: E501
                    mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
                q = w.clone()
                q[mask1[:, i]] = 0
                Q1[:, i] = q
                Losses1[:, i] = (w - q) ** 2 / d ** 2
                err1 = (w - q) / d
                W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
                Err1[:, i] = err1
            W[:, i1:i2] = Q1
            Losses += torch.sum(Losses1, 1) / 2
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
        self.losses = Losses
        self.layer.weight.data = W.reshape(self.layer.weight.shape).to(self.layer.weight.data.dtype)


# -- the shared inputs -------------------------------------------------------------------------
def _linear(cols=300, rows=40, seed=0):
    """A Linear layer and 4 calibration batches (2 sequences of 16 tokens each) whose input
    channels differ in scale by up to 30x, one of them dead (always 0), as outlier features
    make them."""
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(cols, rows)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(rows, cols, generator=g))
    scale = torch.exp(torch.randn(cols, generator=g) * 1.2)
    scale[7] = 0.0
    batches = [torch.randn(2, 16, cols, generator=g) * scale for _ in range(4)]
    return layer, batches


def _stats(layer, batches, hessian=True):
    s = InputStats(weight_matrix(layer.weight).shape[1], hessian)
    for b in batches:
        s.add(input_rows(layer, b), b.shape[0])
    return s


# -- Wanda -----------------------------------------------------------------------------------
def test_input_norms_are_wandas_scaler_row():
    layer, batches = _linear()
    ours = _stats(layer, batches, hessian=False)
    theirs = AuthorsWrappedGPT(layer)
    for b in batches:
        theirs.add_batch(b, None)
    assert ours.nsamples == theirs.nsamples == 8
    torch.testing.assert_close(ours.sq_norms, theirs.scaler_row, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_wanda_prunes_the_authors_weights_row_by_row(sparsity):
    layer, batches = _linear()
    s = _stats(layer, batches, hessian=False)
    w = layer.weight.detach()
    ours = prune_mask(wanda_scores(w, s.norms), sparsity, None)
    theirs = authors_wanda_mask(w, s.sq_norms, sparsity)
    assert torch.equal(ours == 0, theirs)
    # the comparison group is each output row: every row loses exactly int(cols * s)
    assert ((ours == 0).sum(1) == int(w.shape[1] * sparsity)).all()


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_wanda_nm_is_the_authors_group_topk(n, m):
    layer, batches = _linear(cols=64)
    s = _stats(layer, batches, hessian=False)
    w = layer.weight.detach()
    ours = prune_mask(wanda_scores(w, s.norms), 1 - n / m, (n, m))
    theirs = authors_wanda_mask(w, s.sq_norms, 0.0, prune_n=m - n, prune_m=m)
    assert torch.equal(ours == 0, theirs)


def test_layer_magnitude_is_the_wanda_repositorys_baseline():
    layer, _ = _linear()
    w = layer.weight.detach()
    assert torch.equal(layer_mask(w.abs(), 0.5) == 0, authors_magnitude_mask(w, 0.5))


def test_an_outlier_input_channel_keeps_its_small_weights_under_wanda_not_magnitude():
    w = torch.full((4, 8), 1.0)
    w[:, 3] = 0.2                                   # small weights on input channel 3
    norms = torch.ones(8)
    norms[3] = 50.0                                 # ... which carries a large activation
    wanda = prune_mask(wanda_scores(w, norms), 0.25, None)
    magnitude = prune_mask(w.abs(), 0.25, None)
    assert (wanda[:, 3] == 1).all() and (magnitude[:, 3] == 0).all()


# -- SparseGPT -------------------------------------------------------------------------------
def test_hessian_is_sparsegpts_running_average():
    layer, batches = _linear()
    ours = _stats(layer, batches)
    theirs = AuthorsSparseGPT(layer)
    for b in batches:
        theirs.add_batch(b, None)
    # to float32 rounding: ours scales the sum once (addmm), theirs each batch's inputs
    torch.testing.assert_close(ours.H, theirs.H, rtol=1e-4, atol=1e-6 * float(theirs.H.max()))
    torch.testing.assert_close(torch.diag(ours.H), 2 * ours.sq_norms)


def test_damping_dead_inputs_and_the_upper_cholesky_factor_of_the_inverse():
    layer, batches = _linear(cols=40)
    s = _stats(layer, batches)
    w, Hinv, dead = prepare_hessian(s.H, layer.weight.detach())
    assert dead.nonzero().flatten().tolist() == [7] and (w[:, 7] == 0).all()
    H = s.H.clone().double()
    H[7, 7] = 1
    H += 0.01 * torch.diag(H).mean() * torch.eye(40, dtype=torch.float64)
    # Hinv is upper triangular and Hinv^T Hinv = (H + damp I)^-1
    assert torch.equal(Hinv, torch.triu(Hinv))
    torch.testing.assert_close(Hinv.double().T @ Hinv.double(), torch.linalg.inv(H),
                               rtol=1e-3, atol=1e-6)
    theirs = AuthorsSparseGPT(layer)
    for b in batches:
        theirs.add_batch(b, None)
    theirs.fasterprune(0.5)
    torch.testing.assert_close(Hinv, theirs.Hinv, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sparsity,pattern", [(0.5, None), (0.7, None), (0.5, (2, 4)),
                                              (0.5, (4, 8))])
def test_sparsegpt_update_mask_and_loss_are_the_authors(sparsity, pattern):
    layer, batches = _linear()          # 300 columns: two full blocks of 128 and one of 44
    s = _stats(layer, batches)
    w_new, keep, losses = sparsegpt(layer.weight.detach(), s.H, sparsity, pattern)
    theirs = AuthorsSparseGPT(layer)
    for b in batches:
        theirs.add_batch(b, None)
    n, m = pattern or (0, 0)
    theirs.fasterprune(sparsity, prunen=m - n, prunem=m)
    torch.testing.assert_close(w_new, layer.weight.detach(), rtol=1e-4, atol=1e-4)
    assert torch.equal(keep == 0, layer.weight.detach() == 0)
    torch.testing.assert_close(losses, theirs.losses, rtol=1e-4, atol=1e-4)


def test_sparsegpt_masks_block_by_block_with_the_authors_off_by_one():
    layer, batches = _linear()
    s = _stats(layer, batches)
    _, keep, _ = sparsegpt(layer.weight.detach(), s.H, 0.5)
    rows = keep.shape[0]
    for i1 in range(0, 300, BLOCKSIZE):
        block = keep[:, i1:i1 + BLOCKSIZE]
        # `tmp <= thresh` with thresh the int(numel s)-th smallest: one more than int(numel s)
        assert int((block == 0).sum()) == int(block.numel() * 0.5) + 1
    assert rows == 40


def test_sparsegpt_reduces_the_reconstruction_error_of_its_own_mask():
    layer, batches = _linear()
    s = _stats(layer, batches)
    w = layer.weight.detach()
    w_new, keep, _ = sparsegpt(w, s.H, 0.5)
    before = reconstruction_error(w, w * keep, s.H, s.nsamples)
    after = reconstruction_error(w, w_new, s.H, s.nsamples)
    assert after < 0.5 * before
    x = torch.cat([b.reshape(-1, 300) for b in batches])
    direct = float(((x @ (w - w_new).T) ** 2).sum())
    assert after == pytest.approx(direct, rel=1e-3)


def test_conv_columns_are_channels_last_and_match_sparsegpts_unfolded_hessian():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(4, 3, 6, 6, generator=g)
    s = InputStats(27, True)
    s.add(input_rows(conv, x), 4)
    theirs = AuthorsSparseGPT(conv)
    theirs.add_batch(x, None)
    # channel c at kernel position (a, b): ours column (a*3 + b)*3 + c, theirs c*9 + a*3 + b
    perm = torch.tensor([c * 9 + p for p in range(9) for c in range(3)])
    torch.testing.assert_close(s.H, theirs.H[perm][:, perm], rtol=1e-5, atol=1e-5)
    w = conv.weight.detach()
    assert torch.equal(matrix_weight(weight_matrix(w), w.shape), w)
    assert torch.equal(weight_matrix(w), w.flatten(1)[:, perm])


# -- head importance -------------------------------------------------------------------------
def test_importance_is_normalised_per_layer_and_the_lowest_active_go_first():
    imp = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    norm = normalize_importance(imp)
    torch.testing.assert_close(norm.norm(dim=1), torch.tensor([1.0, 1.0]))
    active = torch.tensor([[True, True, False], [True, True, True]])
    out = least_important(norm, active, 2)      # 0.6, 0.8 against 1/sqrt(3) = 0.577 thrice
    assert out.tolist() == [[False, False, False], [True, True, False]]
    assert round_counts(8, 5) == [2, 2, 2, 1, 1] and sum(round_counts(3, 5)) == 3
