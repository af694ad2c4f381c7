"""The engine's LoRA-XS definitions in PyTorch, shared by train.py and adapter_tools.py.

  * the LoRA-XS module (y = base(x) + (α/r)·((x Aᵀ) Rᵀ) Bᵀ; A (r × in) = Σ_r V_rᵀ, B (out × r) = U_r, R (r × r));
    a transformers Conv1D (GPT-2: weight stored (in × out), y = x W + b) is adapted as the nn.Linear whose
    weight is Wᵀ, and merged back transposed;
  * targets matched as sidecar/loraxs/targets.ts (PEFT's rule: the name equals the key or ends with `.key`;
    the longest key wins, also for rank_pattern);
  * factors by torch.svd_lowrank (or torch.linalg.svd for svd.method exact), signs canonical as
    sidecar/loraxs/dense.ts (the largest-|value| entry of each column of U positive, first one on ties);
  * the engine's random generator (sidecar/rng.ts, xoshiro128** + Box-Muller) and moduleRng
    (sidecar/loraxs/init.ts), so R starts as the engine would draw it;
  * the adapter folder format (sidecar/loraxs/adapter_files.ts), factors.safetensors included.
"""
import hashlib
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as st_save

MASK32 = 0xFFFFFFFF


class UserError(Exception):
    """Bad input: shown as one line."""


def is_conv1d(m: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2 and relatives): a linear layer whose weight is stored (in × out)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return False
    return isinstance(m, Conv1D)


def linear_weight(m: nn.Module) -> torch.Tensor:
    """The (out × in) weight of an nn.Linear or a Conv1D (a transposed view for Conv1D)."""
    return m.weight.T if is_conv1d(m) else m.weight


class LoraXSLinear(nn.Module):
    """A frozen nn.Linear (or Conv1D) plus (α/r)·B R A; only R is a parameter."""

    def __init__(self, base: nn.Module, A: torch.Tensor, B: torch.Tensor, R: torch.Tensor, scale: float):
        super().__init__()
        self.base = base
        self.transposed = is_conv1d(base)
        self.register_buffer("A", A.to(torch.float32).contiguous(), persistent=False)
        self.register_buffer("B", B.to(torch.float32).contiguous(), persistent=False)
        self.R = nn.Parameter(R.to(torch.float32).contiguous())
        self.scale = scale

    def forward(self, x):
        y = self.base(x)
        xa = F.linear(x.to(self.A.dtype) if not torch.is_autocast_enabled() else x, self.A)
        delta = F.linear(F.linear(xa, self.R), self.B)
        return y + (delta * self.scale).to(y.dtype)


def merge_lora_xs(model: nn.Module) -> int:
    """Folds every LoraXSLinear into its base layer, W ← W + (α/r)·B R A (in fp32; transposed for Conv1D),
    and puts the plain layer back. Returns the number of modules merged."""
    merged = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraXSLinear)]
    for name, m in merged:
        with torch.no_grad():
            delta = m.scale * (m.B @ m.R.detach().to(m.B.dtype) @ m.A)  # (out, r)(r, r)(r, in) = (out, in)
            if m.transposed:
                delta = delta.T
            w = m.base.weight
            w.copy_((w.to(torch.float32) + delta.to(w.device)).to(w.dtype))
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, m.base)
    return len(merged)


# ------------------------------------------------------------------------------------------------------
# Targets (sidecar/loraxs/targets.ts)


def key_matches(name: str, key: str) -> bool:
    return name == key or name.endswith("." + key)


def longest_match(name: str, keys):
    best = None
    for key in keys:
        if key_matches(name, key) and (best is None or len(key) > len(best)):
            best = key
    return best


