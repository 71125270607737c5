"""OCI Functions entrypoint: the fdk calls `handler(ctx, data)` for every invocation.

Everything lives in the genai_handler package; the client it builds on the first call is kept
for the container's lifetime.
"""

from genai_handler import handle as handler

__all__ = ["handler"]
