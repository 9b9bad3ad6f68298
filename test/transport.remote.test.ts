/**
 * What only a wire has: frame limits, encoding failures, the hello and handshake, connect failures, heartbeats,
 * port ranges and hostile input. Ports of Flink's PekkoRpcActorOversizedResponseMessageTest,
 * MessageSerializationTest, PekkoRpcActorHandshakeTest, RpcConnectionTest, PekkoRpcServiceTest (address and
 * port), PekkoRpcActorTest.testResultFutureFailsOnDeserializationError and the port-range cases of
 * ActorSystemBootstrapToolsTest.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Schema, type Scope } from "effect"
import { RpcConfig, RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"
import * as Net from "node:net"
import * as Frame from "../src/internal/frame.js"
import * as Wire from "../src/internal/wire.js"
import { startOn } from "./behaviour.js"
import { probe, ProbeGateway, testEndpoint, TestGateway } from "./fixtures/common.js"

const config = (overrides: Partial<RpcConfig.RpcConfig>) =>
  Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, ...overrides })

const tcpPair = (overrides: Partial<RpcConfig.RpcConfig> = {}) =>
  Effect.all({ server: RpcService.makeTcp(), client: RpcService.makeTcp() }).pipe(config(overrides))

const portOf = (address: string) => Number(/:(\d+)\//.exec(address)![1])

const BlobGateway = RpcGateway.make("BlobGateway", {
  blob: RpcGateway.ask({ payload: Schema.Number, success: Schema.String }),
  upload: RpcGateway.ask({ payload: Schema.String, success: Schema.Number }),
  drop: RpcGateway.tell({ payload: Schema.String })
})

const blobEndpoint = RpcEndpoint.make({
  id: "blob",
  gateways: [BlobGateway],
  init: () =>
    Effect.succeed({
      handlers: {
        blob: (size) => Effect.succeed("x".repeat(size)),
        upload: (text) => Effect.succeed(text.length),
        drop: () => Effect.void
      }
    })
})

/** A gateway whose fingerprint claims to be `real`'s while its Schemas differ: Schema drift the handshake misses. */
const lyingAbout = <G extends RpcGateway.Any>(real: G, methods: RpcGateway.Methods): G =>
  ({ ...RpcGateway.make(real.name, methods), fingerprint: real.fingerprint }) as unknown as G

