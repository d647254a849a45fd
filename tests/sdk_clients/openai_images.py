"""The OpenAI Python SDK's images.generate, not streamed, pointed at the
gateway as a customer would: base_url ending in /v1 and a kikaku_ key.
Prints what the SDK parsed, as JSON."""
import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["BASE_URL"] + "/v1", api_key=os.environ["KEY"])
answer = client.images.generate(
    model="seedream-4.5",
    prompt="a lighthouse at dusk",
    size="2048x2048",
    response_format="url",
    n=2,
)
print(json.dumps({
    "created": answer.created,
    "urls": [d.url for d in answer.data],
    "usage": answer.usage.model_dump(exclude_none=True) if answer.usage else None,
}))
