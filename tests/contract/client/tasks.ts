// The worked example of docs/api.md: a client generated from /openapi.json.
//
//   node node_modules/openapi-typescript/bin/cli.js openapi.json -o client/generated/taskflow.d.ts
//   node node_modules/typescript/bin/tsc -p client
//   node client/out/tasks.js http://127.0.0.1:3000 "$TASKFLOW_ADMIN_TOKEN"
//
// openapi-typescript turns the document into types; openapi-fetch is a small typed `fetch` over
// them, so paths, parameters, bodies and answers (errors included) are all checked by `tsc`.
// tests/contract.rs runs exactly these three commands against a live server.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/taskflow";

declare const process: { argv: string[]; exitCode?: number };

type Task = components["schemas"]["Task"];

const [baseUrl, token] = process.argv.slice(2);
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${token}` },
});

async function main(): Promise<Record<string, unknown>> {
  const created = await client.POST("/tasks", {
    body: { title: "Write the client docs", priority: 5 },
  });
  if (!created.data) throw new Error(`create failed: ${JSON.stringify(created.error)}`);
  const task: Task = created.data;
  const etag = created.response.headers.get("etag") ?? "";

  const changed = await client.PATCH("/tasks/{id}", {
    params: { path: { id: task.id }, header: { "If-Match": etag } },
    body: { status: "done" },
  });
  if (!changed.data) throw new Error(`update failed: ${JSON.stringify(changed.error)}`);

  const page = await client.GET("/tasks", { params: { query: { limit: 10 } } });
  const listed = page.data?.items.some((t) => t.id === task.id) ?? false;

  // Errors are typed too: the body of a 400 is the ErrorBody schema.
  const refused = await client.POST("/tasks", { body: { title: "" } });
  const code: string | undefined = refused.error?.error.code;

  // @ts-expect-error: a priority is a number, so this does not compile.
  await client.POST("/tasks", { body: { title: "typed", priority: "high" } });

  return {
    id: task.id,
    version: changed.data.version,
    status: changed.data.status,
    listed,
    refused_status: refused.response.status,
    refused_code: code,
  };
}

main().then(
  (result) => console.log(JSON.stringify(result)),
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
