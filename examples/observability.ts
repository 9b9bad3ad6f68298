/**
 * Observability: spans, metrics, logs and introspection of two TCP services in one process.
 *
 * A "frontend" service calls an inventory endpoint on a "backend" service over TCP on 127.0.0.1, from inside a
 * span. The example prints:
 * - every span as it ends, indented under its parent: the caller's client span and the handler's server span
 *   share one trace across the wire;
 * - the handler's log line, annotated with the endpoint id and the method;
 * - the library's metrics (RpcMetrics.snapshot): call latency, mailbox wait, handler time, frame sizes, and a
 *   rejected call counted by reason;
 * - RpcService.introspect of both services: endpoints with their mailbox depth, connections, calls in flight.
 *
 * Run: npm run example:observability   (or: npx tsx examples/observability.ts)
 */
import { Effect, Exit, Layer, Logger, Metric, Option, Schema, Tracer } from "effect"
import { RpcEndpoint, RpcGateway, RpcMetrics, RpcService } from "effect-actor-rpc"

class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", { item: Schema.String }) {}

const Inventory = RpcGateway.make("Inventory", {
  reserve: RpcGateway.ask({ payload: Schema.String, success: Schema.Number, failure: OutOfStock }),
  restock: RpcGateway.tell({ payload: Schema.String })
})

const inventory = RpcEndpoint.make({
  id: "inventory",
  gateways: [Inventory],
  init: () =>
    Effect.sync(() => {
      const stock = new Map([["apples", 2]])
      return {
        handlers: {
          reserve: (item: string) =>
            Effect.gen(function*() {
              const left = stock.get(item) ?? 0
              // This log line carries the endpoint id and the method as annotations.
              yield* Effect.logInfo(`reserving ${item} (${left} left)`)
              if (left === 0) return yield* Effect.fail(new OutOfStock({ item }))
              stock.set(item, left - 1)
              return left - 1
            }),
          restock: (item: string) => Effect.sync(() => void stock.set(item, (stock.get(item) ?? 0) + 10))
        }
      }
    })
})

/** A tracer that prints each span when it ends, with its trace and parent, so the cross-wire link is visible. */
const printingTracer = Tracer.make({
  span(options) {
    const span = new Tracer.NativeSpan(options)
    const end = span.end.bind(span)
    span.end = (endTime, exit) => {
      end(endTime, exit)
      const parent = Option.getOrUndefined(span.parent)
      const micros = Number(endTime - span.status.startTime) / 1000
      console.log(
        `span  ${span.name.padEnd(34)} kind=${span.kind.padEnd(8)} trace=${span.traceId.slice(0, 8)} ` +
          `span=${span.spanId.slice(0, 8)} parent=${parent?.spanId.slice(0, 8) ?? "-".padEnd(8)} ` +
          `${Exit.isSuccess(exit) ? "ok  " : "fail"} ${micros.toFixed(0)} µs`
      )
    }
    return span
  }
})

const printMetrics = Effect.gen(function*() {
  console.log("\nmetrics (RpcMetrics.snapshot):")
  for (const metric of yield* RpcMetrics.snapshot) {
    const attributes = Object.entries(metric.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join(",")
    const name = `${metric.id}{${attributes}}`.padEnd(58)
    const state = metric.state as any
    if (metric.type === "Histogram") {
      if (state.count === 0) continue
      console.log(`  ${name} count=${state.count} mean=${(state.sum / state.count).toFixed(3)} max=${state.max.toFixed(3)}`)
    } else console.log(`  ${name} ${state.count}`)
  }
})

const program = Effect.gen(function*() {
  const backend = yield* RpcService.makeTcp({ name: "backend" })
  const frontend = yield* RpcService.makeTcp({ name: "frontend" })
  yield* RpcEndpoint.scoped(inventory).pipe(Effect.provideService(RpcService.RpcService, backend))

  const client = yield* frontend.connect(backend.address("inventory"), Inventory)
  console.log("spans (a trace across the wire: each server span's parent is its client span):")
  yield* Effect.gen(function*() {
    yield* client.reserve("apples")
    yield* client.restock("pears")
    yield* Effect.exit(client.reserve("plums"))
  }).pipe(Effect.withSpan("checkout", { kind: "internal" }))

  // An ask whose caller gives up before the endpoint reaches it is dropped there and counted.
  yield* Effect.exit(client.reserve("apples", { timeout: 0 }))
  yield* client.reserve("apples")

  yield* printMetrics
  console.log("\nintrospection:")
  for (const service of [backend, frontend]) {
    const snapshot = yield* service.introspect
    console.log(`  ${snapshot.service} at ${snapshot.authority}: ${snapshot.inFlightCalls} calls in flight, ` +
      `${snapshot.pendingTimeouts} timeouts armed`)
    for (const endpoint of snapshot.endpoints) {
      console.log(`    endpoint ${endpoint.endpointId} ${endpoint.state}, mailbox ${endpoint.mailboxDepth}`)
    }
    for (const connection of snapshot.connections) {
      console.log(`    connection ${connection.direction} ${connection.peer} (${connection.peerService}) ` +
        `${connection.state}, ${connection.callsOut} out, ${connection.callsIn} in`)
    }
  }
})

program.pipe(
  Effect.scoped,
  Effect.withTracer(printingTracer),
  Effect.provide(Layer.mergeAll(Logger.layer([Logger.consolePretty()]), Layer.succeed(Metric.MetricRegistry)(new Map()))),
  Effect.runPromise
)
