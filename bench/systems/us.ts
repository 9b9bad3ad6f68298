/**
 * The `us` system, remote: an RpcService over TCP serving one endpoint whose `echo` ask returns its payload, and a
 * client that is a second TCP service in another process. Defaults throughout, including call-site capture.
 *
 *   tsx bench/systems/us.ts server
 *   tsx bench/systems/us.ts client --workload ask-32B-seq --port P --runs 3 --seconds 1 --warmup 0.5
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer, Result, Schema } from "effect"
import { RpcAddress, RpcEndpoint, RpcGateway, RpcService } from "effect-actor-rpc"
import { clientArgs, measureEffect, payload, ready, remoteWorkload, report } from "../support/driver.js"

/** The protocol every remote workload uses: bytes in, the same bytes back. */
export const Echo = RpcGateway.make("Echo", {
  echo: RpcGateway.ask({ payload: Schema.Uint8Array, success: Schema.Uint8Array })
})

const endpoint = RpcEndpoint.make({
  id: "echo",
  gateways: [Echo],
  init: () => Effect.succeed({ handlers: { echo: (bytes: Uint8Array) => Effect.succeed(bytes) } })
})

const server = Effect.gen(function*() {
  const service = yield* RpcService.RpcService
  const address = Result.getOrThrow(RpcAddress.parse(service.address("echo")))
  ready(Result.getOrThrow(RpcAddress.parseHostPort(address.authority)).port)
  return yield* Effect.never
}).pipe(Effect.provide(RpcEndpoint.layer(endpoint).pipe(Layer.provideMerge(RpcService.layerTcp()))))

const client = Effect.gen(function*() {
  const args = clientArgs()
  const workload = remoteWorkload(args.workload)
  const service = yield* RpcService.makeTcp()
  const echo = yield* service.connect(`rpc://127.0.0.1:${args.port}/echo`, Echo)
  const bytes = payload(workload.bytes)
  report(yield* measureEffect(echo.echo(bytes), workload.inFlight, args))
}).pipe(Effect.scoped)

const role = process.argv[2]
if (role === "server") NodeRuntime.runMain(server)
else if (role === "client") NodeRuntime.runMain(client)
else {
  console.error("usage: tsx bench/systems/us.ts server | client --workload ID --port P [--runs N --seconds S --warmup S]")
  process.exit(2)
}
