import { Argument, type Command } from "commander";
import { completionScript, completionTree, type Shell, Shells } from "../completion.js";
import { ExitCodes, UsageError } from "../errors.js";
import { jsonLine } from "../output.js";
import type { CliContext } from "./common.js";

/** `taskjet completion bash|zsh|fish`: prints a completion script made from the command tree. */
export function registerCompletion(program: Command, ctx: CliContext): void {
  program
    .command("completion")
    .description("print a shell completion script for taskjet's commands and options")
    .addArgument(new Argument("[shell]", "the shell").choices(Shells))
    .option("--json", "print the command tree the scripts are made from, one command per line")
    .action((shell: Shell | undefined, flags: { json?: boolean }) => {
      const tree = completionTree(program);
      if (flags.json) for (const node of tree) ctx.io.out(jsonLine(node));
      else if (shell) ctx.io.out(completionScript(shell, tree));
      else throw new UsageError(`name the shell: ${Shells.join(", ")}`);
      ctx.exitCode = ExitCodes.ok;
    });
}
