import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EngineConfigInput } from "@taskjet/engine";
import { type ClientOptions, ConnectionError, ErrorCodes, TaskjetError, ValidationError } from "@taskjet/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, runCli } from "../harness/cli.js";
import { connectClient, startEngine, uniqueNamespace } from "../harness/fixtures.js";
import { makeTlsFiles, nkeyUser, operatorSetup } from "../harness/nats-auth.js";
import { type NatsServer, startNatsServer } from "../harness/nats-server.js";

/**
 * One nats-server per authentication method. With the right credentials, the engine, a worker, a client and the CLI
 * (`trigger --wait`) all work; with wrong or missing ones, each fails with a typed error that says what was refused.
 */

let cwd: string;
beforeAll(async () => {
  if (!existsSync(CLI_BIN)) throw new Error(`${CLI_BIN} is missing: build first (npx turbo run build)`);
  cwd = await mkdtemp(join(tmpdir(), "tj-auth-"));
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

interface Method {
  name: string;
  /** The server's configuration lines; may write files into the server's directory. */
  server: (dir: string) => string | Promise<string>;
  /** Settings for the SDK and the engine, once the server is up. */
  good: (s: Setup) => Pick<ClientOptions, "auth" | "tls">;
  /** The same for the CLI: flags and environment. */
  cli: (s: Setup) => { args?: string[]; env?: Record<string, string> };
  /** Settings the server must refuse. */
  bad: (s: Setup) => Pick<ClientOptions, "auth" | "tls">;
  badCli: (s: Setup) => { args?: string[]; env?: Record<string, string> };
  /** What a refused connection says (the error's code and a part of its message). */
  refused: { code: string; message: RegExp };
  /** The URL to connect to (default the harness's `nats://`). */
  url?: (s: Setup) => string;
}

interface Setup {
  server: NatsServer;
  dir: string;
  files: Record<string, string>;
}

const nkey = nkeyUser();
const methods: Method[] = [
  {
    name: "user and password",
    server: () => `authorization { users: [ { user: taskjet, password: "s3cret pass" } ] }`,
    good: () => ({ auth: { user: "taskjet", password: "s3cret pass" } }),
    cli: () => ({ env: { TASKJET_NATS_USER: "taskjet", TASKJET_NATS_PASSWORD: "s3cret pass" } }),
    bad: () => ({ auth: { user: "taskjet", password: "wrong" } }),
    badCli: () => ({ env: { TASKJET_NATS_USER: "taskjet", TASKJET_NATS_PASSWORD: "wrong" } }),
    refused: { code: ErrorCodes.authenticationFailed, message: /refused the credentials: user and password/ },
  },
  {
    name: "token",
    server: () => `authorization { token: "tok-0123456789" }`,
    good: () => ({ auth: { token: "tok-0123456789" } }),
    cli: () => ({ args: ["--nats-token", "tok-0123456789"] }),
    bad: () => ({ auth: { token: "tok-guess" } }),
    badCli: () => ({ env: { TASKJET_NATS_TOKEN: "tok-guess" } }),
    refused: { code: ErrorCodes.authenticationFailed, message: /refused the credentials: token/ },
  },
  {
    name: "nkey seed file",
    server: async (dir) => {
      await writeFile(join(dir, "good.nk"), `${nkey.seed}\n`, { mode: 0o600 });
      await writeFile(join(dir, "other.nk"), `${nkeyUser().seed}\n`, { mode: 0o600 });
      return `authorization { users: [ { nkey: ${nkey.publicKey} } ] }`;
    },
    good: (s) => ({ auth: { nkeyFile: join(s.dir, "good.nk") } }),
    cli: (s) => ({ env: { TASKJET_NATS_NKEY: join(s.dir, "good.nk") } }),
    bad: (s) => ({ auth: { nkeyFile: join(s.dir, "other.nk") } }),
    badCli: (s) => ({ args: ["--nats-nkey", join(s.dir, "other.nk")] }),
    refused: { code: ErrorCodes.authenticationFailed, message: /refused the credentials: nkey/ },
  },
  {
    name: "creds file (operator, account and user JWTs)",
    server: (dir) => {
      const setup = operatorSetup(dir);
      return setup.config;
    },
    good: (s) => ({ auth: { credsFile: join(s.dir, "worker.creds") } }),
    cli: (s) => ({ args: ["--nats-creds", join(s.dir, "worker.creds")] }),
    bad: (s) => ({ auth: { credsFile: join(s.dir, "foreign.creds") } }),
    badCli: (s) => ({ env: { TASKJET_NATS_CREDS: join(s.dir, "foreign.creds") } }),
    refused: { code: ErrorCodes.authenticationFailed, message: /refused the credentials: creds/ },
  },
  {
    name: "TLS with client certificates (tls:// URL)",
    server: (dir) => {
      const f = makeTlsFiles(dir);
      return `tls { cert_file: "${f.serverCert}", key_file: "${f.serverKey}", ca_file: "${f.ca}", verify: true, timeout: 2 }`;
    },
    url: (s) => `tls://127.0.0.1:${s.server.port}`,
    good: (s) => ({
      tls: {
        caFile: join(s.dir, "ca.pem"),
        certFile: join(s.dir, "client.pem"),
        keyFile: join(s.dir, "client-key.pem"),
      },
    }),
    cli: (s) => ({
      env: {
        TASKJET_NATS_TLS_CA: join(s.dir, "ca.pem"),
        TASKJET_NATS_TLS_CERT: join(s.dir, "client.pem"),
        TASKJET_NATS_TLS_KEY: join(s.dir, "client-key.pem"),
      },
    }),
    // Trusting another CA: the client refuses the server.
    bad: (s) => ({
      tls: {
        caFile: join(s.dir, "other-ca.pem"),
        certFile: join(s.dir, "client.pem"),
        keyFile: join(s.dir, "client-key.pem"),
      },
    }),
    // A certificate of another CA: the server refuses the client. nats.js notices only when its connect times out
    // (20 s): the one slow case, checked once.
    badCli: (s) => ({
      args: [
        "--nats-tls-ca",
        join(s.dir, "ca.pem"),
        "--nats-tls-cert",
        join(s.dir, "other-client.pem"),
        "--nats-tls-key",
        join(s.dir, "other-client-key.pem"),
      ],
    }),
    refused: { code: ErrorCodes.connectionFailed, message: /cannot connect to NATS at tls:\/\/127\.0\.0\.1/ },
  },
];

describe("auth", () => {
  for (const method of methods) {
    it(`auth - ${method.name}: engine, worker, client and CLI work with the right credentials, and fail clearly with wrong or none`, async () => {
      let dir = "";
      const server = await startNatsServer({
        config: (d) => {
          dir = d;
          return method.server(d);
        },
      });
      try {
        const s: Setup = { server, dir, files: {} };
        const url = method.url?.(s) ?? server.url;
        const namespace = uniqueNamespace();
        const good = method.good(s);

        const engine = await startEngine(url, { namespaces: [namespace], ...(good as EngineConfigInput) });
        const tj = await connectClient(url, { namespace, ...good });
        const hello = tj.task({ name: "hello", fn: async (input: { name: string }) => ({ hi: input.name }) });
        const worker = await tj.worker("w", { workflows: [hello] });
        await worker.start();
        expect(await hello.run({ name: "sdk" })).toEqual({ hi: "sdk" });

        const cli = method.cli(s);
        const ok = await runCli(
          [
            "trigger",
            "hello",
            "--input",
            '{"name":"cli"}',
            "--wait",
            "--json",
            "--nats",
            url,
            "--namespace",
            namespace,
            ...(cli.args ?? []),
          ],
          { cwd, env: cli.env ?? {} },
        );
        expect(ok.stderr).toBe("");
        expect(ok.code).toBe(0);
        expect(JSON.parse(ok.stdout)).toMatchObject({ status: "COMPLETED", output: { hi: "cli" } });

        // Wrong credentials: the SDK, the engine and the CLI each say what was refused.
        const bad = method.bad(s);
        const refusedClient = await connectClient(url, { namespace, ...bad }).catch((err: unknown) => err);
        expect(refusedClient).toBeInstanceOf(TaskjetError);
        expect(refusedClient).toMatchObject({ code: method.refused.code });
        expect((refusedClient as Error).message).toMatch(method.refused.message);
        const refusedEngine = await startEngine(url, {
          namespaces: [namespace],
          ...(bad as EngineConfigInput),
        }).catch((err: unknown) => err);
        expect(refusedEngine).toMatchObject({ code: method.refused.code });
        const badCli = method.badCli(s);
        const refusedCli = await runCli(
          ["trigger", "hello", "--wait", "--nats", url, "--namespace", namespace, ...(badCli.args ?? [])],
          { cwd, env: badCli.env ?? {}, timeoutMs: 40_000 },
        );
        expect(refusedCli.code).toBe(1);
        expect(refusedCli.stderr).toMatch(/^error: (NATS at .* refused the credentials|cannot connect to NATS at)/);

        // No credentials at all (TLS: no CA and no certificate).
        const none = await connectClient(url, { namespace }).catch((err: unknown) => err);
        expect(none).toBeInstanceOf(TaskjetError);
        if (method.refused.code === ErrorCodes.authenticationFailed) {
          expect((none as Error).message).toMatch(/requires authentication and none was configured/);
        } else {
          expect(none).toBeInstanceOf(ConnectionError);
        }

        await worker.stop();
        await tj.close();
        await engine.stop();
      } finally {
        await server.stop();
      }
    });
  }

  it("auth - credentials in a server URL are used, and never printed", async () => {
    const server = await startNatsServer({
      config: () => `authorization { users: [ { user: urluser, password: "url-pa55" } ] }`,
    });
    try {
      const namespace = uniqueNamespace();
      const url = `nats://urluser:url-pa55@127.0.0.1:${server.port}`;
      const engine = await startEngine(url, { namespaces: [namespace] });
      expect(engine.config.servers).toEqual([`nats://127.0.0.1:${server.port}`]);
      expect(JSON.stringify(engine.config)).not.toContain("url-pa55");
      const tj = await connectClient(url, { namespace });
      await tj.close();
      const wrong = await connectClient(`nats://urluser:nope@127.0.0.1:${server.port}`, { namespace }).catch(
        (err: unknown) => err as Error,
      );
      expect(wrong).toMatchObject({ code: ErrorCodes.authenticationFailed });
      expect((wrong as Error).message).not.toContain("nope");
      const cli = await runCli(
        ["runs", "list", "--nats", `nats://urluser:nope@127.0.0.1:${server.port}`, "--namespace", namespace],
        { cwd },
      );
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain("refused the credentials");
      expect(cli.stderr).not.toContain("nope");
      await engine.stop();
    } finally {
      await server.stop();
    }
  });

  it("auth - conflicting methods and unreadable files are refused before connecting, naming the option", async () => {
    const conflict = await connectClient("nats://127.0.0.1:1", {
      auth: { token: "t0ken", credsFile: "/nonexistent.creds" },
    }).catch((err: unknown) => err);
    expect(conflict).toBeInstanceOf(ValidationError);
    expect((conflict as ValidationError).message).toMatch(/auth.token: conflicts with auth.credsFile/);

    const missing = await connectClient("nats://127.0.0.1:1", { auth: { nkeyFile: "/nonexistent/seed.nk" } }).catch(
      (err: unknown) => err,
    );
    expect(missing).toBeInstanceOf(ValidationError);
    expect((missing as ValidationError).field).toBe("auth.nkeyFile");
    expect((missing as Error).message).toMatch(/cannot read \/nonexistent\/seed.nk/);

    const notSeed = join(cwd, "not-a-seed.nk");
    await writeFile(notSeed, "hello\n");
    const garbled = await connectClient("nats://127.0.0.1:1", { auth: { nkeyFile: notSeed } }).catch(
      (err: unknown) => err,
    );
    expect((garbled as Error).message).toMatch(/is not an nkey user seed/);

    const halfTls = await connectClient("nats://127.0.0.1:1", { tls: { certFile: notSeed } }).catch(
      (err: unknown) => err as ValidationError,
    );
    expect((halfTls as ValidationError).issues.map((i) => i.path)).toEqual(["tls.keyFile", "tls.certFile"]);

    const userOnly = await startEngine("nats://127.0.0.1:1", { auth: { user: "x" } }).catch((err: unknown) => err);
    expect(userOnly).toBeInstanceOf(ValidationError);
    expect((userOnly as Error).message).toMatch(/auth.password: is required with auth.user/);

    // The CLI names its flags and variables, and exits 2 (a usage error) before connecting.
    const cli = await runCli(
      ["runs", "list", "--nats", "nats://127.0.0.1:1", "--nats-token", "t", "--nats-creds", "/nonexistent.creds"],
      { cwd },
    );
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain("--nats-token: conflicts with --nats-creds");
    const cliEnv = await runCli(["runs", "list", "--nats", "nats://127.0.0.1:1"], {
      cwd,
      env: { TASKJET_NATS_TOKEN: "t", TASKJET_NATS_NKEY: "/x.nk" },
    });
    expect(cliEnv.code).toBe(2);
    expect(cliEnv.stderr).toContain("TASKJET_NATS_TOKEN: conflicts with TASKJET_NATS_NKEY");
  });
});
