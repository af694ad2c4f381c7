import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { LoraxsError } from '../sidecar/errors';
import { loadTokenizer } from '../sidecar/io/tokenizer';
import { readModelConfig } from '../sidecar/io/model_config';
import { needsShared, repoRoot, stories260k, tempDir } from './paths';

test('stories260k: "Once upon a time" encodes as the README documents, with BOS from the post-processor', { skip: needsShared(stories260k) }, () => {
  const tok = loadTokenizer(stories260k, readModelConfig(stories260k));
  assert.deepEqual(tok.encode('Once upon a time').ids, [1, 403, 407, 261, 378]);
  assert.deepEqual(tok.encode('Once upon a time', { addSpecialTokens: false }).ids, [403, 407, 261, 378]);
  assert.deepEqual(tok.encode('Once upon a time').typeIds, [0, 0, 0, 0, 0]);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.padId, 2, 'no pad token and no pad_token_id: falls back to EOS');
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.addsBos, true);
  // As the Rust tokenizers decode it: Fuse joins the tokens, then Strip removes one leading space of the whole.
  assert.equal(tok.decode([1, 403, 407, 261, 378]), '<s> Once upon a time');
  assert.equal(tok.decode([1, 403, 407, 261, 378, 2], { skipSpecialTokens: true }), 'Once upon a time');
  assert.equal(tok.decode([]), '');
});

test('stories260k: byte fallback round-trips text outside the vocabulary', { skip: needsShared(stories260k) }, () => {
  const tok = loadTokenizer(stories260k);
  for (const text of ['Naïve café ™ 😀', 'Lily said, "Hello!"\nThe end.', '  two leading spaces']) {
    const ids = tok.encode(text).ids;
    assert.equal(ids[0], 1);
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text);
  }
  // "😀" is 4 UTF-8 bytes: F0 9F 98 80, i.e. byte tokens <0xF0>... = 3 + byte.
  const emoji = tok.encode('😀', { addSpecialTokens: false }).ids;
  assert.deepEqual(emoji.slice(-4), [0xf0 + 3, 0x9f + 3, 0x98 + 3, 0x80 + 3]);
});

/** A BERT-style WordPiece tokenizer.json (lowercasing BertNormalizer, BertPreTokenizer, ## continuation). */
function bertTokenizerJson(postProcessor: 'template' | 'bert'): Record<string, unknown> {
  const vocabList = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello', 'world', 'how', 'are', 'you', 'play', '##ing', '##s', '?', ',', 'the', 'cat'];
  const vocab = Object.fromEntries(vocabList.map((t, i) => [t, i]));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const post = postProcessor === 'bert'
    ? { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] }
    : {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
    };
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '[PAD]'), special(1, '[UNK]'), special(2, '[CLS]'), special(3, '[SEP]'), special(4, '[MASK]')],
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: post,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

for (const kind of ['template', 'bert'] as const) {
  test(`BERT WordPiece (${kind} post-processor): pairs are [CLS] a [SEP] b [SEP] with type ids 0/1`, () => {
    const dir = tempDir('loraxs-tok-');
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(bertTokenizerJson(kind)));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
      tokenizer_class: 'BertTokenizer', do_lower_case: true, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]',
      unk_token: '[UNK]', mask_token: '[MASK]', clean_up_tokenization_spaces: true,
    }));
    const tok = loadTokenizer(dir);
    const single = tok.encode('Hello World');
    assert.deepEqual(single, { ids: [2, 5, 6, 3], typeIds: [0, 0, 0, 0] });
    const pair = tok.encode('How are you?', { pair: 'The cats playing' });
    // [CLS] how are you ? [SEP] the cat ##s play ##ing [SEP]
    assert.deepEqual(pair.ids, [2, 7, 8, 9, 13, 3, 15, 16, 12, 10, 11, 3]);
    assert.deepEqual(pair.typeIds, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert.deepEqual(tok.encode('hello zebra', { addSpecialTokens: false }).ids, [5, 1], 'unknown word -> [UNK]');
    assert.equal(tok.padId, 0);
    assert.equal(tok.bosId, null);
    assert.equal(tok.eosId, null);
    assert.equal(tok.addsBos, false);
    assert.equal(tok.vocabSize, 17);
    assert.equal(tok.decode(pair.ids, { skipSpecialTokens: true }), 'how are you? the cats playing');
  });
}

test('pad id: the tokenizer pad token, else config pad_token_id, else EOS, else 0', () => {
  const dir = tempDir('loraxs-tok-');
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(bertTokenizerJson('template')));
  // No tokenizer_config.json: nothing names a pad token.
  assert.equal(loadTokenizer(dir).padId, 0);
  const config = { padTokenId: 4, eosTokenId: [3, 9], bosTokenId: null } as unknown as Parameters<typeof loadTokenizer>[1];
  assert.equal(loadTokenizer(dir, config).padId, 4);
  assert.equal(loadTokenizer(dir, config).eosId, 3, 'first of a list of EOS ids');
  const noPad = { padTokenId: null, eosTokenId: 3, bosTokenId: null } as unknown as Parameters<typeof loadTokenizer>[1];
  assert.equal(loadTokenizer(dir, noPad).padId, 3);
  // AddedToken objects in tokenizer_config.json are read by their content.
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: { content: '[MASK]', special: true } }));
  assert.equal(loadTokenizer(dir, config).padId, 4);
});

