import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { configVariables, DEPLOY_NATS_DIR, rewriteNodeConfig } from "./nats-cluster.js";
import { NATS_SERVER } from "./nats-server.js";

const routePorts = new Map([
  ["nats-1", 7001],
  ["nats-2", 7002],
  ["nats-3", 7003],
]);
const ports = { port: 5001, monitorPort: 6001, routePort: 7001, routePorts, storeDir: "/tmp/x y" };

describe("nats-cluster harness", () => {
  it("deploy/nats - every node file is valid for nats-server as shipped, given its variables", async () => {
    const nodes = (await readdir(DEPLOY_NATS_DIR)).filter((f) => /^nats-\d+\.conf$/.test(f));
    expect(nodes.sort()).toEqual(["nats-1.conf", "nats-2.conf", "nats-3.conf"]);
    const env = { ...process.env, NATS_SYS_PASSWORD: "ps", TASKJET_NATS_PASSWORD: "pt" };
    for (const f of nodes) {
      const { stdout, stderr } = await promisify(execFile)(NATS_SERVER, ["-t", "-c", join(DEPLOY_NATS_DIR, f)], {
        env,
      });
      expect(`${stdout}${stderr}`).toMatch(/is valid/);
    }
  });

  it("rewrite - addresses, routes and store_dir are replaced; everything else stays as deployed", async () => {
    const text = await readFile(join(DEPLOY_NATS_DIR, "nats-1.conf"), "utf8");
    const out = rewriteNodeConfig(text, "nats-1.conf", ports);
    expect(out).toContain('listen: "127.0.0.1:5001"');
    expect(out).toContain('http: "127.0.0.1:6001"');
    expect(out).toMatch(/^\s+listen: "127\.0\.0\.1:7001"$/m);
    expect(out).toContain('store_dir: "/tmp/x y"');
    for (const p of [7001, 7002, 7003]) expect(out).toContain(`nats-route://127.0.0.1:${p}`);
    expect(out).not.toMatch(/0\.0\.0\.0|nats-route:\/\/nats-/);
    const kept = (s: string) => s.split("\n").filter((l) => !/listen:|http:|store_dir:|nats-route:/.test(l));
    expect(kept(out)).toEqual(kept(text));
  });

  it("rewrite - a deploy file that changed shape fails loudly instead of running something else", () => {
    const base =
      "listen: 0.0.0.0:4222\nhttp: 0.0.0.0:8222\njetstream {\n  store_dir: /x\n}\ncluster {\n  listen: 0.0.0.0:6222\n  routes: [\n    nats-route://nats-1:6222\n    nats-route://nats-2:6222\n    nats-route://nats-3:6222\n  ]\n}\n";
    expect(() => rewriteNodeConfig(base, "ok.conf", ports)).not.toThrow();
    expect(() => rewriteNodeConfig(base.replace("http: 0.0.0.0:8222\n", ""), "f.conf", ports)).toThrow(/`http:`/);
    expect(() => rewriteNodeConfig(base.replace("nats-3:6222", "nats-9:6222"), "f.conf", ports)).toThrow(/nats-9/);
    expect(() => rewriteNodeConfig(base.replace("    nats-route://nats-3:6222\n", ""), "f.conf", ports)).toThrow(
      /expected 3 routes/,
    );
  });

  it("configVariables - finds $VARs outside comments", () => {
    expect(configVariables('a: $A\n# $B\nb: [{ p: $C_1 }] // $D\nroute: nats-route://h:1\nallow: ["$KV.x.>"]')).toEqual(
      ["A", "C_1"],
    );
  });
});
