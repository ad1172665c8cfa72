// The official OpenAI and Ollama JavaScript clients against a running `qwenmux serve`.
// Environment: QWENMUX_URL (http://127.0.0.1:PORT), QWENMUX_MODEL (served name),
// QWENMUX_API_KEY (the server's key). Started by tests/server/clients_test.cc or by hand:
//   QWENMUX_URL=http://127.0.0.1:11434 QWENMUX_MODEL=tiny QWENMUX_API_KEY=k node --test tests/clients/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';

const url = process.env.QWENMUX_URL ?? 'http://127.0.0.1:11434';
const model = process.env.QWENMUX_MODEL ?? 'tiny';
const apiKey = process.env.QWENMUX_API_KEY ?? 'none';
const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
const ollama = new Ollama({ host: url, headers: { Authorization: `Bearer ${apiKey}` } });
const user = (content) => [{ role: 'user', content }];

test('openai: models.list names the served model', async () => {
  const ids = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  assert.ok(ids.includes(model), `models: ${ids}`);
});

test('openai: chat, thinking on: reasoning_content, route shown', async () => {
  const r = await openai.chat.completions.create({ model, messages: user('Hello'), max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, model);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.reasoning_content.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.qwenmux.model, model);
  assert.equal(r.qwenmux.route, 'explicit');
});

test('openai: chat, thinking off (chat_template_kwargs): content only', async () => {
  const r = await openai.chat.completions.create({
    model, messages: user('Hello'), max_tokens: 8, temperature: 0,
    chat_template_kwargs: { enable_thinking: false },
  });
  const msg = r.choices[0].message;
  assert.ok(msg.content.length > 0);
  assert.equal(msg.reasoning_content, undefined);
});

test('openai: streaming deltas add up to the non-streamed answer; final usage chunk', async () => {
  const req = { model, messages: user('Count'), max_tokens: 12, temperature: 1, top_k: 0, top_p: 1, seed: 7,
                chat_template_kwargs: { enable_thinking: false } };
  const whole = await openai.chat.completions.create(req);
  const stream = await openai.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks > 4, `${chunks} chunks`);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

test('openai: the everyday stream loop (no stream_options): choices[0] in every chunk, role first', async () => {
  const stream = await openai.chat.completions.create({ model, messages: user('Hi'), max_tokens: 6, temperature: 0, stream: true });
  let text = '', role = null, first = true;
  for await (const c of stream) {
    if (first) role = c.choices[0].delta.role;
    first = false;
    text += c.choices[0].delta.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(typeof text, 'string');
});

test('openai: models.retrieve, developer role, logit_bias', async () => {
  const m = await openai.models.retrieve(model);
  assert.equal(m.id, model);
  await assert.rejects(openai.models.retrieve('no-such-model'), (e) => e instanceof OpenAI.NotFoundError);
  const r = await openai.chat.completions.create({
    model, messages: [{ role: 'developer', content: 'Be brief.' }, ...user('Hi')], max_tokens: 4 });
  assert.equal(r.usage.completion_tokens, 4);
  await assert.rejects(openai.chat.completions.create({ model, messages: user('x'), logit_bias: { 9707: 'abc' } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'logit_bias');
});

test('openai: tools round-trip (forced call -> tool result -> answer)', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] } } }];
  const first = await openai.chat.completions.create({
    model, messages: user('Weather in Paris?'), tools, tool_choice: 'required', max_tokens: 200,
    chat_template_kwargs: { enable_thinking: false },
  });
  assert.equal(first.choices[0].finish_reason, 'tool_calls');
  const call = first.choices[0].message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
  const messages = [
    ...user('Weather in Paris?'),
    first.choices[0].message,
    { role: 'tool', tool_call_id: call.id, content: '{"temp_c": 21}' },
  ];
  const second = await openai.chat.completions.create({ model, messages, tools, max_tokens: 6 });
  assert.ok(['stop', 'length', 'tool_calls'].includes(second.choices[0].finish_reason));
  assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
  // Streaming: the call arrives as a tool_calls delta.
  const stream = await openai.chat.completions.create({
    model, messages: user('Weather in Rome?'), tools, tool_choice: { type: 'function', function: { name: 'get_weather' } },
    max_tokens: 200, stream: true, chat_template_kwargs: { enable_thinking: false },
  });
  let name = '', finish = null;
  for await (const c of stream) {
    for (const ch of c.choices) {
      for (const t of ch.delta?.tool_calls ?? []) name += t.function?.name ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(name, 'get_weather');
  assert.equal(finish, 'tool_calls');
});

test('openai: response_format json_schema and logprobs', async () => {
  const r = await openai.chat.completions.create({
    model, messages: user('A number'), max_tokens: 100, chat_template_kwargs: { enable_thinking: false },
    response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'object',
      properties: { n: { type: 'integer' } }, required: ['n'] } } },
  });
  assert.equal(typeof JSON.parse(r.choices[0].message.content).n, 'number');
  const l = await openai.chat.completions.create({ model, messages: user('Hi'), max_tokens: 3, logprobs: true, top_logprobs: 2 });
  const lp = l.choices[0].logprobs.content;
  assert.equal(lp.length, 3);
  assert.equal(lp[0].top_logprobs.length, 2);
  assert.ok(lp[0].logprob <= 0);
});

