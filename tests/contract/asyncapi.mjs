// Validates an AsyncAPI document with @asyncapi/parser (the AsyncAPI Initiative's own parser,
// which runs the specification's JSON Schema and its Spectral rules), for tests/contract.rs:
//
//   node asyncapi.mjs FILE
//
// Prints every diagnostic, then one JSON line with what the document holds; exits 1 if the
// parser produced no document or reported any error or warning.
import { Parser } from "@asyncapi/parser";
import { readFileSync } from "node:fs";

const SEVERITY = ["error", "warning", "info", "hint"];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
for (const d of diagnostics) {
  console.error(`${SEVERITY[d.severity]} ${d.code} at ${d.path.join(".")}: ${d.message}`);
}
const serious = diagnostics.filter((d) => d.severity <= 1);
if (!document || serious.length > 0) process.exit(1);
console.log(
  JSON.stringify({
    version: document.version(),
    channels: document.channels().all().map((c) => c.address()),
    operations: document.operations().all().map((o) => o.id()),
    messages: document.messages().all().length,
  }),
);
