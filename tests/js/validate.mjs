// node validate.mjs SCHEMA INSTANCES: checks each [definition, value] pair of INSTANCES (JSON)
// against SCHEMA's $defs with Ajv (JSON Schema 2020-12); prints every failure.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";

const [schemaPath, instancesPath] = process.argv.slice(2);
const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
// not strict: `discriminator` (with `mapping`, as msgspec writes it) is an annotation here, not a keyword Ajv runs
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(schema, "contract");
let failures = 0;
for (const [name, value] of JSON.parse(readFileSync(instancesPath, "utf8"))) {
  const validate = ajv.getSchema(`contract#/$defs/${name}`);
  if (!validate) throw new Error(`no definition ${name}`);
  if (!validate(value)) {
    failures++;
    console.log(`${name}: ${JSON.stringify(value).slice(0, 400)}\n  ${ajv.errorsText(validate.errors, { separator: "\n  " })}`);
  }
}
console.log(`checked ${JSON.parse(readFileSync(instancesPath, "utf8")).length}, failed ${failures}`);
process.exit(failures ? 1 : 0);