test('openai: completions (legacy) with and without streaming', async () => {
  const r = await openai.completions.create({ model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.usage.completion_tokens, 5);
  const s = await openai.completions.create({ model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, stream: true });
  let text = '';
  for await (const c of s) text += c.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});

test('openai: embeddings (float, base64, dimensions)', async () => {
  const r = await openai.embeddings.create({ model, input: ['hello world', 'bonjour'], encoding_format: 'float' });
  assert.equal(r.data.length, 2);
  const v = r.data[0].embedding;
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
  const b = await openai.embeddings.create({ model, input: 'hello world' });  // the client asks for base64
  assert.equal(b.data[0].embedding.length, v.length);
  for (let i = 0; i < v.length; i++) assert.ok(Math.abs(b.data[0].embedding[i] - v[i]) < 1e-6);
  const d = await openai.embeddings.create({ model, input: 'hello world', dimensions: 32, encoding_format: 'float' });
  assert.equal(d.data[0].embedding.length, 32);
});

test('rerank (plain HTTP, Jina/Cohere shape)', async () => {
  const res = await fetch(`${url}/v1/rerank`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model, query: 'capital of France', documents: ['Paris is in France', 'Bananas', { text: 'Berlin' }], top_n: 2 }),
  });
  assert.equal(res.status, 200);
  const j = await res.json();
  assert.equal(j.results.length, 2);
  assert.ok(j.results[0].relevance_score >= j.results[1].relevance_score);
  for (const r of j.results) {
    assert.ok(r.index >= 0 && r.index < 3);
    assert.ok(r.relevance_score > 0 && r.relevance_score < 1);
  }
});

test('openai: errors come back as the client\'s typed errors', async () => {
  await assert.rejects(openai.chat.completions.create({ model: 'no-such-model', messages: user('x') }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.message.includes(model));
  await assert.rejects(openai.chat.completions.create({ model, messages: user('x'), temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  await assert.rejects(openai.chat.completions.create({ model, messages: user('word '.repeat(5000)) }),
    (e) => e instanceof OpenAI.BadRequestError && /context/.test(e.message));
  const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});

test('ollama: list, show, ps, version', async () => {
  const tags = await ollama.list();
  assert.ok(tags.models.some((m) => m.name === model));
  const show = await ollama.show({ model });
  assert.equal(show.details.format, 'gguf');
  assert.ok(show.capabilities.includes('completion'));
  const v = await (await fetch(`${url}/api/version`, { headers: { authorization: `Bearer ${apiKey}` } })).json();
  assert.match(v.version, /^\d+\.\d+\.\d+/);
  await ollama.generate({ model, prompt: '', keep_alive: '1m' });  // load
  const loaded = await ollama.chat({ model, messages: [] });  // the same through /api/chat
  assert.equal(loaded.done_reason, 'load');
  const ps = await ollama.ps();
  assert.ok(ps.models.some((m) => m.name === model));
});

test('ollama: chat with and without streaming, think on/off', async () => {
  const r = await ollama.chat({ model, messages: user('Hi'), stream: false, think: false, options: { num_predict: 6, temperature: 0 } });
  assert.equal(r.done, true);
  assert.ok(r.message.content.length > 0);
  assert.equal(r.eval_count, 6);
  const s = await ollama.chat({ model, messages: user('Hi'), stream: true, think: false, options: { num_predict: 6, temperature: 0 } });
  let text = '', last;
  for await (const part of s) { text += part.message.content; last = part; }
  assert.equal(text, r.message.content);
  assert.equal(last.done, true);
  const t = await ollama.chat({ model, messages: user('Hi'), stream: false, think: true, options: { num_predict: 6 } });
  assert.ok(t.message.thinking.length > 0);
});

test('ollama: generate streaming and embed', async () => {
  const s = await ollama.generate({ model, prompt: 'Why is the sky blue?', stream: true, think: false, options: { num_predict: 5 } });
  let n = 0, done = false;
  for await (const part of s) { n++; done = part.done; }
  assert.ok(n >= 2 && done);
  const e = await ollama.embed({ model, input: ['a', 'b', 'c'] });
  assert.equal(e.embeddings.length, 3);
  const legacy = await ollama.embeddings({ model, prompt: 'a' });  // the older /api/embeddings
  assert.equal(legacy.embedding.length, e.embeddings[0].length);
});

test('ollama: errors', async () => {
  await assert.rejects(ollama.chat({ model: 'no-such-model', messages: user('x'), stream: false }),
    (e) => e.status_code === 404 && e.error.includes(model));
  await assert.rejects(ollama.chat({ model, messages: user('x'), stream: false, options: { temperature: 'hot' } }),
    (e) => e.status_code === 400 && e.error.includes('options.temperature'));
});
