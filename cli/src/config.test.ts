import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEV_FILE, resolveConnection, resolveDevConfig, resolveEngineCliConfig } from "./config.js";
import { UsageError } from "./errors.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A project dir with `.taskjet/dev.json` recording `pid`, and a nested working dir. */
function project(pid: number, namespace = "default"): { root: string; nested: string } {
  const root = mkdtempSync(join(tmpdir(), "tj-cfg-"));
  dirs.push(root);
  mkdirSync(join(root, ".taskjet"));
  const info = { url: "nats://127.0.0.1:1234", pid, cliPid: pid, namespace, startedAt: "" };
  writeFileSync(join(root, ".taskjet", DEV_FILE), JSON.stringify(info));
  const nested = join(root, "a", "b");
  mkdirSync(nested, { recursive: true });
  return { root, nested };
}

describe("config", () => {
  it("connection - --nats beats TASKJET_NATS_URL beats dev.json beats the default", () => {
    const { nested } = project(process.pid);
    const env = { TASKJET_NATS_URL: "nats://env:1,nats://env:2" };
    expect(resolveConnection({ nats: "nats://flag:1" }, env, nested)).toMatchObject({
      servers: ["nats://flag:1"],
      serversFrom: "flag",
    });
    expect(resolveConnection({}, env, nested)).toMatchObject({
      servers: ["nats://env:1", "nats://env:2"],
      serversFrom: "env",
    });
    expect(resolveConnection({}, {}, nested)).toMatchObject({
      servers: ["nats://127.0.0.1:1234"],
      serversFrom: "dev.json",
    });
    const elsewhere = mkdtempSync(join(tmpdir(), "tj-cfg-"));
    dirs.push(elsewhere);
    expect(resolveConnection({}, {}, elsewhere)).toMatchObject({
      servers: ["nats://127.0.0.1:4222"],
      serversFrom: "default",
    });
  });

  it("connection - the namespace of the taskjet dev a command talks to is its namespace, unless one is named", () => {
    const { nested } = project(process.pid, "staging");
    expect(resolveConnection({}, {}, nested)).toMatchObject({ namespace: "staging", namespaceFrom: "dev.json" });
    expect(resolveConnection({}, { TASKJET_NAMESPACE: "b" }, nested).namespace).toBe("b");
    expect(resolveConnection({ namespace: "a" }, {}, nested).namespace).toBe("a");
    // Another server named: the dev server's namespace is not that server's.
    expect(resolveConnection({ nats: "nats://other:1" }, {}, nested).namespace).toBe("default");
    // An engine started there serves it too.
    expect(resolveEngineCliConfig({}, {}, nested).namespaces).toEqual(["staging"]);
  });

  it("connection - a dev.json whose process is gone is ignored", () => {
    const { nested } = project(2 ** 22 + 12345); // above Linux's pid_max default: never alive
    expect(resolveConnection({}, {}, nested).serversFrom).not.toBe("dev.json");
  });

  it("connection - --namespace beats TASKJET_NAMESPACE beats default, and bad values are usage errors", () => {
    expect(resolveConnection({ namespace: "a" }, { TASKJET_NAMESPACE: "b" }, "/").namespace).toBe("a");
    expect(resolveConnection({}, { TASKJET_NAMESPACE: "b" }, "/").namespace).toBe("b");
    expect(resolveConnection({}, {}, "/").namespace).toBe("default");
    expect(() => resolveConnection({ namespace: "a.b" }, {}, "/")).toThrow(UsageError);
    expect(() => resolveConnection({}, { TASKJET_NAMESPACE: "x y" }, "/")).toThrow(/TASKJET_NAMESPACE/);
    expect(() => resolveConnection({ nats: " , " }, {}, "/")).toThrow(/--nats/);
  });

  it("engine - --namespace lists namespaces; --log-level is checked", () => {
    const config = resolveEngineCliConfig({ nats: "nats://x:1", namespace: "a,b", replicas: 3 }, {}, "/");
    expect(config).toMatchObject({ namespaces: ["a", "b"], replicas: 3, logLevel: "info" });
    expect(() => resolveEngineCliConfig({ logLevel: "loud" }, {}, "/")).toThrow(/--log-level must be one of/);
    expect(resolveEngineCliConfig({}, { TASKJET_LOG_LEVEL: "debug" }, "/").logLevel).toBe("debug");
    expect(resolveEngineCliConfig({}, { TASKJET_REPLICAS: "3" }, "/").replicas).toBe(3);
    expect(resolveEngineCliConfig({ replicas: 1 }, { TASKJET_REPLICAS: "3" }, "/").replicas).toBe(1);
    expect(resolveEngineCliConfig({}, {}, "/").replicas).toBe(1);
    expect(() => resolveEngineCliConfig({}, { TASKJET_REPLICAS: "2x" }, "/")).toThrow(/TASKJET_REPLICAS/);
  });

  it("dev - TASKJET_NATS_SERVER_BIN names the binary; a missing one is reported as not found", () => {
    const config = resolveDevConfig({}, { TASKJET_NATS_SERVER_BIN: "/no/such/nats-server" }, "/tmp");
    expect(config.natsServerBin).toBeUndefined();
    expect(config.natsServerSearched[0]).toContain("/no/such/nats-server");
    expect(config.dir).toBe("/tmp/.taskjet");
  });
});
