/**
 * Security claims about what a peer sends, each a test a threat model can cite (docs/SECURITY.md): frame limits
 * before and after the hello, no prototype pollution from MessagePack or Schema payloads, a peer that does not
 * read cannot make the server buffer without bound, and fencing tokens as access control. Connection-level claims
 * (TLS reload, maxConnections, handshake timeouts) are in test/security.test.ts. Raw sockets are on 127.0.0.1 and
 * closed with their test.
 */
import { assert, describe, it } from "@effect/vitest"
import { encode as msgpack } from "@msgpack/msgpack"
import { Deferred, Duration, Effect, Result, Schema } from "effect"
import { RpcEndpoint, RpcError, RpcGateway, RpcMetrics, RpcService } from "effect-actor-rpc"
import * as Frame from "../src/internal/frame.js"
import * as Wire from "../src/internal/wire.js"
import { startOn } from "./behaviour.js"
import { testEndpoint, TestGateway } from "./fixtures/common.js"
import {
  collectLogs,
  config,
  counter,
  eventually,
  frameOf,
  helloFrame,
  isolatedMetrics,
  makeLogLines,
  messagesOf,
  portOf,
  type RawSocket,
  rawConnection
} from "./fixtures/raw.js"

const { heartbeatMisses, rejections } = RpcMetrics.names

/** Sends an ask by hand on a raw connection that has said hello. */
const rawAsk = (
  raw: RawSocket,
  id: number,
  target: { readonly endpointId: string; readonly gateway: string; readonly method: string },
  payload: unknown,
  token?: { readonly value: unknown }
) => raw.socket.write(frameOf(Wire.call(false, id, target.endpointId, target.gateway, target.method, token, undefined, undefined, payload)))

/** The reply to ask `id` on a raw connection (at most 5 s). */
const replyTo = (raw: RawSocket, id: number) =>
  Effect.gen(function*() {
    let reply: Extract<Wire.Message, { _tag: "Reply" }> | undefined
    yield* eventually(`the reply to ask ${id}`, Effect.sync(() => {
      reply = messagesOf(raw.received(), "Reply").find((r) => r.id === id)
      return reply !== undefined
    }))
    return reply!
  })

/** The library error an `Error` reply carries. */
const errorOf = (reply: Extract<Wire.Message, { _tag: "Reply" }>) => {
  assert.strictEqual(reply.outcome, Wire.Outcome.Error)
  return Result.getOrThrow(Wire.decodeValue(RpcError.RpcCallError, reply.value)) as RpcError.RpcCallError
}

/** A well-formed frame whose MessagePack body is `message` (whatever it holds). */
const rawFrame = (message: unknown) => Buffer.from(Frame.encode(msgpack(message)))

/** Own property names of Object.prototype, to check nothing was added to it. */
const prototypeKeys = () => Reflect.ownKeys(Object.prototype).map(String).sort()

