"""The BASELINE for `make bench`: an OCI Function written the way Oracle's documentation shows.

A module-level OpenAI client on a legacy `httpx.Client` signed by oci-genai-auth's
`OciResourcePrincipalAuth` (the documented example imports it from `oci_openai`, the older package's
module). Only the base URL, project and model come from GENAI_* variables, so both runners can use
the same local endpoint. Not part of the template.
"""

import io
import json
import os

import httpx
from fdk import response
from oci_genai_auth import OciResourcePrincipalAuth
from openai import OpenAI

client = OpenAI(
    api_key="not-used",
    base_url=os.environ["GENAI_BASE_URL"],
    project=os.environ["GENAI_PROJECT_OCID"],
    http_client=httpx.Client(auth=OciResourcePrincipalAuth()),
)
MODEL = os.environ["GENAI_MODEL"]  # bench.py passes genai_handler.settings.DEFAULT_MODEL


def handler(ctx, data: io.BytesIO | None = None):
    prompt = json.loads(data.getvalue())["prompt"]
    answer = client.responses.create(model=MODEL, input=prompt)
    return response.Response(
        ctx,
        response_data=json.dumps({"output_text": answer.output_text}),
        headers={"Content-Type": "application/json"},
    )
