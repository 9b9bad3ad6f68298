/**
 * Bounded mailboxes: `mailboxCapacity: n` makes a call that finds n messages queued fail at once with
 * MailboxFullError (asks, local tells) or be dropped and counted (remote tells). Unbounded by default.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Schema } from "effect"
import { RpcEndpoint, RpcError } from "effect-actor-rpc"
import { startOn } from "./behaviour.js"
import { service, settle, withService } from "./fixtures/common.js"
import { depthOf, endpointOf, eventually, type Gate, GateGateway, gateEndpoint, gateHandlers, makeGate, rejections, tcpPair } from "./fixtures/gate.js"
import { isolatedMetrics } from "./fixtures/raw.js"

const assertMailboxFull = (error: unknown, address: string, method: string, capacity: number) => {
  assert.instanceOf(error, RpcError.MailboxFullError)
  const full = error as RpcError.MailboxFullError
  assert.strictEqual(full._tag, "MailboxFullError")
  assert.strictEqual(full.address, address)
  assert.strictEqual(full.method, method)
  assert.strictEqual(full.capacity, capacity)
  assert.include(full.message, method)
  assert.include(full.message, address)
  assert.include(full.message, `${capacity} messages queued`)
  assert.include(full.message, "mailboxCapacity")
  assert.include(full.message, "mailbox is full")
}

describe("RpcEndpoint mailboxCapacity", () => {
  describe("definition", () => {
    for (const invalid of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      it(`mailboxCapacity ${invalid} throws RangeError at definition (make and makeFenced)`, () => {
        const gate: Gate = { entered: undefined!, release: undefined!, slowEntered: undefined!, slowRelease: undefined!, runs: [] }
        assert.throws(() => gateEndpoint(gate, { mailboxCapacity: invalid }), RangeError, /mailboxCapacity must be a positive integer/)
        assert.throws(
          () =>
            RpcEndpoint.makeFenced({
              gateways: [GateGateway],
              token: Schema.String,
              mailboxCapacity: invalid,
              init: () => Effect.succeed({ handlers: gateHandlers(gate) })
            }),
          RangeError
        )
      })
    }

    it("unbounded by default; a valid capacity is kept on the definition", () => {
      const gate: Gate = { entered: undefined!, release: undefined!, slowEntered: undefined!, slowRelease: undefined!, runs: [] }
      assert.isUndefined(gateEndpoint(gate).mailboxCapacity)
      assert.strictEqual(gateEndpoint(gate, { mailboxCapacity: 1 }).mailboxCapacity, 1)
      const fenced = RpcEndpoint.makeFenced({
        gateways: [GateGateway],
        token: Schema.String,
        mailboxCapacity: 7,
        init: () => Effect.succeed({ handlers: gateHandlers(gate) })
      })
      assert.strictEqual(fenced.mailboxCapacity, 7)
    })
  })

  describe("local", () => {
    it.effect("with n queued, the next ask fails MailboxFullError at once; after draining calls succeed again", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate, { mailboxCapacity: 3 }))
        const client = yield* svc.connect(server.address, GateGateway)
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        // The blocking message has been taken: the mailbox holds nothing.
        assert.strictEqual(yield* depthOf(svc, "gate"), 0)
        const queued = yield* Effect.forEach(
          ["a", "b", "c"],
          (payload) => Effect.forkChild(client.work(payload), { startImmediately: true })
        )
        const snapshot = yield* endpointOf(svc, "gate")
        assert.strictEqual(snapshot?.mailboxDepth, 3)
        assert.strictEqual(snapshot?.mailboxCapacity, 3)
        // No clock adjustment: the failure does not wait for anything.
        const error = yield* Effect.flip(client.work("overflow"))
        assertMailboxFull(error, server.address, "GateGateway.work", 3)
        const tell = yield* Effect.flip(client.note("overflow tell"))
        assertMailboxFull(tell, server.address, "GateGateway.note", 3)
        assert.strictEqual(yield* rejections("mailbox_full"), 2)
        assert.strictEqual((yield* svc.introspect).inFlightCalls, 4, "the refused ask is no longer in flight")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.deepStrictEqual(yield* Effect.forEach(queued, Fiber.join), ["a", "b", "c"])
        assert.strictEqual(yield* client.work("d"), "d")
        yield* client.note("e")
        assert.strictEqual(yield* client.count(), 5)
        assert.deepStrictEqual(gate.runs, ["a", "b", "c", "d", "e"])
        assert.strictEqual(yield* rejections("mailbox_full"), 2)
      }).pipe(withService(), isolatedMetrics))

    it.effect("tells count against the capacity like asks; capacity 1 admits exactly one queued message", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate, { mailboxCapacity: 1 }))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        yield* client.note("queued")
        assert.instanceOf(yield* Effect.flip(client.note("refused")), RpcError.MailboxFullError)
        assert.instanceOf(yield* Effect.flip(client.work("refused")), RpcError.MailboxFullError)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        // The reply to block can reach its caller before the main thread has taken the queued tell.
        yield* settle
        assert.strictEqual(yield* client.count(), 1)
        assert.deepStrictEqual(gate.runs, ["queued"])
      }).pipe(withService(), isolatedMetrics))

    it.effect("the bound applies to a fenced endpoint too", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(RpcEndpoint.makeFenced({
          id: "fenced",
          gateways: [GateGateway],
          token: Schema.String,
          initialToken: "leader",
          mailboxCapacity: 2,
          init: () => Effect.succeed({ handlers: gateHandlers(gate) })
        }))
        const client = yield* svc.connectFenced(server.address, "leader", GateGateway)
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forEach(["a", "b"], (p) => Effect.forkChild(client.work(p), { startImmediately: true }))
        const error = yield* Effect.flip(client.work("c"))
        assertMailboxFull(error, server.address, "GateGateway.work", 2)
        const snapshot = yield* endpointOf(svc, "fenced")
        assert.isTrue(snapshot?.fenced)
        assert.strictEqual(snapshot?.mailboxCapacity, 2)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.deepStrictEqual(yield* Effect.forEach(queued, Fiber.join), ["a", "b"])
      }).pipe(withService(), isolatedMetrics))

    it.effect("an unbounded mailbox (the default) holds 10,000 queued messages and processes them all in order", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        for (let i = 0; i < 10_000; i++) yield* client.note(String(i))
        const snapshot = yield* endpointOf(svc, "gate")
        assert.strictEqual(snapshot?.mailboxDepth, 10_000)
        assert.isUndefined(snapshot?.mailboxCapacity)
        assert.isTrue(snapshot?.busy)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* client.count(), 10_000)
        assert.strictEqual(gate.runs[0], "0")
        assert.strictEqual(gate.runs[9_999], "9999")
        assert.strictEqual(yield* rejections("mailbox_full"), 0)
        assert.strictEqual(yield* depthOf(svc, "gate"), 0)
      }).pipe(withService(), isolatedMetrics))

    it.effect("an ask to a terminated bounded endpoint fails RecipientUnreachableError, not MailboxFullError", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const svc = yield* service
        const server = yield* svc.startServer(gateEndpoint(gate, { mailboxCapacity: 1 }))
        yield* server.start
        const client = yield* svc.connect(server.address, GateGateway)
        yield* server.terminate
        const error = yield* Effect.flip(client.work("late"))
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
        assert.strictEqual(yield* rejections("mailbox_full"), 0)
      }).pipe(withService(), isolatedMetrics))
  })

  describe("over TCP", () => {
    it.live("a remote ask beyond the capacity fails MailboxFullError across the wire; a remote tell is dropped and counted", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair({ askTimeout: Duration.seconds(30) })
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate, { mailboxCapacity: 2 }))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const blocked = yield* Effect.forkChild(remote.block())
        yield* Deferred.await(gate.entered)
        const queued = yield* Effect.forEach(["a", "b"], (p) => Effect.forkChild(remote.work(p), { startImmediately: true }))
        yield* eventually(depthOf(server, "gate"), (depth) => depth === 2, "two queued asks")
        const started = Date.now()
        const error = yield* Effect.flip(remote.work("overflow"))
        assert.isBelow(Date.now() - started, 10_000, "refused without waiting for the ask timeout")
        assertMailboxFull(error, endpoint.address, "GateGateway.work", 2)
        // The tell has nobody to tell: it succeeds at the sender and is counted at the receiver.
        yield* remote.note("dropped")
        yield* eventually(rejections("mailbox_full"), (count) => count === 2, "the dropped tell to be counted")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.deepStrictEqual(yield* Effect.forEach(queued, Fiber.join), ["a", "b"])
        assert.strictEqual(yield* remote.work("c"), "c")
        yield* remote.note("d")
        assert.strictEqual(yield* remote.count(), 4)
        assert.deepStrictEqual(gate.runs, ["a", "b", "c", "d"])
        const [connection] = (yield* server.introspect).connections
        assert.strictEqual(connection?.callsIn, 0)
        assert.strictEqual((yield* client.introspect).inFlightCalls, 0)
      }).pipe(isolatedMetrics))

    it.live("introspect over TCP shows the remote endpoint's depth and capacity", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate, { mailboxCapacity: 5 }))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const blocked = yield* Effect.forkChild(remote.block())
        yield* Deferred.await(gate.entered)
        for (const p of ["a", "b", "c"]) yield* remote.note(p)
        const snapshot = yield* eventually(endpointOf(server, "gate"), (e) => e?.mailboxDepth === 3, "three queued tells")
        assert.strictEqual(snapshot?.mailboxCapacity, 5)
        assert.strictEqual(snapshot?.address, endpoint.address)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        assert.strictEqual(yield* remote.count(), 3)
      }).pipe(isolatedMetrics))
  })
})
