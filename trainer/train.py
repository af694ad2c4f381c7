#!/usr/bin/env python3
"""LoRA-XS trainer for `loraxs launch`: PyTorch + Accelerate, one process per device (or CPU process).

It reads the run plan the TypeScript engine wrote (sidecar/engine/run_plan.ts): batches in the engine's
order for every epoch, the initial R, head and frozen factors, and the settings. It has no tokenizer, no
data reader and no random number generator of its own.

Semantics (the same as sidecar/train/loop.ts):
  * every target nn.Linear becomes y = x Wᵀ + b + (α/r)·((x Aᵀ) Rᵀ) Bᵀ with A (r × in), B (out × r) frozen
    and R (r × r) trained, fp32 always;
  * one update per group of grad_accum_steps planned batches; training.batch_size is the global batch of one
    micro-step whatever the number of processes: each planned batch is split into contiguous row ranges, one
    per rank (a rank may get none), and the per-rank sums are all-reduced, so the loss is exactly the one of
    one process: classification, the mean over the batch / batches accumulated; causal LM, the sum over every
    target token of the accumulated batches / their count (no even_batches padding, no DistributedSampler);
  * gradients are all-reduced (summed) by hand (R and the head are tiny), then the global-norm clip
    (torch's clip_grad_norm_ formula), the schedule's multiplier, AdamW (decoupled decay) or SGD, with no
    decay for biases and norms;
  * rank 0 appends metrics.jsonl lines in the engine's schema (plus processes and device) and writes the
    adapter in the engine's format with factors.safetensors, the best to <output>/, the last to <output>/last/;
  * SIGTERM / SIGINT, or the process named by LORAXS_PARENT_PID gone (the sidecar killed outright): all ranks
    agree (an all-reduce before every micro-batch) to stop before the same
    micro-batch and drop the update in progress; rank 0 saves <output>/trainer_checkpoint/ at that update (R,
    the head and the optimizer state are the same on every rank) while the others wait at a barrier;
    --resume continues from it, with any number of processes.
  * the gradient reduction: each planned batch is cut into plan.training.reduction_shards fixed row ranges;
    rank k computes ranges k, k + world, ...; the per-range gradients are summed in float64 in a fixed order,
    so the result does not depend on the number of processes.
"""
import argparse
import datetime
import json
import math
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save as st_save

from loraxs_format import (
    LoraXSLinear, UserError, factors_bytes, factors_checksum, init_R, linear_weight, load_adapter, merge_lora_xs, module_rng,
    r_metadata, resolve_targets, save_adapter, svd_factors, write_atomic,
)

IGNORE_INDEX = -100
CHECKPOINT_DIR = "trainer_checkpoint"

_stop_requested = False


def _request_stop():
    global _stop_requested
    _stop_requested = True


