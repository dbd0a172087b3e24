import type { Command, Option } from "commander";

/**
 * Shell completion scripts generated from the commander tree. The scripts are static: the tree is written into them,
 * so a Tab press runs no Node process (libraries that call back into the CLI start Node, the SDK and the engine
 * code on every press). Regenerate after upgrading taskjet.
 */

export const Shells = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof Shells)[number];

/** One command of the tree, as completion needs it. */
export interface CompletionNode {
  /** The words that reach it, the program's name first: `taskjet runs list`. */
  key: string;
  description: string;
  /** Subcommands, and the values of a positional argument that has choices (`completion bash`). */
  commands: { name: string; description: string }[];
  options: CompletionOption[];
}

export interface CompletionOption {
  /** `-s` and `--status`, as given. */
  names: string[];
  description: string;
  takesValue: boolean;
  /** The values an option accepts, when commander knows them. */
  choices?: readonly string[];
}

/** Every command of `program`, depth first. Program options other than --version are accepted anywhere. */
export function completionTree(program: Command): CompletionNode[] {
  const help: CompletionOption = { names: ["-h", "--help"], description: "display help", takesValue: false };
  const global = program.options.filter((o) => o.long !== "--version").map(optionOf);
  const nodes: CompletionNode[] = [];
  const visit = (cmd: Command, key: string, isRoot: boolean): void => {
    const own = cmd.options.map(optionOf);
    nodes.push({
      key,
      description: cmd.description(),
      commands: [
        ...cmd.commands.flatMap((c) =>
          [c.name(), ...c.aliases()].map((name) => ({ name, description: c.description() })),
        ),
        ...cmd.registeredArguments.flatMap((a) =>
          (a.argChoices ?? []).map((name) => ({ name, description: a.description || a.name() })),
        ),
      ],
      options: [...own, ...(isRoot ? [] : global), help],
    });
    for (const c of cmd.commands) visit(c, `${key} ${c.name()}`, false);
  };
  visit(program, program.name(), true);
  return nodes;
}

/** Values completed for options that parse their own (see `completeValues`). */
const offered = new WeakMap<Option, readonly string[]>();

/**
 * Has completion offer `values` for `flag` of `cmd`, an option commander cannot be given `.choices()` for because it
 * parses its value itself (`--status QUEUED,RUNNING`, a comma-separated list of them). Returns `cmd`.
 */
export function completeValues(cmd: Command, flag: string, values: readonly string[]): Command {
  const option = cmd.options.find((o) => o.long === flag || o.short === flag);
  if (!option) throw new Error(`${cmd.name()} has no option ${flag}`);
  offered.set(option, values);
  return cmd;
}

function optionOf(o: Option): CompletionOption {
  const choices = o.argChoices ?? offered.get(o);
  return {
    names: [o.short, o.long].filter((n): n is string => n !== undefined),
    description: o.description,
    takesValue: o.required || o.optional,
    ...(choices ? { choices } : {}),
  };
}

/** The completion script of `shell` for the program the tree was read from. */
export function completionScript(shell: Shell, nodes: CompletionNode[]): string {
  const name = nodes[0]?.key ?? "taskjet";
  if (shell === "bash") return bashScript(name, nodes);
  if (shell === "zsh") return zshScript(name, nodes);
  return fishScript(name, nodes);
}

/** `'text'` for bash, zsh and fish: single quotes, one line. */
function quote(text: string, shell: Shell): string {
  const line = text.replace(/\s+/g, " ").trim();
  return shell === "fish" ? `'${line.replace(/[\\']/g, "\\$&")}'` : `'${line.replace(/'/g, "'\\''")}'`;
}

/** A shell function name for the program. */
function fn(name: string): string {
  return `_${name.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

function bashScript(name: string, nodes: CompletionNode[]): string {
  const f = fn(name);
  const cases = (words: (n: CompletionNode) => string) =>
    nodes.map((n) => `    ${quote(n.key, "bash")}) echo ${quote(words(n), "bash")} ;;`);
  const valued = nodes.flatMap((n) =>
    n.options.filter((o) => o.takesValue).flatMap((o) => o.names.map((flag) => ({ key: n.key, flag, o }))),
  );
  return [
    `# ${name} completion for bash. Current shell: source <(${name} completion bash); for good, write it to`,
    `# ~/.local/share/bash-completion/completions/${name}. Generated from ${name}'s commands: regenerate after upgrading.`,
    "",
    `${f}_commands() {`,
    '  case "$1" in',
    ...cases((n) => n.commands.map((c) => c.name).join(" ")),
    "  esac",
    "}",
    "",
    `${f}_options() {`,
    '  case "$1" in',
    ...cases((n) => n.options.flatMap((o) => o.names).join(" ")),
    "  esac",
    "}",
    "",
    "# Options that take a value: prints the values it accepts (nothing: complete file names).",
    `${f}_values() {`,
    '  case "$1|$2" in',
    ...valued.map(
      ({ key, flag, o }) =>
        `    ${quote(`${key}|${flag}`, "bash")}) echo ${quote((o.choices ?? []).join(" "), "bash")} ;;`,
    ),
    "    *) return 1 ;;",
    "  esac",
    "}",
    "",
    `${f}() {`,
    `  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"`,
    `  local key=${quote(name, "bash")} word i values`,
    "  for ((i = 1; i < COMP_CWORD; i++)); do",
    `    word="\${COMP_WORDS[i]}"`,
    '    [[ "$word" == -* ]] && continue',
    // Every command has options (--help at least): a word that has some is a subcommand, not an argument.
    `    [[ -n "$(${f}_options "$key $word")" ]] && key="$key $word"`,
    "  done",
    `  if values="$(${f}_values "$key" "$prev")"; then`,
    '    [[ -n "$values" ]] && mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")',
    "    return 0",
    "  fi",
    '  if [[ "$cur" == -* ]]; then',
    `    mapfile -t COMPREPLY < <(compgen -W "$(${f}_options "$key")" -- "$cur")`,
    "  else",
    `    mapfile -t COMPREPLY < <(compgen -W "$(${f}_commands "$key")" -- "$cur")`,
    "  fi",
    "}",
    `complete -o default -F ${f} ${name}`,
    "",
  ].join("\n");
}

