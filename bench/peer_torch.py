#!/usr/bin/env python3
"""PyTorch peer for `smudge bench`: the same model shapes, the same FLOP count.

Run it through bench/run.sh, which puts the OpenMP build of OpenBLAS on
LD_LIBRARY_PATH: Debian's stock torch then uses one OpenMP pool instead of
fighting a second pthread pool, which is PyTorch at its best on this machine.

    peer_torch.py forward --arch gpt2 --vocab 50257 --d-model 768 --layers 12 \
        --heads 12 --ffn 3072 --seq 128 --batch 4 --steps 5 --threads 2

Prints one JSON object like smudge's.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        C, H, KV, D = a.d_model, a.heads, a.kv_heads, a.d_model // a.heads
        llama = a.arch in ("llama", "mistral")
        bias = not llama
        self.q = nn.Linear(C, H * D, bias=bias)
        self.k = nn.Linear(C, KV * D, bias=bias)
        self.v = nn.Linear(C, KV * D, bias=bias)
        self.o = nn.Linear(H * D, C, bias=bias)
        self.n1 = nn.LayerNorm(C) if not llama else RMSNorm(C)
        self.n2 = nn.LayerNorm(C) if not llama else RMSNorm(C)
        self.up = nn.Linear(C, a.ffn, bias=bias)
        self.gate = nn.Linear(C, a.ffn, bias=False) if llama else None
        self.down = nn.Linear(a.ffn, C, bias=bias)

    def forward(self, x, mask, cos, sin, cache=None):
        a = self.a
        B, T, C = x.shape
        H, KV, D = a.heads, a.kv_heads, C // a.heads
        h = self.n1(x)
        q = self.q(h).view(B, T, H, D).transpose(1, 2)
        k = self.k(h).view(B, T, KV, D).transpose(1, 2)
        v = self.v(h).view(B, T, KV, D).transpose(1, 2)
        if cos is not None:
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        if cache is not None:
            # preallocated [B, KV, Tmax, D] buffers; cache["n"] positions filled
            n = cache["n"]
            cache["k"][:, :, n:n + T] = k
            cache["v"][:, :, n:n + T] = v
            k = cache["k"][:, :, :n + T]
            v = cache["v"][:, :, :n + T]
        if KV != H:
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D)) + mask
        y = torch.softmax(s, dim=-1) @ v
        x = x + self.o(y.transpose(1, 2).reshape(B, T, H * D))
        h = self.n2(x)
        if self.gate is not None:
            m = F.silu(self.gate(h)) * self.up(h)
        elif a.arch == "gpt2":
            m = F.gelu(self.up(h), approximate="tanh")
        else:
            m = F.relu(self.up(h))
        return x + self.down(m)


class RMSNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.w = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.wte = nn.Embedding(a.vocab, a.d_model)
        self.wpe = nn.Embedding(a.seq + 2, a.d_model) if a.arch in ("gpt2", "opt") else None
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.nf = nn.LayerNorm(a.d_model) if self.wpe is not None else RMSNorm(a.d_model)
        self.head = nn.Linear(a.d_model, a.vocab, bias=False)

    def forward(self, ids, caches=None, start=0):
        a = self.a
        B, T = ids.shape
        x = self.wte(ids)
        pos = torch.arange(start, start + T)
        cos = sin = None
        if self.wpe is not None:
            x = x + self.wpe(pos)
        else:
            D = a.d_model // a.heads
            inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D))
            ang = torch.outer(pos.float(), inv)
            ang = torch.cat((ang, ang), dim=-1)
            cos, sin = ang.cos(), ang.sin()
        mask = torch.full((T, start + T), float("-inf")).triu(start + 1)
        for i, b in enumerate(self.blocks):
            x = b(x, mask, cos, sin, None if caches is None else caches[i])
        if caches is not None:
            for c in caches:
                c["n"] += T
            x = x[:, -1:]
        return self.head(self.nf(x))


def forward_flops(a):
    N, C, D = a.batch * a.seq, a.d_model, a.d_model // a.heads
    HD, KD = a.heads * D, a.kv_heads * D
    mlp = 3 if a.arch in ("llama", "mistral") else 2
    per_layer = (2 * N * C * (HD + 2 * KD) + 2 * N * HD * C + 2 * N * C * a.ffn * mlp
                 + 2.0 * 2.0 * a.batch * a.heads * a.seq * a.seq * D / 2.0)
    return a.layers * per_layer + 2 * N * C * a.vocab


def bench_train(a):
    """Full training steps: forward, cross-entropy, backward, AdamW."""
    model = Model(a).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    x, y = ids[:, :-1], ids[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, a.vocab), y.reshape(-1))
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({
        "bench": "train", "impl": "torch", "torch": torch.__version__, "arch": a.arch,
        "batch": a.batch, "seq": a.seq, "steps": a.steps, "threads": torch.get_num_threads(),
        "seconds": round(dt, 6), "tokens_per_s": round(a.batch * a.seq * a.steps / dt, 1),
        "gflops": round(3 * forward_flops(a) * a.steps / dt * 1e-9, 2)}))


def bench_generate(a):
    """Greedy decoding with a preallocated KV cache, batch 1, a --seq prompt."""
    model = Model(a).eval()
    D = a.d_model // a.heads
    prompt = torch.randint(0, a.vocab, (1, 8))
    total = prompt.shape[1] + a.new_tokens

    def run(n_new):
        caches = [{"k": torch.zeros(1, a.kv_heads, total, D), "v": torch.zeros(1, a.kv_heads, total, D), "n": 0}
                  for _ in range(a.layers)]
        logits = model(prompt, caches, 0)
        start = prompt.shape[1]
        for i in range(n_new):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            logits = model(nxt, caches, start + i)

    with torch.inference_mode():
        run(4)
        t0 = time.perf_counter()
        run(a.new_tokens)
        dt = time.perf_counter() - t0
    print(json.dumps({
        "bench": "generate", "impl": "torch", "torch": torch.__version__, "arch": a.arch,
        "batch": 1, "new_tokens": a.new_tokens, "threads": torch.get_num_threads(),
        "seconds": round(dt, 6), "tokens_per_s": round(a.new_tokens / dt, 1)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=["forward", "train", "generate"])
    p.add_argument("--arch", required=True)
    for name in ("vocab", "d-model", "layers", "heads", "ffn", "seq", "batch"):
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--kv-heads", type=int, default=0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=128)
    a = p.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.bench == "train":
        return bench_train(a)
    if a.bench == "generate":
        return bench_generate(a)
    model = Model(a).eval()
    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    with torch.inference_mode():
        model(ids)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            model(ids)
        dt = time.perf_counter() - t0
    print(json.dumps({
        "bench": "forward", "impl": "torch", "torch": torch.__version__, "arch": a.arch,
        "batch": a.batch, "seq": a.seq, "steps": a.steps, "threads": torch.get_num_threads(),
        "seconds": round(dt, 6), "tokens_per_s": round(a.batch * a.seq * a.steps / dt, 1),
        "gflops": round(forward_flops(a) * a.steps / dt * 1e-9, 2)}))


if __name__ == "__main__":
    main()