def resolve_targets(model: nn.Module, targets, rank: int, rank_pattern: dict):
    """[(name, module, rank)] in model order for every nn.Linear / Conv1D a target key selects."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) or is_conv1d(m)]
    for key in targets:
        if not any(key_matches(n, key) for n, _ in layers):
            tails = sorted({n.rsplit(".", 1)[-1] for n, _ in layers})
            raise UserError(f'adapter.targets: "{key}" matches no nn.Linear or Conv1D of this model (its layers end with: {", ".join(tails)})')
    sharing = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        sharing.setdefault(p.data_ptr(), []).append(n)
    out = []
    for name, m in layers:
        if longest_match(name, targets) is None:
            continue
        tied = [n for n in sharing.get(m.weight.data_ptr(), []) if n != f"{name}.weight"]
        if tied:
            raise UserError(f"adapter.targets: {name} shares its weight with {tied[0]} (tied embeddings); a merge would change both: leave it out of the targets")
        pk = longest_match(name, rank_pattern.keys())
        r = rank if pk is None else int(rank_pattern[pk])
        out_f, in_f = linear_weight(m).shape
        if r < 1 or r > min(out_f, in_f):
            raise UserError(f"adapter.rank: rank {r} exceeds min(out, in) = {min(out_f, in_f)} of {name} ({out_f} × {in_f})")
        out.append((name, m, r))
    return out


# ------------------------------------------------------------------------------------------------------
# Factors


def canonical_signs(U: torch.Tensor, Vt: torch.Tensor):
    """The largest-|value| entry of each column of U positive (as sidecar/loraxs/dense.ts does)."""
    idx = U.abs().argmax(dim=0)
    signs = torch.sign(U[idx, torch.arange(U.shape[1], device=U.device)])
    signs[signs == 0] = 1
    return U * signs, Vt * signs[:, None]


def svd_factors(W: torch.Tensor, rank: int, seed: int, svd: dict, with_sigma: bool = True):
    """A = Σ_r V_rᵀ (or V_rᵀ), B = U_r, σ_r of W (out × in), on W's device, signs canonical."""
    W = W.detach().to(torch.float32)
    if svd.get("method") == "exact":
        U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
        U, S, V = U.float(), S.float(), Vh.T.float()
    else:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        U, S, V = torch.svd_lowrank(W, q=min(rank + int(svd.get("oversamples", 10)), min(W.shape)), niter=int(svd.get("power_iters", 7)))
        torch.random.set_rng_state(gen_state)
    U, Vt = canonical_signs(U[:, :rank], V[:, :rank].T)
    A = S[:rank, None] * Vt if with_sigma else Vt
    return A.contiguous(), U.contiguous(), S[:rank].contiguous()


# ------------------------------------------------------------------------------------------------------
# The engine's random generator (sidecar/rng.ts) and moduleRng (sidecar/loraxs/init.ts)


def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & MASK32


class EngineRng:
    def __init__(self, state):
        self.s = [w & MASK32 for w in state]
        self.spare = None

    def next_u32(self):
        s = self.s
        result = (_rotl((s[1] * 5) & MASK32, 7) * 9) & MASK32
        t = (s[1] << 9) & MASK32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result

    def uniform(self):
        return self.next_u32() / 4294967296

    def normal(self):
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        u = 0.0
        while u == 0:
            u = self.uniform()
        v = self.uniform()
        r = math.sqrt(-2 * math.log(u))
        self.spare = r * math.sin(2 * math.pi * v)
        return r * math.cos(2 * math.pi * v)

    def normal_array(self, n, std=1.0):
        return torch.tensor([self.normal() * std for _ in range(n)], dtype=torch.float64).to(torch.float32)


def module_rng(seed: int, module_name: str, purpose: str) -> EngineRng:
    digest = hashlib.sha256(f"loraxs\0{seed}\0{purpose}\0{module_name}".encode("utf8")).digest()
    state = list(struct.unpack("<4I", digest[:16]))
    if all(w == 0 for w in state):
        state[0] = 1
    return EngineRng(state)


def init_R(seed: int, module_name: str, rank: int, std: float) -> torch.Tensor:
    """R (r × r) ~ N(0, std²) from moduleRng(seed, name, 'R'), as the engine draws it; std 0 gives zeros."""
    if std == 0:
        return torch.zeros(rank, rank)
    return module_rng(seed, module_name, "R").normal_array(rank * rank, std).reshape(rank, rank)


# ------------------------------------------------------------------------------------------------------
# The adapter folder (sidecar/loraxs/adapter_files.ts)


