// Validates AsyncAPI documents with the AsyncAPI project's own parser (@asyncapi/parser).
// usage: NODE_PATH=<folder>/node_modules node validate.cjs FILE...
// Prints every diagnostic as one JSON line; exits 1 when any is an error.
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main(files) {
  const parser = new Parser();
  let errors = 0;
  for (const file of files) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"), {
      source: file,
    });
    for (const d of diagnostics) {
      console.log(JSON.stringify({ file, severity: d.severity, code: d.code, message: d.message, path: d.path }));
      if (d.severity === 0) errors += 1;
    }
    if (document === undefined) errors += 1;
  }
  process.exit(errors ? 1 : 0);
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(2);
});
