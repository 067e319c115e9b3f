// Validates each HAR file given on the command line with har-validator 5.1.5.
// Prints "ok <file>" or the validation errors, and exits non-zero if any file fails.
const fs = require("fs");
const validator = require("har-validator");

async function main() {
  let failed = false;
  for (const file of process.argv.slice(2)) {
    const har = JSON.parse(fs.readFileSync(file, "utf8"));
    try {
      await validator.har(har);
      console.log(`ok ${file}`);
    } catch (error) {
      failed = true;
      console.log(`invalid ${file}: ${JSON.stringify(error.errors || error.message, null, 2)}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main();
