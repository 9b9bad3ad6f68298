/**
 * The client process of the remote example: it calls the server's endpoints over TCP and shows asks, a typed
 * failure, a tell, a per-call timeout and a fencing rejection. It exits 0 when every call behaved as expected.
 *
 * Started by examples/remote.ts (npm run example:remote); alone:
 *   npx tsx examples/remote/client.ts <store address> <jobmaster address>
 */
import { Console, Effect, Schema } from "effect"
import { RpcService } from "effect-actor-rpc"
import { runRole } from "../support/processes.js"
import { JobMasterGateway, StoreGateway } from "./protocol.js"

const [storeAddress, jobMasterAddress] = process.argv.slice(2)
if (storeAddress === undefined || jobMasterAddress === undefined) {
  console.error("usage: client.ts <store address> <jobmaster address>")
  process.exit(2)
}

class UnexpectedOutcome extends Schema.TaggedError<UnexpectedOutcome>()("UnexpectedOutcome", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}

/** Runs a call that must fail with `tag` and returns that error; any other outcome fails the client. */
const expectFailure = <A, E extends { readonly _tag: string; readonly message: string }, T extends E["_tag"]>(
  tag: T,
  call: Effect.Effect<A, E>
): Effect.Effect<Extract<E, { readonly _tag: T }>, UnexpectedOutcome> =>
  Effect.flip(call).pipe(
    Effect.mapError((value) =>
      new UnexpectedOutcome({ detail: `expected ${tag}, but the call succeeded with ${String(value)}` })
    ),
    Effect.flatMap((error) =>
      error._tag === tag
        ? Effect.succeed(error as Extract<E, { readonly _tag: T }>)
        : Effect.fail(new UnexpectedOutcome({ detail: `expected ${tag}, got ${error._tag}: ${error.message}` }))
    )
  )

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const store = yield* service.connect(storeAddress, StoreGateway)
  yield* Console.log(`connected to ${store.address}`)

  // Asks: the reply, or the method's typed failure, decoded from its Schema.
  yield* store.put({ key: "answer", value: "42" })
  yield* Console.log(`get("answer") = ${yield* store.get("answer")}`)
  const missing = yield* expectFailure("KeyNotFound", store.get("question"))
  yield* Console.log(`get("question") failed with ${missing._tag}: ${missing.message}`)

  // A tell returns once sent. Calls from one client arrive in order, so the next ask sees the note.
  yield* store.note("hello from the client")
  yield* Console.log(`told a note; the store now holds ${JSON.stringify(yield* store.notes())}`)

  // A per-call timeout: the store replies after 600 ms, the caller gives up at 200 ms.
  const timedOut = yield* expectFailure(
    "RpcTimeoutError",
    store.slowEcho({ text: "too late", delayMillis: 600 }, { timeout: "200 millis" })
  )
  yield* Console.log(`slowEcho gave up: ${timedOut.message}`)
  // The late reply arrives while this call waits; replies are matched to their call, so it is dropped.
  yield* Console.log(`slowEcho("in time") = ${yield* store.slowEcho({ text: "in time", delayMillis: 500 })}`)

  // Fencing: a client holding the former leader's token is rejected; the current leader's is served.
  const stale = yield* service.connectFenced(jobMasterAddress, "leader-1", JobMasterGateway)
  const rejected = yield* expectFailure("FencingTokenError", stale.requestJobStatus())
  yield* Console.log(`as leader-1: rejected with ${rejected._tag} (${rejected.reason}): ${rejected.message}`)
  const current = yield* service.connectFenced(jobMasterAddress, "leader-2", JobMasterGateway)
  yield* Console.log(`as leader-2: job status ${yield* current.requestJobStatus()}`)

  yield* Console.log("done; exiting")
})

program.pipe(
  Effect.provide(RpcService.layerTcp({ host: "127.0.0.1", port: "0" })),
  runRole
)
