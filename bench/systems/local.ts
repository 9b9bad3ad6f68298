/**
 * The in-process workloads, `us` only: asks and tells within one service, the heap an idle endpoint holds, and the
 * time to start 100k endpoints. Each run prints the figures of every measured run on one `RESULT` line.
 *
 *   node --expose-gc --import tsx bench/systems/local.ts --workload local-ask --runs 3 --seconds 1 --warmup 0.5
 *
 * Workloads: local-ask (one caller, one ask at a time), local-tell (one caller; the clock stops when the endpoint
 * has handled the last tell), idle-endpoint-heap (10k and 100k started endpoints), start-100k-endpoints,
 * memory-per-ask (the heap an ask in flight holds, in process and over TCP, measured by `npm run load`'s engine).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Schema } from "effect"
import { RpcEndpoint, RpcGateway, RpcService, type RpcServer } from "effect-actor-rpc"
import * as Load from "../../test/load/load.js"
import { clientArgs, measureEffect, report } from "../support/driver.js"

const Counter = RpcGateway.make("Counter", {
  add: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
  bump: RpcGateway.tell({ payload: Schema.Number })
})

const counter = (id?: string) =>
  RpcEndpoint.make({
    id,
    gateways: [Counter],
    init: () =>
      Effect.sync(() => {
        let total = 0
        // Method shorthand: tsx compiles with esbuild's keepNames, which gives every `name: () => …` closure a
        // redefined `name` property (about 260 bytes each); methods keep their name without it.
        return {
          handlers: {
            add(n: number) {
              return Effect.sync(() => (total += n))
            },
            bump(n: number) {
              return Effect.sync(() => {
                total += n
              })
            }
          }
        }
      })
  })

const args = clientArgs()

const localAsk = Effect.gen(function*() {
  const service = yield* RpcService.makeLocal()
  const server = yield* service.startServer(counter("counter"))
  yield* server.start
  const client = yield* service.connect(server.address, Counter)
  return yield* measureEffect(client.add(1), 1, args)
})

/** Tells sent between two waits for the endpoint to catch up. */
const TELL_BURST = 1000

/** Tells for `seconds` in bursts, each followed by an ask that returns once every tell before it has been handled. */
const localTell = Effect.gen(function*() {
  const service = yield* RpcService.makeLocal()
  const server = yield* service.startServer(counter("counter"))
  yield* server.start
  const client = yield* service.connect(server.address, Counter)
  const once = (seconds: number) =>
    Effect.gen(function*() {
      const started = performance.now()
      const deadline = started + seconds * 1000
      let sent = 0
      while (performance.now() < deadline) {
        for (let i = 0; i < TELL_BURST; i++) yield* client.bump(1)
        // Waits until the endpoint has handled the burst: a sender that never waits measures the garbage collector
        // copying an ever longer backlog, not the tells.
        yield* client.add(0)
        sent += TELL_BURST
      }
      return { calls_per_s: sent / ((performance.now() - started) / 1000) }
    })
  yield* once(args.warmupSeconds)
  const runs: Array<{ calls_per_s: number }> = []
  for (let i = 0; i < args.runs; i++) runs.push(yield* once(args.seconds))
  return runs
})

/** The heap in use once garbage is collected; the event loop turns in between so deferred cleanup runs too. */
const collect = Effect.gen(function*() {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("bench/systems/local.ts needs node --expose-gc for the heap workloads")
  for (let i = 0; i < 3; i++) {
    gc()
    yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
  }
  gc()
  return process.memoryUsage().heapUsed
})

/** Starts `count` endpoints (one definition, each start a fresh id) and waits until all have run onStart. */
const startMany = (service: RpcService.RpcServiceShape, count: number) =>
  Effect.gen(function*() {
    const definition = counter()
    const servers: Array<RpcServer.Any> = new Array(count)
    for (let i = 0; i < count; i++) {
      const server = yield* service.startServer(definition)
      yield* server.start
      servers[i] = server
    }
    for (const server of servers) yield* server.awaitStarted
    return servers
  })

