"""Reference encodings from the Rust `tokenizers` library (pip install tokenizers), for test/tokenizer.test.ts.

Usage: tokenizer_crosscheck.py TOKENIZER_JSON CASES_JSON
CASES_JSON is a list of [text, pair-or-null]; prints a JSON list of
{ids, type_ids, ids_plain, decoded, decoded_skip} per case (ids_plain: without special tokens).
"""
import json
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
out = []
for text, pair in json.load(open(sys.argv[2], encoding='utf-8')):
    enc = tok.encode(text, pair, add_special_tokens=True)
    plain = tok.encode(text, pair, add_special_tokens=False)
    out.append({'ids': enc.ids, 'type_ids': enc.type_ids, 'ids_plain': plain.ids,
                'decoded': tok.decode(enc.ids, skip_special_tokens=False),
                'decoded_skip': tok.decode(enc.ids, skip_special_tokens=True)})
print(json.dumps(out))
