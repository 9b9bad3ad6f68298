/**
 * Reflection: off by default (nothing answers at the reserved id: docs/SECURITY.md), and when on, over TCP and
 * in-process, the service's endpoints, their gateways and the snapshots of their Schemas.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Schema } from "effect"
import { RpcCompatibility, RpcEndpoint, RpcError, RpcGateway, RpcReflection, RpcService } from "effect-actor-rpc"
import { startOn } from "./behaviour.js"
import { local, tcp } from "./fixtures/transports.js"

class Missing extends Schema.TaggedError<Missing>()("Missing", { key: Schema.String }) {}

const Store = RpcGateway.make("Store", {
  get: RpcGateway.ask({ payload: Schema.String, success: Schema.NumberFromString, failure: Missing }),
  note: RpcGateway.tell({ payload: Schema.String })
})
const Admin = RpcGateway.make("Admin", { stop: RpcGateway.ask({}) }, { token: Schema.Number })

const store = RpcEndpoint.make({
  id: "store",
  gateways: [Store],
  init: () =>
    Effect.succeed({
      handlers: { get: (key: string) => Effect.fail(new Missing({ key })), note: () => Effect.void }
    })
})
const admin = RpcEndpoint.makeFenced({
  id: "admin",
  gateways: [Admin],
  initialToken: 1,
  init: () => Effect.succeed({ handlers: { stop: () => Effect.void } })
})

/** A service address without its endpoint id. */
const serviceOf = (address: string) => address.slice(0, address.lastIndexOf("/"))

describe("reflection", () => {
  it.live("is off by default: nothing answers at the reserved id, and it is no endpoint of the service", () =>
    Effect.gen(function*() {
      const { client, server } = yield* tcp.pair()
      const endpoint = yield* startOn(server, store)
      const error = yield* Effect.flip(
        RpcReflection.connect(endpoint.address).pipe(Effect.provideService(RpcService.RpcService, client))
      )
      assert.instanceOf(error, RpcError.RpcConnectionError)
      assert.strictEqual((error as RpcError.RpcConnectionError).reason, "UnknownEndpoint")
      assert.deepStrictEqual(yield* server.endpointIds, ["store"])
    }).pipe(Effect.scoped))

  for (const transport of [tcp, local]) {
    it.live(`when on (${transport.name}), lists the endpoints and their gateways, and describes each as snapshots`, () =>
      Effect.gen(function*() {
        const { client, server } = yield* transport.pair({ reflection: true })
        const started = yield* startOn(server, store)
        // Created but not started: listed with its state.
        yield* server.startServer(admin)
        const reflection = yield* RpcReflection.connect(serviceOf(started.address)).pipe(
          Effect.provideService(RpcService.RpcService, client)
        )
        const info = yield* reflection.list()
        assert.strictEqual(info.service, server.name)
        assert.strictEqual(info.authority === null, !transport.remote)
        assert.deepStrictEqual(info.endpoints.map((e) => [e.endpointId, e.state, e.fenced]), [
          ["admin", "created", true],
          ["store", "started", false]
        ])
        assert.deepStrictEqual(info.endpoints[1]!.gateways, [{
          name: "Store",
          fingerprint: Store.fingerprint,
          fenced: false,
          methods: [{ name: "get", kind: "ask" }, { name: "note", kind: "tell" }]
        }])
        assert.isTrue(info.endpoints[0]!.gateways[0]!.fenced)
        assert.strictEqual(info.endpoints[1]!.address, started.address)
        const snapshots = yield* reflection.describe({ endpointId: "store" })
        assert.deepStrictEqual(snapshots, [RpcCompatibility.snapshot(Store)])
        const missing = yield* Effect.flip(reflection.describe({ endpointId: "nobody" }))
        assert.isTrue(RpcReflection.isEndpointNotFoundError(missing))
        assert.match(missing.message, /runs no endpoint "nobody"/)
        // Reflection does not describe itself.
        const itself = yield* Effect.flip(reflection.describe({ endpointId: RpcReflection.ENDPOINT_ID }))
        assert.isTrue(RpcReflection.isEndpointNotFoundError(itself))
        // Its id is taken.
        const reserved = RpcEndpoint.make({ ...store, id: RpcReflection.ENDPOINT_ID })
        const taken = yield* Effect.flip(server.startServer(reserved))
        assert.instanceOf(taken, RpcError.EndpointIdInUseError)
      }).pipe(Effect.scoped))
  }

  it("addressOf finds the reflection endpoint of any address of a service", () => {
    const id = RpcReflection.ENDPOINT_ID
    assert.deepStrictEqual(RpcReflection.addressOf("rpc://127.0.0.1:6123"), Result.succeed(`rpc://127.0.0.1:6123/${id}`))
    assert.deepStrictEqual(RpcReflection.addressOf("rpcs://h:1/job"), Result.succeed(`rpcs://h:1/${id}`))
    assert.deepStrictEqual(RpcReflection.addressOf("local://svc"), Result.succeed(`local://svc/${id}`))
    assert.isTrue(Result.isFailure(RpcReflection.addressOf("http://example.com")))
  })
})
