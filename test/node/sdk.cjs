// The official OpenAI and Anthropic Node SDKs against a running igw demo
// (the gateway in front of igw sim replicas): what a new user tries first.
// cmd/igw/sdk_test.go runs it with NODE_PATH=bin/node-sdk/node_modules,
// IGW_BASE_URL (http://host:port of the gateway) and IGW_MODEL. Each check
// prints "ok <name>" or "FAIL <name>: <why>"; any failure sets exit code 1.
'use strict';

const OpenAI = require('openai');
const Anthropic = require('@anthropic-ai/sdk');

const base = process.env.IGW_BASE_URL;
const model = process.env.IGW_MODEL;
if (!base || !model) {
  console.error('IGW_BASE_URL and IGW_MODEL must be set');
  process.exit(2);
}

// Retries off: every request is made once, so the test is bounded and an
// error is seen as the gateway sent it.
const openai = new OpenAI({ baseURL: base + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 60000 });
const anthropic = new Anthropic({ baseURL: base, apiKey: 'unused', maxRetries: 0, timeout: 60000 });

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

// expectError runs fn, which must throw the SDK's APIError subclass cls with
// status; check inspects the error further.
async function expectError(fn, cls, status, check) {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof cls, `want ${cls.name}, got ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
    assert(e.status === status, `want status ${status}, got ${e.status}: ${e.message}`);
    if (check) check(e);
    return;
  }
  throw new Error(`no error, want ${cls.name} ${status}`);
}

const chatParams = { model, messages: [{ role: 'user', content: 'What does an inference gateway do?' }], max_tokens: 12 };

const checks = {
  'models.list': async () => {
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert(ids.includes(model), `models ${JSON.stringify(ids)} lack ${model}`);
  },
  'models.retrieve': async () => {
    const m = await openai.models.retrieve(model);
    assert(m.id === model && m.object === 'model', `model ${JSON.stringify(m)}`);
  },
  'chat.completions.create': async () => {
    const c = await openai.chat.completions.create(chatParams);
    assert(c.object === 'chat.completion' && c.choices[0].message.content.length > 0, `completion ${JSON.stringify(c)}`);
    assert(c.usage && c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0, `usage ${JSON.stringify(c.usage)}`);
  },
  'chat.completions.create stream with usage': async () => {
    const stream = await openai.chat.completions.create({ ...chatParams, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      for (const ch of chunk.choices) text += ch.delta.content || '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert(text.length > 0, 'no streamed text');
    assert(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0, `usage ${JSON.stringify(usage)}`);
  },
  'completions.create': async () => {
    const c = await openai.completions.create({ model, prompt: 'An inference gateway', max_tokens: 8 });
    assert(c.object === 'text_completion' && c.choices[0].text.length > 0 && c.usage.completion_tokens > 0, `completion ${JSON.stringify(c)}`);
  },
  'embeddings.create': async () => {
    const e = await openai.embeddings.create({ model, input: ['routing', 'routing'], dimensions: 16 });
    assert(e.data.length === 2 && e.data[0].embedding.length === 16, `embeddings ${JSON.stringify(e).slice(0, 300)}`);
    assert(e.data[0].embedding.every((x, i) => x === e.data[1].embedding[i]), 'equal inputs, different vectors');
    const norm = e.data[0].embedding.reduce((s, x) => s + x * x, 0);
    assert(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    assert(e.usage.prompt_tokens > 0, `usage ${JSON.stringify(e.usage)}`);
  },
  'responses.create': async () => {
    const r = await openai.responses.create({ model, input: 'What does an inference gateway do?', max_output_tokens: 12 });
    assert(r.object === 'response' && r.output_text.length > 0, `response ${JSON.stringify(r)}`);
    assert(r.usage && r.usage.input_tokens > 0 && r.usage.output_tokens > 0, `usage ${JSON.stringify(r.usage)}`);
  },
  'responses.create stream': async () => {
    const stream = await openai.responses.create({ model, input: [{ role: 'user', content: 'hi' }], max_output_tokens: 12, stream: true });
    let text = '';
    let final = null;
    for await (const ev of stream) {
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
    }
    assert(text.length > 0 && final && final.usage.output_tokens > 0, `text ${JSON.stringify(text)}, final ${JSON.stringify(final)}`);
  },
  'unknown model': () =>
    expectError(() => openai.chat.completions.create({ ...chatParams, model: 'no-such-model' }), OpenAI.NotFoundError, 404, (e) => {
      assert(e.code === 'model_not_found', `code ${JSON.stringify(e.code)}`);
      assert(e.type === 'invalid_request_error', `type ${JSON.stringify(e.type)}`);
      assert(e.param === 'model', `param ${JSON.stringify(e.param)}`);
    }),
  'unknown model retrieve': () =>
    expectError(() => openai.models.retrieve('no-such-model'), OpenAI.NotFoundError, 404, (e) => {
      assert(e.code === 'model_not_found', `code ${JSON.stringify(e.code)}`);
    }),
  'malformed JSON': () =>
    expectError(
      () => openai.post('/chat/completions', { body: '{"model":', headers: { 'Content-Type': 'application/json' } }),
      OpenAI.BadRequestError,
      400,
      (e) => assert(e.type === 'invalid_request_error' && e.error.message.length > 0, `error ${JSON.stringify(e.error)}`),
    ),
  'oversized body': () =>
    expectError(
      () => openai.chat.completions.create({ ...chatParams, messages: [{ role: 'user', content: 'x'.repeat(11 << 20) }] }),
      OpenAI.APIError,
      413,
      (e) => assert(e.type === 'invalid_request_error', `type ${JSON.stringify(e.type)}`),
    ),
  'anthropic messages.create': async () => {
    const m = await anthropic.messages.create({ model, max_tokens: 12, system: 'Be brief.', messages: [{ role: 'user', content: 'hi' }] });
    assert(m.type === 'message' && m.content[0].type === 'text' && m.content[0].text.length > 0, `message ${JSON.stringify(m)}`);
    assert(m.usage.input_tokens > 0 && m.usage.output_tokens > 0, `usage ${JSON.stringify(m.usage)}`);
  },
  'anthropic messages.create stream': async () => {
    const stream = await anthropic.messages.create({ model, max_tokens: 12, messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    let input = 0;
    let output = 0;
    let stopped = false;
    for await (const ev of stream) {
      if (ev.type === 'message_start') input = ev.message.usage.input_tokens;
      if (ev.type === 'content_block_delta') text += ev.delta.text;
      if (ev.type === 'message_delta') output = ev.usage.output_tokens;
      if (ev.type === 'message_stop') stopped = true;
    }
    assert(text.length > 0 && input > 0 && output > 0 && stopped, `text ${JSON.stringify(text)} input ${input} output ${output} stopped ${stopped}`);
  },
  'anthropic messages.stream finalMessage': async () => {
    const m = await anthropic.messages.stream({ model, max_tokens: 12, messages: [{ role: 'user', content: 'hi' }] }).finalMessage();
    assert(m.content[0].text.length > 0 && m.usage.output_tokens > 0, `message ${JSON.stringify(m)}`);
  },
  'anthropic unknown model': () =>
    expectError(
      () => anthropic.messages.create({ model: 'no-such-model', max_tokens: 12, messages: [{ role: 'user', content: 'hi' }] }),
      Anthropic.NotFoundError,
      404,
      (e) => assert(e.error && e.error.type === 'error' && e.error.error.type === 'not_found_error', `error ${JSON.stringify(e.error)}`),
    ),
};

(async () => {
  for (const [name, fn] of Object.entries(checks)) {
    try {
      await fn();
      console.log(`ok ${name}`);
    } catch (e) {
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
      process.exitCode = 1;
    }
  }
})();