/** A raw TCP client for sending hand-made bytes; resolves with how the server ended the connection. */
const rawConnection = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket>((resume) => {
      const socket = Net.connect({ host: "127.0.0.1", port }, () => resume(Effect.succeed(socket)))
      socket.on("error", () => {})
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

const awaitClose = (socket: Net.Socket) =>
  Effect.callback<{ readonly received: Buffer }>((resume) => {
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.once("close", () => resume(Effect.succeed({ received: Buffer.concat(chunks) })))
  }).pipe(Effect.timeout("5 seconds"))

const frameOf = (frame: Wire.OutFrame) => frame.bytes

const helloFrame = (version = Wire.VERSION) =>
  version === Wire.VERSION
    ? frameOf(Wire.hello("test-incarnation", "raw-test", null, 1024 * 1024))
    : Buffer.from(Frame.encode(Buffer.from([0x92, 0x00, version])))

/** The messages in a byte stream received from a service. */
const messagesIn = (bytes: Uint8Array) => {
  const messages: Array<Wire.Message | Wire.WireError> = []
  new Frame.FrameDecoder(1 << 24).push(bytes, (body) => messages.push(Wire.decode(body)))
  return messages
}

describe("remote transport", () => {
  describe("PekkoRpcActorOversizedResponseMessageTest", () => {
    it.live("testOverSizedResponseMsg: an oversized response fails FrameTooLargeError with size and limit; the connection keeps serving", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair({ maximumFrameSize: 4096 })
        const endpoint = yield* startOn(server, blobEndpoint)
        const gateway = yield* client.connect(endpoint.address, BlobGateway)
        const error = yield* Effect.flip(gateway.blob(10_000))
        assert.instanceOf(error, RpcError.FrameTooLargeError)
        const tooLarge = error as RpcError.FrameTooLargeError
        assert.strictEqual(tooLarge.direction, "response")
        assert.strictEqual(tooLarge.limit, 4096)
        assert.isAbove(tooLarge.size, 10_000)
        assert.include(tooLarge.message, "BlobGateway.blob")
        assert.strictEqual(yield* gateway.blob(10), "x".repeat(10))
      }))

    it.live("testNormalSizedResponse and testLocalOverSizedResponseMsg: local calls are never limited", () =>
      Effect.gen(function*() {
        const { server } = yield* tcpPair({ maximumFrameSize: 4096 })
        const endpoint = yield* startOn(server, blobEndpoint)
        // The service's own address takes the local path: no encoding, no limit.
        const self = yield* server.connect(endpoint.address, BlobGateway)
        assert.strictEqual((yield* self.blob(10_000)).length, 10_000)
      }))
  })

  describe("MessageSerializationTest", () => {
    it.live("testMaximumFramesizeRemoteMessageTransfer: an oversized request fails at once with FrameTooLargeError (Flink drops it silently)", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair({ maximumFrameSize: 4096, askTimeout: Duration.seconds(30) })
        const endpoint = yield* startOn(server, blobEndpoint)
        const gateway = yield* client.connect(endpoint.address, BlobGateway)
        const started = Date.now()
        const ask = yield* Effect.flip(gateway.upload("y".repeat(5000)))
        assert.instanceOf(ask, RpcError.FrameTooLargeError)
        assert.strictEqual((ask as RpcError.FrameTooLargeError).direction, "request")
        const tell = yield* Effect.flip(gateway.drop("y".repeat(5000)))
        assert.instanceOf(tell, RpcError.FrameTooLargeError)
        assert.isBelow(Date.now() - started, 1000)
        assert.strictEqual(yield* gateway.upload("small"), 5)
      }))

    it.live("testNonSerializableRemoteMessageTransfer: a payload its Schema cannot encode fails at the caller; nothing is sent", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const endpoint = yield* startOn(server, blobEndpoint)
        const gateway = yield* client.connect(endpoint.address, BlobGateway)
        const error = yield* Effect.flip(gateway.upload(42 as unknown as string))
        assert.instanceOf(error, RpcError.RpcSerializationError)
        const serialization = error as RpcError.RpcSerializationError
        assert.deepStrictEqual([serialization.direction, serialization.operation], ["request", "encode"])
        assert.include(serialization.message, "BlobGateway.upload")
      }))

    it.live("testNonSerializableLocalMessageTransfer: local calls pass values by reference, even unencodable ones", () =>
      Effect.gen(function*() {
        const { server } = yield* tcpPair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
        const self = yield* server.connect(endpoint.address, TestGateway)
        const value = { f: () => 1 }
        assert.strictEqual(yield* self.echo(value), value)
      }))

    it.live("a value whose Schema has no wire codec (a Schema.declare without one): a typed error at once, whichever way it goes; local calls pass it by reference", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair({ askTimeout: Duration.seconds(30) })
        /** A handle to something in memory: meaningful in-process only, like Flink's non-serializable arguments. */
        class Handle {
          constructor(readonly id: number) {}
        }
        const HandleSchema = Schema.declare((u): u is Handle => u instanceof Handle)
        class HandleFailure extends Schema.TaggedError<HandleFailure>()("HandleFailure", { handle: HandleSchema }) {}
        const Handles = RpcGateway.make("Handles", {
          give: RpcGateway.ask({ payload: HandleSchema, success: Schema.Number }),
          take: RpcGateway.ask({ success: HandleSchema }),
          refuse: RpcGateway.ask({ failure: HandleFailure })
        })
        const endpoint = yield* startOn(
          server,
          RpcEndpoint.make({
            id: "handles",
            gateways: [Handles],
            init: () =>
              Effect.succeed({
                handlers: {
                  give: (handle: Handle) => Effect.succeed(handle.id),
                  take: () => Effect.succeed(new Handle(7)),
                  refuse: () => Effect.fail(new HandleFailure({ handle: new Handle(8) }))
                }
              })
          })
        )
        const remote = yield* client.connect(endpoint.address, Handles)
        const started = Date.now()
        // A payload: the caller's own typed error, catchable, and nothing sent.
        const given = yield* remote.give(new Handle(1)).pipe(
          Effect.catchTag("RpcSerializationError", (error) => Effect.succeed(error))
        )
        assert.instanceOf(given, RpcError.RpcSerializationError)
        assert.deepStrictEqual([given.direction, given.operation], ["request", "encode"])
        assert.include(given.message, "cannot cross the wire")
        // A reply: the endpoint answers with the typed error instead of dropping the reply.
        const taken = yield* Effect.flip(remote.take())
        assert.instanceOf(taken, RpcError.RpcSerializationError)
        assert.deepStrictEqual([(taken as RpcError.RpcSerializationError).direction, (taken as RpcError.RpcSerializationError).operation], ["response", "encode"])
        // A typed failure its Schema cannot carry: a RemoteDefectError naming it.
        const refused = yield* Effect.flip(remote.refuse())
        assert.instanceOf(refused, RpcError.RemoteDefectError)
        assert.include(refused.message, "HandleFailure")
        assert.isBelow(Date.now() - started, 5_000, "at once, not after the 30 s ask timeout")
        // In-process the same gateway passes the values by reference.
        const local = yield* server.connect(endpoint.address, Handles)
        assert.strictEqual(yield* local.give(new Handle(3)), 3)
        assert.strictEqual((yield* local.take()).id, 7)
      }))

    it.live("a request the endpoint's Schema rejects never reaches the handler: RpcSerializationError (request, decode)", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const Checked = RpcGateway.make("Checked", {
          upload: RpcGateway.ask({ payload: Schema.String.check(Schema.isMinLength(3)), success: Schema.Number })
        })
        let handled = 0
        const endpoint = yield* startOn(
          server,
          RpcEndpoint.make({
            id: "checked",
            gateways: [Checked],
            init: () => Effect.succeed({ handlers: { upload: (text) => Effect.sync(() => (handled++, text.length)) } })
          })
        )
        const lying = lyingAbout(Checked, { upload: RpcGateway.ask({ payload: Schema.String, success: Schema.Number }) })
        const gateway = yield* client.connect(endpoint.address, lying)
        const error = yield* Effect.flip(gateway.upload("ab"))
        assert.instanceOf(error, RpcError.RpcSerializationError)
        const serialization = error as RpcError.RpcSerializationError
        assert.deepStrictEqual([serialization.direction, serialization.operation], ["request", "decode"])
        assert.strictEqual(handled, 0)
        assert.strictEqual(yield* gateway.upload("abc"), 3)
      }))
  })

  it.live("PekkoRpcActorTest.testResultFutureFailsOnDeserializationError: an undecodable reply fails RpcSerializationError (response, decode)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* tcpPair()
      const endpoint = yield* startOn(server, blobEndpoint)
      const lying = lyingAbout(BlobGateway, {
        blob: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
        upload: RpcGateway.ask({ payload: Schema.String, success: Schema.Number }),
        drop: RpcGateway.tell({ payload: Schema.String })
      })
      const gateway = yield* client.connect(endpoint.address, lying)
      const error = yield* Effect.flip((gateway as any).blob(3) as Effect.Effect<number, RpcError.RpcCallError>)
      assert.instanceOf(error, RpcError.RpcSerializationError)
      assert.deepStrictEqual([error.direction, error.operation], ["response", "decode"])
      assert.strictEqual(yield* gateway.upload("abc"), 3)
    }))

  it.live("a void ask whose handler returns a value replies void, as it does locally", () =>
    Effect.gen(function*() {
      const { client, server } = yield* tcpPair()
      const Touch = RpcGateway.make("Touch", { touch: RpcGateway.ask({}) })
      const endpoint = yield* startOn(
        server,
        RpcEndpoint.make({
          id: "touch",
          gateways: [Touch],
          init: () => Effect.succeed({ handlers: { touch: () => Effect.sync(() => new Map().set("x", 1)) } })
        })
      )
      const gateway = yield* client.connect(endpoint.address, Touch)
      assert.isUndefined(yield* gateway.touch())
    }))

  describe("PekkoRpcActorHandshakeTest", () => {
    it.live("testVersionMismatchBetweenRpcComponents: a peer speaking another protocol version is refused at hello", () =>
      Effect.gen(function*() {
        // A fake service that answers every hello with a hello of version 99.
        const fake = yield* fakePeer((socket) => socket.write(helloFrame(99)))
        const client = yield* RpcService.makeTcp()
        const error = yield* Effect.flip(client.connect(`rpc://127.0.0.1:${fake}/x`, TestGateway))
        assert.strictEqual(error._tag === "RpcConnectionError" && error.reason, "VersionMismatch")
        assert.include(error.message, "version 99")
      }))

    it.live("a service refuses a client speaking another version, telling it why in a close frame", () =>
      Effect.gen(function*() {
        const server = yield* RpcService.makeTcp()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
        const socket = yield* rawConnection(portOf(endpoint.address))
        socket.write(helloFrame(99))
        const { received } = yield* awaitClose(socket)
        const [close] = messagesIn(received)
        assert.deepStrictEqual(close && "_tag" in close && close._tag === "Close" ? close.reason : close, "VersionMismatch")
      }))

    it.live("testHandshakeSucceeds and testWrongGatewayEndpointConnection", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
        yield* client.connect(endpoint.address, TestGateway)
        const error = yield* Effect.flip(client.connect(endpoint.address, ProbeGateway))
        assert.strictEqual(error._tag === "RpcConnectionError" && error.reason, "GatewayNotServed")
      }))
  })

  describe("RpcConnectionTest", () => {
    it.live("testConnectFailure: refused ports, unresolvable hosts and malformed addresses fail fast and typed", () =>
      Effect.gen(function*() {
        const client = yield* RpcService.makeTcp().pipe(config({ askTimeout: Duration.seconds(30), connectTimeout: Duration.seconds(30) }))
        const free = yield* freePort
        const started = Date.now()
        const refused = yield* Effect.flip(client.connect(`rpc://127.0.0.1:${free}/x`, TestGateway))
        assert.strictEqual(refused._tag === "RpcConnectionError" && refused.reason, "Refused")
        const unknown = yield* Effect.flip(client.connect("rpc://no-such-host.invalid:6123/x", TestGateway))
        assert.strictEqual(unknown._tag === "RpcConnectionError" && unknown.reason, "UnknownHost")
        const invalid = yield* Effect.flip(client.connect("rpc://127.0.0.1/x", TestGateway))
        assert.strictEqual(invalid._tag === "RpcConnectionError" && invalid.reason, "InvalidAddress")
        const wrongProtocol = yield* Effect.flip(client.connect(`rpcs://127.0.0.1:${free}/x`, TestGateway))
        assert.strictEqual(wrongProtocol._tag === "RpcConnectionError" && wrongProtocol.reason, "InvalidAddress")
        assert.isBelow(Date.now() - started, 5000)
      }))

    it.live("an in-process service cannot reach rpc:// addresses and says how to fix it", () =>
      Effect.gen(function*() {
        const local = yield* RpcService.makeLocal()
        const error = yield* Effect.flip(local.connect("rpc://127.0.0.1:6123/x", TestGateway))
        assert.strictEqual(error._tag === "RpcConnectionError" && error.reason, "Unreachable")
        assert.include(error.message, "layerTcp")
      }))
  })

  describe("PekkoRpcServiceTest", () => {
    it.live("testGetAddress / testGetPort: addresses carry the bound port, or the advertised host and port", () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const service = yield* RpcService.makeTcp({ port })
        const endpoint = yield* startOn(service, testEndpoint({ id: "test" }))
        assert.strictEqual(endpoint.address, `rpc://127.0.0.1:${port}/test`)
        const natted = yield* RpcService.makeTcp({ externalHost: "rpc.example.org", externalPort: 443 })
        const behindNat = yield* startOn(natted, testEndpoint({ id: "test" }))
        assert.strictEqual(behindNat.address, "rpc://rpc.example.org:443/test")
      }))
  })

  describe("ActorSystemBootstrapToolsTest (port ranges)", () => {
    it.live("binds the first free port of a range, skipping taken ones", () =>
      Effect.gen(function*() {
        const [first, second] = yield* occupiedPorts(2)
        const third = second + 1
        const service = yield* RpcService.makeTcp({ port: `${first},${second},${third}` })
        const endpoint = yield* startOn(service, testEndpoint({ id: "test" }))
        assert.strictEqual(portOf(endpoint.address), third)
      }))

    it.live("an exhausted range is an RpcBindError naming the range; a malformed one too", () =>
      Effect.gen(function*() {
        const [first, second] = yield* occupiedPorts(2)
        const range = `${first},${second}`
        const exhausted = yield* Effect.flip(RpcService.makeTcp({ port: range }))
        assert.instanceOf(exhausted, RpcError.RpcBindError)
        assert.strictEqual(exhausted.portRange, range)
        assert.include(exhausted.message, "every port of the range is taken")
        const malformed = yield* Effect.flip(RpcService.makeTcp({ port: "70000" }))
        assert.include(malformed.message, "beyond 65535")
      }))
  })

  describe("heartbeats", () => {
    it.live("a peer that goes silent fails every in-flight ask RecipientUnreachableError within the pause", () =>
      Effect.gen(function*() {
        // A fake service that says hello, accepts every handshake, then never answers or heartbeats again.
        const fake = yield* fakePeer((socket) => {
          socket.write(helloFrame())
          socket.on("data", (bytes: Buffer) => {
            for (const message of messagesIn(bytes)) {
              if (!(message instanceof Wire.WireError) && message._tag === "Connect") {
                socket.write(frameOf(Wire.connected(message.id, null, "")))
              }
            }
          })
        })
        const client = yield* RpcService.makeTcp().pipe(
          config({ heartbeatInterval: Duration.millis(50), heartbeatPause: Duration.millis(300), askTimeout: Duration.seconds(30) })
        )
        const gateway = yield* client.connect(`rpc://127.0.0.1:${fake}/silent`, TestGateway)
        const started = Date.now()
        const calls = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(gateway.foobar()))
        const exits = yield* Effect.forEach(calls, Fiber.await)
        const elapsed = Date.now() - started
        for (const exit of exits) {
          assert.isTrue(Exit.isFailure(exit))
          const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
          assert.instanceOf(error?._tag === "Fail" ? error.error : undefined, RpcError.RecipientUnreachableError)
        }
        assert.isAtLeast(elapsed, 250)
        assert.isBelow(elapsed, 2000)
      }))

    it.live("a healthy peer with slower heartbeat settings is not taken for dead: it answers heartbeat requests", () =>
      Effect.gen(function*() {
        const server = yield* RpcService.makeTcp()
        const endpoint = yield* startOn(
          server,
          probe({ id: "slow", ping: () => Effect.succeed(RpcEndpoint.later(Effect.as(Effect.sleep("800 millis"), "late"))) })
        )
        const client = yield* RpcService.makeTcp().pipe(
          config({ heartbeatInterval: Duration.millis(50), heartbeatPause: Duration.millis(300) })
        )
        const gateway = yield* client.connect(endpoint.address, ProbeGateway)
        assert.strictEqual(yield* gateway.ping(), "late")
      }))

    it.live("closing a service tells its peers: their in-flight asks fail at once and the next call reconnects", () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const client = yield* RpcService.makeTcp().pipe(config({ askTimeout: Duration.seconds(30) }))
        const address = `rpc://127.0.0.1:${port}/probe`
        const first = yield* Effect.scoped(Effect.gen(function*() {
          const server = yield* RpcService.makeTcp({ port })
          yield* startOn(server, probe({ id: "probe", ping: () => Effect.succeed(RpcEndpoint.later(Effect.never)) }))
          const gateway = yield* client.connect(address, ProbeGateway)
          const pending = yield* Effect.forkChild(gateway.ping(), { startImmediately: true })
          yield* Effect.sleep("20 millis")
          return { gateway, pending }
        }))
        const error = yield* Effect.flip(Fiber.join(first.pending))
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
        // The server stops its endpoints first (the pending ask fails with their termination), then closes its
        // connections: a call made before the client has read that Close would still take the old connection.
        for (let i = 0; i < 200 && (yield* client.introspect).connections.some((c) => c.state !== "closed"); i++) {
          yield* Effect.sleep("10 millis")
        }
        const server = yield* RpcService.makeTcp({ port })
        yield* startOn(server, probe({ id: "probe" }))
        assert.strictEqual(yield* first.gateway.ping(), "pong")
      }))
  })

  describe("hostile input", () => {
    const cases: ReadonlyArray<readonly [string, () => Buffer]> = [
      ["garbage", () => Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
      ["a length prefix over the limit", () => Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3])],
      ["an empty frame", () => Buffer.from([0, 0, 0, 0])],
      ["a frame that is not MessagePack", () => Buffer.from([0, 0, 0, 2, 0xc1, 0xc1])],
      ["a message of unknown type", () => Buffer.from([0, 0, 0, 2, 0x91, 0x63])],
      ["an ask before the hello", () => frameOf(Wire.call(false, 1, "test", "TestGateway", "foobar", undefined, undefined, undefined, new Uint8Array()))],
      ["a second hello", () => Buffer.concat([helloFrame(), helloFrame()])],
      [
        "an ask with an undecodable payload",
        () => Buffer.concat([helloFrame(), frameOf(Wire.call(false, 1, "test", "TestGateway", "fail", undefined, undefined, undefined, 42))])
      ]
    ]
    for (const [name, bytes] of cases) {
      it.live(`${name}: a typed error or a closed connection; other connections keep working`, () =>
        Effect.gen(function*() {
          const { client, server } = yield* tcpPair({ maximumFrameSize: 1 << 20 })
          const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 5 }))
          const gateway = yield* client.connect(endpoint.address, TestGateway)
          const socket = yield* rawConnection(portOf(endpoint.address))
          socket.write(bytes())
          if (name.includes("undecodable payload")) {
            // Bad content in a well-formed frame is the caller's problem, not the connection's.
            const reply = yield* Effect.callback<Buffer>((resume) => {
              socket.on("data", (chunk: Buffer) => {
                const messages = messagesIn(chunk)
                if (messages.some((m) => !(m instanceof Wire.WireError) && m._tag === "Reply")) resume(Effect.succeed(chunk))
              })
            }).pipe(Effect.timeout("5 seconds"))
            const answer = messagesIn(reply).find((m) => !(m instanceof Wire.WireError) && m._tag === "Reply")
            assert.strictEqual(answer && !(answer instanceof Wire.WireError) && answer._tag === "Reply" && answer.outcome, Wire.Outcome.Error)
          } else {
            yield* awaitClose(socket)
          }
          assert.strictEqual(yield* gateway.foobar(), 5)
        }))
    }

    it.live("a truncated frame followed by a hang-up leaves nothing behind and others unaffected", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 5 }))
        const gateway = yield* client.connect(endpoint.address, TestGateway)
        const socket = yield* rawConnection(portOf(endpoint.address))
        const hello = helloFrame()
        socket.end(hello.subarray(0, hello.length - 3))
        yield* awaitClose(socket)
        assert.strictEqual(yield* gateway.foobar(), 5)
      }))
  })
})

