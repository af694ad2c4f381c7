"""Writes tiny random checkpoints of each supported family and transformers' outputs on a fixed input.

Usage (from the repository root): python test/reference/make_tiny_models.py [--out test/fixtures/tiny]

For each family the folder test/fixtures/tiny/<family>/ holds
  seq-cls/     a *ForSequenceClassification checkpoint (num_labels 3): config.json + model.safetensors
  causal-lm/   decoders only: the *ForCausalLM checkpoint with the same backbone weights
  reference.json  the fixed inputs and transformers' outputs (eval mode, float32):
    input_ids, attention_mask, token_type_ids (encoders): (B, T) with the second sequence right-padded;
    hidden_states: the backbone's last hidden states (B, T, H) (decoders: after the final norm);
    seq_cls_logits: (B, 3); causal_lm_logits (decoders): (B, T, V).
Outputs at padded positions are written but are not meaningful; compare only where attention_mask is 1.

Parameters are drawn at a larger scale than transformers' initialisation (std 0.02 makes every layer
nearly the identity), so the outputs depend visibly on every weight, norm and bias.
"""
import argparse
import json
import math
import os
import shutil

import safetensors
import torch
import transformers
from transformers import (BertConfig, BertForSequenceClassification, GemmaConfig, GemmaForCausalLM,
                          GemmaForSequenceClassification, LlamaConfig, LlamaForCausalLM,
                          LlamaForSequenceClassification, MistralConfig, MistralForCausalLM,
                          MistralForSequenceClassification, Qwen2Config, Qwen2ForCausalLM,
                          Qwen2ForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

SEED = 1234
VOCAB = 96
HIDDEN = 32
LAYERS = 2
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 64
NUM_LABELS = 3
SEQ_LEN = 8
SECOND_LENGTH = 5  # the second sequence is right-padded from here on

COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_POSITIONS, num_labels=NUM_LABELS)
DECODER = dict(COMMON, num_key_value_heads=KV_HEADS, rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=1,
               eos_token_id=2, attention_dropout=0.1)

# family -> (config class, config kwargs, causal LM class or None, sequence classification class)
FAMILIES = {
    'bert': (BertConfig, dict(COMMON, type_vocab_size=2, pad_token_id=0, hidden_act='gelu', layer_norm_eps=1e-12,
                              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1), None,
             BertForSequenceClassification),
    'roberta': (RobertaConfig, dict(COMMON, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                    hidden_act='gelu', layer_norm_eps=1e-5, max_position_embeddings=MAX_POSITIONS + 2),
                None, RobertaForSequenceClassification),
    'llama': (LlamaConfig, dict(DECODER, hidden_act='silu', tie_word_embeddings=False,
                                rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0}),
              LlamaForCausalLM, LlamaForSequenceClassification),
    # Llama 3.1's frequency remapping; original_max_position_embeddings 16 puts one frequency in each of the
    # three bands (kept, interpolated, slowed by `factor`) at head_dim 8.
    'llama3': (LlamaConfig, dict(DECODER, hidden_act='silu', tie_word_embeddings=True,
                                 rope_parameters={'rope_type': 'llama3', 'rope_theta': 10000.0, 'factor': 8.0,
                                                  'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                                                  'original_max_position_embeddings': 16}),
               LlamaForCausalLM, LlamaForSequenceClassification),
    # A sliding window shorter than the input, so the window matters.
    'mistral': (MistralConfig, dict(DECODER, hidden_act='silu', sliding_window=4, tie_word_embeddings=False,
                                    rope_parameters={'rope_type': 'default', 'rope_theta': 1000000.0}),
                MistralForCausalLM, MistralForSequenceClassification),
    # Qwen2 has q/k/v biases; tied embeddings like the small Qwen2 models.
    'qwen2': (Qwen2Config, dict(DECODER, hidden_act='silu', tie_word_embeddings=True,
                                rope_parameters={'rope_type': 'default', 'rope_theta': 1000000.0}),
              Qwen2ForCausalLM, Qwen2ForSequenceClassification),
    # head_dim 16 != hidden / heads (8); (1 + w) norms, embeddings scaled by sqrt(hidden), GELU-tanh.
    'gemma': (GemmaConfig, dict(DECODER, head_dim=16, hidden_act='gelu_pytorch_tanh', tie_word_embeddings=True,
                                rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0}),
              GemmaForCausalLM, GemmaForSequenceClassification),
}


