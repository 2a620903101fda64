// Validate an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser).
//
//   node tests/asyncapi/validate.mjs schemas/asyncapi.yaml
//
// Prints every diagnostic as one JSON line ({severity, code, message, path}; severity 0 is
// an error, 1 a warning, 2 information, 3 a hint) and exits 1 when there is an error or the
// parser returned no document, 0 otherwise. tests/unit/test_asyncapi.py runs it.
import { Parser, fromFile, DiagnosticSeverity } from "@asyncapi/parser";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs <asyncapi.yaml>");
  process.exit(2);
}
const { document, diagnostics } = await fromFile(new Parser(), file).parse();
for (const d of diagnostics) {
  console.log(
    JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }),
  );
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
process.exit(document === undefined || errors.length > 0 ? 1 : 0);
