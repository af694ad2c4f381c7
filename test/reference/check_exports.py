"""Checks LoRA-XS Studio's exported and merged folders with the reference implementations.

    python check_exports.py BASE_MODEL MERGED_MODEL PEFT_ADAPTER [OFFICIAL_ADAPTER] [--task causal-lm|seq-cls]

1. transformers' Auto class loads the merged folder (config.json, safetensors, tokenizer).
2. PEFT loads the `peft-lora` export onto the base model as it is (PeftModel.from_pretrained), and its
   logits equal the merged model's (the export and the merge describe the same ΔW).
3. The authors' layout (`loraxs-official`): W + lora_B · R · lora_A · (alpha / r) rebuilt by hand equals
   the merged weights.
Prints one JSON object with the max abs differences; exits 1 when a check fails (tolerance 1e-4 on
logits, 1e-5 relative on weights).
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from peft import PeftModel

args = [a for a in sys.argv[1:] if not a.startswith("--")]
task = "causal-lm"
if "--task" in sys.argv:
    task = sys.argv[sys.argv.index("--task") + 1]
    args = [a for a in args if a != task]
base_dir, merged_dir, peft_dir = args[:3]
official_dir = args[3] if len(args) > 3 else None
Auto = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification

torch.manual_seed(0)
# Fixed token ids (no padding): what is checked here is the weights, not the tokenizer.
AutoTokenizer.from_pretrained(merged_dir)  # the merged folder carries a loadable tokenizer
ids = torch.tensor([[4, 10, 11, 12, 13, 14, 15, 16], [4, 20, 21, 22, 23, 24, 25, 26]])
batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
merged = Auto.from_pretrained(merged_dir).eval()
base = Auto.from_pretrained(base_dir, **({} if task == "causal-lm" else {"num_labels": merged.config.num_labels})).eval()
peft_model = PeftModel.from_pretrained(base, peft_dir).eval()
with torch.no_grad():
    a = merged(**batch).logits
    b = peft_model(**batch).logits
mask = batch["attention_mask"].bool()
if task == "causal-lm":
    diff = (a - b)[mask].abs().max().item()
else:
    diff = (a - b).abs().max().item()
out = {"merged_vs_peft_logits_max_abs": diff, "transformers": __import__("transformers").__version__, "peft": __import__("peft").__version__}
ok = diff < 1e-4

if official_dir:
    cfg = json.load(open(f"{official_dir}/adapter_config.json"))
    tensors = load_file(f"{official_dir}/adapter_model.safetensors")
    base_sd = {k: v for k, v in Auto.from_pretrained(base_dir).state_dict().items()}
    merged_sd = merged.state_dict()
    worst = 0.0
    for key in tensors:
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        A = tensors[key]
        B = tensors[f"base_model.model.{module}.lora_B.weight"]
        R = tensors[f"base_model.model.{module}_lora_latent_mapping.weight"]
        r = A.shape[0]
        delta = (cfg["lora_alpha"] / r) * B @ R @ A
        rebuilt = base_sd[f"{module}.weight"] + delta
        rel = (rebuilt - merged_sd[f"{module}.weight"]).norm() / delta.norm()
        worst = max(worst, rel.item())
    out["official_vs_merged_weight_rel"] = worst
    ok = ok and worst < 1e-5

print(json.dumps(out))
sys.exit(0 if ok else 1)