function zshScript(name: string, nodes: CompletionNode[]): string {
  const f = fn(name);
  // _describe takes `name:description`; a colon in the name must be escaped.
  const entry = (word: string, description: string) =>
    `${word.replace(/:/g, "\\:")}:${description.replace(/\s+/g, " ").trim()}`;
  // Entries one per line, in double quotes (a value spans lines); (f) splits them again.
  const dq = (text: string) => `"${text.replace(/["\\$`]/g, "\\$&")}"`;
  const assoc = (pairs: [string, string][]) => pairs.map(([k, v]) => `  ${quote(k, "zsh")} ${dq(v)}`);
  const lines = (items: string[]) => dq(items.join("\n"));
  return [
    `#compdef ${name}`,
    `# ${name} completion for zsh (after compinit). Current shell: source <(${name} completion zsh); for good, write it`,
    `# as _${name} into a directory of $fpath. Generated from ${name}'s commands: regenerate after upgrading.`,
    "",
    `typeset -gA ${f}_sub ${f}_opt ${f}_val`,
    `${f}_sub=(`,
    ...nodes.map((n) => `  ${quote(n.key, "zsh")} ${lines(n.commands.map((c) => entry(c.name, c.description)))}`),
    ")",
    `${f}_opt=(`,
    ...nodes.map(
      (n) => `  ${quote(n.key, "zsh")} ${lines(n.options.flatMap((o) => o.names.map((w) => entry(w, o.description))))}`,
    ),
    ")",
    `${f}_val=(`,
    ...assoc(
      nodes.flatMap((n) =>
        n.options
          .filter((o) => o.takesValue)
          .flatMap((o) => o.names.map((w): [string, string] => [`${n.key}|${w}`, (o.choices ?? []).join(" ")])),
      ),
    ),
    ")",
    "",
    `${f}() {`,
    `  local key=${quote(name, "zsh")} word i`,
    "  local -a entries",
    "  for (( i = 2; i < CURRENT; i++ )); do",
    `    word=\${words[i]}`,
    "    [[ $word == -* ]] && continue",
    `    (( \${+${f}_sub[$key $word]} )) && key="$key $word"`,
    "  done",
    `  local prev=\${words[CURRENT-1]}`,
    `  if (( \${+${f}_val[$key|$prev]} )); then`,
    `    if [[ -n \${${f}_val[$key|$prev]} ]]; then compadd -- \${=${f}_val[$key|$prev]}; else _files; fi`,
    "    return",
    "  fi",
    `  if [[ \${words[CURRENT]} == -* ]]; then`,
    `    entries=(\${(f)${f}_opt[$key]})`,
    "    _describe -t options option entries",
    "  else",
    `    entries=(\${(f)${f}_sub[$key]})`,
    `    if (( \${#entries} )); then _describe -t commands command entries; else _files; fi`,
    "  fi",
    "}",
    "",
    `if [[ $funcstack[1] == ${f} ]]; then`,
    `  ${f} "$@"`,
    "else",
    `  compdef ${f} ${name}`,
    "fi",
    "",
  ].join("\n");
}

function fishScript(name: string, nodes: CompletionNode[]): string {
  const f = `_${fn(name)}`;
  const at = (key: string) => quote(`${f}_at ${quote(key, "fish")}`, "fish");
  const out = [
    `# ${name} completion for fish: ${name} completion fish > ~/.config/fish/completions/${name}.fish`,
    `# Generated from ${name}'s commands: regenerate after upgrading.`,
    "",
    `set -g ${f}_commands ${nodes.map((n) => quote(n.key, "fish")).join(" ")}`,
    "",
    "# The command the words typed so far reach.",
    `function ${f}_key`,
    "    set -l tokens (commandline -opc)",
    "    set -e tokens[1]",
    `    set -l key ${quote(name, "fish")}`,
    "    for word in $tokens",
    "        string match -q -- '-*' $word; and continue",
    `        contains -- "$key $word" $${f}_commands; and set key "$key $word"`,
    "    end",
    "    echo $key",
    "end",
    "",
    `function ${f}_at`,
    `    test (${f}_key) = "$argv[1]"`,
    "end",
    "",
  ];
  for (const n of nodes) {
    for (const c of n.commands) {
      out.push(`complete -c ${name} -f -n ${at(n.key)} -a ${quote(c.name, "fish")} -d ${quote(c.description, "fish")}`);
    }
    for (const o of n.options) {
      const flags = o.names.map((w) => (w.startsWith("--") ? `-l ${w.slice(2)}` : `-s ${w.slice(1)}`)).join(" ");
      const value = o.choices ? ` -x -a ${quote(o.choices.join(" "), "fish")}` : o.takesValue ? " -r" : "";
      out.push(`complete -c ${name} -n ${at(n.key)} ${flags}${value} -d ${quote(o.description, "fish")}`);
    }
  }
  return `${out.join("\n")}\n`;
}
