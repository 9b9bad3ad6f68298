/**
 * A private etcd for the demo (not an example itself): `etcdOnPath` tells whether the machine has one, and `start`
 * runs it as a child process on 127.0.0.1 (free client and peer ports, a temporary data directory), waits until it
 * serves, and when the scope closes stops it (SIGTERM, then SIGKILL after 5 s) and removes the directory.
 *
 * It runs with a 100 ms heartbeat and a 1 s election timeout (etcd's defaults), so its smallest lease TTL is 2 s.
 */
import { Data, Deferred, Effect, type Scope } from "effect"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

export class EtcdError extends Data.TaggedError("EtcdError")<{ readonly message: string }> {}

/** Where `etcd` is on PATH, or undefined. */
export const etcdOnPath = (): string | undefined => {
  try {
    const found = execFileSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" }).trim()
    return found === "" ? undefined : found
  } catch {
    return undefined
  }
}

const freePort = Effect.callback<number, EtcdError>((resume) => {
  const server = Net.createServer()
  server.once("error", (error) => resume(Effect.fail(new EtcdError({ message: `no free port: ${error.message}` }))))
  server.listen({ host: "127.0.0.1", port: 0 }, () => {
    const address = server.address()
    const port = address !== null && typeof address === "object" ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

const healthy = (port: number) =>
  Effect.tryPromise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) })
    return ((await response.json()) as { health?: string }).health === "true"
  }).pipe(Effect.catch(() => Effect.succeed(false)))

/** Starts etcd `binary`; its `host:port` once it serves. Stopped, and its data removed, when the scope closes. */
export const start = (binary: string): Effect.Effect<string, EtcdError, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-actor-rpc-demo-etcd-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const clientPort = yield* freePort
    const peerPort = yield* freePort
    const client = `http://127.0.0.1:${clientPort}`
    const peer = `http://127.0.0.1:${peerPort}`
    const exited = yield* Deferred.make<void>()
    let output = ""
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(binary, [
          "--name=demo",
          `--data-dir=${dataDir}`,
          `--listen-client-urls=${client}`,
          `--advertise-client-urls=${client}`,
          `--listen-peer-urls=${peer}`,
          `--initial-advertise-peer-urls=${peer}`,
          `--initial-cluster=demo=${peer}`,
          "--logger=zap",
          "--log-level=error"
        ], { stdio: ["ignore", "pipe", "pipe"] })
        const keep = (chunk: string) => {
          output = (output + chunk).slice(-4000)
        }
        child.stdout!.setEncoding("utf8").on("data", keep)
        child.stderr!.setEncoding("utf8").on("data", keep)
        child.once("close", () => Deferred.doneUnsafe(exited, Effect.void))
        child.once("error", (error) => {
          keep(error.message)
          Deferred.doneUnsafe(exited, Effect.void)
        })
        return child
      }),
      (child) =>
        Effect.gen(function*() {
          if (child.exitCode !== null || child.signalCode !== null) return
          child.kill("SIGTERM")
          const ended = yield* Effect.timeoutOption(Deferred.await(exited), "5 seconds")
          if (ended._tag === "None") {
            child.kill("SIGKILL")
            yield* Effect.timeoutOption(Deferred.await(exited), "5 seconds")
          }
        })
    )
    // Bounded polling: every 100 ms, for at most 30 s.
    for (let i = 0; i < 300; i++) {
      if (yield* healthy(clientPort)) return `127.0.0.1:${clientPort}`
      if (Deferred.isDoneUnsafe(exited)) break
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.fail(new EtcdError({ message: `etcd (${binary}) did not serve. Its output:\n${output}` }))
  })
