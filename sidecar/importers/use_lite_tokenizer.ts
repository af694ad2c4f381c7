/**
 * A Hugging Face `tokenizer.json` (Unigram model) that tokenises as the USE-lite package's own JavaScript
 * tokenizer (`@energetic-ai/embeddings`, a copy of tfjs-models' universal-sentence-encoder tokenizer):
 *   - text -> NFKC, then "▁" prepended and every space replaced by "▁" (no lowercasing, no other
 *     whitespace handling): the normalizer Sequence [NFKC, Prepend "▁", Replace " " -> "▁"];
 *   - the whole normalised string is one Viterbi segmentation over the pieces' scores (no pre-tokenizer);
 *   - a character no piece starts with becomes id 0 ("�"), and consecutive unknowns are fused into one
 *     (the Unigram model's unk handling and fuse_unk);
 *   - no special tokens are added.
 * Differences kept in mind: the package never matches its 6 reserved pieces (ids 0-5: "�", "<s>", "</s>",
 * extra_token_id_1..3), so they get a score no segmentation can prefer; vocab.json's null scores (pieces
 * with ':' that its converter garbled) count as 0, as JavaScript's `null + x` does in the package.
 */

/** Ids below this are reserved pieces the package's tokenizer never produces from text (except unknowns as 0). */
export const RESERVED_PIECES = 6;
export const UNK_ID = 0;
/** Far below any sum of real scores over a reserved piece's length (16 characters × at most ~15 each). */
const RESERVED_SCORE = -1000;

export function useLiteTokenizerJson(vocab: Array<[string, number | null]>): Record<string, unknown> {
  const pieces = vocab.map(([piece, score], id) => [piece, id > UNK_ID && id < RESERVED_PIECES ? RESERVED_SCORE : score ?? 0]);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFKC' },
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'Unigram', unk_id: UNK_ID, vocab: pieces, byte_fallback: false },
  };
}
