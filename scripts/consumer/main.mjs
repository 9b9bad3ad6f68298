/**
 * The consumer test's program, as a user would write it: plain ESM against the installed tarball, run by plain
 * `node` (no tsx), and bundled by esbuild to ESM and to CommonJS. Two TCP RpcServices on 127.0.0.1; an ask, a tell,
 * a typed failure and a timeout whose call site must name this file (or the bundle made of it) and the line of the
 * call. Prints one line per step and exits 0, or throws.
 */
import { Effect, Schema } from "effect"
import { RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { basename } from "node:path"

class KeyNotFound extends Schema.TaggedError()("KeyNotFound", { key: Schema.String }) {}

const KvGateway = RpcGateway.make("KvGateway", {
  get: RpcGateway.ask({ payload: Schema.String, success: Schema.String, failure: KeyNotFound }),
  put: RpcGateway.tell({ payload: Schema.Struct({ key: Schema.String, value: Schema.String }) }),
  stall: RpcGateway.ask({ success: Schema.Number })
})

const KvEndpoint = RpcEndpoint.make({
  id: "kv",
  gateways: [KvGateway],
  init: () =>
    Effect.sync(() => {
      const data = new Map()
      return {
        handlers: {
          get: (key) => data.has(key) ? Effect.succeed(data.get(key)) : Effect.fail(new KeyNotFound({ key })),
          put: ({ key, value }) => Effect.sync(() => void data.set(key, value)),
          stall: () => Effect.succeed(RpcEndpoint.later(Effect.never))
        }
      }
    })
})

function callerOfTheStalledMethod(kv) {
  return kv.stall(undefined, { timeout: "300 millis" })
}

// The file node runs: this program, or the bundle made of it.
const programFile = process.argv[1]

const program = Effect.gen(function*() {
  const server = yield* RpcService.makeTcp({ name: "server", host: "127.0.0.1", port: 0 })
  const client = yield* RpcService.makeTcp({ name: "client", host: "127.0.0.1", port: 0 })
  const endpoint = yield* RpcEndpoint.scoped(KvEndpoint).pipe(Effect.provideService(RpcService.RpcService, server))
  assert.match(endpoint.address, /^rpc:\/\/127\.0\.0\.1:\d+\/kv$/)
  const kv = yield* client.connect(endpoint.address, KvGateway)
  console.log(`connected: ${kv.address}`)

  yield* kv.put({ key: "answer", value: "42" })
  const answer = yield* kv.get("answer")
  assert.equal(answer, "42")
  console.log(`tell, then ask: ${answer}`)

  const missing = yield* Effect.flip(kv.get("nope"))
  assert.ok(missing instanceof KeyNotFound, `expected KeyNotFound, got ${missing}`)
  assert.equal(missing.key, "nope")
  console.log(`typed failure: ${missing._tag} { key: "${missing.key}" }`)

  const timeout = yield* Effect.flip(callerOfTheStalledMethod(kv))
  assert.ok(timeout instanceof RpcError.RpcTimeoutError, `expected RpcTimeoutError, got ${timeout}`)
  assert.equal(timeout.method, "KvGateway.stall")
  assert.equal(timeout.timeoutMillis, 300)
  const site = timeout.callSite
  assert.ok(site !== undefined, "the timeout carries no call site")
  const first = site.split("\n")[0]
  // `at callerOfTheStalledMethod (/path/to/file:line:column)`: this file, and the line that makes the call.
  const frame = /^at callerOfTheStalledMethod \((.+):(\d+):(\d+)\)$/.exec(first)
  assert.ok(frame !== null, `the call site does not start at the caller: ${site}`)
  assert.equal(basename(frame[1]), basename(programFile), `the call site names another file: ${site}`)
  const line = readFileSync(programFile, "utf8").split("\n")[Number(frame[2]) - 1]
  assert.match(line, /kv\.stall\(/, `the call site names line ${frame[2]}, which is: ${line}`)
  console.log(`timeout: ${timeout.method} after ${timeout.timeoutMillis} ms, called ${site}`)
}).pipe(Effect.scoped)

// Internals stay unreachable (a specifier in a variable, so that a bundler leaves the import to run time).
const internal = "effect-actor-rpc/internal/client"

// No top-level await: the same file is bundled to CommonJS too.
Effect.runPromise(program)
  .then(() => assert.rejects(import(internal), { code: "ERR_PACKAGE_PATH_NOT_EXPORTED" }))
  .then(() => console.log("ok"), (error) => {
    console.error(error)
    process.exitCode = 1
  })
