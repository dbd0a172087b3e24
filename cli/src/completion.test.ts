import { Argument, Command } from "commander";
import { describe, expect, it } from "vitest";
import { completionScript, completionTree } from "./completion.js";

/** A program shaped like taskjet's: global options, a group with subcommands, choices. */
function toy(): Command {
  const program = new Command("tj").option("--no-color", "never colour").version("1.0.0", "-V, --version");
  const runs = program.command("runs").description("runs: list and more");
  runs.command("list").description("list runs").option("-s, --status <s>", "statuses").option("--json", "JSON");
  program.command("completion").addArgument(new Argument("[shell]", "the shell").choices(["bash", "zsh"]));
  return program;
}

describe("completion", () => {
  it("tree - every command with its subcommands, own options, global options and --help", () => {
    const nodes = completionTree(toy());
    expect(nodes.map((n) => n.key)).toEqual(["tj", "tj runs", "tj runs list", "tj completion"]);
    const list = nodes[2];
    expect(list?.options.map((o) => o.names.join(","))).toEqual(["-s,--status", "--json", "--no-color", "-h,--help"]);
    expect(list?.options[0]?.takesValue).toBe(true);
    expect(nodes[0]?.commands.map((c) => c.name)).toEqual(["runs", "completion"]);
    // A positional argument's choices complete like subcommands.
    expect(nodes[3]?.commands.map((c) => c.name)).toEqual(["bash", "zsh"]);
  });

  it("scripts - name the subcommands and options; quotes in descriptions are escaped", () => {
    const nodes = completionTree(toy());
    const bash = completionScript("bash", nodes);
    expect(bash).toContain("'tj runs') echo 'list' ;;");
    expect(bash).toContain("'tj runs list|--status') echo '' ;;");
    expect(bash).toContain("complete -o default -F _tj tj");
    const zsh = completionScript("zsh", nodes);
    expect(zsh.startsWith("#compdef tj\n")).toBe(true);
    // Only a colon in the word would need escaping: the first one separates it from its description.
    expect(zsh).toContain("runs:runs: list and more");
    const fish = completionScript("fish", nodes);
    expect(fish).toContain("complete -c tj -n '__tj_at \\'tj runs list\\'' -s s -l status -r -d 'statuses'");
  });
});