def randomise(model, generator, unit_offset_norms=False, only=None):
    """Draws every parameter (or those whose name starts with one of `only`) at a scale where it matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if only and not any(name.startswith(o) for o in only):
                continue
            noise = torch.randn(p.shape, generator=generator)
            is_norm = 'norm' in name.lower()
            if is_norm and name.endswith('weight'):
                p.copy_((0.0 if unit_offset_norms else 1.0) + 0.2 * noise)
            elif name.endswith('bias'):
                p.copy_(0.1 * noise)
            elif 'embed' in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.15 * noise)


def fixed_inputs(family, pad_id, generator):
    low = 3
    ids = torch.randint(low, VOCAB, (2, SEQ_LEN), generator=generator)
    mask = torch.ones(2, SEQ_LEN, dtype=torch.long)
    ids[1, SECOND_LENGTH:] = pad_id
    mask[1, SECOND_LENGTH:] = 0
    inputs = {'input_ids': ids, 'attention_mask': mask}
    if family == 'bert':
        inputs['token_type_ids'] = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0, 0]])
    return inputs


def save(model, folder):
    if os.path.exists(folder):
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    # generation_config.json is irrelevant here; keep the fixture to config + weights.
    for extra in os.listdir(folder):
        if extra not in ('config.json', 'model.safetensors'):
            os.remove(os.path.join(folder, extra))


def rounded(t):
    return [[[round(float(v), 7) for v in row] for row in seq] for seq in t.tolist()] if t.dim() == 3 \
        else [[round(float(v), 7) for v in row] for row in t.tolist()]


def build(family, out_root):
    config_class, kwargs, lm_class, seq_class = FAMILIES[family]
    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    config = config_class(**kwargs, dtype='float32', attn_implementation='eager')
    folder = os.path.join(out_root, family)
    os.makedirs(folder, exist_ok=True)
    inputs = fixed_inputs(family, config.pad_token_id, generator)
    reference = {
        'family': family, 'model_type': config.model_type, 'seed': SEED,
        'versions': {'transformers': transformers.__version__, 'torch': torch.__version__,
                     'safetensors': safetensors.__version__},
        'input_ids': inputs['input_ids'].tolist(), 'attention_mask': inputs['attention_mask'].tolist(),
    }
    if 'token_type_ids' in inputs:
        reference['token_type_ids'] = inputs['token_type_ids'].tolist()
    gemma = family == 'gemma'
    with torch.no_grad():
        if lm_class is None:
            seq = seq_class(config).eval()
            randomise(seq, generator)
            backbone = getattr(seq, seq.base_model_prefix)
            hidden = backbone(**inputs).last_hidden_state
        else:
            lm = lm_class(config).eval()
            randomise(lm, generator, unit_offset_norms=gemma)
            if config.tie_word_embeddings:
                lm.tie_weights()
                assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()
            hidden = lm.model(**inputs).last_hidden_state
            reference['causal_lm_logits'] = rounded(lm(**inputs).logits)
            save(lm, os.path.join(folder, 'causal-lm'))
            seq = seq_class(config).eval()
            seq.model.load_state_dict(lm.model.state_dict())
            randomise(seq, generator, only=['score'])
        reference['hidden_states'] = rounded(hidden)
        reference['seq_cls_logits'] = rounded(seq(**inputs).logits)
    save(seq, os.path.join(folder, 'seq-cls'))
    with open(os.path.join(folder, 'reference.json'), 'w') as f:
        json.dump(reference, f, separators=(',', ':'))
        f.write('\n')
    print(f'{family}: hidden {tuple(hidden.shape)}, written to {folder}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.path.join('test', 'fixtures', 'tiny'))
    parser.add_argument('families', nargs='*', default=list(FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for family in args.families:
        build(family, args.out)


if __name__ == '__main__':
    main()
