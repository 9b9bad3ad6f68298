/**
 * The `effect-rpc` system: Effect's own RPC (`effect/rpc`) over its socket protocol, SchemaBinary serialization, on
 * Node TCP from `@effect/platform-node`. It is the nearest off-the-shelf Effect alternative to this library.
 *
 *   tsx bench/systems/effect-rpc.ts server
 *   tsx bench/systems/effect-rpc.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 *
 * Everything is left at Effect's defaults (handlers run with unbounded concurrency, per-call tracing spans on, 16 MiB
 * frame limit), except `noDelay` on both sockets, which our own transport sets too.
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
import { type ClientArgs, clientArgs, measureEffect, payload, ready, remoteWorkload, report } from "../support/driver.js"

const Bench = RpcGroup.make(Rpc.make("echo", { payload: Schema.Uint8Array, success: Schema.Uint8Array }))

const host = "127.0.0.1"

const server = Effect.gen(function*() {
  const { address } = yield* SocketServer.SocketServer
  if (address._tag === "UnixPathAddress") return yield* Effect.die("bench server: expected a TCP address")
  ready(address.port)
  return yield* Effect.never
}).pipe(
  Effect.provide(
    RpcServer.layer(Bench).pipe(
      Layer.provide(Bench.toLayer({ echo: (data) => Effect.succeed(data) })),
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
    const rpc = yield* RpcClient.make(Bench)
    const runs = yield* measureEffect(rpc.echo(body), workload.inFlight, args)
    report(runs)
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
if (role === "server") NodeRuntime.runMain(server, { teardown })
else if (role === "client") NodeRuntime.runMain(client(clientArgs()), { teardown })
else {
  console.error("usage: tsx bench/systems/effect-rpc.ts server | client --workload ID --port P [--runs N ...]")
  process.exit(2)
}
