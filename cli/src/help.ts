import type { Command } from "commander";

/** A time the examples may schedule at: tomorrow 09:00 UTC (a fixed date falls into the past, or beyond 30 days). */
const TOMORROW_9 = `${new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)}T09:00:00Z`;

/**
 * Examples shown under each command's `--help`, by command path. Kept in one place so every command gets them the
 * same way (and a test can check none is missing); `status` and `debug` print their own.
 */
export const EXAMPLES: Readonly<Record<string, readonly string[]>> = {
  taskjet: [
    "taskjet dev --example",
    `taskjet trigger hello --input '{"name":"world"}' --wait`,
    "taskjet runs list --status FAILED",
    "taskjet workers list",
    "taskjet queues",
    "source <(taskjet completion bash)",
  ],
  dev: ["taskjet dev", "taskjet dev --example --port 4333", "taskjet dev --namespace staging --http off --json"],
  engine: [
    "taskjet engine --nats nats://127.0.0.1:4222",
    "taskjet engine --nats nats://a:4222,nats://b:4222,nats://c:4222 --replicas 3 --namespace shop,billing",
    "taskjet engine --log-format json --log-level debug",
  ],
  trigger: [
    `taskjet trigger hello --input '{"name":"world"}'`,
    `taskjet trigger hello --input '{"name":"world"}' --wait --timeout 30s --json`,
    "taskjet trigger report --delay 10m -m team=infra",
    `taskjet trigger report --at ${TOMORROW_9} --idempotency-key report-${TOMORROW_9.slice(0, 10)}`,
    "taskjet trigger report --bulk runs.jsonl --batch-id b2",
  ],
  runs: [
    "taskjet runs list --status QUEUED,RUNNING",
    "taskjet runs get 01JD5X...",
    "taskjet runs history 01JD5X... -f",
  ],
  "runs list": [
    "taskjet runs list",
    "taskjet runs list --status FAILED --task send-email --limit 20",
    "taskjet runs list --status QUEUED --json | jq '.[].runId'",
  ],
  "runs get": ["taskjet runs get 01JD5X...", "taskjet runs get 01JD5X... --json | jq .output"],
  "runs cancel": [
    "taskjet runs cancel 01JD5X... 01JD5Y...",
    "taskjet runs cancel --filter --status QUEUED --task charge --reason 'bad deploy'",
  ],
  "runs replay": [
    "taskjet runs replay 01JD5X...",
    "taskjet runs replay 01JD5X... --from transform",
    "taskjet runs replay --filter --status FAILED --task send-email --since 1d",
  ],
  "runs state": [
    "taskjet runs state 01JD5X...",
    "taskjet runs state 01JD5X... --at 12",
    "taskjet runs state 01JD5X... --at 2026-11-28T10:00:00Z --json",
  ],
  "runs logs": [
    "taskjet runs logs 01JD5X...",
    "taskjet runs logs 01JD5X... --follow",
    "taskjet runs logs 01JD5X... --json",
  ],
  "runs history": [
    "taskjet runs history 01JD5X...",
    "taskjet runs history 01JD5X... --follow",
    "taskjet runs history 01JD5X... --json",
  ],
  ratelimits: ["taskjet ratelimits set openai --limit 60 --duration MINUTE", "taskjet ratelimits list"],
  "ratelimits list": ["taskjet ratelimits list", "taskjet ratelimits list --json"],
  "ratelimits set": [
    "taskjet ratelimits set openai --limit 60 --duration MINUTE",
    "taskjet ratelimits set mail --limit 500 --duration DAY --json",
  ],
  scheduled: ["taskjet scheduled list", `taskjet scheduled update 01JD5X... --at ${TOMORROW_9}`],
  "scheduled list": ["taskjet scheduled list", "taskjet scheduled list --task report --json"],
  "scheduled get": ["taskjet scheduled get 01JD5X...", "taskjet scheduled get 01JD5X... --json"],
  "scheduled update": [`taskjet scheduled update 01JD5X... --at ${TOMORROW_9}`],
  "scheduled delete": ["taskjet scheduled delete 01JD5X...", "taskjet scheduled delete 01JD5X... --json"],
  crons: ["taskjet crons list", "taskjet crons get nightly", "taskjet crons delete nightly"],
  "crons list": ["taskjet crons list", "taskjet crons list --task report --json"],
  "crons get": ["taskjet crons get nightly", "taskjet crons get nightly --json"],
  "crons delete": ["taskjet crons delete nightly"],
  events: [`taskjet events push order:paid --payload '{"orderId":"o1"}'`, "taskjet events list --key order:paid"],
  "events push": [
    `taskjet events push order:paid --payload '{"orderId":"o1","amount":120}'`,
    `taskjet events push user:created -p '{"plan":"pro"}' -m source=signup --priority 3 --json`,
  ],
  "events list": ["taskjet events list", "taskjet events list --key order:paid --limit 5 --json"],
  webhooks: [
    "taskjet webhooks create orders --event-key order:paid --auth hmac --secret s3cret-s3cret",
    "taskjet webhooks list",
  ],
  "webhooks create": [
    "taskjet webhooks create github --event-key-expression \"'github:' + headers['x-github-event']\" --auth hmac --secret s3cret-s3cret --header x-hub-signature-256 --prefix sha256=",
    "taskjet webhooks create shop --event-key shop:order --auth apiKey --key k_0123456789 --header x-api-key",
    "taskjet webhooks create legacy --event-key-expression 'body.type' --auth basic --username legacy --password 'at-least-8-chars'",
  ],
  "webhooks list": ["taskjet webhooks list", "taskjet webhooks list --json"],
  "webhooks delete": ["taskjet webhooks delete orders"],
  tokens: ["taskjet tokens create --name dashboard", "taskjet tokens list", "taskjet tokens revoke dashboard"],
  "tokens create": ["taskjet tokens create --name dashboard", "taskjet tokens create --json"],
  "tokens list": ["taskjet tokens list", "taskjet tokens list --json"],
  "tokens revoke": ["taskjet tokens revoke dashboard"],
  admin: ["taskjet admin verify", "taskjet admin rebuild"],
  "admin rebuild": ["taskjet admin rebuild", "taskjet admin rebuild --json"],
  "admin verify": ["taskjet admin verify", "taskjet admin verify --json"],
  workers: ["taskjet workers list"],
  "workers list": [
    "taskjet workers list",
    "taskjet workers list --namespace shop --json | jq 'select(.usedSlots > 0)'",
  ],
  queues: ["taskjet queues", "taskjet queues --task charge", "taskjet queues --json | jq 'select(.queued > 100)'"],
  completion: [
    "source <(taskjet completion bash)          # bash, this shell",
    "taskjet completion bash > ~/.local/share/bash-completion/completions/taskjet",
    "source <(taskjet completion zsh)           # zsh, after compinit",
    "taskjet completion zsh > $fpath[1]/_taskjet",
    "taskjet completion fish > ~/.config/fish/completions/taskjet.fish",
  ],
};

/** A command's path without the program's name: `runs list`; the program itself is `taskjet`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.length === 0 ? cmd.name() : names.join(" ");
}

/** Every command of the tree, the program first. */
export function allCommands(program: Command): Command[] {
  return [program, ...program.commands.flatMap((c) => allCommands(c))];
}

/** Adds the `Examples:` section to each command `examples` has an entry for. */
export function addExamples(program: Command, examples: Readonly<Record<string, readonly string[]>> = EXAMPLES): void {
  for (const cmd of allCommands(program)) {
    const lines = examples[commandPath(cmd)];
    if (lines) cmd.addHelpText("after", `\nExamples:\n${lines.map((l) => `  ${l}`).join("\n")}`);
  }
}
