import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { nkeys } from "@nats-io/transport-node";

/**
 * Test credentials made at test time, never checked in: nkey pairs, operator/account/user JWTs with a `.creds` file
 * (what `nsc` makes), and a CA with server and client certificates (openssl). Each writes into a directory the test
 * owns (a server's temporary directory, removed with it).
 */

const text = new TextDecoder();

/** A fresh nkey user: its seed (for the client's seed file) and public key (for the server's config). */
export function nkeyUser(): { seed: string; publicKey: string } {
  const kp = nkeys.createUser();
  return { seed: text.decode(kp.getSeed()), publicKey: kp.getPublicKey() };
}

function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString("base64url");
}

/** A NATS JWT (v2) with `claims`, signed by `signer` (an nkey pair), as nats-server checks it. */
function jwt(signer: ReturnType<typeof nkeys.createOperator>, subject: string, name: string, nats: object): string {
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));
  const claims = b64url(
    JSON.stringify({
      jti: randomBytes(26).toString("hex").toUpperCase().slice(0, 52),
      iat: Math.floor(Date.now() / 1000),
      iss: signer.getPublicKey(),
      name,
      sub: subject,
      nats: { ...nats, version: 2 },
    }),
  );
  const signature = b64url(signer.sign(new TextEncoder().encode(`${header}.${claims}`)));
  return `${header}.${claims}.${signature}`;
}

/**
 * Operator mode with one JetStream-enabled account and one user: the server configuration block (memory resolver)
 * and the user's `.creds` file written to `dir/<user>.creds`; `otherCreds` makes a second user of another operator
 * (credentials the server must refuse).
 */
export function operatorSetup(dir: string): { config: string; credsFile: string; foreignCredsFile: string } {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  const jsLimits = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
  // JetStream in operator mode needs a system account.
  const system = nkeys.createAccount();
  const operatorJwt = jwt(operator, operator.getPublicKey(), "test-operator", {
    type: "operator",
    system_account: system.getPublicKey(),
  });
  const systemJwt = jwt(operator, system.getPublicKey(), "SYS", { type: "account", limits: {} });
  const accountJwt = jwt(operator, account.getPublicKey(), "TASKJET", {
    type: "account",
    limits: { ...unlimited, ...jsLimits },
    default_permissions: { pub: {}, sub: {} },
  });
  const writeCreds = (file: string, signer: typeof account) => {
    const user = nkeys.createUser();
    const userJwt = jwt(signer, user.getPublicKey(), "worker", {
      type: "user",
      pub: {},
      sub: {},
      subs: -1,
      data: -1,
      payload: -1,
    });
    writeFileSync(
      file,
      [
        "-----BEGIN NATS USER JWT-----",
        userJwt,
        "------END NATS USER JWT------",
        "",
        "************************* IMPORTANT *************************",
        "NKEY Seed printed below can be used to sign and prove identity.",
        "",
        "-----BEGIN USER NKEY SEED-----",
        text.decode(user.getSeed()),
        "------END USER NKEY SEED------",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
  };
  const credsFile = join(dir, "worker.creds");
  writeCreds(credsFile, account);
  // Signed by an account the server does not know.
  const foreignCredsFile = join(dir, "foreign.creds");
  writeCreds(foreignCredsFile, nkeys.createAccount());
  const config = [
    `operator: "${operatorJwt}"`,
    "resolver: MEMORY",
    `system_account: ${system.getPublicKey()}`,
    `resolver_preload: { ${account.getPublicKey()}: "${accountJwt}", ${system.getPublicKey()}: "${systemJwt}" }`,
  ].join("\n");
  return { config, credsFile, foreignCredsFile };
}

/** A CA and, signed by it, a server certificate for 127.0.0.1/localhost and a client certificate: PEM files. */
export interface TlsFiles {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A certificate and key from another CA: a client the server must refuse, a CA that cannot verify the server. */
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
}

/** Makes the certificates with openssl (EC P-256, valid for a day). */
export function makeTlsFiles(dir: string): TlsFiles {
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const newCa = (name: string) => {
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f(`${name}.key`));
    openssl(
      "req",
      "-x509",
      "-new",
      "-key",
      f(`${name}.key`),
      "-sha256",
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-out",
      f(`${name}.pem`),
    );
  };
  const issue = (name: string, ca: string, cn: string, ext: string) => {
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f(`${name}-key.pem`));
    openssl("req", "-new", "-key", f(`${name}-key.pem`), "-subj", `/CN=${cn}`, "-out", f(`${name}.csr`));
    writeFileSync(f(`${name}.ext`), ext);
    openssl(
      "x509",
      "-req",
      "-in",
      f(`${name}.csr`),
      "-CA",
      f(`${ca}.pem`),
      "-CAkey",
      f(`${ca}.key`),
      "-CAcreateserial",
      "-days",
      "1",
      "-sha256",
      "-extfile",
      f(`${name}.ext`),
      "-out",
      f(`${name}.pem`),
    );
  };
  newCa("ca");
  newCa("other-ca");
  issue("server", "ca", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  issue("client", "ca", "taskjet-worker", "extendedKeyUsage=clientAuth\n");
  issue("other-client", "other-ca", "intruder", "extendedKeyUsage=clientAuth\n");
  return {
    ca: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server-key.pem"),
    clientCert: f("client.pem"),
    clientKey: f("client-key.pem"),
    otherCa: f("other-ca.pem"),
    otherClientCert: f("other-client.pem"),
    otherClientKey: f("other-client-key.pem"),
  };
}