describe("security: input", () => {
  describe("frame limits", () => {
    it.live("a frame over 64 KiB before the hello closes the connection at its length prefix; others keep working", () =>
      isolatedMetrics(Effect.gen(function*() {
        const server = yield* RpcService.makeTcp()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 5 }))
        const client = yield* RpcService.makeTcp()
        const gateway = yield* client.connect(endpoint.address, TestGateway)
        const raw = yield* rawConnection(portOf(endpoint.address))
        const header = Buffer.alloc(4)
        Frame.writeHeader(header, 100 * 1024)
        raw.socket.write(Buffer.concat([header, Buffer.alloc(1024)]))
        yield* raw.awaitClose()
        const [close] = messagesOf(raw.received(), "Close")
        assert.include(close?.detail, "over the maximum frame size of 65536 bytes")
        assert.strictEqual(yield* counter(rejections, "oversized"), 1)
        assert.strictEqual(yield* gateway.foobar(), 5)
      })))

    it.live("a length prefix of 8 MiB followed by a trickle buffers only what arrived, and the connection is closed at the heartbeat pause however it trickles", () =>
      isolatedMetrics(Effect.gen(function*() {
        const pause = 800
        const server = yield* RpcService.makeTcp().pipe(
          config({ heartbeatInterval: Duration.millis(100), heartbeatPause: Duration.millis(pause) })
        )
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 5 }))
        const peers = 8
        const claimed = 8 * 1024 * 1024
        const before = process.memoryUsage()
        const raws: Array<RawSocket> = []
        const openedAt = Date.now()
        for (let i = 0; i < peers; i++) {
          const raw = yield* rawConnection(portOf(endpoint.address))
          const header = Buffer.alloc(4)
          Frame.writeHeader(header, claimed)
          raw.socket.write(Buffer.concat([helloFrame(`trickle-${i}`), header, Buffer.alloc(16, i)]))
          raws.push(raw)
        }
        for (let round = 0; round < 5; round++) {
          yield* Effect.sleep("50 millis")
          for (const raw of raws) raw.socket.write(Buffer.alloc(16, round))
        }
        yield* eventually("every hello is answered", Effect.sync(() => raws.every((raw) => messagesOf(raw.received(), "Hello").length === 1)))
        const after = process.memoryUsage()
        const grown = (after.arrayBuffers - before.arrayBuffers) + (after.heapUsed - before.heapUsed)
        // Allocating what the prefixes claim would take 64 MiB; what arrived is 8 × 96 bytes.
        assert.isBelow(grown, 16 * 1024 * 1024)
        for (const raw of raws) yield* raw.awaitClose(pause + 5_000)
        // A trickle is no sign of life: only answers to the server's heartbeats would be, and these peers send none.
        assert.isAtLeast(Date.now() - openedAt, pause - 100, "not before the pause")
        for (const raw of raws) {
          const [close] = messagesOf(raw.received(), "Close")
          assert.include(close?.detail, "no heartbeat from the peer")
        }
        assert.strictEqual(yield* counter(heartbeatMisses), peers)
      })))
  })

  describe("no prototype pollution", () => {
    it.live("a MessagePack map with a __proto__ key (in a payload or a token) is a protocol error: the connection closes, Object.prototype is untouched, others keep working", () =>
      Effect.gen(function*() {
        const { endpoint, seen } = yield* inspectServer
        const client = yield* RpcService.makeTcp()
        const gateway = yield* client.connect(endpoint.address, InspectGateway)
        const keysBefore = prototypeKeys()
        const poison = { ["__proto__"]: { polluted: true }, constructor: { prototype: { polluted: true } } }
        const person = Result.getOrThrow(Wire.encodeValue(Person, { name: "a", count: 1 }))
        const bodies = [
          // The payload itself as a map instead of bytes.
          [Wire.Type.Ask, 1, "inspect", "InspectGateway", "person", null, null, null, poison],
          // A well-formed payload, with the poison as the fencing token.
          [Wire.Type.Ask, 1, "inspect", "InspectGateway", "person", [poison], null, null, person]
        ]
        for (const body of bodies) {
          const frame = rawFrame(body)
          assert.isTrue(frame.includes("__proto__"), "the frame carries a __proto__ key")
          const raw = yield* rawConnection(portOf(endpoint.address))
          raw.socket.write(Buffer.concat([helloFrame(), frame]))
          yield* raw.awaitClose()
          const [close] = messagesOf(raw.received(), "Close")
          assert.include(close?.detail, "__proto__")
          assert.strictEqual(messagesOf(raw.received(), "Reply").length, 0)
        }
        assert.strictEqual(seen.length, 0, "no handler ran")
        assert.deepStrictEqual(prototypeKeys(), keysBefore)
        assert.isUndefined(({} as Record<string, unknown>)["polluted"])
        assert.deepStrictEqual(yield* gateway.person({ name: "b", count: 2 }), { keys: ["count", "name"], plainPrototype: true, pollutedVisible: false })
      }))

    it.live("a Struct payload with extra fields, `constructor` and `__proto__` reaches the handler with its declared fields only; a mistyped one is an RpcSerializationError and runs nothing", () =>
      Effect.gen(function*() {
        const { endpoint, seen } = yield* inspectServer
        const keysBefore = prototypeKeys()
        const raw = yield* rawConnection(portOf(endpoint.address))
        raw.socket.write(helloFrame())
        const target = { endpointId: "inspect", gateway: "InspectGateway", method: "person" }
        const wide = Object.defineProperty(
          { name: "a", count: 1, extra: "x", constructor: "Function" },
          "__proto__",
          { value: { polluted: true }, enumerable: true, writable: true, configurable: true }
        )
        rawAsk(raw, 1, target, Result.getOrThrow(Wire.encodeValue(Wide, wide)))
        const stripped = yield* replyTo(raw, 1)
        assert.strictEqual(stripped.outcome, Wire.Outcome.Success)
        assert.deepStrictEqual(Result.getOrThrow(Wire.decodeValue(Seen, stripped.value)), {
          keys: ["count", "name"],
          plainPrototype: true,
          pollutedVisible: false
        })
        assert.deepStrictEqual(Reflect.ownKeys(seen[0] as object).map(String).sort(), ["count", "name"])

        // The declared field with another type: refused before any handler sees it.
        rawAsk(raw, 2, target, Result.getOrThrow(Wire.encodeValue(Mistyped, { name: { polluted: true }, count: 1 })))
        const error = errorOf(yield* replyTo(raw, 2))
        assert.instanceOf(error, RpcError.RpcSerializationError)
        assert.strictEqual((error as RpcError.RpcSerializationError).direction, "request")
        assert.strictEqual((error as RpcError.RpcSerializationError).operation, "decode")
        assert.strictEqual(seen.length, 1)
        // Bad content is the caller's problem, not the connection's.
        assert.isFalse(raw.isClosed())
        rawAsk(raw, 3, target, Result.getOrThrow(Wire.encodeValue(Person, { name: "c", count: 3 })))
        assert.strictEqual((yield* replyTo(raw, 3)).outcome, Wire.Outcome.Success)
        assert.deepStrictEqual(prototypeKeys(), keysBefore)
        assert.isUndefined(({} as Record<string, unknown>)["polluted"])
      }))

    it.live("an Unknown payload with `__proto__` and `constructor` keys gets them as plain own data: the handler's object keeps Object.prototype", () =>
      Effect.gen(function*() {
        const { endpoint, seen } = yield* inspectServer
        const keysBefore = prototypeKeys()
        const raw = yield* rawConnection(portOf(endpoint.address))
        raw.socket.write(helloFrame())
        const hostile = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, "a": 1}')
        rawAsk(raw, 1, { endpointId: "inspect", gateway: "InspectGateway", method: "anything" }, Result.getOrThrow(Wire.encodeValue(Schema.Unknown, hostile)))
        const reply = yield* replyTo(raw, 1)
        assert.strictEqual(reply.outcome, Wire.Outcome.Success)
        const result = Result.getOrThrow(Wire.decodeValue(Seen, reply.value)) as typeof Seen.Type
        assert.isTrue(result.plainPrototype)
        assert.isFalse(result.pollutedVisible)
        assert.sameMembers([...result.keys], ["__proto__", "constructor", "a"])
        assert.strictEqual(Object.getPrototypeOf(seen[0]), Object.prototype)
        assert.deepStrictEqual(prototypeKeys(), keysBefore)
        assert.isUndefined(({} as Record<string, unknown>)["polluted"])
      }))
  })

  describe("slow reader", () => {
    // 12,000 asks of 1 KiB stay within the 20 MiB receive window: the peer breaks no rule, it only does not read.
    it.live("a peer that sends 12,000 asks and never reads does not stop others being served, and the heartbeat pause closes its connection", () =>
      isolatedMetrics(Effect.gen(function*() {
        const { server, endpoint, slowConnection } = yield* slowReader({ heartbeatPause: 2_000, asks: 12_000 })
        // Meanwhile a well-behaved client is served.
        const client = yield* RpcService.makeTcp()
        const gateway = yield* client.connect(endpoint.address, BytesGateway)
        for (let i = 0; i < 20; i++) {
          const echoed = yield* gateway.echo(new Uint8Array(1024).fill(i))
          assert.strictEqual(echoed.length, 1024)
          assert.strictEqual(echoed[0], i)
        }
        yield* eventually("the slow reader's connection is closed", Effect.map(slowConnection, (c) => c === undefined), 15_000)
        assert.isAtLeast(yield* counter(heartbeatMisses), 1)
        // The service still serves after the slow reader is gone.
        assert.strictEqual((yield* gateway.echo(new Uint8Array(3))).length, 3)
        assert.strictEqual((yield* server.introspect).lifecycle, "running")
      })))

    // Asks beyond maxAsksPerConnection are answered at once with MailboxFullError instead of being queued: the
    // replies a non-reading peer can make the server hold are bounded by that limit times the reply size, plus the
    // refusals; once 4 MiB are queued to it, its further requests wait unread (within its receive window).
    it.live("a peer that pipelines 12,000 asks to a slow handler and never reads: asks beyond maxAsksPerConnection are refused and the server's buffered bytes for it stay below 12 MiB", () =>
      isolatedMetrics(Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        const { handled, slowConnection } = yield* slowReader({
          heartbeatPause: 20_000,
          gate,
          maxAsksPerConnection: 2_000,
          asks: 12_000
        })
        // Until the server stops taking asks (none for 0.5 s; at most 10 s), the handlers hold their answers.
        let last = -1
        for (let i = 0, quiet = 0; i < 400 && quiet < 20 && handled.count < 12_000; i++) {
          quiet = handled.count === last ? quiet + 1 : 0
          last = handled.count
          yield* Effect.sleep("25 millis")
        }
        yield* Deferred.succeed(gate, undefined)
        let maxBuffered = 0
        // Then until every ask taken is answered and the buffer no longer grows but for heartbeats (at most 10 s).
        for (let i = 0, quiet = 0; i < 400 && quiet < 20; i++) {
          const connection = yield* slowConnection
          if (connection === undefined) break
          quiet = connection.callsIn > 0 || connection.bufferedBytes > maxBuffered + 64 * 1024 ? 0 : quiet + 1
          maxBuffered = Math.max(maxBuffered, connection.bufferedBytes)
          yield* Effect.sleep("25 millis")
        }
        // Requests wait from 4 MiB queued on; the replies of the 2,000 asks already taken come on top.
        assert.isBelow(maxBuffered, 12 * 1024 * 1024, `buffered replies stay bounded (${handled.count} asks taken)`)
        assert.isAtMost(handled.count, 2_000, "no more asks than the limit reached the handler")
        assert.isAtLeast(yield* counter(rejections, "mailbox_full"), 1)
      })))
  })

  describe("a peer that does not follow flow control", () => {
    it.live("a peer that sends 64 KiB asks without reading is closed once its requests exceed the receive window, long before the heartbeat pause, with what was held for it bounded", () =>
      isolatedMetrics(Effect.gen(function*() {
        const logs = makeLogLines()
        const { slowConnection } = yield* slowReader({
          heartbeatPause: 20_000,
          asks: 600,
          payloadBytes: 64 * 1024
        }).pipe(collectLogs(logs))
        let maxBuffered = 0
        const startedAt = Date.now()
        for (let i = 0; i < 400; i++) {
          const connection = yield* slowConnection
          if (connection === undefined) break
          maxBuffered = Math.max(maxBuffered, connection.bufferedBytes)
          yield* Effect.sleep("10 millis")
        }
        assert.isUndefined(yield* slowConnection, "closed")
        assert.isBelow(Date.now() - startedAt, 10_000, "by the window, not by the 20 s heartbeat pause")
        assert.strictEqual(yield* counter(heartbeatMisses), 0)
        assert.isAtLeast(logs.count("beyond the receive window"), 1, "the operator is told why")
        // Replies queued to it stop growing at the 4 MiB backlog mark (plus the replies already being made).
        assert.isBelow(maxBuffered, 8 * 1024 * 1024, "buffered replies stay bounded")
      })))
  })

  describe("fencing as access control", () => {
    it.live("a stale, missing or undecodable token never runs a handler: FencingTokenError, counted in rpc_rejections_total{reason=\"fencing\"}", () =>
      isolatedMetrics(Effect.gen(function*() {
        let runs = 0
        const server = yield* RpcService.makeTcp()
        const endpoint = yield* startOn(
          server,
          RpcEndpoint.makeFenced({
            id: "guarded",
            gateways: [Guarded],
            token: Schema.String,
            initialToken: "leader-2",
            init: () => Effect.sync(() => ({ handlers: { secret: () => Effect.sync(() => (runs++, "s3cret")) } }))
          })
        )
        const client = yield* RpcService.makeTcp()
        const stale = yield* Effect.flip((yield* client.connectFenced(endpoint.address, "leader-1", Guarded)).secret())
        assert.instanceOf(stale, RpcError.FencingTokenError)
        assert.strictEqual((stale as RpcError.FencingTokenError).reason, "Mismatch")
        const missing = yield* Effect.flip((yield* client.connect(endpoint.address, Guarded)).secret())
        assert.strictEqual((missing as RpcError.FencingTokenError).reason, "Missing")

        // A raw client with a token that is not even a string (an object with a `constructor` key).
        const raw = yield* rawConnection(portOf(endpoint.address))
        raw.socket.write(helloFrame())
        rawAsk(raw, 1, { endpointId: "guarded", gateway: "Guarded", method: "secret" }, Result.getOrThrow(Wire.encodeValue(Schema.Void, undefined)), {
          value: { constructor: { prototype: { polluted: true } } }
        })
        const forged = errorOf(yield* replyTo(raw, 1))
        assert.instanceOf(forged, RpcError.FencingTokenError)
        assert.strictEqual((forged as RpcError.FencingTokenError).reason, "Mismatch")

        assert.strictEqual(runs, 0, "no handler ran for a rejected token")
        assert.strictEqual(yield* counter(rejections, "fencing"), 3)
        assert.isUndefined(({} as Record<string, unknown>)["polluted"])
        assert.strictEqual(yield* (yield* client.connectFenced(endpoint.address, "leader-2", Guarded)).secret(), "s3cret")
        assert.strictEqual(runs, 1)
        assert.strictEqual(yield* counter(rejections, "fencing"), 3)
      })))
  })
})

