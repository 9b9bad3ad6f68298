/**
 * The `us` system, remote: an RpcService over TCP serving the workload's endpoints, and a client that is a second TCP
 * service in another process. Defaults throughout, including call-site capture.
 *
 *   tsx bench/systems/us.ts server --workload ask-32B-seq
 *   tsx bench/systems/us.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 *
 * Asks go to one endpoint, `echo`, whose `echo` ask returns its payload; fan-out spreads them round-robin over 100
 * such endpoints, `echo-0` to `echo-99`, on one connection. Tells go to a `sink` endpoint that counts them; its
 * `count` ask, sent after each burst on the same connection, is handled after every tell before it.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Result, Runtime, Schema } from "effect"
import { RpcAddress, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"
import {
  clientArgs,
  measureEffect,
  measureTellsEffect,
  payload,
  ready,
  remoteWorkload,
  report,
  roundRobin,
  serverWorkload
} from "../support/driver.js"

/** The protocol of the ask workloads: bytes in, the same bytes back. */
export const Echo = RpcGateway.make("Echo", {
  echo: RpcGateway.ask({ payload: Schema.Uint8Array, success: Schema.Uint8Array })
})

/** The protocol of the tell workload: one-way bytes, and the number of them handled so far. */
export const Sink = RpcGateway.make("Sink", {
  tell: RpcGateway.tell({ payload: Schema.Uint8Array }),
  count: RpcGateway.ask({ success: Schema.Number })
})

const echo = (id: string) =>
  RpcEndpoint.make({
    id,
    gateways: [Echo],
    init: () => Effect.succeed({ handlers: { echo: (bytes: Uint8Array) => Effect.succeed(bytes) } })
  })

const sink = RpcEndpoint.make({
  id: "sink",
  gateways: [Sink],
  init: () =>
    Effect.sync(() => {
      let tells = 0
      // Method shorthand: tsx's keepNames would wrap every named arrow closure in an Object.defineProperty.
      return {
        handlers: {
          tell(_bytes: Uint8Array) {
            return Effect.sync(() => {
              tells++
            })
          },
          count() {
            return Effect.sync(() => tells)
          }
        }
      }
    })
})

/** The endpoint ids of a fan-out over `targets` endpoints. */
const targetIds = (targets: number) => Array.from({ length: targets }, (_, index) => `echo-${index}`)

const server = Effect.gen(function*() {
  const workload = serverWorkload()
  if (workload.kind === "tell") yield* RpcEndpoint.scoped(sink)
  else if (workload.targets > 1) for (const id of targetIds(workload.targets)) yield* RpcEndpoint.scoped(echo(id))
  else yield* RpcEndpoint.scoped(echo("echo"))
  const service = yield* RpcService.RpcService
  const address = Result.getOrThrow(RpcAddress.parse(service.address(workload.kind === "tell" ? "sink" : "echo")))
  ready(Result.getOrThrow(RpcAddress.parseHostPort(address.authority)).port)
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(RpcService.layerTcp()))

const client = Effect.gen(function*() {
  const args = clientArgs()
  const workload = remoteWorkload(args.workload)
  const service = yield* RpcService.makeTcp()
  const at = (id: string) => `rpc://127.0.0.1:${args.port}/${id}`
  const bytes = payload(workload.bytes)
  if (workload.kind === "tell") {
    const target = yield* service.connect(at("sink"), Sink)
    const tell = target.tell(bytes)
    const count = target.count()
    const burst = (tells: number) =>
      Effect.gen(function*() {
        for (let i = 0; i < tells; i++) yield* tell
        return yield* count
      })
    report(yield* measureTellsEffect(burst, args))
  } else if (workload.targets > 1) {
    const targets = yield* Effect.forEach(targetIds(workload.targets), (id) => service.connect(at(id), Echo))
    const call = Effect.suspend(roundRobin(targets.map((target) => target.echo(bytes))))
    report(yield* measureEffect(call, workload.inFlight, args))
  } else {
    const target = yield* service.connect(at("echo"), Echo)
    report(yield* measureEffect(target.echo(bytes), workload.inFlight, args))
  }
}).pipe(Effect.scoped)

// SIGTERM/SIGINT interrupt the main fiber; that is how the orchestrator stops a server, so it is a clean exit.
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

const role = process.argv[2]
if (role === "server") NodeRuntime.runMain(server, { teardown })
else if (role === "client") NodeRuntime.runMain(client, { teardown })
else {
  console.error(
    "usage: tsx bench/systems/us.ts server --workload ID | client --workload ID --port P [--runs N --seconds S ...]"
  )
  process.exit(2)
}
