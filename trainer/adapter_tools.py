#!/usr/bin/env python3
"""`loraxs merge` and `loraxs export --format peft-lora` for adapters whose base model the TypeScript engine
cannot hold (GPT-2 and other families outside sidecar/models/registry.ts), run by the CLI and the sidecar
through the one job runner (sidecar/engine/trainer_tools.ts). The adapter must carry its factors
(factors.safetensors: `loraxs launch` writes them). Both write into --out, a fresh temporary folder the
caller swaps in atomically.

  merge        W' = W + (α/r)·B R A for every adapted module (transposed for a Conv1D), saved with
               transformers' save_pretrained in the model's dtype, tokenizer files copied.
  export-peft  a PEFT LoRA folder: lora_B = B, lora_A = (α/r)·R A, lora_alpha = r (scaling 1), as
               sidecar/loraxs/export.ts writes it; fan_in_fan_out true when the adapted layers are Conv1D.

Errors are one line on stderr: {"loraxs_error": {"message": ...}}.
"""
import argparse
import json
import os
import shutil
import sys

import torch

from loraxs_format import LoraXSLinear, UserError, is_conv1d, load_adapter, merge_lora_xs

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "chat_template.jinja", "generation_config.json")


def read_adapter(folder):
    config, _meta, R, head, factors = load_adapter(folder)
    missing = [m["name"] for m in config["modules"] if f"{m['name']}.A" not in factors]
    if missing:
        raise UserError(f"{folder}: the adapter has no factors for {missing[0]} (factors.safetensors); train it with loraxs launch, which saves them")
    return config, R, head, factors


def auto_class(task):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "causal-lm":
        return AutoModelForCausalLM
    if task == "classification":
        return AutoModelForSequenceClassification
    raise UserError(f"task {task}: merging is implemented for causal-lm and classification adapters")


def check_shapes(config, model):
    for m in config["modules"]:
        try:
            layer = model.get_submodule(m["name"])
        except AttributeError:
            raise UserError(f"module {m['name']} of the adapter is not in the model (another base model?)") from None
        w = layer.weight.T if is_conv1d(layer) else layer.weight
        if tuple(w.shape) != (m["out_features"], m["in_features"]):
            raise UserError(f"module {m['name']} is {tuple(w.shape)} in the model, {m['out_features']} × {m['in_features']} in the adapter (another base model?)")


def merge(args):
    config, R, head, factors = read_adapter(args.adapter)
    cls = auto_class(config["task"])
    kwargs = {}
    if config["task"] == "classification":
        kwargs = {"num_labels": config["num_labels"], "ignore_mismatched_sizes": True}
    model = cls.from_pretrained(args.model, dtype="auto", **kwargs)
    check_shapes(config, model)
    for m in config["modules"]:
        name = m["name"]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        setattr(parent, child, LoraXSLinear(base, factors[f"{name}.A"], factors[f"{name}.B"], R[name].reshape(m["rank"], m["rank"]), config["alpha"] / m["rank"]))
    n = merge_lora_xs(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in head.items():
            if k not in params:
                raise UserError(f"head tensor {k} of the adapter is not a parameter of the transformers model")
            params[k].copy_(v.reshape(params[k].shape).to(params[k].dtype))
    if config.get("id2label"):
        model.config.id2label = {int(k): v for k, v in config["id2label"].items()}
        model.config.label2id = {v: int(k) for k, v in config["id2label"].items()}
    model.save_pretrained(args.out)
    for f in TOKENIZER_FILES:
        src = os.path.join(args.adapter if f == "chat_template.jinja" and os.path.exists(os.path.join(args.adapter, f)) else args.model, f)
        if os.path.exists(src) and not os.path.exists(os.path.join(args.out, f)):
            shutil.copyfile(src, os.path.join(args.out, f))
    print(f"merged {n} modules into {args.out}", file=sys.stderr)


def export_peft(args):
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config, R, head, factors = read_adapter(args.adapter)
    with init_empty_weights():
        model = auto_class(config["task"]).from_config(AutoConfig.from_pretrained(args.model))
    check_shapes(config, model)
    conv = {is_conv1d(model.get_submodule(m["name"])) for m in config["modules"]}
    if len(conv) > 1:
        raise UserError("the adapted modules mix nn.Linear and Conv1D; PEFT's fan_in_fan_out is one setting for all: adapt only one kind")
    tensors, rank_pattern, alpha_pattern = {}, {}, {}
    for m in config["modules"]:
        name, r = m["name"], m["rank"]
        scale = config["alpha"] / r
        A = (scale * (R[name].reshape(r, r).double() @ factors[f"{name}.A"].double())).float()
        tensors[f"base_model.model.{name}.lora_A.weight"] = A.contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = factors[f"{name}.B"].float().contiguous()
        if r != config["rank"]:
            key = "\\.".join(name.split(".")[1:] or [name])
            rank_pattern[key] = r
            alpha_pattern[key] = r
    for k, v in head.items():
        tensors[f"base_model.model.{k}"] = v.float().contiguous()
    modules_to_save = sorted({k.split(".")[0] for k in head}) or None
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM" if config["task"] == "causal-lm" else "SEQ_CLS",
        "base_model_name_or_path": os.path.abspath(args.model),
        "r": config["rank"],
        "lora_alpha": config["rank"],
        "lora_dropout": 0,
        "target_modules": [m["name"] for m in config["modules"]] if modules_to_save else list(config["targets"]),
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": conv == {True},
        "init_lora_weights": True,
        "modules_to_save": modules_to_save,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "inference_mode": True,
        "revision": None,
    }
    with open(os.path.join(args.out, "adapter_config.json"), "w", encoding="utf8") as f:
        f.write(json.dumps(peft_config, indent=2) + "\n")
    save_file(tensors, os.path.join(args.out, "adapter_model.safetensors"), metadata={"format": "pt"})
    print(f"wrote adapter_config.json, adapter_model.safetensors to {args.out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["merge", "export-peft"])
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, help="an existing empty folder")
    args = ap.parse_args()
    (merge if args.command == "merge" else export_peft)(args)


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(json.dumps({"loraxs_error": {"message": str(e)}}), file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"loraxs_error": {"message": f"{type(e).__name__}: {e}"}}), file=sys.stderr)
        sys.exit(1)
