/**
 * The `effect-rpc` system: Effect's own RPC (`effect/rpc`) over its socket protocol, SchemaBinary serialization, on
 * Node TCP from `@effect/platform-node`. It is the nearest off-the-shelf Effect alternative to this library.
 *
 *   tsx bench/systems/effect-rpc.ts server --workload ask-32B-seq
 *   tsx bench/systems/effect-rpc.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 *
 * Everything is left at Effect's defaults (handlers run with unbounded concurrency, per-call tracing spans on, 16 MiB
 * frame limit), except `noDelay` on both sockets, which our own transport sets too.
 *
 * - Tells: effect/rpc has no one-way call over its socket protocol (its notifications are JSON-RPC's). The nearest
 *   is a call with `discard: true`: the server acknowledges it as soon as its handler starts, and the client keeps
 *   an entry for it until then. A burst therefore sends its 1,000 discarded calls concurrently (none waits for the
 *   previous one), waits for their acknowledgements, then asks `count`; the figure includes one acknowledgement per
 *   message, which is the protocol's cost of a fire-and-forget call.
 * - Fan-out: effect/rpc has no addressable endpoints; the nearest is one Rpc per target (`echo0` to `echo99`) in
 *   one group, each with its own handler, which the server finds by tag, as gRPC finds a method by its path.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "effect/rpc"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as SocketServer from "effect/socket/SocketServer"
import {
  type ClientArgs,
  clientArgs,
  measureEffect,
  measureTellsEffect,
  payload,
  ready,
  remoteWorkload,
  report,
  roundRobin,
  type RemoteWorkload,
  serverWorkload
} from "../support/driver.js"

const Bench = RpcGroup.make(Rpc.make("echo", { payload: Schema.Uint8Array, success: Schema.Uint8Array }))

const Sink = RpcGroup.make(
  Rpc.make("tell", { payload: Schema.Uint8Array }),
  Rpc.make("count", { success: Schema.Number })
)

/** One echo Rpc per target: `echo0` to `echo<targets - 1>`. */
const fanout = (targets: number) =>
  RpcGroup.make(
    ...Array.from(
      { length: targets },
      (_, index) => Rpc.make(`echo${index}`, { payload: Schema.Uint8Array, success: Schema.Uint8Array })
    )
  )

const host = "127.0.0.1"

/** The workload's group and its handlers. */
const served = (workload: RemoteWorkload) => {
  if (workload.kind === "tell") {
    let tells = 0
    return RpcServer.layer(Sink).pipe(Layer.provide(Sink.toLayer({
      tell: () =>
        Effect.sync(() => {
          tells++
        }),
      count: () => Effect.sync(() => tells)
    })))
  }
  if (workload.targets > 1) {
    const group = fanout(workload.targets)
    const handlers: Record<string, (data: Uint8Array) => Effect.Effect<Uint8Array>> = {}
    for (let index = 0; index < workload.targets; index++) handlers[`echo${index}`] = (data) => Effect.succeed(data)
    return RpcServer.layer(group).pipe(Layer.provide(group.toLayer(handlers)))
  }
  return RpcServer.layer(Bench).pipe(Layer.provide(Bench.toLayer({ echo: (data) => Effect.succeed(data) })))
}

const server = (workload: RemoteWorkload) =>
  Effect.gen(function*() {
    const { address } = yield* SocketServer.SocketServer
    if (address._tag === "UnixPathAddress") return yield* Effect.die("bench server: expected a TCP address")
    ready(address.port)
    return yield* Effect.never
  }).pipe(
    Effect.provide(
      served(workload).pipe(
        Layer.provide(RpcServer.layerProtocolSocketServer),
        Layer.provide(RpcSerialization.layerSchemaBinary()),
        Layer.provideMerge(NodeSocketServer.layer({ host, port: 0, noDelay: true }))
      )
    )
  )

const client = (args: ClientArgs) =>
  Effect.gen(function*() {
    const workload = remoteWorkload(args.workload)
    const body = payload(workload.bytes)
    if (workload.kind === "tell") {
      const rpc = yield* RpcClient.make(Sink)
      const tell = rpc.tell(body, { discard: true })
      const count = rpc.count()
      const burst = (tells: number) =>
        Effect.all(Array.from({ length: tells }, () => tell), { concurrency: "unbounded", discard: true }).pipe(
          Effect.andThen(count)
        )
      report(yield* measureTellsEffect(burst, args))
    } else if (workload.targets > 1) {
      const rpc = yield* RpcClient.make(fanout(workload.targets))
      const methods = rpc as unknown as Record<string, (data: Uint8Array) => Effect.Effect<Uint8Array, unknown>>
      const call = Effect.suspend(
        roundRobin(Array.from({ length: workload.targets }, (_, index) => methods[`echo${index}`]!(body)))
      )
      report(yield* measureEffect(call, workload.inFlight, args))
    } else {
      const rpc = yield* RpcClient.make(Bench)
      report(yield* measureEffect(rpc.echo(body), workload.inFlight, args))
    }
  }).pipe(
    // The scope owns the connection and the protocol's ping fiber, so closing it lets the process exit on its own.
    Effect.scoped,
    Effect.provide(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerNet({ host, port: args.port, noDelay: true })),
        Layer.provide(RpcSerialization.layerSchemaBinary())
      )
    )
  )

// SIGTERM/SIGINT interrupt the main fiber; that is how the orchestrator stops a server, so it is a clean exit.
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

const role = process.argv[2]
if (role === "server") NodeRuntime.runMain(server(serverWorkload()), { teardown })
else if (role === "client") NodeRuntime.runMain(client(clientArgs()), { teardown })
else {
  console.error(
    "usage: tsx bench/systems/effect-rpc.ts server --workload ID | client --workload ID --port P [--runs N ...]"
  )
  process.exit(2)
}
