/**
 * RpcService.introspect: what a service holds right now (endpoints and their mailboxes, connections, calls in
 * flight, armed timeouts), and leak checks: once calls settle and scopes close, nothing is left behind.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import { RpcConfig, RpcEndpoint, RpcError, RpcService } from "effect-actor-rpc"
import { startOn } from "./behaviour.js"
import { service, settle, testEndpoint, TestGateway, withService } from "./fixtures/common.js"
import { endpointOf, eventually, GateGateway, gateEndpoint, makeGate } from "./fixtures/gate.js"

/** Asserts that a service holds nothing: no endpoints, connections, calls or timeouts. */
const assertEmpty = (snapshot: RpcService.Snapshot) => {
  assert.deepStrictEqual(snapshot.endpoints, [])
  assert.deepStrictEqual(snapshot.connections, [])
  assert.strictEqual(snapshot.inFlightCalls, 0)
  assert.strictEqual(snapshot.pendingTimeouts, 0)
}

const withConfig = (overrides: Partial<RpcConfig.RpcConfig>) =>
  Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, ...overrides })

describe("RpcService.introspect", () => {
  describe("local", () => {
    it.effect("a fresh service: its name, no authority, running, and nothing held", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const snapshot = yield* svc.introspect
        assert.strictEqual(snapshot.service, svc.name)
        assert.isUndefined(snapshot.authority)
        assert.strictEqual(snapshot.lifecycle, "running")
        assertEmpty(snapshot)
      }).pipe(withService()))

    it.effect("endpoints go created → started → stopping, and leave the snapshot once terminated", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const gate = yield* makeGate
        const stopRelease = yield* Deferred.make<void>()
        const server = yield* svc.startServer(
          gateEndpoint(gate, { onStop: Effect.succeed(RpcEndpoint.later(Deferred.await(stopRelease))) })
        )
        const created = yield* endpointOf(svc, "gate")
        assert.deepStrictEqual(created, {
          endpointId: "gate",
          address: server.address,
          state: "created",
          mailboxDepth: 0,
          mailboxCapacity: undefined,
          busy: false,
          fenced: false
        })
        yield* server.start
        yield* server.awaitStarted
        assert.strictEqual((yield* endpointOf(svc, "gate"))?.state, "started")
        yield* server.stop
        yield* settle
        const stopping = yield* endpointOf(svc, "gate")
        assert.strictEqual(stopping?.state, "stopping")
        // Calls are still served while the later part of onStop runs.
        assert.strictEqual(yield* server.self(GateGateway).work("while stopping"), "while stopping")
        yield* Deferred.succeed(stopRelease, undefined)
        yield* server.awaitTermination
        assert.isUndefined(yield* endpointOf(svc, "gate"))
        assert.deepStrictEqual(yield* svc.endpointIds, [])
        assertEmpty(yield* svc.introspect)
      }).pipe(withService()))

    it.effect("while the main thread is blocked: mailbox depth, busy, calls in flight and armed timeouts; all 0 after", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = yield* svc.connect(server.address, GateGateway)
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        const asks = yield* Effect.forEach(["a", "b"], (p) => Effect.forkChild(client.work(p), { startImmediately: true }))
        const patient = yield* Effect.forkChild(client.work("c", { timeout: Duration.infinity }), { startImmediately: true })
        yield* client.note("d")
        const during = yield* svc.introspect
        assert.strictEqual(during.inFlightCalls, 4, "block, a, b and c")
        assert.strictEqual(during.pendingTimeouts, 3, "c has no timeout")
        const endpoint = during.endpoints.find((e) => e.endpointId === "gate")
        assert.strictEqual(endpoint?.mailboxDepth, 4, "a, b, c and the tell; block has been taken")
        assert.isTrue(endpoint?.busy)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        yield* Effect.forEach([...asks, patient], Fiber.join)
        yield* settle
        const after = yield* svc.introspect
        assert.strictEqual(after.inFlightCalls, 0)
        assert.strictEqual(after.pendingTimeouts, 0)
        const idle = after.endpoints.find((e) => e.endpointId === "gate")
        assert.strictEqual(idle?.mailboxDepth, 0)
        assert.isFalse(idle?.busy)
        assert.deepStrictEqual(gate.runs, ["a", "b", "c", "d"])
      }).pipe(withService()))

    it.effect("asks that time out or are interrupted leave no call in flight and no armed timeout", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: "1 second" }))
        yield* Deferred.await(gate.entered)
        const interrupted = yield* Effect.forkChild(client.work("x", { timeout: "1 minute" }), { startImmediately: true })
        assert.strictEqual((yield* svc.introspect).pendingTimeouts, 2)
        yield* Fiber.interrupt(interrupted)
        assert.strictEqual((yield* svc.introspect).inFlightCalls, 1)
        assert.strictEqual((yield* svc.introspect).pendingTimeouts, 1)
        yield* TestClock.adjust("1 second")
        assert.instanceOf(yield* Effect.flip(Fiber.join(blocked)), RpcError.RpcTimeoutError)
        const after = yield* svc.introspect
        assert.strictEqual(after.inFlightCalls, 0)
        assert.strictEqual(after.pendingTimeouts, 0)
        yield* Deferred.succeed(gate.release, undefined)
        yield* settle
        assert.strictEqual((yield* endpointOf(svc, "gate"))?.mailboxDepth, 0)
      }).pipe(withService()))

    it.effect("asks that succeed, fail with a typed error or die all settle their accounting", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        const client = server.self(TestGateway)
        for (let i = 0; i < 20; i++) {
          yield* client.foobar()
          yield* Effect.flip(client.fail("typed"))
          yield* Effect.flip(client.die("defect"))
        }
        const snapshot = yield* svc.introspect
        assert.strictEqual(snapshot.inFlightCalls, 0)
        assert.strictEqual(snapshot.pendingTimeouts, 0)
      }).pipe(withService()))

    it.effect("after the service's scope closes: stopped, no endpoints, no calls, no timeouts", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const svc = yield* RpcService.makeLocal().pipe(Scope.provide(scope))
        const gate = yield* makeGate
        const server = yield* svc.startServer(gateEndpoint(gate))
        yield* server.start
        const other = yield* svc.startServer(testEndpoint({ id: "other" }))
        yield* other.start
        const client = yield* svc.connect(server.address, GateGateway)
        const blocked = yield* Effect.forkChild(Effect.exit(client.block()))
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forkChild(Effect.exit(client.work("queued")), { startImmediately: true })
        const running = yield* svc.introspect
        assert.strictEqual(running.endpoints.length, 2)
        assert.strictEqual(running.inFlightCalls, 2)
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* settle
        assert.strictEqual((yield* svc.introspect).lifecycle, "stopping")
        // The blocked handler holds the shutdown until it completes.
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(closing)
        assert.isTrue(Exit.isSuccess(yield* Fiber.join(blocked)))
        // It was queued before the stop: the mailbox is FIFO, so it was served before onStop.
        assert.isTrue(Exit.isSuccess(yield* Fiber.join(queued)))
        assert.deepStrictEqual(gate.runs, ["queued"])
        const stopped = yield* svc.introspect
        assert.strictEqual(stopped.lifecycle, "stopped")
        assertEmpty(stopped)
      }))

    it.effect("an ask in flight from a service that shuts down to another service's endpoint still settles", () =>
      Effect.gen(function*() {
        const host = yield* service
        yield* RpcEndpoint.scoped(testEndpoint({ id: "host" }))
        const callerScope = yield* Scope.make()
        const caller = yield* RpcService.makeLocal().pipe(Scope.provide(callerScope))
        const client = yield* caller.connect(`local://${host.name}/host`, TestGateway)
        // `never` replies later with Effect.never and declares a 2 s timeout.
        const call = yield* Effect.forkChild(Effect.flip(client.never()), { startImmediately: true })
        assert.strictEqual((yield* caller.introspect).pendingTimeouts, 1)
        yield* Scope.close(callerScope, Exit.void)
        yield* TestClock.adjust("2 seconds")
        yield* settle
        assert.isDefined(call.pollUnsafe(), "the ask neither timed out nor failed")
        const snapshot = yield* caller.introspect
        assert.strictEqual(snapshot.inFlightCalls, 0)
        assert.strictEqual(snapshot.pendingTimeouts, 0)
        yield* Fiber.interrupt(call)
      }).pipe(withService()))
  })

  describe("over TCP", () => {
    it.live("connections: direction, state, peers; calls out and in while a remote ask is in flight; all 0 after", () =>
      Effect.gen(function*() {
        const server = yield* RpcService.makeTcp({ name: "introspect-server" })
        const client = yield* RpcService.makeTcp({ name: "introspect-client" })
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const serverBefore = yield* server.introspect
        assert.strictEqual(serverBefore.service, "introspect-server")
        assert.strictEqual(endpoint.address, `rpc://${serverBefore.authority}/gate`)
        assert.deepStrictEqual(serverBefore.connections, [])
        assert.deepStrictEqual((yield* client.introspect).connections, [])
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const [outbound] = (yield* client.introspect).connections
        assert.strictEqual(outbound?.direction, "outbound")
        assert.strictEqual(outbound?.state, "open")
        assert.strictEqual(outbound?.peer, serverBefore.authority)
        assert.strictEqual(outbound?.peerService, "introspect-server")
        assert.strictEqual(outbound?.callsOut, 0)
        assert.strictEqual(outbound?.callsIn, 0)
        assert.isAtLeast(outbound!.silentMillis, 0)
        assert.isAtLeast(outbound!.bufferedBytes, 0)
        const [inbound] = yield* eventually(
          Effect.map(server.introspect, (s) => s.connections),
          (connections) => connections.length === 1 && connections[0]!.state === "open",
          "the inbound connection"
        )
        assert.strictEqual(inbound?.direction, "inbound")
        assert.strictEqual(inbound?.peerService, "introspect-client")

        const blocked = yield* Effect.forkChild(remote.block())
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forkChild(remote.work("queued"), { startImmediately: true })
        const serverDuring = yield* eventually(
          server.introspect,
          (s) => s.endpoints[0]?.mailboxDepth === 1,
          "the second ask to be queued"
        )
        assert.strictEqual(serverDuring.connections[0]?.callsIn, 2)
        assert.strictEqual(serverDuring.connections[0]?.callsOut, 0)
        assert.strictEqual(serverDuring.inFlightCalls, 0, "the server made no asks")
        assert.strictEqual(serverDuring.pendingTimeouts, 0)
        const clientDuring = yield* client.introspect
        assert.strictEqual(clientDuring.connections[0]?.callsOut, 2)
        assert.strictEqual(clientDuring.connections[0]?.callsIn, 0)
        assert.strictEqual(clientDuring.inFlightCalls, 2)
        assert.strictEqual(clientDuring.pendingTimeouts, 2)
        assert.deepStrictEqual(clientDuring.endpoints, [])

        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(queued), "queued")
        const clientAfter = yield* client.introspect
        assert.strictEqual(clientAfter.connections[0]?.callsOut, 0)
        assert.strictEqual(clientAfter.inFlightCalls, 0)
        assert.strictEqual(clientAfter.pendingTimeouts, 0)
        yield* eventually(
          Effect.map(server.introspect, (s) => s.connections[0]?.callsIn),
          (callsIn) => callsIn === 0,
          "the server to have answered"
        )
      }))

    it.live("leak check: after both services' scopes close, no endpoints, connections, calls or timeouts", () =>
      Effect.gen(function*() {
        const serverScope = yield* Scope.make()
        const clientScope = yield* Scope.make()
        const server = yield* RpcService.makeTcp().pipe(Scope.provide(serverScope))
        const client = yield* RpcService.makeTcp().pipe(Scope.provide(clientScope))
        const gate = yield* makeGate
        const endpoint = yield* server.startServer(gateEndpoint(gate))
        yield* endpoint.start
        const remote = yield* client.connect(endpoint.address, GateGateway)
        for (let i = 0; i < 20; i++) yield* remote.work(String(i))
        yield* remote.note("told")
        // One ask left in flight: it is failed when the server goes.
        const blocked = yield* Effect.forkChild(Effect.flip(remote.block(undefined, { timeout: "30 seconds" })))
        yield* Deferred.await(gate.entered)
        const closing = yield* Effect.forkChild(Scope.close(serverScope, Exit.void))
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(closing)
        // Either the reply made it before the connection closed, or the ask failed: either way it settled.
        yield* Fiber.await(blocked)
        const clientAfterServer = yield* eventually(
          client.introspect,
          (s) => s.connections.length === 0,
          "the client to drop its connection to the stopped server"
        )
        assert.strictEqual(clientAfterServer.inFlightCalls, 0)
        assert.strictEqual(clientAfterServer.pendingTimeouts, 0)
        const stoppedServer = yield* server.introspect
        assert.strictEqual(stoppedServer.lifecycle, "stopped")
        assertEmpty(stoppedServer)
        yield* Scope.close(clientScope, Exit.void)
        const stoppedClient = yield* client.introspect
        assert.strictEqual(stoppedClient.lifecycle, "stopped")
        assertEmpty(stoppedClient)
      }))

    it.live("an ask that times out over TCP leaves nothing armed; its late reply is dropped", () =>
      Effect.gen(function*() {
        const server = yield* RpcService.makeTcp()
        const client = yield* RpcService.makeTcp().pipe(withConfig({ askTimeout: Duration.millis(150) }))
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const error = yield* Effect.flip(remote.block())
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        yield* Deferred.await(gate.entered)
        const during = yield* client.introspect
        assert.strictEqual(during.inFlightCalls, 0)
        assert.strictEqual(during.pendingTimeouts, 0)
        assert.strictEqual(during.connections[0]?.callsOut, 0)
        assert.strictEqual((yield* server.introspect).connections[0]?.callsIn, 1, "the handler still runs")
        yield* Deferred.succeed(gate.release, undefined)
        yield* eventually(
          Effect.map(server.introspect, (s) => s.connections[0]?.callsIn),
          (callsIn) => callsIn === 0,
          "the late reply to be sent"
        )
        assert.strictEqual(yield* remote.work("next"), "next")
        assert.strictEqual((yield* client.introspect).inFlightCalls, 0)
      }))
  })
})
