/**
 * A `redis-server` locked down like a production one: the default user off, one ACL user limited
 * to the `dispatch:*` keys and channels, a plain port and (when this redis-server was built with
 * TLS, as Debian's is) a TLS port with a certificate from a throwaway CA made by `openssl`.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./redis";

export interface SecureRedis {
  user: string;
  password: string;
  port: number;
  tlsPort: number;
  /** PEM file of the CA that signed the server's certificate (for NODE_EXTRA_CA_CERTS). */
  caFile: string;
  close(): Promise<void>;
}

function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const ca = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const cert = join(dir, "server.pem");
  const ext = join(dir, "san.ext");
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    caKey,
    "-out",
    ca,
    "-days",
    "1",
    "-subj",
    "/CN=ocd-test-ca",
  );
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1");
  execFileSync("sh", ["-c", `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ${ext}`]);
  ssl(
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "1",
    "-extfile",
    ext,
  );
  return { ca, cert, key };
}

export async function startSecureRedis(user = "dispatch", password = "acl-pass-Zq81"): Promise<SecureRedis> {
  const dir = await mkdtemp(join(tmpdir(), "ocd-secure-redis-"));
  const { ca, cert, key } = makeCertificates(dir);
  const port = await freePort();
  const tlsPort = await freePort();
  const conf = join(dir, "redis.conf");
  await writeFile(
    conf,
    [
      `bind 127.0.0.1`,
      `port ${port}`,
      `tls-port ${tlsPort}`,
      `tls-cert-file ${cert}`,
      `tls-key-file ${key}`,
      `tls-ca-cert-file ${ca}`,
      `tls-auth-clients no`,
      `dir ${dir}`,
      `save ""`,
      `appendonly no`,
      `maxmemory-policy noeviction`,
      `logfile ${join(dir, "redis.log")}`,
      `user default off`,
      `user ${user} on >${password} ~dispatch:* &dispatch:* +@all`,
      `user probe on >probe ~* &* +@all`,
      "",
    ].join("\n"),
  );
  const child = spawn("redis-server", [conf], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis({
      host: "127.0.0.1",
      port,
      username: "probe",
      password: "probe",
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on("error", () => undefined);
    const ok = await probe
      .connect()
      .then(() => probe.ping())
      .then(
        () => true,
        () => false,
      );
    probe.disconnect();
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await close();
      throw new Error(`redis-server with ACL/TLS did not start (see ${join(dir, "redis.log")})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { user, password, port, tlsPort, caFile: ca, close };
}
