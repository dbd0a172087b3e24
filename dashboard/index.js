import { fileURLToPath } from "node:url";

/** The directory holding the built dashboard (`index.html` and `assets/`), as the engine serves it at `/dashboard/`. */
export const assetsDir = fileURLToPath(new URL("./dist/", import.meta.url));
