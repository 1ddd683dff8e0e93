// node asyncapi.mjs DOCUMENT: validates an AsyncAPI document with the official parser
// (@asyncapi/parser: the spec's JSON Schema plus its semantic rules); prints every diagnostic and
// exits 1 on any error or warning.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const text = readFileSync(process.argv[2], "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const severity = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(`${severity[d.severity]} ${d.code} at ${d.path.join("/")}: ${d.message}`);
}
const bad = diagnostics.filter((d) => d.severity <= 1);
if (document) {
  console.log(`parsed: ${document.channels().length} channels, ${document.operations().length} operations, ` +
              `${document.messages().length} messages`);
}
process.exit(!document || bad.length ? 1 : 0);
