export {
  type CliEnv,
  type ConnectionConfig,
  type DevInfo,
  findDevInfo,
  loadEnv,
  resolveConnection,
} from "./config.js";
export { type ExitCode, ExitCodes, UsageError } from "./errors.js";
export { type Io, processIo } from "./output.js";
export { buildProgram, type MainOptions, main } from "./program.js";
