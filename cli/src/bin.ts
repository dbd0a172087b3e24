#!/usr/bin/env node
import { main } from "./program.js";

const code = await main(process.argv);
process.exitCode = code;
// Everything the command opened is closed by now; should a library still hold a handle, leave anyway.
setTimeout(() => process.exit(code), 2000).unref();
