/**
 * The compatibility exchange at connect (docs/PROTOCOL.md, "Gateway evolution"): two versions of a gateway connect
 * under each side's `RpcConfig.gatewayCompatibility`, over TCP and in-process; a method only the caller has fails
 * alone with `MethodNotServedError`; the endpoint's side of the exchange, frame by frame, on a raw socket (the fast
 * path, the Compare, the cache, a snapshot that does not read); and a peer that asks for the snapshot twice.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, Result, Schema, type Scope } from "effect"
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import { RpcConfig, RpcEndpoint, RpcError, RpcGateway, RpcMetrics, RpcService } from "effect-actor-rpc"
import { Duplex } from "node:stream"
import { Connection } from "../src/internal/connection.js"
import { NoToken } from "../src/internal/invocation.js"
import * as Frame from "../src/internal/frame.js"
import * as Snapshot from "../src/internal/snapshot.js"
import * as Wire from "../src/internal/wire.js"
import { startOn } from "./behaviour.js"
import { connectionOwner } from "./fixtures/connectionOwner.js"
import { settle } from "./fixtures/common.js"
import {
  counter,
  eventually,
  frameOf,
  helloFrame,
  isolatedMetrics,
  messagesIn,
  messagesOf,
  portOf,
  rawConnection
} from "./fixtures/raw.js"
import { local, type Pair, tcp } from "./fixtures/transports.js"

const Item = Schema.Struct({ a: Schema.String })

const V1 = RpcGateway.make("G", {
  get: RpcGateway.ask({ payload: Item, success: Schema.String }),
  note: RpcGateway.tell({ payload: Schema.String })
})
/** An optional payload field, and two methods v1 lacks: compatible both ways. */
const V2 = RpcGateway.make("G", {
  get: RpcGateway.ask({
    payload: Schema.Struct({ a: Schema.String, b: Schema.optionalKey(Schema.Number) }),
    success: Schema.String
  }),
  note: RpcGateway.tell({ payload: Schema.String }),
  extra: RpcGateway.ask({ success: Schema.Number }),
  shout: RpcGateway.tell({ payload: Schema.String })
})
/** A required payload field: old callers cannot call new endpoints; new callers can call old ones. */
const Required = RpcGateway.make("G", {
  get: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String, b: Schema.Number }), success: Schema.String }),
  note: RpcGateway.tell({ payload: Schema.String })
})

/** An endpoint of `gateway` whose `get` answers what it read; tells are recorded. */
const endpointOf = (gateway: RpcGateway.Any, id: string, notes: Array<string> = []) =>
  RpcEndpoint.make({
    id,
    gateways: [gateway as typeof V2],
    init: () =>
      Effect.succeed({
        handlers: {
          get: (payload: { readonly a: string; readonly b?: number }) =>
            Effect.succeed(`${id} read ${JSON.stringify(payload)}`),
          note: (text: string) => Effect.sync(() => void notes.push(text)),
          extra: () => Effect.succeed(42),
          shout: (text: string) => Effect.sync(() => void notes.push(text.toUpperCase()))
        }
      })
  })

const connectError = (effect: Effect.Effect<unknown, unknown>) =>
  Effect.map(Effect.flip(effect), (error) => {
    assert.instanceOf(error, RpcError.RpcConnectionError)
    return error as RpcError.RpcConnectionError
  })

type Policy = RpcConfig.RpcConfig["gatewayCompatibility"]

/** Two services with their own policies (in-process or TCP). */
const pairWith = (
  transport: typeof tcp,
  policies: { readonly server: Policy; readonly client: Policy }
): Effect.Effect<Pair, never, Scope.Scope> =>
  Effect.all({
    server: Effect.map(transport.pair({ gatewayCompatibility: policies.server }), (pair) => pair.server),
    client: Effect.map(transport.pair({ gatewayCompatibility: policies.client }), (pair) => pair.client)
  }).pipe(Effect.orDie)

