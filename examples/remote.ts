/**
 * Remote: a server and a client in two processes, talking over TCP on 127.0.0.1.
 *
 * This launcher starts `examples/remote/server.ts`, which binds any free port and prints its endpoints'
 * addresses (`READY rpc://127.0.0.1:PORT/store rpc://127.0.0.1:PORT/jobmaster`), then starts
 * `examples/remote/client.ts` with those addresses. The client shows asks (one failing with the method's typed
 * `KeyNotFound`), a tell, an `RpcTimeoutError` from a reply that comes too late, and a `FencingTokenError` for a
 * stale leader token; then it exits. The launcher stops the server with SIGTERM: its endpoints run onStop and its
 * RpcService shuts down. Every line is prefixed with its process; the exit code is 0 only if all of this
 * happened, and a 30 s watchdog kills both processes and fails otherwise.
 *
 * Run: npm run example:remote   (or: npx tsx examples/remote.ts)
 */
import { Effect } from "effect"
import { logger, runLauncher, spawnRole, withWatchdog } from "./support/processes.js"

const log = logger("launcher")

const program = Effect.gen(function*() {
  yield* log("starting the server")
  const server = yield* spawnRole("server", "examples/remote/server.ts")
  const addresses = yield* server.ready
  yield* log(`the server is ready (pid ${server.pid}); starting the client`)

  const client = yield* spawnRole("client", "examples/remote/client.ts", addresses)
  yield* client.succeeded("15 seconds")
  yield* log("the client exited with code 0; stopping the server with SIGTERM")

  yield* server.stop
  yield* log("the server exited with code 0; done")
}).pipe(Effect.scoped, withWatchdog("30 seconds"))

runLauncher(program)
