// The official openai Node SDK against stepwise's OpenAI-compatible surface.
//
// Run by TestOfficialSDKs (functions/openai/sdk_test.go), which starts the
// server over a scripted fake model and sets STEPWISE_URL; the process
// exits non-zero when a check fails. Replies are scripted on the prompts
// below ("py ...", shared with sdk_test.py).
import OpenAI from "openai";

const BASE = process.env.STEPWISE_URL;
const MODEL = process.env.STEPWISE_MODEL;
const GHOST = process.env.STEPWISE_GHOST_MODEL;
const EMBED = process.env.STEPWISE_EMBED_MODEL;
const opts = (path) => ({ baseURL: BASE + path, apiKey: "sk-anything", maxRetries: 0 });
const client = new OpenAI(opts("/v1"));
const demo = new OpenAI(opts("/openai/demo/v1"));
const agent = new OpenAI(opts("/openai/agent/v1"));
const WEATHER = { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } };

const checks = [];
const check = (name, f) => checks.push([name, f]);
const expect = (cond, what) => {
  if (!cond) throw new Error(typeof what === "string" ? what : JSON.stringify(what));
};
const user = (content) => [{ role: "user", content }];

check("chat, whole", async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user("py capital?") });
  expect(r.choices[0].message.content === "Paris." && r.usage.total_tokens > 0, r);
});

check("chat, streamed with usage", async () => {
  let text = "", usage = null, finish = null;
  const stream = await client.chat.completions.create({ model: MODEL, stream: true, stream_options: { include_usage: true }, messages: user("py stream") });
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.delta.content ?? "";
      finish = ch.finish_reason ?? finish;
    }
  }
  expect(text === "one two\nthree ✓", JSON.stringify(text));
  expect(finish === "stop" && usage && usage.total_tokens > 0, { finish, usage });
});

check("chat, the client's tool both ways (streamed calls)", async () => {
  const msgs = user("py weather?");
  const calls = {};
  const stream = await client.chat.completions.create({ model: MODEL, stream: true, messages: msgs, tools: [WEATHER] });
  for await (const c of stream) {
    for (const ch of c.choices) {
      for (const tc of ch.delta.tool_calls ?? []) {
        calls[tc.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } };
        if (tc.id) calls[tc.index].id = tc.id;
        calls[tc.index].function.name += tc.function?.name ?? "";
        calls[tc.index].function.arguments += tc.function?.arguments ?? "";
      }
    }
  }
  const call = calls[0];
  expect(call && call.function.name === "get_weather" && call.function.arguments.includes("Paris"), calls);
  msgs.push({ role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: "py 18C" });
  const r = await client.chat.completions.create({ model: MODEL, messages: msgs, tools: [WEATHER] });
  expect(r.choices[0].message.content === "It is 18C.", r);
});

check("chain, whole, with its execution id", async () => {
  const { data, response } = await demo.chat.completions.create({ model: "demo", messages: user("py chain") }).withResponse();
  expect(response.headers.get("x-stepwise-execution-id"), "no execution id");
  expect(data.choices[0].message.content === "chained.", data);
});

check("chain, the model calls a hook of the chain", async () => {
  const r = await agent.chat.completions.create({ model: MODEL, messages: user("py hook") });
  expect(r.choices[0].message.content === "hooked.", r);
});

check("chain, the model calls the client's tool; the follow-up resumes it", async () => {
  const msgs = user("py trip");
  const first = await agent.chat.completions.create({ model: MODEL, messages: msgs, tools: [WEATHER] }).withResponse();
  const msg = first.data.choices[0].message;
  expect(first.data.choices[0].finish_reason === "tool_calls", first.data);
  msgs.push(msg, { role: "tool", tool_call_id: msg.tool_calls[0].id, content: "py 20C" });
  const again = await agent.chat.completions.create({ model: MODEL, messages: msgs, tools: [WEATHER] }).withResponse();
  expect(again.response.headers.get("x-stepwise-execution-id") === first.response.headers.get("x-stepwise-execution-id"), "not resumed");
  expect(again.data.choices[0].message.content === "Pack for 20C.", again.data);
});

check("embeddings", async () => {
  const r = await client.embeddings.create({ model: EMBED, input: ["alpha", "beta"] });
  expect(r.data.length === 2 && r.data[1].embedding.length === 16, r);
});

check("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  expect(ids.includes(MODEL) && !ids.includes(GHOST), ids);
  expect((await client.models.retrieve(MODEL)).id === MODEL, "retrieve");
});

check("responses: text, stream, function call, previous_response_id", async () => {
  const r = await client.responses.create({ model: MODEL, input: "py capital?" });
  expect(r.output_text === "Paris.", r);
  const seq = [], types = [];
  let text = "";
  for await (const ev of await client.responses.create({ model: MODEL, input: "py stream", stream: true })) {
    seq.push(ev.sequence_number);
    types.push(ev.type);
    if (ev.type === "response.output_text.delta") text += ev.delta;
  }
  expect(seq.every((s, i) => s === i), seq);
  expect(types[0] === "response.created" && types.at(-1) === "response.completed" && text === "one two\nthree ✓", { types, text });
  const tool = { type: "function", name: "get_weather", parameters: WEATHER.function.parameters };
  const call = await client.responses.create({ model: MODEL, input: "py weather?", tools: [tool] });
  const fc = call.output[0];
  expect(fc.type === "function_call" && fc.name === "get_weather", call);
  const answer = await client.responses.create({ previous_response_id: call.id, tools: [tool], input: [{ type: "function_call_output", call_id: fc.call_id, output: "py 18C" }] });
  expect(answer.output_text === "It is 18C.", answer);
});

check("errors: unknown model, bad request, backend down, cut mid-stream", async () => {
  const refused = async (f, cls, test) => {
    try {
      await f();
    } catch (e) {
      expect(e instanceof cls, `${e.constructor.name}: ${e.message}`);
      if (test) expect(test(e), e.message);
      return;
    }
    throw new Error("no error");
  };
  await refused(() => client.chat.completions.create({ model: "nope:1b", messages: user("x") }), OpenAI.NotFoundError, (e) => e.code === "model_not_found");
  await refused(() => client.chat.completions.create({ model: MODEL, temperature: 5, messages: user("x") }), OpenAI.BadRequestError, (e) => e.param === "temperature");
  await refused(() => client.chat.completions.create({ model: GHOST, messages: user("x") }), OpenAI.InternalServerError, (e) => e.status === 503);
  let text = "";
  await refused(async () => {
    for await (const c of await client.chat.completions.create({ model: MODEL, stream: true, messages: user("py cut") })) {
      for (const ch of c.choices) text += ch.delta.content ?? "";
    }
  }, OpenAI.APIError);
  expect(!text.includes("four"), text);
});

let failed = 0;
for (const [name, f] of checks) {
  try {
    await f();
    console.log("ok  ", name);
  } catch (e) {
    failed++;
    console.log("FAIL", name, "-", e.message);
  }
}
console.log(`node openai ${OpenAI.VERSION ?? ""}: ${checks.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
