"""A WebSocket client not written in Rust: subscribes to project:default with Python's
`websockets`, prints "extensions X" (the negotiated Sec-WebSocket-Extensions, "none" without),
then "subscribed", then prints the first task event as one JSON line, then
closes normally and prints "closed CODE" with the code of the server's answering close frame
(websockets reports 1006 when no close frame came back).

Usage: python_client.py URL TOKEN [CA_FILE]; with CA_FILE, a wss:// URL is verified against that
certificate authority only (hostname or IP address included)."""
import asyncio
import json
import ssl
import sys

import websockets


async def main(url: str, token: str, ca_file: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    options = {}
    if ca_file is not None:
        options["ssl"] = ssl.create_default_context(cafile=ca_file)
    try:
        connection = websockets.connect(url, additional_headers=headers, **options)
    except TypeError:  # websockets < 14 names it extra_headers
        connection = websockets.connect(url, extra_headers=headers, **options)
    async with connection as ws:
        # websockets offers permessage-deflate by default (and then compresses what it sends).
        response = getattr(ws, "response", None)
        headers = response.headers if response is not None else ws.response_headers
        print(f"extensions {headers.get('Sec-WebSocket-Extensions') or 'none'}", flush=True)
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        await ws.send(json.dumps({"type": "subscribe", "room": "project:default", "id": 1}))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "reply" and frame.get("id") == 1:
                assert frame["ok"], frame
                print("subscribed", flush=True)
            elif frame.get("type") == "event":
                print(json.dumps(frame), flush=True)
                break
        await ws.close()
        print(f"closed {ws.close_code}", flush=True)


ca = sys.argv[3] if len(sys.argv) > 3 else None
asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2], ca), timeout=30))
