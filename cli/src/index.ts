export type { CliContext } from "./commands/common.js";
export { type Shell, Shells } from "./completion.js";
export {
  type CliEnv,
  type ConnectionConfig,
  type DevInfo,
  findDevInfo,
  loadEnv,
  resolveConnection,
} from "./config.js";
export { type ExitCode, ExitCodes, UsageError } from "./errors.js";
export { EXAMPLES } from "./help.js";
export { createStyle, formatAgo, type Io, processIo, type Style, useColor } from "./output.js";
export { buildProgram, type MainOptions, main } from "./program.js";