const Person = Schema.Struct({ name: Schema.String, count: Schema.Number })

/** Person as a hostile client would widen it. */
const Wide = Schema.Struct({
  name: Schema.String,
  count: Schema.Number,
  extra: Schema.String,
  constructor: Schema.String,
  ["__proto__"]: Schema.Struct({ polluted: Schema.Boolean })
})

/** Person with the wrong type for `name`. */
const Mistyped = Schema.Struct({ name: Schema.Struct({ polluted: Schema.Boolean }), count: Schema.Number })

/** What a handler saw of its payload. */
const Seen = Schema.Struct({ keys: Schema.Array(Schema.String), plainPrototype: Schema.Boolean, pollutedVisible: Schema.Boolean })

const InspectGateway = RpcGateway.make("InspectGateway", {
  person: RpcGateway.ask({ payload: Person, success: Seen }),
  anything: RpcGateway.ask({ payload: Schema.Unknown, success: Seen })
})

const BytesGateway = RpcGateway.make("BytesGateway", {
  echo: RpcGateway.ask({ payload: Schema.Uint8Array, success: Schema.Uint8Array })
})

const Guarded = RpcGateway.make("Guarded", { secret: RpcGateway.ask({ success: Schema.String }) })

/** A TCP service with an endpoint "inspect" that reports what its handlers saw; `seen` holds every payload. */
const inspectServer = Effect.gen(function*() {
  const seen: Array<unknown> = []
  const look = (payload: unknown) => {
    seen.push(payload)
    const object = payload as Record<string, unknown>
    return {
      keys: Reflect.ownKeys(object).map(String).sort(),
      plainPrototype: Object.getPrototypeOf(object) === Object.prototype,
      pollutedVisible: object["polluted"] !== undefined
    }
  }
  const server = yield* RpcService.makeTcp()
  const endpoint = yield* startOn(
    server,
    RpcEndpoint.make({
      id: "inspect",
      gateways: [InspectGateway],
      init: () =>
        Effect.succeed({
          handlers: {
            person: (payload: typeof Person.Type) => Effect.sync(() => look(payload)),
            anything: (payload: unknown) => Effect.sync(() => look(payload))
          }
        })
    })
  )
  return { endpoint, seen }
})

