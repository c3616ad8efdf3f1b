// Type-checked by tests/contract.rs with `tsc -p types`: what a TypeScript project writes against
// web/taskflow.d.ts (the declarations /taskflow.d.ts serves). Every `@ts-expect-error` marks a
// mistake the declarations must catch: if a type loosened (to `any`, or lost a field), the
// directive would be unused and tsc would fail.
import {
  connect,
  retryAfterDelay,
  type Command,
  type CommandError,
  type EventFrame,
  type ServerFrame,
} from "../../../web/taskflow.js";

const client = connect({
  token: "t",
  rooms: ["project:web", "user:alice"],
  onEvent: (event: EventFrame) => {
    const room: string = event.room;
    const offset: number = event.offset;
    const kind: "task.created" | "task.updated" | "task.moved" | "task.deleted" | string = event.event;
    // @ts-expect-error offsets are numbers, not strings
    const wrong: string = event.offset;
    void [room, offset, kind, wrong];
  },
  onFrame: (frame: ServerFrame) => {
    switch (frame.type) {
      case "hello": {
        const interval: number = frame.heartbeat_interval_ms;
        const epoch: string = frame.epoch;
        void [interval, epoch];
        break;
      }
      case "reply":
        if (!frame.ok && frame.error) {
          const code: string = frame.error.code;
          void code;
        }
        break;
      case "presence.joined":
      case "presence.left":
      case "typing": {
        const user: string = frame.user;
        void user;
        break;
      }
      case "subscribed": {
        const recovered: boolean = frame.recovered;
        void recovered;
        break;
      }
      // @ts-expect-error no such frame
      case "tasks.imported":
        break;
      default:
        break;
    }
  },
  onState: (state, info) => {
    const s: "connecting" | "live" | "reconnecting" | "degraded" | "offline" = state;
    const transport = info.transport;
    void [s, transport];
  },
  onRecovery: ({ room, recovered }) => void [room, recovered],
});

// @ts-expect-error a token is required
connect({ rooms: ["tasks"] });
// @ts-expect-error not a transport
connect({ token: "t", rooms: ["tasks"], transports: ["carrier-pigeon"] });

async function commands(): Promise<void> {
  const posted = await client.command({ type: "message", room: "project:web", text: "hi" });
  const offset: number = posted.offset;
  const sent = await client.command({ type: "direct", to: "bob", text: "hi" });
  const sentTo: string = sent.to;
  const sentAt: number = sent.offset;
  const present = await client.command({ type: "presence", room: "project:web" });
  const connections: number | undefined = present.present[0]?.connections;
  const subscribed = await client.command({ type: "subscribe", room: "tasks", since: { epoch: "e", offsets: { "project:web": 3 } } });
  const recovered: boolean = subscribed.recovered;
  // @ts-expect-error a direct message needs a recipient
  await client.command({ type: "direct", text: "hi" });
  // @ts-expect-error chat needs text
  await client.command({ type: "message", room: "project:web" });
  // @ts-expect-error not a command
  await client.command({ type: "shout", room: "project:web" });
  // @ts-expect-error a presence result has no offset
  const nothing: number = present.offset;
  try {
    await client.command({ type: "typing", room: "project:web" });
  } catch (err) {
    const code: string = (err as CommandError).code;
    void code;
  }
  void [offset, connections, recovered, nothing];
}

const raw: Command = { type: "unsubscribe", room: "project:web", id: 7 };
// @ts-expect-error an id is a string or a number
const badId: Command = { type: "ping", id: {} };
const delay: number = retryAfterDelay(3);
void [commands, raw, badId, delay];
client.close();
