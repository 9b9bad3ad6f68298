/**
 * The behaviour suite: the gateway, endpoint, fencing and timeout cases of the core that make sense across a
 * wire, written once and run over every transport (test/transport.test.ts). A client service reaches endpoints
 * of a server service by address; only the transport differs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Schema } from "effect"
import { RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"
import { DifferentGateway, ExtendedGateway, ProbeGateway, probe, TestFailure, testEndpoint, TestGateway } from "./fixtures/common.js"
import type { TransportUnderTest } from "./fixtures/transports.js"

/** Starts `endpoint` on `service` for the test's scope and waits for its onStart. */
export const startOn = <Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop, EInit>(
  service: RpcService.RpcServiceShape,
  endpoint: RpcEndpoint.RpcEndpoint<Gs, Token, EStop, EInit, never>
) => RpcEndpoint.scoped(endpoint).pipe(Effect.provideService(RpcService.RpcService, service))

/** Values of every shape a payload may take, for echo round trips. */
const Rich = Schema.Struct({
  text: Schema.String,
  count: Schema.Number,
  big: Schema.BigInt,
  when: Schema.Date,
  maybe: Schema.Option(Schema.String),
  bytes: Schema.Uint8Array,
  nothing: Schema.Null,
  list: Schema.Array(Schema.Struct({ k: Schema.String, v: Schema.Number }))
})

const RichGateway = RpcGateway.make("RichGateway", {
  echo: RpcGateway.ask({ payload: Rich, success: Rich }),
  nothing: RpcGateway.ask({ success: Schema.Null }),
  maybe: RpcGateway.ask({ payload: Schema.Option(Schema.Number), success: Schema.Option(Schema.Number) })
})

const richEndpoint = RpcEndpoint.make({
  id: "rich",
  gateways: [RichGateway],
  init: () =>
    Effect.succeed({
      handlers: {
        echo: (value) => Effect.succeed(value),
        nothing: () => Effect.succeed(null),
        maybe: (value) => Effect.succeed(value)
      }
    })
})

const OrderGateway = RpcGateway.make("OrderGateway", {
  append: RpcGateway.tell({ payload: Schema.Number }),
  appendAsk: RpcGateway.ask({ payload: Schema.Number }),
  log: RpcGateway.ask({ success: Schema.Array(Schema.Number) })
})

const orderEndpoint = RpcEndpoint.make({
  id: "order",
  gateways: [OrderGateway],
  init: () =>
    Effect.sync(() => {
      const log: Array<number> = []
      return {
        handlers: {
          append: (n) => Effect.sync(() => void log.push(n)),
          appendAsk: (n) => Effect.sync(() => void log.push(n)),
          log: () => Effect.sync(() => [...log])
        }
      }
    })
})

const FencedGateway = RpcGateway.make("FencedGateway", {
  whoami: RpcGateway.ask({ success: Schema.String }),
  lead: RpcGateway.ask({ payload: Schema.String })
})

const fencedEndpoint = (initialToken?: string) =>
  RpcEndpoint.makeFenced({
    id: "fenced",
    gateways: [FencedGateway],
    token: Schema.String,
    initialToken,
    init: (main) =>
      Effect.succeed({
        handlers: {
          whoami: () => Effect.map(main.fencingToken, Option.getOrElse(() => "<none>")),
          lead: (token) => main.setFencingToken(token)
        }
      })
  })