def decode_ranges(text: str):
    out = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def encode_ranges(indices):
    parts, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        parts.append(str(indices[i]) if i == j else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ",".join(parts)


def r_metadata(modules) -> dict:
    """adapter.safetensors' __metadata__ for a module list [{name, rank, ...}]."""
    meta = {"format": "loraxs-R", "version": "1",
            "modules": hashlib.sha256("\n".join(m["name"] for m in modules).encode("utf8")).hexdigest()[:16]}
    by_rank = {}
    for i, m in enumerate(modules):
        by_rank.setdefault(m["rank"], []).append(i)
    for r in sorted(by_rank):
        meta[f"R.r{r}"] = encode_ranges(by_rank[r])
    return meta


def factors_checksum(modules, factors: dict) -> str:
    h = hashlib.sha256()
    for m in modules:
        name = m["name"]
        h.update(f"{name}\0{m['rank']}\0{m['out_features']}\0{m['in_features']}\0".encode("utf8"))
        h.update(factors[f"{name}.A"].to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes())
        h.update(factors[f"{name}.B"].to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def factors_bytes(modules, factors: dict, checksum: str) -> bytes:
    tensors = {}
    for m in modules:
        for k in ("A", "B", "sigma"):
            key = f"{m['name']}.{k}"
            if key in factors:
                tensors[key] = factors[key].to(torch.float32).contiguous().cpu()
    return st_save(tensors, metadata={"format": "loraxs-factors", "factors_sha256": checksum})


def write_atomic(path: str, data: bytes):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_adapter(out_dir: str, config: dict, r_meta: dict, R: dict, head: dict, extra_files: dict):
    """Writes the adapter in the engine's format; `extra_files` (name → bytes): factors.safetensors, chat template."""
    os.makedirs(out_dir, exist_ok=True)
    modules = [m["name"] for m in config["modules"]]
    tensors = {}
    for key in r_meta:
        if not key.startswith("R.r"):
            continue
        rank = int(key[3:])
        idx = decode_ranges(r_meta[key])
        tensors[key] = torch.stack([R[modules[i]].detach().to(torch.float32).reshape(rank, rank).cpu() for i in idx]).contiguous()
    files = {"adapter.safetensors": st_save(tensors, metadata=dict(r_meta))}
    if head:
        files["head.safetensors"] = st_save({k: v.detach().to(torch.float32).cpu().contiguous() for k, v in head.items()}, metadata={"format": "loraxs-head"})
    files.update(extra_files)
    config = dict(config)
    config["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    for name, data in files.items():
        write_atomic(os.path.join(out_dir, name), data)
    for stale in ("head.safetensors", "factors.safetensors", "chat_template.jinja"):
        if stale not in files and os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    write_atomic(os.path.join(out_dir, "loraxs_config.json"), (json.dumps(config, indent=2) + "\n").encode("utf8"))


def load_adapter(folder: str):
    """(config, R by module, head, factors) of an adapter folder, each listed file checked against its sha256."""
    cfg_file = os.path.join(folder, "loraxs_config.json")
    if not os.path.exists(cfg_file):
        raise UserError(f"{folder} is not a LoRA-XS adapter folder: loraxs_config.json is missing")
    with open(cfg_file, encoding="utf8") as f:
        config = json.load(f)
    for name, digest in (config.get("files") or {}).items():
        p = os.path.join(folder, name)
        if not os.path.exists(p):
            raise UserError(f"{p}: missing (loraxs_config.json lists it)")
        with open(p, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                raise UserError(f"{p}: does not match loraxs_config.json (the folder mixes files of two saves or was edited)")
    names = [m["name"] for m in config["modules"]]
    R = {}
    with safe_open(os.path.join(folder, "adapter.safetensors"), framework="pt") as f:
        meta = f.metadata()
        for key in f.keys():
            stack = f.get_tensor(key)
            for k, idx in enumerate(decode_ranges(meta[key])):
                R[names[idx]] = stack[k].clone()
    from safetensors.torch import load_file

    head_file = os.path.join(folder, "head.safetensors")
    head = load_file(head_file) if os.path.exists(head_file) else {}
    factors_file = os.path.join(folder, "factors.safetensors")
    factors = load_file(factors_file) if os.path.exists(factors_file) else {}
    return config, meta, R, head, factors
