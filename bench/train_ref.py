"""PyTorch reference of one LoRA-XS training step (driven by bench/train_bench.ts through py_serve):
transformers' *ForSequenceClassification loaded from the same folder the engine trains, every target
nn.Linear wrapped as  y = base(x) + (α/r)·((x Aᵀ) Rᵀ) Bᵀ  with A (r, in), B (out, r) frozen buffers and
R (r, r) the only adapter parameter (as the LoRA-XS authors' forward_latent), the task head trainable,
everything else frozen; cross-entropy loss, backward, torch.optim.AdamW step. torch.set_num_threads(2)."""
import resource
import time

import numpy as np
import torch
import transformers
from torch import nn

from py_gemm import GEMM_SHAPES, gemm_gflops
from py_serve import serve

torch.set_num_threads(2)
state = {}


class LoraXSLinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        g = torch.Generator().manual_seed(0)
        self.register_buffer("A", torch.randn(rank, base.in_features, generator=g) / base.in_features ** 0.5)
        self.register_buffer("B", torch.randn(base.out_features, rank, generator=g) / rank ** 0.5)
        self.R = nn.Parameter(torch.randn(rank, rank, generator=g) * 1e-5)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.scale * nn.functional.linear(nn.functional.linear(nn.functional.linear(x, self.A), self.R), self.B)


def rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load(req):
    state.clear()
    before = rss_bytes()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(req["dir"], num_labels=2)
    for p in model.parameters():
        p.requires_grad_(False)
    targets = req["targets"]
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and any(full == t or full.endswith("." + t) for t in targets):
                setattr(module, child_name, LoraXSLinear(child, req["rank"], req["rank"]))
                replaced += 1
    head = model.classifier if hasattr(model, "classifier") else model.score
    for p in head.parameters():
        p.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    state.update(model=model, opt=torch.optim.AdamW(trainable, lr=1e-3))
    return {"modules": replaced, "trainable": sum(p.numel() for p in trainable), "rss_before_load": before, "rss_after_load": rss_bytes(),
            "attn_implementation": getattr(model.config, "_attn_implementation", None)}


def step(req):
    model, opt = state["model"], state["opt"]
    model.train()
    ids = torch.tensor(np.array(req["input_ids"], dtype=np.int64).reshape(req["batch"], req["seq"]))
    mask = torch.ones_like(ids)
    labels = torch.tensor(req["labels"], dtype=torch.int64)
    times = []
    for _ in range(req.get("steps", 1)):
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"times": times, "loss": float(out.loss), "peak_rss": rss_bytes()}


def matmul_peak(req):
    out = gemm_gflops(torch.randn, reps=req.get("repeats", 5))
    rng = np.random.default_rng(0)
    out["numpy_1024^3"] = gemm_gflops(lambda m, k: rng.standard_normal((m, k), dtype=np.float32), {"1024^3": GEMM_SHAPES["1024^3"]})["1024^3"]
    return {"gflops": out, "threads": torch.get_num_threads(), "transformers": transformers.__version__}


serve({"load": load, "step": step, "matmul_peak": matmul_peak})