/** Runs the behaviour suite over `transport`. */
export const behaviourSuite = (transport: TransportUnderTest) =>
  describe(`behaviour over ${transport.name}`, () => {
    const pair = transport.pair

    it.live("asks return values, tells change state, and the address names the transport", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 7 }))
        assert.isTrue(endpoint.address.startsWith(transport.name === "local" ? "local://" : transport.name === "tcp" ? "rpc://" : "rpcs://"))
        const gateway = yield* client.connect(endpoint.address, TestGateway)
        assert.strictEqual(gateway.address, endpoint.address)
        assert.strictEqual(yield* gateway.foobar(), 7)
        yield* gateway.setFoobar(11)
        assert.strictEqual(yield* gateway.foobar(), 11)
        assert.isTrue(yield* gateway.isRunning())
      }))

    it.live("values of every shape round-trip (dates, bigints, options, bytes, null)", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(server, richEndpoint)
        const gateway = yield* client.connect(endpoint.address, RichGateway)
        const value: typeof Rich.Type = {
          text: "héllo 🌍",
          count: -0.5,
          big: 2n ** 70n,
          when: new Date(1_700_000_000_000),
          maybe: Option.some("x"),
          bytes: new Uint8Array([0, 1, 255]),
          nothing: null,
          list: [{ k: "a", v: 1 }, { k: "b", v: Number.MAX_SAFE_INTEGER }]
        }
        assert.deepStrictEqual(yield* gateway.echo(value), value)
        assert.isNull(yield* gateway.nothing())
        assert.deepStrictEqual(yield* gateway.maybe(Option.none()), Option.none())
        assert.deepStrictEqual(yield* gateway.maybe(Option.some(3)), Option.some(3))
      }))

    it.live("a typed failure arrives intact; a defect arrives as RemoteDefectError and the endpoint keeps serving", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 1 }))
        const gateway = yield* client.connect(endpoint.address, TestGateway)
        const failure = yield* Effect.flip(gateway.fail("boom"))
        assert.instanceOf(failure, TestFailure)
        assert.deepStrictEqual({ ...failure as TestFailure }, { _tag: "TestFailure", reason: "boom", code: 42 })
        const defect = yield* Effect.flip(gateway.die("kaput"))
        assert.instanceOf(defect, RpcError.RemoteDefectError)
        assert.include(defect.message, "kaput")
        assert.include(defect.message, "TestGateway.die")
        assert.strictEqual(yield* gateway.foobar(), 1)
      }))

    it.live("before start: the handshake works and asks fail EndpointNotStartedError; after start they are served", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const handle = yield* server.startServer(testEndpoint({ id: "late", value: 3 }))
        const gateway = yield* client.connect(handle.address, TestGateway)
        const error = yield* Effect.flip(gateway.foobar())
        assert.instanceOf(error, RpcError.EndpointNotStartedError)
        assert.include(error.message, handle.address)
        yield* handle.start
        yield* handle.awaitStarted
        assert.strictEqual(yield* gateway.foobar(), 3)
        yield* handle.terminate
      }))

    it.live("connect fails fast and typed: unknown endpoint, gateway not served, Schema drift", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
        const base = endpoint.address.slice(0, endpoint.address.lastIndexOf("/"))
        const unknown = yield* Effect.flip(client.connect(`${base}/nobody`, TestGateway))
        assert.strictEqual(unknown._tag === "RpcConnectionError" && unknown.reason, "UnknownEndpoint")
        assert.include(unknown.message, "nobody")
        const notServed = yield* Effect.flip(client.connect(endpoint.address, DifferentGateway))
        assert.strictEqual(notServed._tag === "RpcConnectionError" && notServed.reason, "GatewayNotServed")
        // Same name, different Schemas: the fingerprints differ.
        const Drifted = RpcGateway.make("TestGateway", { foobar: RpcGateway.ask({ success: Schema.String }) })
        const drifted = yield* Effect.flip(client.connect(endpoint.address, Drifted))
        assert.strictEqual(drifted._tag === "RpcConnectionError" && drifted.reason, "GatewayMismatch")
        assert.include(drifted.message, "different Schemas")
      }))

    it.live("an endpoint serves several gateways; each one is checked at connect", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(
          server,
          RpcEndpoint.make({
            id: "multi",
            gateways: [ExtendedGateway, DifferentGateway],
            init: () =>
              Effect.succeed({
                handlers: { foobar: () => Effect.succeed(1), barfoo: () => Effect.succeed(2), foo: () => Effect.succeed("3") }
              })
          })
        )
        const extended = yield* client.connect(endpoint.address, ExtendedGateway)
        const different = yield* client.connect(endpoint.address, DifferentGateway)
        assert.deepStrictEqual([yield* extended.foobar(), yield* extended.barfoo(), yield* different.foo()], [1, 2, "3"])
      }))

    it.live("fencing: right token served, stale token Mismatch naming both, unfenced Missing, unset NotSet", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const unset = yield* startOn(server, { ...fencedEndpoint(), id: "unset" })
        const notSet = yield* Effect.flip((yield* client.connectFenced(unset.address, "t-1", FencedGateway)).whoami())
        assert.strictEqual(notSet._tag === "FencingTokenError" && notSet.reason, "NotSet")
        const endpoint = yield* startOn(server, fencedEndpoint("leader-1"))
        const leader1 = yield* client.connectFenced(endpoint.address, "leader-1", FencedGateway)
        assert.strictEqual(yield* leader1.whoami(), "leader-1")
        const unfenced = yield* client.connect(endpoint.address, FencedGateway)
        const missing = yield* Effect.flip(unfenced.whoami())
        assert.strictEqual(missing._tag === "FencingTokenError" && missing.reason, "Missing")
        // Leader change: the old token is stale from now on.
        yield* leader1.lead("leader-2")
        const stale = yield* Effect.flip(leader1.whoami())
        assert.strictEqual(stale._tag === "FencingTokenError" && stale.reason, "Mismatch")
        assert.include(stale.message, "leader-1")
        assert.include(stale.message, "leader-2")
        const leader2 = yield* client.connectFenced(endpoint.address, "leader-2", FencedGateway)
        assert.strictEqual(yield* leader2.whoami(), "leader-2")
      }))

    it.live("a timeout is an RpcTimeoutError naming method, address and timeout, and points at the caller", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
        const gateway = yield* client.connect(endpoint.address, TestGateway)
        const error = yield* Effect.flip(gateway.never(undefined, { timeout: "100 millis" }))
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        const timeout = error as RpcError.RpcTimeoutError
        assert.strictEqual(timeout.timeoutMillis, 100)
        assert.strictEqual(timeout.address, endpoint.address)
        assert.strictEqual(timeout.method, "TestGateway.never")
        assert.include(timeout.callSite, "behaviour.ts")
        // The connection survives a timed-out call.
        assert.strictEqual(yield* gateway.foobar(), 0)
      }))

    it.live("an ask to a terminated endpoint fails RecipientUnreachableError at once, not by timeout", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const handle = yield* server.startServer(testEndpoint({ id: "short-lived" }))
        yield* handle.start
        const gateway = yield* client.connect(handle.address, TestGateway)
        const pending = yield* Effect.forkChild(gateway.never())
        yield* Effect.sleep("20 millis")
        yield* handle.terminate
        const inFlight = yield* Effect.flip(Fiber.join(pending))
        assert.instanceOf(inFlight, RpcError.RecipientUnreachableError)
        const after = yield* Effect.flip(gateway.foobar(undefined, { timeout: "5 seconds" }))
        assert.instanceOf(after, RpcError.RecipientUnreachableError)
      }))

    it.live("a handler can reply later without holding the main thread", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const gate = yield* Deferred.make<string>()
        const endpoint = yield* startOn(server, probe({ ping: () => Effect.succeed(RpcEndpoint.later(Deferred.await(gate))) }))
        const gateway = yield* client.connect(endpoint.address, ProbeGateway)
        const first = yield* Effect.forkChild(gateway.ping())
        const second = yield* Effect.forkChild(gateway.ping())
        yield* Effect.sleep("20 millis")
        yield* Deferred.succeed(gate, "later")
        assert.deepStrictEqual(yield* Fiber.joinAll([first, second]), ["later", "later"])
      }))

    it.live("calls on a stopped client service fail RpcServiceStoppedError", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
        const gateway = yield* client.connect(endpoint.address, TestGateway)
        yield* client.shutdown
        assert.instanceOf(yield* Effect.flip(gateway.foobar()), RpcError.RpcServiceStoppedError)
        assert.instanceOf(yield* Effect.flip(client.connect(endpoint.address, TestGateway)), RpcError.RpcServiceStoppedError)
      }))

    it.live.prop(
      "per-sender FIFO: interleaved tells and asks from one sender are processed in send order",
      [Schema.Array(Schema.Struct({ n: Schema.Int, ask: Schema.Boolean })).check(Schema.isMaxLength(60))],
      ([ops]) =>
        Effect.scoped(Effect.gen(function*() {
          const { client, server } = yield* pair()
          const endpoint = yield* startOn(server, orderEndpoint)
          const gateway = yield* client.connect(endpoint.address, OrderGateway)
          // Asks start at once on fibers of their own, so tells and asks are in flight together on the connection.
          const fibers = []
          for (const op of ops) {
            if (op.ask) fibers.push(yield* Effect.forkChild(gateway.appendAsk(op.n), { startImmediately: true }))
            else yield* gateway.append(op.n)
          }
          yield* Fiber.joinAll(fibers)
          assert.deepStrictEqual(yield* gateway.log(), ops.map((op) => op.n))
        })),
      { arbitrary: { runs: 15 } }
    )
  })