for (const transport of [local, tcp]) {
  describe(`two versions of a gateway, ${transport.name}`, () => {
    it.live("backward (the default) connects a compatible caller either way; calls work, a method the endpoint lacks fails alone", () =>
      Effect.gen(function*() {
        const { client, server } = yield* transport.pair()
        const notes: Array<string> = []
        const old = yield* startOn(server, endpointOf(V1, "old", notes))
        const fresh = yield* startOn(server, endpointOf(V2, "new", notes))
        // An old caller, a new endpoint.
        const oldCaller = yield* client.connect(fresh.address, V1)
        assert.strictEqual(yield* oldCaller.get({ a: "x" }), `new read {"a":"x"}`)
        // A new caller, an old endpoint: the optional field is skipped; extra and shout are not served.
        const newCaller = yield* client.connect(old.address, V2)
        assert.strictEqual(yield* newCaller.get({ a: "y", b: 1 }), `old read {"a":"y"}`)
        const notServed = yield* Effect.flip(newCaller.extra())
        assert.instanceOf(notServed, RpcError.MethodNotServedError)
        assert.strictEqual((notServed as RpcError.MethodNotServedError).method, "G.extra")
        assert.strictEqual((notServed as RpcError.MethodNotServedError).kind, "ask")
        assert.match(notServed.message, /does not serve G\.extra: its version of the gateway has no such method/)
        // A tell is refused at once too: the endpoint could not have told its caller.
        const tell = yield* Effect.flip(newCaller.shout("hi"))
        assert.instanceOf(tell, RpcError.MethodNotServedError)
        yield* newCaller.note("still works")
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(notes, ["still works"])
        assert.strictEqual(yield* newCaller.get({ a: "z" }), `old read {"a":"z"}`)
      }).pipe(Effect.scoped))

    it.live("backward refuses the connection whose calls would break, and names the path", () =>
      Effect.gen(function*() {
        const { client, server } = yield* transport.pair()
        const fresh = yield* startOn(server, endpointOf(Required, "new"))
        const old = yield* startOn(server, endpointOf(V1, "old"))
        const refused = yield* connectError(client.connect(fresh.address, V1))
        assert.strictEqual(refused.reason, "GatewayMismatch")
        assert.match(refused.detail, /error G\.get\.payload\.b \[RequiredFieldAdded, old caller → new endpoint\]/)
        assert.match(refused.detail, /under its "backward" policy/)
        // The other way round the calls work: the newer caller writes b, the older endpoint skips it.
        const newer = yield* client.connect(old.address, Required)
        assert.strictEqual(yield* newer.get({ a: "q", b: 2 }), `old read {"a":"q"}`)
      }).pipe(Effect.scoped))

    it.live("each side judges by its own policy: an exact endpoint or an exact caller refuses any difference", () =>
      Effect.gen(function*() {
        const strictServer = yield* pairWith(transport, { server: "exact", client: "backward" })
        const old = yield* startOn(strictServer.server, endpointOf(V1, "old"))
        const byServer = yield* connectError(strictServer.client.connect(old.address, V2))
        assert.strictEqual(byServer.reason, "GatewayMismatch")
        assert.match(byServer.detail, /accepts only identical Schemas \(RpcConfig\.gatewayCompatibility "exact"\)/)
        assert.match(
          byServer.detail,
          transport.remote ? /the endpoint's service accepts/ : /the endpoint's service \(rpc-\d+\) accepts/
        )
        const strictClient = yield* pairWith(transport, { server: "backward", client: "exact" })
        const old2 = yield* startOn(strictClient.server, endpointOf(V1, "old"))
        const byClient = yield* connectError(strictClient.client.connect(old2.address, V2))
        assert.match(byClient.detail, /this service accepts only identical Schemas/)
        // Identical Schemas are the fast path under any policy.
        const same = yield* strictClient.client.connect(old2.address, V1)
        assert.strictEqual(yield* same.get({ a: "s" }), `old read {"a":"s"}`)
      }).pipe(Effect.scoped))

    it.live("both refuses a connection that works when the reverse would not", () =>
      Effect.gen(function*() {
        const { client, server } = yield* pairWith(transport, { server: "both", client: "backward" })
        const old = yield* startOn(server, endpointOf(V1, "old"))
        const refused = yield* connectError(client.connect(old.address, Required))
        assert.match(refused.detail, /under its "both" policy/)
        // The reverse: the endpoint's version calling the caller's would not write the b it requires.
        assert.match(refused.detail, /error G\.get\.payload\.b \[RequiredFieldRemoved, new caller → old endpoint\]/)
      }).pipe(Effect.scoped))

    it.live("a changed fencing token Schema is named by path, not taken for an invalid token", () =>
      Effect.gen(function*() {
        const { client, server } = yield* transport.pair()
        const methods = { status: RpcGateway.ask({ success: Schema.String }) }
        const ByName = RpcGateway.make("Fenced", methods, { token: Schema.String })
        const ByNumber = RpcGateway.make("Fenced", methods, { token: Schema.Number })
        const endpoint = yield* startOn(
          server,
          RpcEndpoint.makeFenced({
            id: "fenced",
            gateways: [ByNumber],
            initialToken: 7,
            init: () => Effect.succeed({ handlers: { status: () => Effect.succeed("ok") } })
          })
        )
        const refused = yield* connectError(client.connectFenced(endpoint.address, "leader", ByName))
        assert.strictEqual(refused.reason, "GatewayMismatch")
        assert.match(refused.detail, /error Fenced\.token \[TokenChanged/)
      }).pipe(Effect.scoped))
  })
}

describe("two versions of a gateway in one process", () => {
  it.live("values cross both sides' codecs as on the wire: a field renamed with its fieldId kept arrives renamed", () =>
    Effect.gen(function*() {
      const { client, server } = yield* local.pair()
      const Before = RpcGateway.make("Renaming", {
        put: RpcGateway.ask({
          payload: Schema.Struct({ name: Schema.String.pipe(SchemaBinary.fieldId(1)) }),
          success: Schema.Struct({ stored: Schema.String })
        })
      })
      const After = RpcGateway.make("Renaming", {
        put: RpcGateway.ask({
          payload: Schema.Struct({ title: Schema.String.pipe(SchemaBinary.fieldId(1)) }),
          success: Schema.Struct({ stored: Schema.String, at: Schema.optionalKey(Schema.Number) })
        })
      })
      const endpoint = yield* startOn(
        server,
        RpcEndpoint.make({
          id: "renaming",
          gateways: [After],
          init: () => Effect.succeed({ handlers: { put: ({ title }) => Effect.succeed({ stored: title, at: 1 }) } })
        })
      )
      const caller = yield* client.connect(endpoint.address, Before)
      // By reference the handler would have read `title` from { name } and stored undefined.
      assert.deepStrictEqual(yield* caller.put({ name: "kept" }), { stored: "kept" })
    }).pipe(Effect.scoped))
})

describe("RpcConfig.gatewayCompatibility", () => {
  it.effect("defaults to backward, and RPC_GATEWAY_COMPATIBILITY / RPC_REFLECTION set it from the environment", () =>
    Effect.gen(function*() {
      assert.strictEqual(RpcConfig.defaults.gatewayCompatibility, "backward")
      assert.isFalse(RpcConfig.defaults.reflection)
      const env = ConfigProvider.fromEnv({ env: { RPC_GATEWAY_COMPATIBILITY: "exact", RPC_REFLECTION: "true" } })
      const loaded = yield* RpcConfig.config.pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, env.pipe(ConfigProvider.constantCase))
      )
      assert.strictEqual(loaded.gatewayCompatibility, "exact")
      assert.isTrue(loaded.reflection)
      const wrong = ConfigProvider.fromEnv({ env: { RPC_GATEWAY_COMPATIBILITY: "loose" } })
      const error = yield* Effect.flip(RpcConfig.config.pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, wrong.pipe(ConfigProvider.constantCase))
      ))
      assert.include(String(error), "gatewayCompatibility")
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// The endpoint's side, frame by frame
// ---------------------------------------------------------------------------------------------------------------

const snapshotText = (gateway: RpcGateway.Any) => Snapshot.toText(Snapshot.fromGateway(gateway))

describe("the exchange on the wire", () => {
  it.live("equal fingerprints: one Connect, one Connected, no snapshot; different ones: a Compare, then a verdict, then the cache", () =>
    Effect.gen(function*() {
      const server = yield* RpcService.makeTcp()
      const old = yield* startOn(server, endpointOf(V1, "old"))
      const raw = yield* rawConnection(portOf(old.address))
      raw.socket.write(helloFrame("raw-caller"))
      /** The answer to connect `id` (the first one: a Compare, or a Connected). */
      const answerTo = (id: number) =>
        messagesIn(raw.received()).find((m) =>
          !(m instanceof Wire.WireError) && (m._tag === "Connected" || m._tag === "Compare") && m.id === id
        )
      const connected = (id: number) =>
        eventually(`an answer to connect ${id}`, Effect.sync(() => answerTo(id) !== undefined)).pipe(
          Effect.andThen(Effect.sync(() => answerTo(id)!))
        )
      const verdictOf = (id: number) => messagesOf(raw.received(), "Connected").find((m) => m.id === id)
      // The fast path: the frame is the six elements it always was, and so is the answer.
      raw.socket.write(frameOf(Wire.connect(1, "old", "G", V1.fingerprint)))
      assert.deepStrictEqual(yield* connected(1), { _tag: "Connected", id: 1, reason: null, detail: "", notServed: [] })
      // Another version: the endpoint sends its snapshot.
      raw.socket.write(frameOf(Wire.connect(2, "old", "G", V2.fingerprint)))
      const compare = yield* connected(2)
      assert.strictEqual(compare._tag, "Compare")
      const theirs = Snapshot.parse((compare as Extract<Wire.Message, { _tag: "Compare" }>).snapshot)
      assert.isTrue(Result.isSuccess(theirs) && theirs.success.fingerprint === V1.fingerprint)
      // The caller answers with its own (same id); the endpoint judges and lists what it does not serve.
      raw.socket.write(frameOf(Wire.connect(2, "old", "G", V2.fingerprint, undefined, snapshotText(V2))))
      yield* eventually("the verdict", Effect.sync(() => verdictOf(2) !== undefined))
      assert.deepStrictEqual(verdictOf(2)!.notServed, ["extra", "shout"])
      // The same pair again, from the same incarnation: decided from the cache, without a Compare.
      raw.socket.write(frameOf(Wire.connect(3, "old", "G", V2.fingerprint)))
      assert.deepStrictEqual(yield* connected(3), {
        _tag: "Connected",
        id: 3,
        reason: null,
        detail: "",
        notServed: ["extra", "shout"]
      })
      assert.strictEqual(messagesOf(raw.received(), "Compare").length, 1)
      // An ask for a method the endpoint's version lacks: a typed error reply, and the connection goes on.
      const empty = new Uint8Array(0)
      raw.socket.write(frameOf(Wire.call(false, 4, "old", "G", "extra", undefined, undefined, undefined, empty)))
      yield* eventually("the reply", Effect.sync(() => messagesOf(raw.received(), "Reply").some((m) => m.id === 4)))
      const reply = messagesOf(raw.received(), "Reply").find((m) => m.id === 4)!
      const error = Result.getOrThrow(Wire.decodeValue(RpcError.RpcCallError, reply.value))
      assert.instanceOf(error, RpcError.MethodNotServedError)
      assert.strictEqual(yield* counter(RpcMetrics.names.rejections, "not_served"), 1)
      assert.isFalse(raw.isClosed())
    }).pipe(Effect.scoped, isolatedMetrics))

  it.live("a snapshot that does not read, or is another gateway's, refuses that connect only", () =>
    Effect.gen(function*() {
      const server = yield* RpcService.makeTcp()
      const old = yield* startOn(server, endpointOf(V1, "old"))
      const raw = yield* rawConnection(portOf(old.address))
      raw.socket.write(helloFrame("raw-caller"))
      raw.socket.write(frameOf(Wire.connect(1, "old", "G", V2.fingerprint, undefined, "{ not json")))
      raw.socket.write(frameOf(Wire.connect(2, "old", "G", V2.fingerprint, undefined, snapshotText(Required))))
      raw.socket.write(frameOf(Wire.connect(3, "old", "G", V1.fingerprint)))
      yield* eventually("three answers", Effect.sync(() => messagesOf(raw.received(), "Connected").length === 3))
      const [bad, lying, fine] = messagesOf(raw.received(), "Connected")
      assert.strictEqual(bad!.reason, "GatewayMismatch")
      assert.match(bad!.detail, /the caller's snapshot of G cannot be read \(InvalidJson/)
      assert.strictEqual(lying!.reason, "GatewayMismatch")
      assert.match(lying!.detail, /has fingerprint \w+, not the \w+ it connected with/)
      assert.strictEqual(fine!.reason, null)
      assert.isFalse(raw.isClosed())
    }).pipe(Effect.scoped))
})

// ---------------------------------------------------------------------------------------------------------------
// The caller's side, against a peer that misbehaves
// ---------------------------------------------------------------------------------------------------------------

const owner = connectionOwner("caller", "caller-incarnation")

describe("the caller's side of the exchange", () => {
  it.effect("an endpoint that asks for the snapshot a second time breaks the protocol: the connect fails, the connection closes", () =>
    Effect.gen(function*() {
      const written: Array<Wire.Message | Wire.WireError> = []
      const socket = new Duplex({
        read() {},
        write(chunk: Buffer, _encoding, callback) {
          new Frame.FrameDecoder(1 << 24).push(chunk, (body) => void written.push(Wire.decode(body)))
          callback()
        }
      })
      const feed = (frame: Wire.OutFrame) => socket.push(frameOf(frame))
      const connection = new Connection(owner, "127.0.0.1:2", "outbound")
      const unclassified = () => ({ reason: "Unreachable" as const, detail: "" })
      const running = yield* Effect.forkChild(connection.run(socket, unclassified))
      feed(Wire.hello("endpoint-incarnation", "endpoint", "127.0.0.1:2", 1 << 20))
      yield* settle
      const handshake = yield* Effect.forkChild(
        connection.handshake("rpc://127.0.0.1:2/old", "old", V2, NoToken),
        { startImmediately: true }
      )
      yield* settle
      type Connect = Extract<Wire.Message, { _tag: "Connect" }>
      const connects = () => written.filter((m): m is Connect => !(m instanceof Wire.WireError) && m._tag === "Connect")
      assert.strictEqual(connects().length, 1)
      assert.isUndefined(connects()[0]!.snapshot)
      feed(Wire.compare(connects()[0]!.id, snapshotText(V1)))
      yield* settle
      assert.strictEqual(connects().length, 2)
      assert.strictEqual(connects()[1]!.snapshot, snapshotText(V2))
      feed(Wire.compare(connects()[0]!.id, snapshotText(V1)))
      yield* settle
      const exit = yield* Fiber.await(handshake)
      assert.isTrue(exit._tag === "Failure")
      assert.strictEqual(connection.state, "closed")
      assert.match(connection.closedBecause!.detail, /asked for the caller's snapshot twice/)
      yield* Fiber.join(running)
    }))
})
