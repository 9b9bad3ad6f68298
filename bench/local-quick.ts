/**
 * A quick measurement of sequential asks, concurrent asks and tells per second, in-process or (with `--tcp`)
 * between two TCP services of this process over 127.0.0.1. `--capture` turns call-site capture on, `--no-metrics`
 * the per-call metrics off.
 * Run: npm run bench:local [-- --tcp] [-- --capture] [-- --no-metrics]; the full suite is npm run bench (bench/README.md).
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

const tcp = process.argv.includes("--tcp")
const capture = process.argv.includes("--capture")
const metrics = !process.argv.includes("--no-metrics")

const program = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  // Over TCP the caller is a second service, so every call crosses the socket.
  const caller = tcp ? yield* RpcService.makeTcp().pipe(Effect.provide(RpcConfig.layer({ captureAskCallSite: capture, metrics }))) : service
  const client = yield* caller.connect(service.address("bench"), Gateway)
  const where = tcp ? "tcp" : "local"
  const n = tcp ? 20_000 : 100_000
  for (let round = 0; round < 2; round++) {
    yield* rate(`${where} ask, sequential`, n, Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* client.ask(i)
    }))
    yield* rate(`${where} ask, 256 in flight`, n, Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => client.ask(i), { concurrency: 256, discard: true }))
    yield* rate(`${where} tell`, n, Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* client.tell(i)
      yield* client.ask(0)
    }))
  }
})

program.pipe(
  Effect.provide(RpcEndpoint.layer(endpoint).pipe(
    Layer.provideMerge(tcp ? RpcService.layerTcp() : RpcService.layerLocal()),
    Layer.provide(RpcConfig.layer({ captureAskCallSite: capture, metrics }))
  )),
  Effect.scoped,
  Effect.runPromise
)
