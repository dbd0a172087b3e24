#!/usr/bin/env node
// The installed `taskjet` command. It lives outside `dist/` so that `npm ci` in a fresh clone, which runs before the
// first build, finds it and links `node_modules/.bin/taskjet`; the program itself is built into `dist/`.
import "../dist/bin.js";
