import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { redactUrl, ValidationError } from "./errors.js";
import { NatsAuthEnv, natsOptionNames, resolveNatsAccess } from "./nats-auth.js";

const names = natsOptionNames("auth.", "tls.");
const dir = mkdtempSync(join(tmpdir(), "tj-auth-unit-"));
const seedFile = join(dir, "seed.nk");
writeFileSync(seedFile, `SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n`);

function issues(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error("no error");
}

describe("nats auth", () => {
  it("nats auth - one method from options, else the URLs, else the environment", () => {
    const env = { TASKJET_NATS_TOKEN: "from-env" };
    expect(resolveNatsAccess(["nats://h:1"], { names }, env).describe).toBe("token (TASKJET_NATS_TOKEN)");
    const explicit = resolveNatsAccess(["nats://h:1"], { auth: { nkeyFile: seedFile }, names }, env);
    expect(explicit.method).toBe("nkey");
    expect(new TextDecoder().decode(explicit.secrets.nkeySeed)).toMatch(/^SU/);
    const fromUrl = resolveNatsAccess(["nats://u:p%40ss@h:1", "tls://u:p%40ss@h:2"], { names }, env);
    expect(fromUrl.secrets).toEqual({ user: "u", password: "p@ss" });
    expect(fromUrl.servers).toEqual(["nats://h:1", "tls://h:2"]);
    expect(fromUrl.tlsRequired).toBe(true);
    // A user given explicitly takes its password from the environment.
    const mixed = resolveNatsAccess(["h:1"], { auth: { user: "me" }, names }, { TASKJET_NATS_PASSWORD: "pw" });
    expect(mixed.secrets).toEqual({ user: "me", password: "pw" });
  });

  it("nats auth - conflicts, halves and unreadable files name the option", () => {
    expect(
      issues(() => resolveNatsAccess(["h:1"], { names }, { TASKJET_NATS_TOKEN: "t", TASKJET_NATS_USER: "u" })),
    ).toEqual([
      "TASKJET_NATS_USER: conflicts with TASKJET_NATS_TOKEN: use one way to authenticate (user and password, token, nkey or creds)",
    ]);
    expect(issues(() => resolveNatsAccess(["nats://a:b@h:1"], { auth: { token: "t" }, names }, {}))[0]).toMatch(
      /^servers: a server URL carries credentials and auth.token is set too/,
    );
    expect(issues(() => resolveNatsAccess(["h:1"], { tls: { keyFile: seedFile }, names }, {}))).toContain(
      "tls.certFile: is required with tls.keyFile",
    );
    expect(issues(() => resolveNatsAccess(["h:1"], { names }, { [NatsAuthEnv.credsFile]: dir }))).toEqual([
      `TASKJET_NATS_CREDS: ${dir} is not a regular file`,
    ]);
    expect(issues(() => resolveNatsAccess(["h:1"], { names }, { [NatsAuthEnv.caFile]: seedFile }))).toEqual([
      `TASKJET_NATS_TLS_CA: ${seedFile} holds no PEM certificate`,
    ]);
  });

  it("nats auth - secrets never show in logs or messages", () => {
    const access = resolveNatsAccess(["nats://u:hunter2@h:1"], { names }, {});
    expect(JSON.stringify({ access })).not.toContain("hunter2");
    expect(redactUrl("nats://u:hunter2@h:1")).toBe("nats://***@h:1");
    expect(redactUrl("tok@h:1")).toBe("***@h:1");
    expect(redactUrl("nats://h:1")).toBe("nats://h:1");
  });
});
