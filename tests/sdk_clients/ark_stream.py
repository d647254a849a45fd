"""Ark's own Python SDK (volcenginesdkarkruntime) against the gateway:
images.generate with stream=True, then without. Prints the events the SDK
parsed and the plain answer, as JSON."""
import json
import os

from volcenginesdkarkruntime import Ark
from volcenginesdkarkruntime.types.images.images import SequentialImageGenerationOptions

client = Ark(base_url=os.environ["BASE_URL"] + "/v1", api_key=os.environ["KEY"])
stream = client.images.generate(
    model="seedream-4.5",
    prompt="three boats, one after another",
    size="2K",
    sequential_image_generation="auto",
    sequential_image_generation_options=SequentialImageGenerationOptions(max_images=3),
    response_format="url",
    watermark=False,
    stream=True,
)
events = []
for event in stream:
    events.append(event.model_dump(exclude_none=True))

plain = client.images.generate(model="seedream-4.0", prompt="one boat", size="1K")
print(json.dumps({
    "events": events,
    "plain": {
        "model": plain.model,
        "sizes": [d.size for d in plain.data],
        "usage": plain.usage.model_dump(exclude_none=True),
    },
}))
