// The official OpenAI and Ollama JavaScript clients against a front `qwenmux serve` that routes
// to an upstream qwenmux (issue 18): QWENMUX_BACKEND_MODELS names the front's backend models and
// their backends' dialects, comma-separated (e.g. "up/tiny=openai,upo/tiny=ollama"). Started by
// tests/server/upstream_clients_test.cc; skipped when QWENMUX_BACKEND_MODELS is not set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';

const url = process.env.QWENMUX_URL ?? 'http://127.0.0.1:11434';
const dialects = new Map((process.env.QWENMUX_BACKEND_MODELS ?? '').split(',').filter((m) => m.length > 0)
  .map((m) => m.split('=')));
const models = [...dialects.keys()];
const skip = models.length === 0 ? 'QWENMUX_BACKEND_MODELS is not set' : false;
const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
const ollama = new Ollama({ host: url });
const user = (content) => [{ role: 'user', content }];
const tools = [{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };

test('backends: both clients list the backend models', { skip }, async () => {
  const ids = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  const names = (await ollama.list()).models.map((m) => m.name);
  for (const model of models) {
    assert.ok(ids.includes(model), `openai models: ${ids}`);
    assert.ok(names.includes(model), `ollama models: ${names}`);
  }
});

for (const model of models) {
  test(`backends: openai chat through ${model}, plain and streamed`, { skip }, async () => {
    const req = { model, messages: user('Hello'), max_tokens: 8, temperature: 0 };
    const r = await openai.chat.completions.create(req);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, model);
    const m = r.choices[0].message;
    assert.ok((m.content ?? '').length + (m.reasoning_content ?? '').length > 0);
    assert.equal(r.usage.completion_tokens, 8);
    const stream = await openai.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    let text = '', finish = null, usage = null;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        text += (ch.delta?.content ?? '') + (ch.delta?.reasoning_content ?? '');
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert.equal(text, (m.reasoning_content ?? '') + (m.content ?? ''));
    assert.equal(finish, r.choices[0].finish_reason);
    assert.equal(usage?.completion_tokens, 8);
  });

  test(`backends: openai tools and response_format through ${model}`, { skip }, async () => {
    // An Ollama-dialect backend cannot be made to call a tool: tool_choice "required" is a clear 400.
    const force = dialects.get(model) === 'openai';
    const req = { model, messages: user('Weather in Paris?'), tools, tool_choice: 'required', max_tokens: 64,
                  temperature: 0, chat_template_kwargs: { enable_thinking: false } };
    if (force) {
      const t = await openai.chat.completions.create(req);
      const call = t.choices[0].message.tool_calls?.[0];
      assert.ok(call, JSON.stringify(t.choices[0]));
      assert.equal(call.function.name, 'get_weather');
      assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
    } else {
      await assert.rejects(openai.chat.completions.create(req), (e) => e.status === 400 && /tool_choice/.test(e.message));
      const t = await openai.chat.completions.create({ ...req, tool_choice: 'auto' });
      for (const c of t.choices[0].message.tool_calls ?? []) assert.equal(c.function.name, 'get_weather');
    }
    const j = await openai.chat.completions.create({
      model, messages: user('Is it fine?'), max_tokens: 32, temperature: 0,
      chat_template_kwargs: { enable_thinking: false },
      response_format: { type: 'json_schema', json_schema: { name: 'r', schema } } });
    assert.equal(typeof JSON.parse(j.choices[0].message.content).ok, 'boolean');
  });

  test(`backends: openai embeddings through ${model}`, { skip }, async () => {
    const e = await openai.embeddings.create({ model, input: ['hello', 'world'] });
    assert.equal(e.data.length, 2);
    assert.ok(e.data[0].embedding.length > 0);
    assert.notDeepEqual(e.data[0].embedding, e.data[1].embedding);
  });

  test(`backends: ollama chat through ${model}, plain and streamed`, { skip }, async () => {
    const req = { model, messages: user('Hello'), options: { temperature: 0, num_predict: 8 } };
    const r = await ollama.chat(req);
    assert.equal(r.done, true);
    assert.equal(r.model, model);
    assert.equal(r.eval_count, 8);
    let text = '', last = null;
    for await (const part of await ollama.chat({ ...req, stream: true })) {
      text += (part.message.thinking ?? '') + part.message.content;
      last = part;
    }
    assert.equal(text, (r.message.thinking ?? '') + r.message.content);
    assert.equal(last.done, true);
    assert.equal(last.eval_count, 8);
  });

  test(`backends: ollama tools, format and embed through ${model}`, { skip }, async () => {
    const t = await ollama.chat({ model, messages: user('Weather in Paris?'), tools, think: false,
      options: { temperature: 0, num_predict: 64 } });
    if (t.message.tool_calls?.length) assert.equal(t.message.tool_calls[0].function.name, 'get_weather');
    const f = await ollama.chat({ model, messages: user('Is it fine?'), format: schema, think: false,
      options: { temperature: 0, num_predict: 32 } });
    assert.equal(typeof JSON.parse(f.message.content).ok, 'boolean');
    const e = await ollama.embed({ model, input: ['hello', 'world'] });
    assert.equal(e.embeddings.length, 2);
    assert.ok(e.embeddings[0].length > 0);
  });
}