/** Bytes of heap per started, idle endpoint: the heap after starting `count` of them, less the heap before. */
const heapPerEndpoint = (count: number) =>
  Effect.scoped(Effect.gen(function*() {
    const service = yield* RpcService.makeLocal()
    const before = yield* collect
    const servers = yield* startMany(service, count)
    const after = yield* collect
    if (servers.length !== count) throw new Error("not every endpoint started")
    return (after - before) / count
  }))

const idleHeap = Effect.gen(function*() {
  yield* heapPerEndpoint(1000)
  const runs: Array<{ bytes_per_endpoint: number; bytes_per_endpoint_10k: number }> = []
  for (let i = 0; i < args.runs; i++) {
    const at10k = yield* heapPerEndpoint(10_000)
    runs.push({ bytes_per_endpoint: yield* heapPerEndpoint(100_000), bytes_per_endpoint_10k: at10k })
  }
  return runs
})

const start100k = Effect.gen(function*() {
  const once = Effect.scoped(Effect.gen(function*() {
    const service = yield* RpcService.makeLocal()
    const started = performance.now()
    yield* startMany(service, 100_000)
    return { ms: performance.now() - started }
  }))
  yield* once
  const runs: Array<{ ms: number }> = []
  for (let i = 0; i < args.runs; i++) runs.push(yield* once)
  return runs
})

/**
 * Bytes of heap per ask in flight, both sides together, measured exactly as `npm run load` does (test/load/load.ts,
 * its defaults: 100 endpoints, 10,000 asks, warm-up included): the endpoints hold every reply until the last ask
 * has arrived, and the heap after a forced collection at that moment, less the baseline taken after the warm-up,
 * is divided by the number of asks. Both services are in this process, over TCP on 127.0.0.1 or in-process.
 * A run fails unless every ask was answered and all of them were in flight together.
 */
const perAsk = (transport: "local" | "tcp") =>
  Effect.gen(function*() {
    // 10,000 tells as well, so that the warm-up before the baseline is npm run load's (min(10,000, tells) tells);
    // no phase of large payloads, which comes after the figure and only costs time here.
    const result = yield* Load.run({ transport, asks: 10_000, tells: 10_000, bulkAsks: 0 })
    const { asks, heap } = result
    if (asks.answered !== asks.count || asks.gateOpenedBy !== "count" || heap.asksInFlight === 0) {
      return yield* Effect.die(
        new Error(
          `memory-per-ask over ${transport}: the asks were not all in flight and answered: ` +
            result.problems.join("; ")
        )
      )
    }
    if (result.problems.length > 0) {
      console.error(`memory-per-ask over ${transport}: the load run reported: ${result.problems.join("; ")}`)
    }
    return (heap.asksInFlight - heap.baseline) / asks.count
  })

/** At most 3 runs: each takes seconds, and the figure varies by a few bytes between runs. */
const memoryPerAsk = Effect.gen(function*() {
  const runs: Array<{ bytes_per_ask_local: number; bytes_per_ask_tcp: number }> = []
  for (let i = 0; i < Math.min(args.runs, 3); i++) {
    runs.push({ bytes_per_ask_local: yield* perAsk("local"), bytes_per_ask_tcp: yield* perAsk("tcp") })
  }
  return runs
})

const workloads: Record<string, Effect.Effect<ReadonlyArray<object>, unknown, import("effect").Scope.Scope>> = {
  "local-ask": localAsk,
  "local-tell": localTell,
  "idle-endpoint-heap": idleHeap,
  "start-100k-endpoints": start100k,
  "memory-per-ask": memoryPerAsk
}

const workload = workloads[args.workload]
if (workload === undefined) {
  console.error(`bench/systems/local.ts: unknown workload ${args.workload}; known: ${Object.keys(workloads).join(", ")}`)
  process.exit(2)
}
NodeRuntime.runMain(Effect.scoped(Effect.map(workload, report)))
