import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { openApiDocument } from "./openapi.js";

/**
 * Writes docs/openapi.json from the route table and schemas: run after changing either
 * (`npx tsc -p . && node dist/src/api/write-openapi.js`); a test fails until the copy matches.
 */

/** docs/openapi.json, found from this module (dist/src/api/ or src/api/). */
export const OPENAPI_FILE = fileURLToPath(
  new URL(
    /\/dist\/src\/api\/[^/]+$/.test(import.meta.url)
      ? "../../../docs/openapi.json"
      : "../../docs/openapi.json",
    import.meta.url,
  ),
);

export const openApiText = (): string => `${JSON.stringify(openApiDocument(), null, 2)}\n`;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(OPENAPI_FILE, openApiText());
  process.stdout.write(`wrote ${OPENAPI_FILE}\n`);
}
