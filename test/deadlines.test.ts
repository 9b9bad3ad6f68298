/**
 * Deadlines and cancellation: an ask carries its timeout to the endpoint, which drops it unrun once nobody waits
 * for the reply any more (its deadline passed while it was queued, or its caller was interrupted), locally and
 * across TCP. A handler that has started always runs to completion.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber } from "effect"
import * as Net from "node:net"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcService } from "effect-actor-rpc"
import { startOn } from "./behaviour.js"
import { service, settle, withService } from "./fixtures/common.js"
import { depthOf, eventually, GateGateway, gateEndpoint, makeGate, rejections, tcpPair } from "./fixtures/gate.js"
import { isolatedMetrics } from "./fixtures/raw.js"

const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("deadlines", () => {
  describe("local", () => {
    it.effect("a queued ask whose deadline passes fails RpcTimeoutError at its timeout and its handler never runs", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const svc = yield* service
        const client = yield* svc.connect(server.address, GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: "1 minute" }))
        yield* Deferred.await(gate.entered)
        const late = yield* Effect.forkChild(Effect.flip(client.work("late", { timeout: "100 millis" })))
        yield* settle
        assert.strictEqual(yield* depthOf(svc, "gate"), 1)
        yield* TestClock.adjust("99 millis")
        yield* settle
        assert.isUndefined(late.pollUnsafe(), "the caller must not fail before its timeout")
        yield* TestClock.adjust("1 millis")
        const error = yield* Fiber.join(late)
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        const timeout = error as RpcError.RpcTimeoutError
        assert.strictEqual(timeout.timeoutMillis, 100)
        assert.strictEqual(timeout.method, "GateGateway.work")
        assert.strictEqual(timeout.address, server.address)
        // Still queued: the endpoint only notices once the ask reaches the head of the mailbox.
        assert.strictEqual(yield* rejections("expired"), 0)
        yield* Deferred.succeed(gate.release, undefined)
        assert.strictEqual(yield* Fiber.join(blocked), "released")
        assert.strictEqual(yield* client.work("after"), "after")
        assert.deepStrictEqual(gate.runs, ["after"])
        assert.strictEqual(yield* rejections("expired"), 1)
        assert.strictEqual(yield* rejections("cancelled"), 0)
      }).pipe(withService(), isolatedMetrics))

    it.effect("a queued ask whose deadline has not passed yet runs normally", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: "1 minute" }))
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forkChild(client.work("in time", { timeout: "100 millis" }))
        yield* settle
        yield* TestClock.adjust("99 millis")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(queued), "in time")
        assert.deepStrictEqual(gate.runs, ["in time"])
        assert.strictEqual(yield* rejections("expired"), 0)
      }).pipe(withService(), isolatedMetrics))

    it.effect("the deadline comes from the call's timeout, else the method's, else RpcConfig.askTimeout", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: "1 minute" }))
        yield* Deferred.await(gate.entered)
        // quick declares 50 ms; work falls back to the configured 300 ms; the third overrides it with 1 s.
        const quick = yield* Effect.forkChild(Effect.flip(client.quick("quick")))
        const configured = yield* Effect.forkChild(Effect.flip(client.work("configured")))
        const overridden = yield* Effect.forkChild(client.work("overridden", { timeout: "1 second" }))
        yield* settle
        yield* TestClock.adjust("50 millis")
        assert.strictEqual(((yield* Fiber.join(quick)) as RpcError.RpcTimeoutError).timeoutMillis, 50)
        yield* TestClock.adjust("250 millis")
        assert.strictEqual(((yield* Fiber.join(configured)) as RpcError.RpcTimeoutError).timeoutMillis, 300)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(overridden), "overridden")
        assert.deepStrictEqual(gate.runs, ["overridden"])
        assert.strictEqual(yield* rejections("expired"), 2)
      }).pipe(withService({ askTimeout: Duration.millis(300) }), isolatedMetrics))

    it.effect("asks without a deadline and tells are never dropped, however long they wait", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const svc = yield* service
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: Duration.infinity }))
        yield* Deferred.await(gate.entered)
        const patient = yield* Effect.forkChild(client.work("patient", { timeout: Duration.infinity }))
        yield* settle
        yield* client.note("told")
        const snapshot = yield* svc.introspect
        assert.strictEqual(snapshot.inFlightCalls, 2)
        assert.strictEqual(snapshot.pendingTimeouts, 0, "an ask without a timeout arms none")
        yield* TestClock.adjust("1 hour")
        yield* settle
        assert.isUndefined(patient.pollUnsafe())
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(patient), "patient")
        yield* settle
        assert.deepStrictEqual(gate.runs, ["patient", "told"])
        assert.strictEqual(yield* rejections("expired"), 0)
      }).pipe(withService(), isolatedMetrics))

    it.effect("interrupting the caller of a queued ask means its handler never runs (counted as cancelled)", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const svc = yield* service
        const client = yield* svc.connect(server.address, GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: "1 minute" }))
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forkChild(client.work("cancelled", { timeout: "1 minute" }))
        yield* settle
        assert.strictEqual(yield* depthOf(svc, "gate"), 1)
        yield* Fiber.interrupt(queued)
        const after = yield* svc.introspect
        assert.strictEqual(after.inFlightCalls, 1, "only the blocking ask is still in flight")
        assert.strictEqual(after.pendingTimeouts, 1)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* client.work("next"), "next")
        assert.deepStrictEqual(gate.runs, ["next"])
        assert.strictEqual(yield* rejections("cancelled"), 1)
        assert.strictEqual(yield* rejections("expired"), 0)
      }).pipe(withService(), isolatedMetrics))

    it.effect("interrupting the caller after its handler started does not stop the handler", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const call = yield* Effect.forkChild(client.slow("finished", { timeout: "1 minute" }))
        yield* Deferred.await(gate.slowEntered)
        yield* Fiber.interrupt(call)
        assert.deepStrictEqual(gate.runs, [])
        yield* Deferred.succeed(gate.slowRelease, undefined)
        // The next message is processed only after the slow handler completed.
        assert.strictEqual(yield* client.work("next"), "next")
        assert.deepStrictEqual(gate.runs, ["finished", "next"])
        assert.strictEqual(yield* rejections("cancelled"), 0)
        const snapshot = yield* (yield* service).introspect
        assert.strictEqual(snapshot.inFlightCalls, 0)
        assert.strictEqual(snapshot.pendingTimeouts, 0)
      }).pipe(withService(), isolatedMetrics))

    it.effect("an ask that timed out at the caller is dropped even when it expired long before the endpoint freed up", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: Duration.infinity }))
        yield* Deferred.await(gate.entered)
        const fibers = yield* Effect.forEach(
          [10, 20, 30, 40, 50],
          (millis) => Effect.forkChild(Effect.flip(client.work(`w${millis}`, { timeout: Duration.millis(millis) }))),
          { concurrency: 1 }
        )
        const survivor = yield* Effect.forkChild(client.work("survivor", { timeout: "1 hour" }))
        yield* settle
        yield* TestClock.adjust("1 minute")
        for (const fiber of fibers) assert.instanceOf(yield* Fiber.join(fiber), RpcError.RpcTimeoutError)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(survivor), "survivor")
        assert.deepStrictEqual(gate.runs, ["survivor"])
        assert.strictEqual(yield* rejections("expired"), 5)
      }).pipe(withService(), isolatedMetrics))
  })

  describe("over TCP", () => {
    it.live("a queued remote ask whose deadline passes fails RpcTimeoutError and is dropped unrun by the receiver", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const blocked = yield* Effect.forkChild(remote.block(undefined, { timeout: "30 seconds" }))
        yield* Deferred.await(gate.entered)
        const started = Date.now()
        const error = yield* Effect.flip(remote.work("late", { timeout: "200 millis" }))
        assert.isAtLeast(Date.now() - started, 150)
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        assert.strictEqual((error as RpcError.RpcTimeoutError).timeoutMillis, 200)
        // The ask did reach the receiver; it waits there behind the blocking one.
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 1, "the late ask to be queued")
        assert.strictEqual((yield* client.introspect).pendingTimeouts, 1, "only the blocking ask's timeout is armed")
        // The receiver counts the 200 ms from the ask's arrival, a little after it was sent: leave a margin.
        yield* Effect.sleep("300 millis")
        yield* Deferred.succeed(gate.release, undefined)
        assert.strictEqual(yield* Fiber.join(blocked), "released")
        assert.strictEqual(yield* remote.work("after"), "after")
        assert.deepStrictEqual(gate.runs, ["after"])
        assert.strictEqual(yield* rejections("expired"), 1)
        const [connection] = (yield* server.introspect).connections
        assert.strictEqual(connection?.callsIn, 0, "the dropped ask no longer counts as being served")
      }).pipe(isolatedMetrics))

    it.live("interrupting the caller of a queued remote ask sends a Cancel: the handler never runs", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const blocked = yield* Effect.forkChild(remote.block(undefined, { timeout: "30 seconds" }))
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forkChild(remote.work("cancelled", { timeout: "30 seconds" }))
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 1, "the ask to be queued")
        yield* Fiber.interrupt(queued)
        const local = yield* client.introspect
        assert.strictEqual(local.inFlightCalls, 1)
        assert.strictEqual(local.connections[0]?.callsOut, 1)
        // Frames on one connection arrive in order: once the marker is queued, the Cancel has been read.
        const marker = yield* Effect.forkChild(remote.work("marker", { timeout: "30 seconds" }))
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 2, "the marker to be queued")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(marker), "marker")
        assert.deepStrictEqual(gate.runs, ["marker"])
        assert.strictEqual(yield* rejections("cancelled"), 1)
        assert.strictEqual(yield* rejections("expired"), 0)
      }).pipe(isolatedMetrics))

    it.live("interrupting the caller of a remote ask whose handler started does not stop it; the connection stays usable", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const call = yield* Effect.forkChild(remote.slow("finished", { timeout: "30 seconds" }))
        yield* Deferred.await(gate.slowEntered)
        yield* Fiber.interrupt(call)
        yield* Effect.sleep("50 millis")
        yield* Deferred.succeed(gate.slowRelease, undefined)
        assert.strictEqual(yield* remote.work("next"), "next")
        assert.deepStrictEqual(gate.runs, ["finished", "next"])
        assert.strictEqual(yield* rejections("cancelled"), 0)
        const [connection] = (yield* server.introspect).connections
        assert.strictEqual(connection?.callsIn, 0)
      }).pipe(isolatedMetrics))

    it.live("interrupting the caller of an ask sent while its connection is still opening cancels it too", () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const client = yield* RpcService.makeTcp()
        const address = `rpc://127.0.0.1:${port}/gate`
        // Connect to a first incarnation of the server, which then goes away: the next call dials anew.
        const remote = yield* Effect.scoped(Effect.gen(function*() {
          const first = yield* RpcService.makeTcp({ port })
          yield* startOn(first, gateEndpoint(yield* makeGate))
          return yield* client.connect(address, GateGateway)
        }))
        const server = yield* RpcService.makeTcp({ port })
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const blocked = yield* Effect.forkChild(endpoint.self(GateGateway).block(undefined, { timeout: "30 seconds" }))
        yield* Deferred.await(gate.entered)
        const call = yield* Effect.forkChild(remote.work("cancelled", { timeout: "30 seconds" }), { startImmediately: true })
        assert.strictEqual((yield* client.introspect).connections[0]?.state, "opening")
        yield* Fiber.interrupt(call)
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 1, "the ask to be queued")
        const marker = yield* Effect.forkChild(remote.work("marker", { timeout: "30 seconds" }))
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 2, "the marker to be queued")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(marker), "marker")
        assert.deepStrictEqual(gate.runs, ["marker"], "the interrupted ask's handler ran")
      }))

    it.live("a remote ask without a deadline is never dropped", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const blocked = yield* Effect.forkChild(remote.block(undefined, { timeout: "30 seconds" }))
        yield* Deferred.await(gate.entered)
        const patient = yield* Effect.forkChild(remote.work("patient", { timeout: Duration.infinity }))
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 1, "the ask to be queued")
        assert.strictEqual((yield* client.introspect).pendingTimeouts, 1)
        yield* Effect.sleep("300 millis")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* Fiber.join(patient), "patient")
        assert.deepStrictEqual(gate.runs, ["patient"])
        assert.strictEqual(yield* rejections("expired"), 0)
      }).pipe(isolatedMetrics))
  })
})