/**
 * A TCP service with an echo endpoint "bytes" and a raw peer that says hello, sends 20,000 asks of 1 KiB in one
 * write and never reads; `slowConnection` is the server's view of that peer's connection (undefined once closed),
 * `handled` counts the asks the endpoint has taken; with a `gate`, the handlers answer only once it is open.
 */
const slowReader = (options: {
  readonly heartbeatPause: number
  readonly gate?: Deferred.Deferred<void>
  readonly maxAsksPerConnection?: number
  /** How many asks it sends at once (20,000 by default) and their payload's size (1 KiB). */
  readonly asks?: number
  readonly payloadBytes?: number
}) =>
  Effect.gen(function*() {
    const handled = { count: 0 }
    const server = yield* RpcService.makeTcp().pipe(
      config({
        heartbeatInterval: Duration.millis(200),
        heartbeatPause: Duration.millis(options.heartbeatPause),
        ...(options.maxAsksPerConnection === undefined ? {} : { maxAsksPerConnection: options.maxAsksPerConnection })
      })
    )
    const endpoint = yield* startOn(
      server,
      RpcEndpoint.make({
        id: "bytes",
        gateways: [BytesGateway],
        init: () =>
          Effect.succeed({
            handlers: {
              echo: (bytes: Uint8Array) =>
                Effect.sync(() => {
                  handled.count++
                  const gate = options.gate
                  return gate === undefined ? bytes : RpcEndpoint.later(Effect.as(Deferred.await(gate), bytes))
                })
            }
          })
      })
    )
    const slow = yield* rawConnection(portOf(endpoint.address), { read: false })
    const payload = Result.getOrThrow(
      Wire.encodeValue(Schema.Uint8Array, new Uint8Array(options.payloadBytes ?? 1024).fill(7))
    )
    const frames: Array<Buffer> = [helloFrame("slow-reader")]
    for (let id = 1; id <= (options.asks ?? 20_000); id++) {
      frames.push(frameOf(Wire.call(false, id, "bytes", "BytesGateway", "echo", undefined, undefined, undefined, payload)))
    }
    slow.socket.write(Buffer.concat(frames))
    const slowConnection = Effect.map(server.introspect, (s) => s.connections.find((c) => c.peerService === "slow-reader"))
    yield* eventually("the slow reader is connected", Effect.map(slowConnection, (c) => c !== undefined))
    return { server, endpoint, slowConnection, handled }
  })
