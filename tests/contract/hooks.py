"""schemathesis hooks for Taskflow's contract run: the one body format it has no encoder for."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    # The document describes an NDJSON body as the array of its lines.
    if not isinstance(value, list):
        return json.dumps(value).encode()
    return "".join(json.dumps(line) + "\n" for line in value).encode()