/** A port that was free a moment ago. */
const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** `count` consecutive ports held by listeners for the test's scope. */
const occupiedPorts = (count: number): Effect.Effect<Array<number>, never, Scope.Scope> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 20; attempt++) {
      const base = yield* freePort
      const servers = yield* Effect.forEach(Array.from({ length: count + 1 }, (_, i) => base + i), (port) =>
        Effect.callback<Net.Server | undefined>((resume) => {
          const server = Net.createServer()
          server.once("error", () => resume(Effect.succeed(undefined)))
          server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
        }))
      // The port after the held ones must be free for the test to bind it; release it again.
      const last = servers.pop()
      if (last !== undefined && servers.every((s) => s !== undefined)) {
        yield* Effect.callback<void>((resume) => void last.close(() => resume(Effect.void)))
        yield* Effect.addFinalizer(() =>
          Effect.forEach(servers, (s) => Effect.callback<void>((resume) => void s!.close(() => resume(Effect.void))))
        )
        return servers.map((s) => (s!.address() as Net.AddressInfo).port)
      }
      yield* Effect.forEach([...servers, last], (s) =>
        s === undefined ? Effect.void : Effect.callback<void>((resume) => void s.close(() => resume(Effect.void))))
    }
    return yield* Effect.die(new Error("found no run of free ports on 127.0.0.1"))
  })

/** A raw TCP listener on 127.0.0.1 running `onConnection` for each client, for the test's scope; yields its port. */
const fakePeer = (onConnection: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        socket.on("error", () => {})
        onConnection(socket)
        // Read whatever arrives, so the peer's hang-up is seen and close() is not kept waiting.
        socket.resume()
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))
