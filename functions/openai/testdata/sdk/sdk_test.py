"""The official openai Python SDK against stepwise's OpenAI-compatible surface.

Run by TestOfficialSDKs (functions/openai/sdk_test.go), which starts the
server over a scripted fake model and sets STEPWISE_URL; every check that
fails raises, so the process exits non-zero. Replies are scripted on the
prompts below ("py ...").
"""
import os
import sys

import openai

BASE = os.environ["STEPWISE_URL"]
MODEL = os.environ["STEPWISE_MODEL"]
GHOST = os.environ["STEPWISE_GHOST_MODEL"]
EMBED = os.environ["STEPWISE_EMBED_MODEL"]

client = openai.OpenAI(base_url=BASE + "/v1", api_key="sk-anything", max_retries=0)
demo = openai.OpenAI(base_url=BASE + "/openai/demo/v1", api_key="sk-anything", max_retries=0)
agent = openai.OpenAI(base_url=BASE + "/openai/agent/v1", api_key="sk-anything", max_retries=0)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
checks = []


def check(name):
    def wrap(f):
        checks.append((name, f))
        return f
    return wrap


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


@check("chat, whole")
def _():
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "py capital?"}])
    expect(r.choices[0].message.content == "Paris.", r)
    expect(r.choices[0].finish_reason == "stop" and r.usage.total_tokens > 0, r)


@check("chat, streamed with usage")
def _():
    text, usage, finish = "", None, None
    for c in client.chat.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "py stream"}]):
        if c.usage:
            usage = c.usage
        for ch in c.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    expect(text == "one two\nthree ✓", repr(text))
    expect(finish == "stop" and usage and usage.total_tokens > 0, (finish, usage))


@check("chat, the client's tool both ways")
def _():
    msgs = [{"role": "user", "content": "py weather?"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER])
    call = r.choices[0].message.tool_calls[0]
    expect(r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather", r)
    msgs += [r.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "py 18C"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER])
    expect(r.choices[0].message.content == "It is 18C.", r)


@check("chain, whole, with its execution id")
def _():
    raw = demo.chat.completions.with_raw_response.create(model="demo", messages=[{"role": "user", "content": "py chain"}])
    expect(raw.headers.get("x-stepwise-execution-id"), raw.headers)
    expect(raw.parse().choices[0].message.content == "chained.", raw.parse())


@check("chain, streamed")
def _():
    text = "".join(ch.delta.content or "" for c in demo.chat.completions.create(
        model="demo", stream=True, messages=[{"role": "user", "content": "py chain"}]) for ch in c.choices)
    expect(text == "chained.", repr(text))


@check("chain, the model calls a hook of the chain")
def _():
    r = agent.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "py hook"}])
    expect(r.choices[0].message.content == "hooked.", r)


@check("chain, the model calls the client's tool; the follow-up resumes it")
def _():
    msgs = [{"role": "user", "content": "py trip"}]
    raw = agent.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, tools=[WEATHER])
    r = raw.parse()
    call = r.choices[0].message.tool_calls[0]
    expect(r.choices[0].finish_reason == "tool_calls", r)
    msgs += [r.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "py 20C"}]
    again = agent.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, tools=[WEATHER])
    expect(again.headers.get("x-stepwise-execution-id") == raw.headers.get("x-stepwise-execution-id"), "not resumed")
    expect(again.parse().choices[0].message.content == "Pack for 20C.", again.parse())


@check("embeddings (the SDK asks for base64)")
def _():
    r = client.embeddings.create(model=EMBED, input=["alpha", "beta"])
    expect(len(r.data) == 2 and len(r.data[1].embedding) == 16 and r.usage.prompt_tokens > 0, r)


@check("models")
def _():
    ids = [m.id for m in client.models.list()]
    expect(MODEL in ids and GHOST not in ids, ids)
    expect(client.models.retrieve(MODEL).id == MODEL, "retrieve")


@check("responses: text, stream, function call, previous_response_id")
def _():
    r = client.responses.create(model=MODEL, input="py capital?")
    expect(r.output_text == "Paris." and r.status == "completed", r)
    again = client.responses.retrieve(r.id)
    expect(again.output_text == "Paris.", again)
    seq, types, text = [], [], ""
    for ev in client.responses.create(model=MODEL, input="py stream", stream=True):
        seq.append(ev.sequence_number)
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            text += ev.delta
    expect(seq == list(range(len(seq))), seq)
    expect(types[0] == "response.created" and types[-1] == "response.completed", types)
    expect(text == "one two\nthree ✓", repr(text))
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    call = client.responses.create(model=MODEL, input="py weather?", tools=[tool])
    fc = call.output[0]
    expect(fc.type == "function_call" and fc.name == "get_weather", call)
    answer = client.responses.create(previous_response_id=call.id, tools=[tool],
                                     input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "py 18C"}])
    expect(answer.output_text == "It is 18C.", answer)
    expect(client.responses.delete(r.id) is None or True, "delete")
    try:
        client.responses.retrieve(r.id)
        raise AssertionError("a deleted response was served")
    except openai.NotFoundError:
        pass


@check("errors: unknown model, bad request, backend down, cut mid-stream")
def _():
    try:
        client.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("no error for an unknown model")
    except openai.NotFoundError as e:
        expect(e.code == "model_not_found", e)
    try:
        client.chat.completions.create(model=MODEL, temperature=5, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("no error for temperature 5")
    except openai.BadRequestError as e:
        expect(e.param == "temperature", e)
    try:
        client.chat.completions.create(model=GHOST, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("no error for a backend that is down")
    except openai.InternalServerError as e:
        expect(e.status_code == 503, e)
    text = ""
    try:
        for c in client.chat.completions.create(model=MODEL, stream=True, messages=[{"role": "user", "content": "py cut"}]):
            for ch in c.choices:
                text += ch.delta.content or ""
        raise AssertionError("a cut stream ended like a whole one: %r" % text)
    except openai.APIError:
        expect("four" not in text, text)


failed = 0
for name, f in checks:
    try:
        f()
        print("ok  ", name)
    except Exception as e:  # every failure is reported, then the exit code says it
        failed += 1
        print("FAIL", name, "-", type(e).__name__, e)
print(f"python openai {openai.__version__}: {len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
