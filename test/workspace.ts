/**
 * A workspace for engine and CLI tests: a copy of one of the tiny transformers checkpoints committed under
 * test/fixtures/tiny (random weights, saved by transformers), a WordLevel tokenizer.json that fits its
 * vocabulary, data files, and a config file. Everything lives in a temporary folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixtures, tempDir } from './paths';

/** 80 words (+ 6 specials) fit the fixtures' vocabulary of 96. */
export const WORDS = ('the a movie film story was is very not good bad great awful fun dull plot acting actors scene ' +
  'scenes music script ending director love hate funny boring slow fast smart silly warm cold dark bright long short ' +
  'best worst it this that and but so too quite really made me feel laugh cry sleep think wait watch again never ' +
  'always nothing everything some more less year old new heart mind eyes time world life people way man woman').split(' ');

const SPECIALS = ['[UNK]', '[PAD]', '[CLS]', '[SEP]', '<s>', '</s>'];

/** tokenizer.json: BERT-like ([CLS] A [SEP] B [SEP]) for encoders, Llama-like (<s> A) for decoders. */
export function writeTokenizer(dir: string, kind: 'encoder' | 'decoder'): void {
  const vocab = Object.fromEntries([...SPECIALS, ...WORDS].map((w, i) => [w, i]));
  const special = (t: string) => ({ id: vocab[t], content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tok = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const post = kind === 'encoder'
    ? { type: 'TemplateProcessing', single: [tok('[CLS]', 0), seq('A', 0), tok('[SEP]', 0)],
        pair: [tok('[CLS]', 0), seq('A', 0), tok('[SEP]', 0), seq('B', 1), tok('[SEP]', 1)],
        special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } } }
    : { type: 'TemplateProcessing', single: [tok('<s>', 0), seq('A', 0)], pair: [tok('<s>', 0), seq('A', 0), seq('B', 1)],
        special_tokens: { '<s>': { id: '<s>', ids: [4], tokens: ['<s>'] } } };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: SPECIALS.map(special), normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'WhitespaceSplit' }, post_processor: post, decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '[UNK]' },
  }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(
    kind === 'encoder' ? { pad_token: '[PAD]', unk_token: '[UNK]' } : { pad_token: '[PAD]', bos_token: '<s>', eos_token: '</s>' }));
}

/** Deterministic pseudo-sentences over WORDS, labelled by whether "good"-ish words outnumber "bad"-ish ones. */
export function sentences(n: number, seed = 1): Array<{ sentence: string; label: number }> {
  let x = seed >>> 0;
  const next = (): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 4294967296;
  };
  const positive = new Set(['good', 'great', 'fun', 'love', 'funny', 'smart', 'warm', 'bright', 'best', 'laugh']);
  const negative = new Set(['bad', 'awful', 'dull', 'hate', 'boring', 'slow', 'silly', 'cold', 'worst', 'sleep']);
  const out: Array<{ sentence: string; label: number }> = [];
  for (let i = 0; i < n; i++) {
    const len = 4 + Math.floor(next() * 9);
    const words = Array.from({ length: len }, () => WORDS[Math.floor(next() * WORDS.length)]);
    const score = words.reduce((s, w) => s + (positive.has(w) ? 1 : negative.has(w) ? -1 : 0), 0);
    out.push({ sentence: words.join(' '), label: score > 0 ? 1 : score < 0 ? 0 : Math.floor(next() * 2) });
  }
  return out;
}

export interface Workspace {
  dir: string;
  model: string;
  /** Writes `<name>.loraxs.yaml` in the workspace and returns its path. */
  config(name: string, yaml: string): string;
  write(name: string, text: string): string;
}

/**
 * A workspace with `model/` (a copy of test/fixtures/tiny/<family>/<variant>, plus a tokenizer) and
 * train.tsv / dev.tsv (sentence, label).
 */
export function makeWorkspace(family: string, variant: 'seq-cls' | 'causal-lm', opts: { train?: number; dev?: number } = {}): Workspace {
  const dir = tempDir(`loraxs-ws-${family}-`);
  const model = path.join(dir, 'model');
  fs.cpSync(path.join(fixtures, 'tiny', family, variant), model, { recursive: true });
  const kind = ['bert', 'roberta'].includes(family) ? 'encoder' : 'decoder';
  writeTokenizer(model, kind);
  const tsv = (rows: Array<{ sentence: string; label: number }>) => 'sentence\tlabel\n' + rows.map((r) => `${r.sentence}\t${r.label}`).join('\n') + '\n';
  fs.writeFileSync(path.join(dir, 'train.tsv'), tsv(sentences(opts.train ?? 48, 1)));
  fs.writeFileSync(path.join(dir, 'dev.tsv'), tsv(sentences(opts.dev ?? 16, 2)));
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  return { dir, model, write, config: (name, yaml) => write(`${name}.loraxs.yaml`, yaml) };
}