test('missing or broken tokenizer.json is a LoraxsError naming the file', () => {
  const dir = tempDir('loraxs-tok-');
  assert.throws(() => loadTokenizer(dir), (e: unknown) => e instanceof LoraxsError && e.place?.file === path.join(dir, 'tokenizer.json') && /no tokenizer\.json in/.test(e.message));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
  assert.throws(() => loadTokenizer(dir), /tokenizer\.json is not valid JSON/);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {}}');
  assert.throws(() => loadTokenizer(dir), (e: unknown) => e instanceof LoraxsError && /tokenizer\.json could not be loaded/.test(e.message));
});

// ---------------------------------------------------------------------------------------------------------
// Cross-check with the Rust tokenizers library (the reference transformers' fast tokenizers use)

const script = path.join(repoRoot, 'test', 'reference', 'tokenizer_crosscheck.py');
const noPython = spawnSync('python3', ['-c', 'import tokenizers'], { encoding: 'utf8' }).status === 0 ? false
  : 'skipped: python3 with the tokenizers package is not available (pip install tokenizers)';

interface Reference { ids: number[]; type_ids: number[]; ids_plain: number[]; decoded: string; decoded_skip: string }

function reference(tokenizerJson: string, cases: [string, string | null][]): Reference[] {
  const file = path.join(tempDir('loraxs-tok-ref-'), 'cases.json');
  fs.writeFileSync(file, JSON.stringify(cases));
  const r = spawnSync('python3', [script, tokenizerJson, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Reference[];
}

function crossCheck(dir: string, cases: [string, string | null][], checkDecode: boolean): void {
  const tok = loadTokenizer(dir);
  const refs = reference(path.join(dir, 'tokenizer.json'), cases);
  cases.forEach(([text, pair], i) => {
    const opts = pair === null ? {} : { pair };
    const enc = tok.encode(text, opts);
    assert.deepEqual(enc.ids, refs[i].ids, `ids of ${JSON.stringify([text, pair])}`);
    assert.deepEqual(enc.typeIds, refs[i].type_ids, `type ids of ${JSON.stringify([text, pair])}`);
    assert.deepEqual(tok.encode(text, { ...opts, addSpecialTokens: false }).ids, refs[i].ids_plain);
    if (checkDecode) {
      assert.equal(tok.decode(enc.ids), refs[i].decoded);
      assert.equal(tok.decode(enc.ids, { skipSpecialTokens: true }), refs[i].decoded_skip);
    }
  });
}

test('stories260k encodes and decodes as the Rust tokenizers library does', { skip: needsShared(stories260k) || noPython }, () => {
  crossCheck(stories260k, [
    ['Once upon a time', null], ['Naïve café ™ 😀', null], ['  two leading spaces', null], ['trailing space ', null],
    ['Tom and Lily went to the park.\nThey played.', null], ['Q: who? A: Lily', 'She was happy'], ['<s> inline special', null],
  ], true);
});

test('BERT WordPiece encodes pairs as the Rust tokenizers library does', { skip: noPython }, () => {
  const dir = tempDir('loraxs-tok-');
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(bertTokenizerJson('template')));
  crossCheck(dir, [['Hello World', null], ['How are you?', 'The cats playing'], ['HELLO, zebra world', 'cat'], ['', 'hello']], true);
});

test('Llama tokenizers follow add_bos_token / add_eos_token of tokenizer_config.json, as transformers does', { skip: needsShared(stories260k) }, () => {
  const dir = tempDir('loraxs-tok-');
  fs.copyFileSync(path.join(stories260k, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  const base = JSON.parse(fs.readFileSync(path.join(stories260k, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const withFlags = (flags: Record<string, boolean>) => {
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ ...base, ...flags }));
    return loadTokenizer(dir);
  };
  assert.deepEqual(withFlags({ add_bos_token: true, add_eos_token: true }).encode('Once upon a time').ids, [1, 403, 407, 261, 378, 2]);
  const noBos = withFlags({ add_bos_token: false });
  assert.deepEqual(noBos.encode('Once upon a time').ids, [403, 407, 261, 378]);
  assert.equal(noBos.addsBos, false);
  const pair = withFlags({ add_bos_token: true, add_eos_token: true }).encode('Once', { pair: 'time' });
  assert.deepEqual(pair.ids, [1, 403, 2, 1, 378, 2]);
  assert.deepEqual(pair.typeIds, [0, 0, 0, 1, 1, 1]);
});