def _on_signal(signum, frame):  # noqa: ARG001
    _request_stop()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def say(line: str):
    """One line to the launcher (stderr). A launcher that has gone (the sidecar shut down after sending
    SIGTERM) must not stop a rank on its way to the checkpoint: a closed pipe is ignored."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


# ------------------------------------------------------------------------------------------------------
# Metrics (sidecar/train/metrics.ts)


def classification_metrics(pred, gold, num_classes):
    n = len(pred)
    acc = sum(1 for p, g in zip(pred, gold) if p == g) / n

    def f1(pos):
        tp = sum(1 for p, g in zip(pred, gold) if p == pos and g == pos)
        fp = sum(1 for p, g in zip(pred, gold) if p == pos and g != pos)
        fn = sum(1 for p, g in zip(pred, gold) if p != pos and g == pos)
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    out = {"accuracy": acc}
    if num_classes == 2:
        out["f1"] = f1(1)
    else:
        classes = sorted(set(pred) | set(gold))
        out["f1_macro"] = sum(f1(c) for c in classes) / len(classes)
    pc, tc = {}, {}
    c = 0
    for p, g in zip(pred, gold):
        pc[p] = pc.get(p, 0) + 1
        tc[g] = tc.get(g, 0) + 1
        c += p == g
    pt = sum(v * tc.get(k, 0) for k, v in pc.items())
    pp = sum(v * v for v in pc.values())
    tt = sum(v * v for v in tc.values())
    denom = math.sqrt((n * n - pp) * (n * n - tt))
    out["matthews_correlation"] = 0.0 if denom == 0 else (c * n - pt) / denom
    total, hit = {}, {}
    for p, g in zip(pred, gold):
        total[g] = total.get(g, 0) + 1
        if p == g:
            hit[g] = hit.get(g, 0) + 1
    out["balanced_accuracy"] = sum(hit.get(k, 0) / v for k, v in total.items()) / len(total)
    return out


def is_better(metric, value, than):
    if not math.isfinite(value):
        return False
    if than is None or not math.isfinite(than):
        return True
    return value < than if metric in ("loss", "perplexity", "mse") else value > than


def lr_multiplier(step0, kind, total, warmup):
    if step0 < warmup:
        return step0 / max(1, warmup)
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - step0) / max(1, total - warmup))
    progress = (step0 - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * 0.5 * 2 * progress)))


def decays(name: str) -> bool:
    import re

    return not re.search(r"(^|\.|_)bias$", name) and "norm" not in name.lower()


# ------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="LoRA-XS trainer (run by `loraxs launch` through accelerate launch)")
    ap.add_argument("--plan", required=True, help="the run plan folder (plan.json) written by the engine")
    ap.add_argument("--resume", action="store_true", help="continue from <output>/trainer_checkpoint")
    ap.add_argument("--mixed-precision", default=None, choices=["no", "bf16", "fp16"])
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--collective-timeout", type=float, default=600.0, help="seconds before a collective gives up (a dead rank stops the run)")
    args = ap.parse_args()

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=args.collective_timeout))],
    )
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    rank, world = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    distributed = world > 1 and dist.is_available() and dist.is_initialized()
    main_proc = rank == 0

    plan_dir = os.path.abspath(args.plan)
    with open(os.path.join(plan_dir, "plan.json"), encoding="utf8") as f:
        plan = json.load(f)
    tc = plan["training"]
    task = plan["task"]
    output = plan["output"]
    metrics_file = os.path.join(output, "metrics.jsonl")
    ckpt_dir = os.path.join(output, CHECKPOINT_DIR)

    def log(msg):
        if main_proc:
            say(f"[trainer] {msg}")

    # ---- model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    hf_config = AutoConfig.from_pretrained(plan["model"])
    if task == "classification":
        hf_config.num_labels = plan["num_labels"]
        model = AutoModelForSequenceClassification.from_pretrained(
            plan["model"], config=hf_config, ignore_mismatched_sizes=True, dtype=torch.float32, attn_implementation="eager")
    else:
        model = AutoModelForCausalLM.from_pretrained(plan["model"], config=hf_config, dtype=torch.float32, attn_implementation="eager")
    dropout = tc["dropout"]
    if dropout is not None:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = dropout
            if hasattr(m, "attention_dropout") and isinstance(getattr(m, "attention_dropout"), float):
                m.attention_dropout = dropout
    train_mode = dropout is None or dropout > 0
    for p in model.parameters():
        p.requires_grad_(False)

    init_dir = os.path.join(plan_dir, plan["init_adapter"]) if plan.get("init_adapter") else None
    checkpoint_factors = None  # the factors computed here (a model the engine cannot hold), kept in checkpoints
    extra_files = {}  # files the saved adapters carry besides R and the head: factors.safetensors, the chat template
    if init_dir:
        init_config, r_meta, R0, head0, factors = load_adapter(init_dir)
        for fname in ("factors.safetensors", "chat_template.jinja"):
            if os.path.exists(os.path.join(init_dir, fname)):
                with open(os.path.join(init_dir, fname), "rb") as f:
                    extra_files[fname] = f.read()
    else:
        # A model the engine cannot hold: the plan has no factors. The targets are matched against the
        # model's nn.Linear / Conv1D names, the factors come from an SVD on this device (rank 0's, broadcast),
        # R is drawn as the engine draws it (moduleRng(seed, name, 'R')).
        ac = plan["adapter_config"]
        found = resolve_targets(model, ac["targets"], ac["rank"], ac.get("rank_pattern") or {})
        factors, R0, head0, modules = {}, {}, {}, []
        # A resume takes the factors its checkpoint was trained with (an SVD on another device may differ in the last bits).
        state_file = os.path.join(ckpt_dir, "state.pt")
        saved = torch.load(state_file, map_location="cpu", weights_only=False).get("factors") if args.resume and os.path.exists(state_file) else None
        for name, layer, r in found:
            out_f, in_f = linear_weight(layer).shape
            if saved and f"{name}.A" in saved:
                A, B, S = saved[f"{name}.A"], saved[f"{name}.B"], saved[f"{name}.sigma"]
            else:
                A, B, S = svd_factors(linear_weight(layer).to(device), r, module_rng(tc["seed"], name, "factors").next_u32(), ac["svd"], ac["init"] == "svd")
                if distributed:
                    for t in (A, B, S):
                        dist.broadcast(t, src=0)
            factors.update({f"{name}.A": A.cpu(), f"{name}.B": B.cpu(), f"{name}.sigma": S.cpu()})
            R0[name] = init_R(tc["seed"], name, r, ac["init_std"])
            modules.append({"name": name, "rank": r, "out_features": int(out_f), "in_features": int(in_f)})
        plan["adapter"]["modules"] = modules
        checksum = factors_checksum(modules, factors)
        init_config = {**ac, "modules": modules, "factors_sha256": checksum}
        checkpoint_factors = factors
        r_meta = r_metadata(modules)
        extra_files["factors.safetensors"] = factors_bytes(modules, factors, checksum)
        log(f"factors of {len(modules)} modules by {'svd_lowrank' if ac['svd'].get('method') != 'exact' else 'exact SVD'} on {device}")
    alpha = plan["adapter"]["alpha"]
    for m in plan["adapter"]["modules"]:
        name, r = m["name"], m["rank"]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        A, B = factors[f"{name}.A"], factors[f"{name}.B"]
        R = R0.get(name, torch.zeros(r, r))
        setattr(parent, child, LoraXSLinear(base, A, B, R, alpha / r))
    params = dict(model.named_parameters())
    head_names = [h["name"] for h in plan["head"]]
    for name in head_names:
        if name not in params:
            raise SystemExit(f"the plan's head tensor {name} is not a parameter of the transformers model")
        with torch.no_grad():
            if name in head0:
                params[name].copy_(head0[name].reshape(params[name].shape))
    trainable_names = [f"{m['name']}.R" for m in plan["adapter"]["modules"]] + head_names
    trainable = {n: params[n] for n in trainable_names}
    for p in trainable.values():
        p.requires_grad_(True)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    model.train(train_mode)

    # ---- optimizer: one param group per tensor (its own base lr and decay), as the engine's optimizers.ts
    groups, base_lr = [], []
    for n in trainable_names:
        lr = tc["lr"] if n.endswith(".R") and n[:-2] in {m["name"] for m in plan["adapter"]["modules"]} else tc["head_lr"]
        wd = tc["weight_decay"] if decays(n) else 0.0
        groups.append({"params": [trainable[n]], "lr": lr, "weight_decay": wd, "name": n})
        base_lr.append(lr)
    if tc["optimizer"] == "adamw":
        optimizer = torch.optim.AdamW(groups, betas=tuple(tc["betas"]), eps=tc["eps"], foreach=False)
    else:
        optimizer = torch.optim.SGD(groups, momentum=0.0, foreach=False)

    # ---- position
    pos = {"step": 0, "epoch": 1, "batch_in_epoch": 0, "best": None, "best_value": None}
    if args.resume:
        state_file = os.path.join(ckpt_dir, "state.pt")
        if not os.path.exists(state_file):
            raise SystemExit(f"nothing to resume: no checkpoint in {ckpt_dir}")
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        with torch.no_grad():
            for n, v in state["params"].items():
                trainable[n].copy_(v)
        optimizer.load_state_dict(state["optimizer"])
        pos = state["position"]
        log(f"resuming at update {pos['step']} (epoch {pos['epoch']}) on {world} process(es)")
        if main_proc:
            kept = []
            if os.path.exists(metrics_file):
                with open(metrics_file, encoding="utf8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError:
                            continue
                        if isinstance(rec.get("step"), (int, float)) and rec["step"] <= pos["step"] and pos["step"] > 0:
                            kept.append(line if line.endswith("\n") else line + "\n")
            write_atomic(metrics_file, "".join(kept).encode("utf8"))
    elif main_proc:
        os.makedirs(output, exist_ok=True)
        write_atomic(metrics_file, b"")

    def append(rec):
        if main_proc:
            with open(metrics_file, "a", encoding="utf8") as f:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def current_head():
        return {n: trainable[n] for n in head_names}

    def current_R():
        return {m["name"]: trainable[f"{m['name']}.R"] for m in plan["adapter"]["modules"]}

    def save_to(folder):
        if main_proc:
            save_adapter(folder, init_config, r_meta, current_R(), current_head(), extra_files)

    def save_checkpoint():
        if main_proc:
            os.makedirs(ckpt_dir, exist_ok=True)
            state = {
                "params": {n: p.detach().cpu().clone() for n, p in trainable.items()},
                "optimizer": optimizer.state_dict(),
                "position": dict(pos),
                "processes": world,
                "factors": checkpoint_factors,
            }
            tmp = os.path.join(ckpt_dir, f"state.pt.tmp-{os.getpid()}")
            torch.save(state, tmp)
            os.replace(tmp, os.path.join(ckpt_dir, "state.pt"))
        if distributed:
            dist.barrier()

    def all_sum(t: torch.Tensor) -> torch.Tensor:
        if distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def rows_of(n_rows):
        """This rank's contiguous row range of a planned batch (sizes differ by at most one; may be empty)."""
        base, extra = divmod(n_rows, world)
        start = rank * base + min(rank, extra)
        return start, start + base + (1 if rank < extra else 0)

    shards = int(tc.get("reduction_shards", 1))
    param_list = list(trainable.values())
    n_params = sum(p.numel() for p in param_list)

    def shard_bounds(n_rows):
        """The plan's fixed split of a batch into `shards` contiguous row ranges (some empty when n_rows < shards)."""
        base, extra = divmod(n_rows, shards)
        out, start = [], 0
        for k in range(shards):
            end = start + base + (1 if k < extra else 0)
            out.append((start, end))
            start = end
        return out

    batch_cache = {}

    def batch_file(rel):
        if rel not in batch_cache:
            batch_cache.clear()
            batch_cache[rel] = load_file(os.path.join(plan_dir, rel))
        return batch_cache[rel]

    def inputs_of(tensors, i, a, b):
        x = {k: tensors[f"{i}.{k}"][a:b].to(torch.long).to(device) for k in ("input_ids", "attention_mask")}
        if plan["model_type"] in ("bert", "roberta"):
            x["token_type_ids"] = tensors[f"{i}.token_type_ids"][a:b].to(torch.long).to(device)
        return x

    def forward(x):
        with accelerator.autocast():
            return model(**x).logits.float()

    metric = plan["metric"]["name"]

    def evaluate():
        vb = plan.get("validation_batches")
        was_training = model.training
        model.eval()
        preds, golds, loss_sum, count = [], [], 0.0, 0
        with torch.no_grad():
            tensors = load_file(os.path.join(plan_dir, vb["file"]))
            for i, info in enumerate(vb["batches"]):
                a, b = rows_of(info["examples"])
                if a == b:
                    continue
                logits = forward(inputs_of(tensors, i, a, b))
                if task == "causal-lm":
                    labels = tensors[f"{i}.lm_labels"][a:b].to(torch.long).to(device)
                    mask = labels != IGNORE_INDEX
                    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.where(mask, labels, 0).reshape(-1), reduction="none")
                    loss_sum += float((ce * mask.reshape(-1)).sum())
                    count += int(mask.sum())
                else:
                    labels = tensors[f"{i}.labels"][a:b].to(torch.long).to(device)
                    loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
                    count += b - a
                    preds.extend(logits.argmax(dim=-1).tolist())
                    golds.extend(labels.tolist())
        parts = [(rank, preds, golds, loss_sum, count)]
        if distributed:
            gathered = [None] * world
            dist.all_gather_object(gathered, parts[0])
            parts = sorted(gathered, key=lambda p: p[0])
        model.train(was_training)
        loss = sum(p[3] for p in parts) / max(1, sum(p[4] for p in parts))
        if task == "causal-lm":
            return {"loss": loss, "perplexity": math.exp(loss)}
        all_pred = [x for p in parts for x in p[1]]
        all_gold = [x for p in parts for x in p[2]]
        return {**classification_metrics(all_pred, all_gold, plan["num_labels"]), "loss": loss}

    def run_eval(step, epoch):
        if not plan.get("validation_batches"):
            return
        metrics = evaluate()
        rec = {"step": step, "epoch": epoch, "eval": metrics}
        append(rec)
        value = metrics[metric]
        best = pos["best_value"] is None or is_better(metric, value, pos["best_value"])
        if main_proc:
            say(json.dumps({"loraxs_eval": {"record": rec, "best": best}}))
        if best:
            pos["best"], pos["best_value"] = rec, value
            save_to(output)
            append({"step": step, "epoch": epoch, "best": {"metric": metric, "value": value, "higher_is_better": plan["metric"]["higher_is_better"]}})

    device_name = str(device) if device.type != "cuda" else f"cuda:{torch.cuda.get_device_name(device)}"
    log(f"training {sum(m['rank'] ** 2 for m in plan['adapter']['modules'])} LoRA-XS parameters in {len(plan['adapter']['modules'])} modules "
        f"and {sum(trainable[n].numel() for n in head_names)} head parameters; {tc['total_steps']} updates on {world} process(es), {device_name}")

    if pos["step"] == 0 and tc["eval_at_start"] and plan.get("validation_batches") and not args.resume:
        metrics = evaluate()
        rec = {"step": 0, "epoch": 0, "eval": metrics, "baseline": True}
        append(rec)

    def write_merged_logits():
        """Merges ΔW into W in PyTorch (merge_lora_xs) and writes the merged model's logits on fixed inputs
        (the first validation batch, else the first training batch) to <output>/merged_logits.safetensors,
        with the inputs: what `loraxs merge`'s folder must reproduce. Rank 0, after the last update."""
        vb = plan.get("validation_batches") or plan["train_batches"][0]
        tensors = load_file(os.path.join(plan_dir, vb["file"]))
        x = inputs_of(tensors, 0, 0, vb["batches"][0]["examples"])
        n = merge_lora_xs(model)
        model.eval()
        with torch.no_grad():
            logits = model(**x).logits.float()
        out = {k: v.to(torch.int64).cpu().contiguous() for k, v in x.items()}
        out["logits"] = logits.cpu().contiguous()
        write_atomic(os.path.join(output, "merged_logits.safetensors"), st_save(out, metadata={"format": "loraxs-merged-logits", "modules_merged": str(n)}))

    stop_after = int(os.environ["LORAXS_TRAINER_STOP_AFTER"]) if os.environ.get("LORAXS_TRAINER_STOP_AFTER") else None
    # A test hook: LORAXS_TRAINER_FAIL=RANK:STEP makes that rank raise after update STEP (a rank that dies).
    fail_rank, _, fail_step = os.environ.get("LORAXS_TRAINER_FAIL", "").partition(":")
    accum = tc["grad_accum_steps"]
    total = tc["total_steps"]
    cancelled = False
    # The sidecar / CLI that ran `loraxs launch` (on this machine): killed outright, it sends no SIGTERM; the
    # run stops as if it had, rather than train on unwatched.
    watch_pid = int(os.environ["LORAXS_PARENT_PID"]) if os.environ.get("LORAXS_PARENT_PID", "").isdigit() else None
    stop_flag = torch.zeros(1, device=device)  # on the device: NCCL reduces device tensors only
    while pos["epoch"] <= tc["epochs"]:
        bf = plan["train_batches"][pos["epoch"] - 1]
        tensors = batch_file(bf["file"])
        n_batches = len(bf["batches"])
        while pos["batch_in_epoch"] < n_batches:
            first = pos["batch_in_epoch"]
            group = list(range(first, min(first + accum, n_batches)))
            t_step = time.perf_counter()
            targets_in_group = sum(bf["batches"][i]["num_targets"] or 0 for i in group)
            # Every planned batch is cut into `shards` fixed row ranges (a function of the plan only); rank k
            # computes shards k, k + world, ... The per-shard gradients go into one (group, shards, P + 1)
            # float64 table, zero where another rank owns the entry, so the all-reduce adds only zeros to each
            # value and the fixed-order sum over the table is the same for any number of processes.
            table = torch.zeros(len(group), shards, n_params + 1, dtype=torch.float64, device=device)
            for gi, i in enumerate(group):
                if not _stop_requested and watch_pid and not process_alive(watch_pid):
                    say(f"[trainer] rank {rank}: the process that launched the run ({watch_pid}) is gone; stopping with a checkpoint")
                    _request_stop()
                stop_flag.fill_(1.0 if _stop_requested else 0.0)
                if distributed:
                    dist.all_reduce(stop_flag, op=dist.ReduceOp.MAX)
                if stop_flag.item() > 0:
                    cancelled = True
                    break
                info = bf["batches"][i]
                bounds = shard_bounds(info["examples"])
                for k in range(rank, shards, world):
                    a, b = bounds[k]
                    if a == b:
                        continue
                    logits = forward(inputs_of(tensors, i, a, b))
                    if task == "causal-lm":
                        labels = tensors[f"{i}.lm_labels"][a:b].to(torch.long).to(device)
                        mask = labels != IGNORE_INDEX
                        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.where(mask, labels, 0).reshape(-1), reduction="none")
                        loss = (ce * mask.reshape(-1)).sum() / targets_in_group
                    else:
                        labels = tensors[f"{i}.labels"][a:b].to(torch.long).to(device)
                        loss = F.cross_entropy(logits, labels, reduction="sum") / info["examples"] / len(group)
                    grads = torch.autograd.grad(loss, param_list, allow_unused=True)
                    table[gi, k, :n_params] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double() for g, p in zip(grads, param_list)])
                    table[gi, k, n_params] = loss.detach().double()
            if cancelled:
                break
            all_sum(table)
            total_vec = table.sum(dim=(0, 1))
            loss_value = float(total_vec[-1])
            off = 0
            for p in param_list:
                k = p.numel()
                p.grad = total_vec[off:off + k].reshape(p.shape).to(device=p.device, dtype=p.dtype).clone()
                off += k
            if not math.isfinite(loss_value):
                raise SystemExit(f"the training loss became {loss_value} at update {pos['step'] + 1} (epoch {pos['epoch']}); stopped")
            grads = [p.grad for p in trainable.values()]
            grad_norm = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads)))
            if tc["max_grad_norm"] > 0:
                coef = min(1.0, tc["max_grad_norm"] / (grad_norm + 1e-6))
                if coef < 1:
                    for g in grads:
                        g.mul_(coef)
            mult = lr_multiplier(pos["step"], tc["schedule"], total, tc["warmup_steps"])
            for g, lr in zip(optimizer.param_groups, base_lr):
                g["lr"] = lr * mult
            optimizer.step()
            pos["step"] += 1
            pos["batch_in_epoch"] += len(group)
            tokens = sum(bf["batches"][i]["num_tokens"] for i in group)
            rec = {
                "step": pos["step"], "epoch": pos["epoch"], "loss": loss_value, "lr": tc["lr"] * mult,
                "tokens_per_s": tokens / max(1e-9, time.perf_counter() - t_step), "grad_norm": grad_norm, "total_steps": total,
                "processes": world, "device": device_name,
            }
            append(rec)
            if main_proc:
                say(json.dumps({"loraxs_step": rec}))
            if fail_step and rank == int(fail_rank) and pos["step"] >= int(fail_step):
                raise RuntimeError(f"LORAXS_TRAINER_FAIL: rank {rank} fails after update {pos['step']}")
            if stop_after is not None and pos["step"] >= stop_after:
                _request_stop()  # a test hook: as if SIGTERM came right after this update
            epoch_ends = pos["batch_in_epoch"] >= n_batches
            ev = tc["eval_every"]
            due = epoch_ends if ev == "epoch" else (pos["step"] == total if ev == "end" else pos["step"] % ev == 0)
            if due:
                run_eval(pos["step"], pos["epoch"])
        if cancelled:
            break
        pos["epoch"] += 1
        pos["batch_in_epoch"] = 0
        save_checkpoint()

    if cancelled:
        save_checkpoint()
        log(f"cancelled at update {pos['step']}; checkpoint saved in {ckpt_dir} (continue with --resume)")
        if main_proc:
            say(json.dumps({"loraxs_cancelled": {"step": pos["step"]}}))
        code = 0  # a clean stop: the launcher (torchrun) would report any other status as a failure
    else:
        save_to(os.path.join(output, "last"))
        if not plan.get("validation_batches"):
            save_to(output)
        if main_proc:
            write_merged_logits()
        log(f"finished {pos['step']} updates")
        code = 0
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    sys.exit(code)


def report_error(message: str):
    """One line the launcher (sidecar/engine/launch.ts) shows as the run's error, with the rank that failed.
    The same record also goes to LORAXS_ERROR_DIR/rank-<R>.json when the launcher set it: a rank's last
    stderr lines can be lost when the launcher's agent tears the group down, a file is not."""
    record = {"rank": int(os.environ.get("RANK", "0")), "message": message}
    say(json.dumps({"loraxs_error": record}))
    folder = os.environ.get("LORAXS_ERROR_DIR")
    if folder:
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"rank-{record['rank']}.json"), "w") as f:
                json.dump(record, f)
        except OSError:
            pass


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        report_error(str(e))
        sys.exit(1)
    except SystemExit as e:
        if isinstance(e.code, str):
            report_error(e.code)
        raise
    except Exception as e:
        report_error(f"{type(e).__name__}: {e}")
        raise
