/**
 * Batch: many asks in flight at once against one endpoint, which still runs its handlers strictly one at a time.
 *
 * 1,000 clients' worth of asks are sent concurrently with `Effect.forEach(..., { concurrency: "unbounded" })`.
 * The handler counts how many handlers are active at once (yielding in between, to give any overlap a chance
 * to show) and checks that it runs on the endpoint's main thread. The program prints the elapsed time and
 * verifies that every call got a distinct sequence number and that at most one handler was ever active.
 *
 * Run: npm run example:batch   (or: npx tsx examples/batch.ts)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect, Layer, Schema } from "effect"
import { RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

const CALLS = 1_000

const CounterGateway = RpcGateway.make("CounterGateway", {
  increment: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
  stats: RpcGateway.ask({ success: Schema.Struct({ calls: Schema.Number, maxActive: Schema.Number }) })
})

const CounterEndpoint = RpcEndpoint.make({
  id: "counter",
  gateways: [CounterGateway],
  init: (main) =>
    Effect.sync(() => {
      let calls = 0
      let active = 0
      let maxActive = 0
      return {
        handlers: {
          increment: () =>
            Effect.gen(function*() {
              yield* main.validateRunsInMainThread
              active++
              maxActive = Math.max(maxActive, active)
              yield* Effect.yieldNow // let other fibers run: a second handler would show up here
              active--
              return ++calls
            }),
          stats: () => Effect.sync(() => ({ calls, maxActive }))
        }
      }
    })
})

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const counter = yield* service.connect(`local://${service.name}/counter`, CounterGateway)

  yield* Console.log(`[client] sending ${CALLS} asks concurrently`)
  const [elapsed, replies] = yield* Effect.timed(
    Effect.forEach(Array.from({ length: CALLS }, (_, i) => i), (i) => counter.increment(i), {
      concurrency: "unbounded"
    })
  )
  const distinct = new Set(replies).size
  yield* Console.log(
    `[client] ${replies.length} replies (${distinct} distinct) in ${Duration.toMillis(elapsed).toFixed(1)} ms`
  )

  const { calls, maxActive } = yield* counter.stats()
  yield* Console.log(`[counter] handled ${calls} calls; at most ${maxActive} handler(s) active at once`)
  if (distinct !== CALLS || calls !== CALLS || maxActive !== 1) {
    return yield* Effect.die(new Error("the endpoint did not process the calls strictly serially"))
  }
  yield* Console.log("[client] ok: all calls answered, processed strictly serially on the main thread")
})

const MainLayer = RpcEndpoint.layer(CounterEndpoint).pipe(Layer.provideMerge(RpcService.layerLocal({ name: "batch" })))

program.pipe(Effect.provide(MainLayer), NodeRuntime.runMain)
