/**
 * The RpcService: connect, ids, shutdown and Layers. Ports of PekkoRpcServiceTest's in-process cases.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schema, Scope } from "effect"
import { RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"
import { DifferentGateway, service, TestFailure, TestGateway, testEndpoint, withService, settle } from "./fixtures/common.js"

const StopGateway = RpcGateway.make("StopGateway", { ping: RpcGateway.ask({ success: Schema.String }) })

const endpointWithPendingStop = (
  release: Deferred.Deferred<void, TestFailure>,
  onStopCalled: Deferred.Deferred<void>
) =>
  RpcEndpoint.make({
    gateways: [StopGateway],
    init: () =>
      Effect.succeed({
        handlers: { ping: () => Effect.succeed("pong") },
        onStop: Deferred.succeed(onStopCalled, undefined).pipe(Effect.as(RpcEndpoint.later(Deferred.await(release))))
      })
  })

describe("RpcService", () => {
  describe("PekkoRpcServiceTest", () => {
    it.effect("testRpcServiceShutDownWithRpcEndpoints: shutdown waits for every endpoint's onStop", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const releases = yield* Effect.forEach([1, 2, 3, 4, 5], () => Deferred.make<void, TestFailure>())
        const called = yield* Effect.forEach([1, 2, 3, 4, 5], () => Deferred.make<void>())
        for (let i = 0; i < 5; i++) {
          const server = yield* svc.startServer(endpointWithPendingStop(releases[i]!, called[i]!))
          yield* server.start
        }
        const shutdown = yield* Effect.forkChild(svc.shutdown)
        yield* Effect.forEach(called, Deferred.await)
        yield* settle
        assert.isFalse(yield* svc.isStopped)
        for (const release of releases) yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(shutdown)
        assert.isTrue(yield* svc.isStopped)
        assert.deepStrictEqual(yield* svc.endpointIds, [])
      }).pipe(withService()))

    it.effect("testRpcServiceShutDownWithFailingRpcEndpoints: one failing onStop fails shutdown, the rest still stop", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const releases = yield* Effect.forEach([1, 2, 3, 4, 5], () => Deferred.make<void, TestFailure>())
        const called = yield* Effect.forEach([1, 2, 3, 4, 5], () => Deferred.make<void>())
        const servers = []
        for (let i = 0; i < 5; i++) {
          const server = yield* svc.startServer(endpointWithPendingStop(releases[i]!, called[i]!))
          yield* server.start
          servers.push(server)
        }
        const shutdown = yield* Effect.forkChild(Effect.flip(svc.shutdown))
        yield* Effect.forEach(called, Deferred.await)
        for (let i = 0; i < 4; i++) yield* Deferred.succeed(releases[i]!, undefined)
        yield* Deferred.fail(releases[4]!, new TestFailure({ reason: "onStop exception occurred.", code: 5 }))
        const error = yield* Fiber.join(shutdown)
        // Typed: the failure lists the one endpoint whose onStop failed, with its own error as the cause.
        assert.instanceOf(error, RpcError.RpcServiceShutdownError)
        assert.strictEqual(error.failures.length, 1)
        assert.strictEqual(error.failures[0]!.endpointId, servers[4]!.endpointId)
        assert.instanceOf(error.failures[0]!.cause, TestFailure)
        assert.include(error.message, "onStop exception occurred.")
        assert.isTrue(yield* svc.isStopped)
        for (const server of servers) assert.isTrue(yield* server.isTerminated)
        // Idempotent: a second shutdown reports the same outcome without stopping anything again.
        assert.strictEqual(yield* Effect.flip(svc.shutdown), error)
      }).pipe(withService()))

    it.effect("failsRpcResultImmediatelyIfEndpointIsStopped: a connected client fails fast after termination", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        yield* server.start
        const client = yield* svc.connect(server.address, TestGateway)
        yield* server.terminate
        // No TestClock adjustment: the failure must not wait for the ask timeout.
        const error = yield* Effect.flip(client.foobar())
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
      }).pipe(withService()))
  })

  describe("connect", () => {
    it.effect("an unknown endpoint id fails RpcConnectionError at once", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const error = yield* Effect.flip(svc.connect(`local://${svc.name}/nobody`, TestGateway))
        assert.instanceOf(error, RpcError.RpcConnectionError)
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "UnknownEndpoint")
        assert.include(error.message, "nobody")
        assert.include(error.message, "TestGateway")
      }).pipe(withService()))

    it.effect("a gateway the endpoint does not serve fails RpcConnectionError", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        const error = yield* Effect.flip(svc.connect(server.address, DifferentGateway))
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "GatewayNotServed")
        assert.include(error.message, "serves TestGateway")
      }).pipe(withService()))

    it.effect("a gateway with the same name but other Schemas fails GatewayMismatch", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        const drifted = RpcGateway.make("TestGateway", { foobar: RpcGateway.ask({ success: Schema.String }) })
        const error = yield* Effect.flip(svc.connect(server.address, drifted))
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "GatewayMismatch")
        assert.include(error.message, "fingerprint")
      }).pipe(withService()))

    it.effect("an equal gateway defined twice connects (fingerprints match)", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const A = RpcGateway.make("Twin", { get: RpcGateway.ask({ success: Schema.Number }) })
        const B = RpcGateway.make("Twin", { get: RpcGateway.ask({ success: Schema.Number }) })
        assert.strictEqual(A.fingerprint, B.fingerprint)
        const server = yield* RpcEndpoint.scoped(
          RpcEndpoint.make({ gateways: [A], init: () => Effect.succeed({ handlers: { get: () => Effect.succeed(9) } }) })
        )
        const client = yield* svc.connect(server.address, B)
        assert.strictEqual(yield* client.get(), 9)
      }).pipe(withService()))

    it.effect("an unknown service fails UnknownService; a tcp address without a transport fails Unreachable", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const unknown = yield* Effect.flip(svc.connect("local://no-such-service/x", TestGateway))
        assert.strictEqual((unknown as RpcError.RpcConnectionError).reason, "UnknownService")
        const tcp = yield* Effect.flip(svc.connect("rpc://127.0.0.1:6123/x", TestGateway))
        assert.strictEqual((tcp as RpcError.RpcConnectionError).reason, "Unreachable")
      }).pipe(withService()))

    it.effect("a stopped service refuses connect, startServer and calls with RpcServiceStoppedError", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        yield* server.start
        const client = yield* svc.connect(server.address, TestGateway)
        yield* svc.shutdown
        const connect = yield* Effect.flip(svc.connect(server.address, TestGateway))
        assert.instanceOf(connect, RpcError.RpcServiceStoppedError)
        assert.include(connect.message, svc.name)
        assert.instanceOf(yield* Effect.flip(svc.startServer(testEndpoint())), RpcError.RpcServiceStoppedError)
        assert.instanceOf(yield* Effect.flip(client.foobar()), RpcError.RpcServiceStoppedError)
        assert.instanceOf(yield* Effect.flip(client.setFoobar(1)), RpcError.RpcServiceStoppedError)
      }).pipe(withService()))

    it.effect("two services in one process reach each other by local address; a gone service is unreachable", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const otherScope = yield* Scope.make()
        const other = yield* RpcService.makeLocal({ name: "other-service" }).pipe(Scope.provide(otherScope))
        const server = yield* other.startServer(testEndpoint({ id: "remote-ish", value: 11 }))
        yield* server.start
        const client = yield* svc.connect("local://other-service/remote-ish", TestGateway)
        assert.strictEqual(yield* client.foobar(), 11)
        yield* Scope.close(otherScope, Exit.void)
        const error = yield* Effect.flip(client.foobar())
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
      }).pipe(withService()))

    it.effect("service names are unique in a process", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        yield* RpcService.makeLocal({ name: "unique-name" }).pipe(Scope.provide(scope))
        const exit = yield* Effect.exit(RpcService.makeLocal({ name: "unique-name" }).pipe(Scope.provide(scope)))
        assert.isTrue(Exit.isFailure(exit))
        yield* Scope.close(scope, Exit.void)
        const again = yield* Scope.make()
        yield* RpcService.makeLocal({ name: "unique-name" }).pipe(Scope.provide(again))
        yield* Scope.close(again, Exit.void)
      }))
  })

  describe("shutdown", () => {
    it.effect("shutdown is idempotent and concurrent calls share one outcome", () =>
      Effect.gen(function*() {
        const svc = yield* service
        let stops = 0
        const endpoint = RpcEndpoint.make({
          gateways: [StopGateway],
          init: () =>
            Effect.succeed({ handlers: { ping: () => Effect.succeed("pong") }, onStop: Effect.sync(() => void stops++) })
        })
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* Effect.all([svc.shutdown, svc.shutdown, svc.shutdown], { concurrency: "unbounded" })
        yield* svc.shutdown
        yield* svc.awaitTermination
        assert.strictEqual(stops, 1)
      }).pipe(withService()))

    it.effect("closing the service Layer shuts down its endpoints (onStop runs)", () =>
      Effect.gen(function*() {
        let stopped = false
        const endpoint = RpcEndpoint.make({
          gateways: [StopGateway],
          init: () =>
            Effect.succeed({
              handlers: { ping: () => Effect.succeed("pong") },
              onStop: Effect.sync(() => {
                stopped = true
              })
            })
        })
        yield* Effect.gen(function*() {
          const svc = yield* service
          const server = yield* svc.startServer(endpoint)
          yield* server.start
        }).pipe(withService())
        assert.isTrue(stopped)
      }))
  })

  describe("Layers", () => {
    class Hello extends Context.Service<Hello, RpcGateway.Client<typeof TestGateway>>()("test/Hello") {}

    it.effect("an endpoint Layer and a gateway Layer compose with Layer.provide", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const endpoint = RpcEndpoint.make({
          id: "layered",
          gateways: [TestGateway],
          init: () =>
            Effect.succeed({
              handlers: {
                foobar: () => Effect.succeed(21),
                setFoobar: () => Effect.void,
                fail: (reason: string) => Effect.fail(new TestFailure({ reason, code: 1 })),
                die: () => Effect.die("no"),
                echo: (x: unknown) => Effect.succeed(x),
                isRunning: () => Effect.succeed(true),
                never: () => Effect.never
              },
              onStart: Effect.sync(() => void events.push("start")),
              onStop: Effect.sync(() => void events.push("stop"))
            })
        })
        const ServiceLayer = RpcService.layerLocal({ name: "layers-test" })
        const EndpointLayer = RpcEndpoint.layer(endpoint)
        const ClientLayer = RpcGateway.layerClient(Hello, TestGateway, "local://layers-test/layered")
        const AppLayer = ClientLayer.pipe(Layer.provide(EndpointLayer), Layer.provideMerge(ServiceLayer))
        const value = yield* Effect.gen(function*() {
          const hello = yield* Hello
          return yield* hello.foobar()
        }).pipe(Effect.provide(AppLayer))
        assert.strictEqual(value, 21)
        assert.deepStrictEqual(events, ["start", "stop"])
      }))

    it.effect("an endpoint Layer is built once onStart has completed", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const endpoint = RpcEndpoint.make({
          gateways: [StopGateway],
          init: () =>
            Effect.succeed({
              handlers: { ping: () => Effect.succeed("pong") },
              onStart: Effect.yieldNow.pipe(Effect.andThen(Effect.sync(() => void events.push("onStart"))))
            })
        })
        yield* Effect.sync(() => void events.push("program")).pipe(
          Effect.provide(RpcEndpoint.layer(endpoint).pipe(Layer.provide(RpcService.layerLocal())))
        )
        assert.deepStrictEqual(events, ["onStart", "program"])
      }))

    it.effect("an endpoint Layer whose onStart fails fails to build with EndpointStartError", () =>
      Effect.gen(function*() {
        const endpoint = RpcEndpoint.make({
          gateways: [StopGateway],
          init: () =>
            Effect.succeed({
              handlers: { ping: () => Effect.succeed("pong") },
              onStart: Effect.fail(new TestFailure({ reason: "no slots", code: 9 }))
            })
        })
        const error = yield* Effect.flip(
          Effect.provide(Effect.void, RpcEndpoint.layer(endpoint).pipe(Layer.provide(RpcService.layerLocal())))
        )
        assert.instanceOf(error, RpcError.EndpointStartError)
        assert.include(error.message, "no slots")
      }))

    it.effect("awaitStarted fails for an endpoint that terminated without starting", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        yield* server.terminate
        const error = yield* Effect.flip(server.awaitStarted)
        assert.include(error.message, "terminated before it started")
      }).pipe(withService()))

    it.effect("a gateway Layer for a missing endpoint fails to build with RpcConnectionError", () =>
      Effect.gen(function*() {
        const layer = RpcGateway.layerClient(Hello, TestGateway, "local://layers-missing/nobody").pipe(
          Layer.provideMerge(RpcService.layerLocal({ name: "layers-missing" }))
        )
        const error = yield* Effect.flip(Effect.provide(Effect.void, layer))
        assert.instanceOf(error, RpcError.RpcConnectionError)
      }))

    it.effect("a fenced gateway Layer sends its token", () =>
      Effect.gen(function*() {
        const Gateway = RpcGateway.make("FencedLayer", { get: RpcGateway.ask({ success: Schema.String }) })
        class Client extends Context.Service<Client, RpcGateway.Client<typeof Gateway>>()("test/FencedClient") {}
        const endpoint = RpcEndpoint.makeFenced({
          id: "fenced",
          gateways: [Gateway],
          token: Schema.String,
          initialToken: "leader",
          init: () => Effect.succeed({ handlers: { get: () => Effect.succeed("ok") } })
        })
        const layer = RpcGateway.layerClient(Client, Gateway, "local://fenced-layer/fenced", { token: "leader" }).pipe(
          Layer.provide(RpcEndpoint.layer(endpoint)),
          Layer.provideMerge(RpcService.layerLocal({ name: "fenced-layer" }))
        )
        const result = yield* Effect.flatMap(Effect.service(Client), (client) => client.get()).pipe(
          Effect.provide(layer)
        )
        assert.strictEqual(result, "ok")
      }))

    it.effect("RpcConfig.layer configures the service's mailbox throughput", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(testEndpoint({ value: 4 }))
        const client = yield* svc.connect(server.address, TestGateway)
        const results = yield* Effect.forEach([1, 2, 3, 4, 5], () => client.foobar(), { concurrency: "unbounded" })
        assert.deepStrictEqual(results, [4, 4, 4, 4, 4])
      }).pipe(withService({ mailboxThroughput: 1 })))
  })
})


