/**
 * The reflection endpoint (RpcReflection): started by a service whose `RpcConfig.reflection` is on, at the reserved
 * id `RpcReflection.ENDPOINT_ID`. It reads the service's endpoint table on its own main thread: what it answers is
 * the service as it is when the call runs.
 */
import * as Effect from "effect/Effect"
import * as RpcCompatibility from "../RpcCompatibility.js"
import * as RpcEndpoint from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import * as RpcReflection from "../RpcReflection.js"
import type { EndpointRuntime } from "./endpoint.js"
import type { LocalService } from "./service.js"

const gatewayInfo = (gateway: RpcGateway.Any): RpcReflection.GatewayInfo => ({
  name: gateway.name,
  fingerprint: gateway.fingerprint,
  fenced: gateway.token !== undefined,
  methods: Object.keys(gateway.methods).sort().map((name) => ({
    name,
    kind: (gateway.methods as RpcGateway.Methods)[name]!.kind
  }))
})

const endpointInfo = (runtime: EndpointRuntime): RpcReflection.EndpointInfo => ({
  endpointId: runtime.endpointId,
  address: runtime.address,
  state: runtime.state,
  fenced: runtime.fenced,
  gateways: [...runtime.served.values()].map(gatewayInfo)
})

/** The live endpoints of `service` other than reflection itself, by id. */
const runtimesOf = (service: LocalService) =>
  Effect.map(service.endpointIds, (ids) =>
    ids.flatMap((id) => {
      const runtime = id === RpcReflection.ENDPOINT_ID ? undefined : service.endpoint(id)
      return runtime === undefined ? [] : [runtime]
    }).sort((a, b) => a.endpointId < b.endpointId ? -1 : a.endpointId > b.endpointId ? 1 : 0))

const definition = (service: LocalService) =>
  RpcEndpoint.make({
    id: RpcReflection.ENDPOINT_ID,
    gateways: [RpcReflection.Gateway],
    init: () =>
      Effect.succeed({
        handlers: {
          list: () =>
            Effect.map(runtimesOf(service), (runtimes) => ({
              service: service.name,
              authority: service.authority ?? null,
              endpoints: runtimes.map(endpointInfo)
            })),
          describe: ({ endpointId }) => {
            const runtime = endpointId === RpcReflection.ENDPOINT_ID ? undefined : service.endpoint(endpointId)
            return runtime === undefined
              ? Effect.fail(new RpcReflection.EndpointNotFoundError({ service: service.name, endpointId }))
              : Effect.succeed([...runtime.served.values()].map(RpcCompatibility.snapshot))
          }
        }
      })
  })

/** Starts the reflection endpoint on `service` (once its transport, if any, is attached: addresses depend on it). */
export const serve = (service: LocalService): Effect.Effect<void> =>
  service.startServer(definition(service)).pipe(
    Effect.flatMap((server) => server.start),
    // A fresh service has no endpoint under the reserved id and is running: neither failure can happen here.
    Effect.orDie
  )
