"""Drives `infer-node wallet serve` with the official openai package, as any OpenAI
client would (arguments: the base URL and the server's API key); prints one JSON object
with what it saw (the Rust test checks it)."""

import json
import sys
import time

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key=sys.argv[2])
seen = {}

try:
    openai.OpenAI(base_url=base_url, api_key="fai-sk-wrong").models.list()
    seen["wrong_key"] = "accepted"
except openai.AuthenticationError as e:
    seen["wrong_key"] = e.body.get("code") if isinstance(e.body, dict) else str(e.body)

seen["models"] = [m.id for m in client.models.list().data]
model = seen["models"][0]

answer = client.chat.completions.create(
    model=model,
    messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ],
    max_tokens=12,
    temperature=0,
    seed=3,
)
seen["completion"] = {
    "content": answer.choices[0].message.content,
    "finish_reason": answer.choices[0].finish_reason,
    "completion_tokens": answer.usage.completion_tokens,
}

pieces = []
arrivals = []
finish = None
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=12,
    temperature=0,
    seed=3,
    stream=True,
)
for chunk in stream:
    choice = chunk.choices[0]
    if choice.delta.content:
        pieces.append(choice.delta.content)
        arrivals.append(time.monotonic())
    if choice.finish_reason:
        finish = choice.finish_reason
seen["stream"] = {"pieces": pieces, "finish_reason": finish}

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    seen["unknown_model"] = "accepted"
except openai.NotFoundError as e:
    seen["unknown_model"] = e.body.get("code") if isinstance(e.body, dict) else str(e.body)

try:
    client.chat.completions.create(model=model, messages=[{"role": "assistant", "content": "x"}])
    seen["bad_messages"] = "accepted"
except openai.BadRequestError as e:
    seen["bad_messages"] = e.body.get("message") if isinstance(e.body, dict) else str(e.body)

print(json.dumps(seen))
