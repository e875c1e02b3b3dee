"""2:4 semi-structured sparse kernels (torch.sparse.to_sparse_semi_structured): whether this
machine has them, which layers of a model they take, and their speed against the dense model.

What PyTorch supports (torch/sparse/semi_structured.py, checked against torch 2.14): CUDA GPUs of
compute capability 8.0 or newer (Ampere's sparse tensor cores), through cuSPARSELt when PyTorch
was built with it, else CUTLASS (SparseSemiStructuredTensor._FORCE_CUTLASS = True); 2-D,
contiguous weights, so nn.Linear (F.linear dispatches to the sparse matmul) but not convolutions,
whose weights are 4-D and whose aten.convolution the sparse tensor does not serve: convs stay
dense. fp16 and bf16 (also int8 and, on cuSPARSELt, fp8); each dimension a multiple of the
backend's block: cuSPARSELt 16 x 16, CUTLASS 32 rows x 64 columns for fp16/bf16. At most 2
nonzeros in every group of 4 along the input dimension: the compressed format stores exactly 2.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .masks import nm_counts, nm_fits
from .metrics import measure_latency, paired_ratio

NO_KERNELS = "no 2:4 kernels here; the zeros only compress"
MIN_CAPABILITY = (8, 0)
# Fallback blocks (rows, columns) for fp16/bf16, should the private table move.
BLOCKS = {"cuSPARSELt": (16, 16), "CUTLASS": (32, 64)}
RTOL = 2e-2      # fp16 outputs of the sparse and dense kernels agree to this, relative to scale

Converter = Callable[[torch.Tensor], torch.Tensor]


def kernel_support() -> tuple[str | None, str]:
    """(the 2:4 backend PyTorch would use here, or None; a sentence saying what this machine
    can do with 2:4 zeros)."""
    if not torch.cuda.is_available():
        return None, (f"{NO_KERNELS} (CPU: PyTorch's 2:4 kernels run on NVIDIA GPUs of compute "
                      f"capability 8.0 or newer; a CPU multiplies the zeros like any weight).")
    major, minor = torch.cuda.get_device_capability()
    name = torch.cuda.get_device_name()
    if (major, minor) < MIN_CAPABILITY:
        return None, (f"{NO_KERNELS} ({name} is compute capability {major}.{minor}; 2:4 sparse "
                      f"tensor cores need 8.0, Ampere, or newer).")
    backend = "cuSPARSELt" if torch.backends.cusparselt.is_available() else "CUTLASS"
    return backend, f"2:4 kernels ({backend}) on {name}"


def block(backend: str, dtype: torch.dtype = torch.float16) -> tuple[int, int]:
    """(rows, columns) a weight's shape must be a multiple of for `backend` and `dtype`."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    cls = (SparseSemiStructuredTensorCUSPARSELT if backend == "cuSPARSELt"
           else SparseSemiStructuredTensorCUTLASS)
    limits = getattr(cls, "_DTYPE_SHAPE_CONSTRAINTS", {}).get(dtype)
    return (limits.sparse_min_rows, limits.sparse_min_cols) if limits else BLOCKS[backend]


def is_two_four(weight: torch.Tensor) -> bool:
    """Whether a 2-D weight has at most 2 nonzeros in every group of 4 along its input."""
    return (weight.dim() == 2 and nm_fits(weight.shape, 4)
            and bool((nm_counts(weight.detach(), 4) <= 2).all()))


def eligible(model: nn.Module, rows_cols: tuple[int, int]) -> tuple[list[str], dict[str, str]]:
    """The Linear layers the kernels take (2:4 weights whose shape fits the block `rows_cols`),
    and why each other conv or linear is left dense."""
    r, c = rows_cols
    take, skip = [], {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            skip[name] = "a convolution: PyTorch's 2:4 tensors serve matrix multiplies only"
        elif isinstance(m, nn.Linear):
            out, cin = m.weight.shape
            if not is_two_four(m.weight):
                skip[name] = "not 2:4 (more than 2 nonzeros in some group of 4)"
            elif out % r or cin % c:
                skip[name] = f"{out} x {cin} is not a multiple of the kernel's {r} x {c} block"
            else:
                take.append(name)
    return take, skip


def sparsify(model: nn.Module, names: list[str], to_sparse: Converter | None = None) -> nn.Module:
    """A copy of `model` whose `names` Linear weights are semi-structured sparse tensors."""
    if to_sparse is None:
        from torch.sparse import to_sparse_semi_structured as to_sparse
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    with torch.no_grad():
        for name in names:
            layer = modules[name]
            layer.weight = nn.Parameter(to_sparse(layer.weight.detach()), requires_grad=False)
    return out


def measure(model: nn.Module, input_shape: tuple[int, ...], batches: tuple[int, ...], *,
            budget_s: float = 0.25, backend: str | None = None, device: str = "cuda",
            dtype: torch.dtype = torch.float16, to_sparse: Converter | None = None
            ) -> dict[str, Any]:
    """The model in `dtype` on `device`, dense vs its eligible Linear layers on the 2:4 kernels:
    layers taken and left, the outputs' largest difference (checked before any timing), and per
    batch the medians (metrics.measure_latency, interleaved) and the median of paired ratios.
    `backend` defaults to kernel_support()'s; `to_sparse` replaces the converter (tests)."""
    if backend is None:
        backend, _ = kernel_support()
    if backend is not None and to_sparse is None:
        from torch.sparse import SparseSemiStructuredTensor

        SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "CUTLASS"
    dense = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    names, skipped = eligible(dense, block(backend, dtype) if backend else BLOCKS["cuSPARSELt"])
    out: dict[str, Any] = {"backend": backend, "dtype": str(dtype).removeprefix("torch."),
                           "layers": names, "skipped": skipped, "rows": []}
    if not names:
        return out
    try:
        sparse = sparsify(dense, names, to_sparse)
        with torch.inference_mode():
            x = torch.randn(4, *input_shape, device=device, dtype=dtype)
            expected = dense(x).float()
            diff = (sparse(x).float() - expected).abs().max().item()
    except RuntimeError as e:       # a kernel this build or device lacks: said, not raised
        return {**out, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    scale = max(1.0, expected.abs().max().item())
    out["max_abs_diff"] = diff
    if not diff <= RTOL * scale:
        return {**out, "error": f"the 2:4 model's outputs differ from the dense model's by "
                                f"{diff:.3g}; refusing to time it."}
    for b in batches:
        t = measure_latency({"dense": dense, "2:4": sparse}, input_shape, b, device=device,
                            budget_s=budget_s, warmup=3, min_reps=5, dtype=dtype)
        d, s = t["dense"], t["2:4"]
        out["rows"].append({
            "batch": b, "dense_ms": d["median_s"] * 1e3, "sparse_ms": s["median_s"] * 1e3,
            "speedup": paired_ratio(d["times"], s["times"]),
            "reps": d["reps"]})
    return out
