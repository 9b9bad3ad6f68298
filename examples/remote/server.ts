/**
 * The server process of the remote example: a key-value store and a fenced JobMaster (leader "leader-2") on a
 * TCP RpcService bound to 127.0.0.1 on any free port. It prints `READY <store address> <jobmaster address>`
 * once both endpoints have started, serves until SIGTERM, then stops its endpoints (onStop) and its RpcService.
 *
 * Started by examples/remote.ts (npm run example:remote); alone: npx tsx examples/remote/server.ts, and with
 * RPC_REFLECTION=true for the command-line client (README, "Command-line client").
 */
import { Console, Effect, Layer, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcService } from "effect-actor-rpc"
import { announce, runRole } from "../support/processes.js"
import { JobMasterGateway, KeyNotFound, StoreGateway } from "./protocol.js"

const Store = RpcEndpoint.make({
  id: "store",
  gateways: [StoreGateway],
  init: () =>
    Effect.sync(() => {
      const data = new Map<string, string>()
      const notes: Array<string> = []
      return {
        handlers: {
          put: ({ key, value }) =>
            Effect.andThen(Effect.sync(() => data.set(key, value)), Console.log(`store: put ${key} = ${value}`)),
          get: (key) => {
            const value = data.get(key)
            return value === undefined ? Effect.fail(new KeyNotFound({ key })) : Effect.succeed(value)
          },
          note: (text) => Effect.andThen(Effect.sync(() => notes.push(text)), Console.log(`store: note "${text}"`)),
          notes: () => Effect.sync(() => [...notes]),
          // `later` keeps the main thread free while the reply waits; other calls are served meanwhile.
          slowEcho: ({ delayMillis, text }) =>
            Effect.succeed(RpcEndpoint.later(
              Effect.sleep(delayMillis).pipe(
                Effect.andThen(Console.log(`store: replying "${text}" after ${delayMillis} ms`)),
                Effect.as(text)
              )
            ))
        },
        onStart: Console.log("store: started"),
        onStop: Effect.suspend(() => Console.log(`store: stopping with ${data.size} key(s) and ${notes.length} note(s)`))
      }
    })
})

// Leadership has already moved from leader-1 to leader-2: callers holding leader-1 are rejected.
const JobMaster = RpcEndpoint.makeFenced({
  id: "jobmaster",
  gateways: [JobMasterGateway],
  token: Schema.String,
  initialToken: "leader-2",
  init: () =>
    Effect.succeed({
      handlers: { requestJobStatus: () => Effect.succeed("RUNNING") },
      onStart: Console.log("jobmaster: started as leader-2"),
      onStop: Console.log("jobmaster: stopping")
    })
})

const program = Effect.gen(function*() {
  const store = yield* RpcEndpoint.scoped(Store)
  const jobMaster = yield* RpcEndpoint.scoped(JobMaster)
  // Port "0" became a real port; the launcher learns the addresses from this line.
  yield* announce(store.address, jobMaster.address)
  return yield* Effect.never
}).pipe(Effect.scoped)

program.pipe(
  // RPC_* variables apply: RPC_REFLECTION=true lets the command-line client list and call the endpoints.
  Effect.provide(RpcService.layerTcp({ host: "127.0.0.1", port: "0" }).pipe(Layer.provide(RpcConfig.layerFromEnv()))),
  Effect.ensuring(Console.log("RpcService shut down")),
  runRole
)
