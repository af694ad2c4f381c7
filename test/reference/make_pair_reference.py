"""Sentence-pair encodings from Hugging Face `tokenizers` for the tiny BERT and RoBERTa fixtures
(test/pair_mode.test.ts compares `cross` pair mode's ids and token types with them).

    python3 -m venv /tmp/tokenv && /tmp/tokenv/bin/pip install tokenizers==0.23.3
    /tmp/tokenv/bin/python test/reference/make_pair_reference.py

Writes test/fixtures/tiny/{bert,roberta}/pair_tokenizer/ (tokenizer.json, tokenizer_config.json) and
test/fixtures/tiny/{bert,roberta}/pairs_reference.json. The tokenizers are built with the post-processors
transformers' converters give these families (transformers/convert_slow_tokenizer.py):
  BERT (BertConverter):       TemplateProcessing "[CLS]:0 $A:0 [SEP]:0" / "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"
  RoBERTa (RobertaConverter): RobertaProcessing <s> A </s> </s> B </s>, token types all 0
over a word-level vocabulary that fits the fixtures' 96 ids (BERT: the BERT normalizer and pre-tokenizer,
WordPiece). Pairs are encoded as transformers' tokenizer(a, b, truncation=True, max_length=N) does:
special tokens added, truncation `longest_first`.
"""
import json
import os

import tokenizers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'tiny')
WORDS = ('the a movie film story was is very not good bad great awful fun dull plot acting actors scene '
         'scenes music script ending director love hate funny boring slow fast smart silly warm cold dark bright long short '
         'best worst it this that and but so too quite really made me feel laugh cry sleep think wait watch again never '
         'always nothing everything some more less year old new heart mind eyes time world life people way man woman').split(' ')

CASES = [
    ('the movie was good', 'a film is great'),
    ('not bad', 'never boring , always fun !'),
    ('The Plot was REALLY slow', 'but the music made me cry'),
    ('good', 'bad'),
    # long enough to be truncated at the max_lengths below (longest_first cuts the longer side first)
    ('the story was very long and the acting was quite dull but the ending made me laugh again', 'some scenes were fun'),
    ('it', 'this film never made me feel anything and the script was the worst this year'),
    ('love this movie so much', 'hate this movie so much'),
    ('the director made a new film about the world and people and life and time', 'a man and a woman watch it again and again and again'),
]
MAX_LENGTHS = [64, 12, 9]


def bert():
    specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    vocab = {t: i for i, t in enumerate(specials + WORDS + ['!', ',', '##s', '##ly'])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token='[UNK]', max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single='[CLS]:0 $A:0 [SEP]:0', pair='[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1',
        special_tokens=[('[CLS]', vocab['[CLS]']), ('[SEP]', vocab['[SEP]'])])
    tok.add_special_tokens(specials)
    config = {'tokenizer_class': 'BertTokenizer', 'pad_token': '[PAD]', 'unk_token': '[UNK]', 'cls_token': '[CLS]', 'sep_token': '[SEP]', 'mask_token': '[MASK]', 'do_lower_case': True}
    return tok, config


def roberta():
    specials = ['<s>', '<pad>', '</s>', '<unk>']
    vocab = {t: i for i, t in enumerate(specials + WORDS + ['!', ','])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.RobertaProcessing(('</s>', vocab['</s>']), ('<s>', vocab['<s>']), trim_offsets=True, add_prefix_space=False)
    tok.add_special_tokens(specials)
    config = {'tokenizer_class': 'RobertaTokenizer', 'bos_token': '<s>', 'eos_token': '</s>', 'pad_token': '<pad>', 'unk_token': '<unk>', 'cls_token': '<s>', 'sep_token': '</s>'}
    return tok, config


for family, make in [('bert', bert), ('roberta', roberta)]:
    tok, config = make()
    out_dir = os.path.join(ROOT, family, 'pair_tokenizer')
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, 'tokenizer.json'))
    with open(os.path.join(out_dir, 'tokenizer_config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    cases = []
    for max_length in MAX_LENGTHS:
        tok.enable_truncation(max_length=max_length, strategy='longest_first')
        for a, b in CASES:
            enc = tok.encode(a, b, add_special_tokens=True)
            single = tok.encode(a, add_special_tokens=True)
            cases.append({'a': a, 'b': b, 'max_length': max_length, 'ids': enc.ids, 'type_ids': enc.type_ids,
                          'single_ids': single.ids, 'single_type_ids': single.type_ids})
    with open(os.path.join(ROOT, family, 'pairs_reference.json'), 'w') as f:
        json.dump({'family': family, 'versions': {'tokenizers': tokenizers.__version__}, 'cases': cases}, f, indent=1)
    print(family, len(cases), 'cases')
