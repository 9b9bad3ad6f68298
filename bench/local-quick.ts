/**
 * A quick in-process measurement: sequential local asks, concurrent local asks and tells per second.
 * Run: npx tsx bench/local-quick.ts (the full benchmark suite arrives with the benchmarks issue).
 */
import { Effect, Layer, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"

const Gateway = RpcGateway.make("Bench", {
  ask: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
  tell: RpcGateway.tell({ payload: Schema.Number })
})

const endpoint = RpcEndpoint.make({
  id: "bench",
  gateways: [Gateway],
  init: () =>
    Effect.sync(() => {
      let sum = 0
      return {
        handlers: {
          ask: (n: number) => Effect.succeed(n + 1),
          tell: (n: number) =>
            Effect.sync(() => {
              sum += n
            })
        }
      }
    })
})

const rate = (label: string, count: number, run: Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const start = performance.now()
    yield* run
    const seconds = (performance.now() - start) / 1000
    console.log(`${label.padEnd(28)} ${Math.round(count / seconds).toLocaleString("en-US").padStart(12)} /s`)
  })

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const client = yield* service.connect(`local://${service.name}/bench`, Gateway)
  const n = 100_000
  for (let round = 0; round < 2; round++) {
    yield* rate("local ask, sequential", n, Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* client.ask(i)
    }))
    yield* rate("local ask, 256 in flight", n, Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => client.ask(i), { concurrency: 256, discard: true }))
    yield* rate("local tell", n, Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* client.tell(i)
      yield* client.ask(0)
    }))
  }
})

const capture = process.argv.includes("--capture")
program.pipe(
  Effect.provide(RpcEndpoint.layer(endpoint).pipe(
    Layer.provideMerge(RpcService.layerLocal()),
    Layer.provide(RpcConfig.layer({ captureAskCallSite: capture }))
  )),
  Effect.runPromise
)
