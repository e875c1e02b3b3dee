"""Small models for the llm family's tests: a transformer with nanoGPT's layout (the layout
contract gpt_tiny follows: blocks[i].attn with n_head, head_dim, n_embd, c_attn rows [q|k|v],
c_proj; blocks[i].mlp with c_fc, c_proj) that reads an image as a sequence of pixel rows, and
models that test bad input."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.head_dim = n_head, n_embd, n_embd // n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)      # head h: columns h*hd:(h+1)*hd
        return self.c_proj(y)


class MLPBlock(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.mlp = MLPBlock(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyTransformer(nn.Module):
    """(B, C, H, W) images as H tokens of C*W features; mean-pooled into a classifier."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, *, n_embd: int = 32,
                 n_head: int = 4, n_layer: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(in_channels * image_size, n_embd)
        self.pos = nn.Parameter(torch.zeros(1, image_size, n_embd))
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.embed(x.permute(0, 2, 1, 3).reshape(b, h, c * w)) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x).mean(1))


class ClassifierOnly(nn.Module):
    """One Linear: the classifier, which no method prunes."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class OddMLP(nn.Module):
    """fc2 has 30 inputs: no group of 4 or 8 fits it."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 30)
        self.fc2 = nn.Linear(30, 32)
        self.fc3 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))
