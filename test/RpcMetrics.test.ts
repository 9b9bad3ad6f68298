/**
 * Observability: the metrics an RpcService records (RpcMetrics), the spans of traced calls (locally and across
 * TCP), and the annotations of logs written on an endpoint's main thread.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Logger, Metric, Option, References, Schema, Tracer } from "effect"
import { TestClock } from "effect/testing"
import { RpcConfig, RpcEndpoint, RpcError, RpcGateway, RpcMetrics, RpcService } from "effect-actor-rpc"
import * as Net from "node:net"
import * as Frame from "../src/internal/frame.js"
import * as Wire from "../src/internal/wire.js"
import { startOn } from "./behaviour.js"
import { service, settle, TestGateway, withService } from "./fixtures/common.js"
import { eventually, GateGateway, gateEndpoint, gateHandlers, makeGate, tcpPair } from "./fixtures/gate.js"
import { isolatedMetrics } from "./fixtures/raw.js"

// ---------------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------------

const matches = (metric: Metric.Metric.Snapshot, id: string, attributes: Record<string, string>) =>
  metric.id === id && Object.entries(attributes).every(([key, value]) => metric.attributes?.[key] === value)

/** The summed value of a counter (over the series matching `attributes`). */
const counter = (id: string, attributes: Record<string, string> = {}) =>
  Effect.map(RpcMetrics.snapshot, (metrics) => {
    let total = 0
    for (const metric of metrics) {
      if (metric.type === "Counter" && matches(metric, id, attributes)) total += Number(metric.state.count)
    }
    return total
  })

const rejections = (reason: RpcMetrics.RejectionReason) => counter(RpcMetrics.names.rejections, { reason })

/** The observations of a histogram (over the series matching `attributes`): count and sum. */
const histogram = (id: string, attributes: Record<string, string> = {}) =>
  Effect.map(RpcMetrics.snapshot, (metrics) => {
    let count = 0
    let sum = 0
    let min = Number.POSITIVE_INFINITY
    for (const metric of metrics) {
      if (metric.type === "Histogram" && matches(metric, id, attributes)) {
        count += metric.state.count
        sum += metric.state.sum
        if (metric.state.count > 0) min = Math.min(min, metric.state.min)
      }
    }
    return { count, sum, min }
  })

/** Every histogram series with at least one observation. */
const recordedHistograms = Effect.map(
  RpcMetrics.snapshot,
  (metrics) => metrics.filter((m) => m.type === "Histogram" && m.state.count > 0).map((m) => m.id)
)

const inRegistry = (registry: Metric.MetricRegistry) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, Metric.MetricRegistry, registry)

const withConfig = (overrides: Partial<RpcConfig.RpcConfig>) =>
  Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, ...overrides })

/** A tracer that keeps every span it makes. */
const recordingTracer = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer, named: (name: string) => spans.filter((span) => span.name === name) }
}

const parentOf = (span: Tracer.Span) => Option.getOrUndefined(span.parent)

interface Captured {
  readonly message: string
  readonly level: string
  readonly annotations: Record<string, unknown>
}

/** A logger that keeps every log line with the annotations in force where it was written. */
const capturingLogger = (into: Array<Captured>) =>
  Logger.make((options) => {
    const message = options.message
    into.push({
      message: Array.isArray(message) ? message.map(String).join(" ") : String(message),
      level: options.logLevel,
      annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) }
    })
  })

const withLogs = (into: Array<Captured>) => Effect.provide(Logger.layer([capturingLogger(into)]))

// Helpers for a fake peer that says hello and then falls silent (as in transport.remote.test.ts).
const helloFrame = () => Wire.hello("test-incarnation", "silent-peer", null, 1024 * 1024).bytes

const messagesIn = (bytes: Uint8Array) => {
  const messages: Array<Wire.Message | Wire.WireError> = []
  new Frame.FrameDecoder(1 << 24).push(bytes, (body) => messages.push(Wire.decode(body)))
  return messages
}

const fakePeer = (onConnection: (socket: Net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        socket.on("error", () => {})
        onConnection(socket)
        socket.resume()
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

// ---------------------------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------------------------

describe("RpcMetrics", () => {
  describe("metrics", () => {
    it("names every metric", () => {
      assert.deepStrictEqual(RpcMetrics.names, {
        callLatency: "rpc_call_latency_ms",
        mailboxWait: "rpc_mailbox_wait_ms",
        handlerTime: "rpc_handler_time_ms",
        mailboxDepth: "rpc_mailbox_depth",
        frameSize: "rpc_frame_bytes",
        rejections: "rpc_rejections_total",
        heartbeatMisses: "rpc_heartbeat_misses_total",
        connectionsRefused: "rpc_connections_refused_total"
      })
    })

    it.effect("local calls: latency, mailbox wait, handler time and mailbox depth, one observation per call", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = yield* (yield* service).connect(server.address, GateGateway)
        for (let i = 0; i < 5; i++) yield* client.work(String(i))
        for (let i = 0; i < 3; i++) yield* client.note(String(i))
        yield* client.work("last")
        const work = { method: "GateGateway.work" }
        const note = { method: "GateGateway.note" }
        assert.strictEqual((yield* histogram(RpcMetrics.names.callLatency, work)).count, 6)
        assert.strictEqual((yield* histogram(RpcMetrics.names.callLatency, note)).count, 0, "tells have no latency")
        assert.strictEqual((yield* histogram(RpcMetrics.names.mailboxWait, work)).count, 6)
        assert.strictEqual((yield* histogram(RpcMetrics.names.mailboxWait, note)).count, 3)
        assert.strictEqual((yield* histogram(RpcMetrics.names.handlerTime, work)).count, 6)
        assert.strictEqual((yield* histogram(RpcMetrics.names.handlerTime, note)).count, 3)
        assert.strictEqual((yield* histogram(RpcMetrics.names.mailboxDepth)).count, 9)
        assert.strictEqual((yield* histogram(RpcMetrics.names.frameSize)).count, 0, "local calls send no frames")
        const latency = yield* histogram(RpcMetrics.names.callLatency, work)
        assert.isAtLeast(latency.sum, 0)
        // Only this library's metrics are in its snapshot.
        yield* Metric.update(Metric.counter("unrelated_total"), 1)
        for (const metric of yield* RpcMetrics.snapshot) assert.match(metric.id, /^rpc_/)
      }).pipe(withService(), isolatedMetrics))

    it.effect("the mailbox depth histogram sees the queue a call found; the wait histogram the time it queued", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
        const client = server.self(GateGateway)
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        for (let i = 0; i < 4; i++) yield* client.note(String(i))
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        yield* settle
        const depth = yield* Effect.map(
          RpcMetrics.snapshot,
          (metrics) => metrics.find((m) => m.id === RpcMetrics.names.mailboxDepth)
        )
        assert.strictEqual(depth?.type, "Histogram")
        const state = depth!.state as Metric.HistogramState
        assert.strictEqual(state.count, 5)
        // The tells found 0, 1, 2 and 3 messages queued ahead of them (block found none).
        assert.strictEqual(state.max, 3)
        assert.strictEqual(state.sum, 6)
      }).pipe(withService(), isolatedMetrics))

    it.live("over TCP: each side records in the registry it was built in; frame sizes in and out", () =>
      Effect.gen(function*() {
        const clientRegistry: Metric.MetricRegistry = new Map()
        const serverRegistry: Metric.MetricRegistry = new Map()
        const server = yield* RpcService.makeTcp().pipe(inRegistry(serverRegistry))
        const client = yield* RpcService.makeTcp().pipe(inRegistry(clientRegistry))
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        for (let i = 0; i < 10; i++) yield* remote.work("x".repeat(100))
        yield* remote.note("told")
        assert.strictEqual(yield* remote.work("last"), "last")
        const work = { method: "GateGateway.work" }
        const atClient = yield* Effect.all({
          latency: histogram(RpcMetrics.names.callLatency, work),
          handler: histogram(RpcMetrics.names.handlerTime, work),
          out: histogram(RpcMetrics.names.frameSize, { direction: "out" }),
          in: histogram(RpcMetrics.names.frameSize, { direction: "in" })
        }).pipe(inRegistry(clientRegistry))
        assert.strictEqual(atClient.latency.count, 11)
        assert.strictEqual(atClient.handler.count, 0, "handlers run at the server")
        // hello + connect + 11 asks + 1 tell (+ heartbeats); hello + connected + 11 replies (+ heartbeats).
        assert.isAtLeast(atClient.out.count, 14)
        assert.isAtLeast(atClient.in.count, 13)
        assert.isAbove(atClient.out.sum, 11 * 100, "the asks carried 100-byte payloads")
        assert.isAbove(atClient.out.min, 0)
        const atServer = yield* Effect.all({
          latency: histogram(RpcMetrics.names.callLatency, work),
          handler: histogram(RpcMetrics.names.handlerTime, work),
          wait: histogram(RpcMetrics.names.mailboxWait, work),
          noteHandler: histogram(RpcMetrics.names.handlerTime, { method: "GateGateway.note" }),
          out: histogram(RpcMetrics.names.frameSize, { direction: "out" }),
          in: histogram(RpcMetrics.names.frameSize, { direction: "in" })
        }).pipe(inRegistry(serverRegistry))
        assert.strictEqual(atServer.latency.count, 0, "the server made no asks")
        assert.strictEqual(atServer.handler.count, 11)
        assert.strictEqual(atServer.wait.count, 11)
        assert.strictEqual(atServer.noteHandler.count, 1)
        assert.isAtLeast(atServer.in.count, 14)
        assert.isAtLeast(atServer.out.count, 13)
        // What one side sent, the other received (heartbeats aside, which are equal-sized on both).
        assert.isAtLeast(atServer.in.sum, atClient.out.sum - 64)
        // The test's own registry saw nothing.
        assert.deepStrictEqual(yield* recordedHistograms, [])
      }).pipe(isolatedMetrics))

    it.effect("rejections are counted by reason: expired, cancelled, mailbox_full, fencing", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate, { mailboxCapacity: 3 }))
        const client = yield* svc.connect(server.address, GateGateway)
        const blocked = yield* Effect.forkChild(client.block(undefined, { timeout: Duration.infinity }))
        yield* Deferred.await(gate.entered)
        const expiring = yield* Effect.forkChild(Effect.flip(client.work("expiring", { timeout: "10 millis" })), {
          startImmediately: true
        })
        const cancelled = yield* Effect.forkChild(client.work("cancelled"), { startImmediately: true })
        yield* client.note("queued")
        assert.instanceOf(yield* Effect.flip(client.work("refused")), RpcError.MailboxFullError)
        assert.instanceOf(yield* Effect.flip(client.note("refused")), RpcError.MailboxFullError)
        yield* Fiber.interrupt(cancelled)
        yield* TestClock.adjust("10 millis")
        assert.instanceOf(yield* Fiber.join(expiring), RpcError.RpcTimeoutError)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        yield* settle
        assert.deepStrictEqual(gate.runs, ["queued"])

        const fenced = yield* RpcEndpoint.scoped(RpcEndpoint.makeFenced({
          id: "fenced",
          gateways: [GateGateway],
          token: Schema.String,
          initialToken: "leader",
          init: () => Effect.succeed({ handlers: gateHandlers(gate) })
        }))
        const stale = yield* svc.connectFenced(fenced.address, "stale", GateGateway)
        assert.instanceOf(yield* Effect.flip(stale.work("stale")), RpcError.FencingTokenError)
        const unfenced = yield* svc.connect(fenced.address, GateGateway)
        assert.instanceOf(yield* Effect.flip(unfenced.work("missing")), RpcError.FencingTokenError)

        assert.strictEqual(yield* rejections("expired"), 1)
        assert.strictEqual(yield* rejections("cancelled"), 1)
        assert.strictEqual(yield* rejections("mailbox_full"), 2)
        assert.strictEqual(yield* rejections("fencing"), 2)
        assert.strictEqual(yield* rejections("oversized"), 0)
        assert.strictEqual(yield* counter(RpcMetrics.names.rejections), 6)
      }).pipe(withService(), isolatedMetrics))

    it.live("an oversized request is refused at the sender and counted (reason oversized)", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair({ maximumFrameSize: 4096 })
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        const error = yield* Effect.flip(remote.work("y".repeat(5000)))
        assert.instanceOf(error, RpcError.FrameTooLargeError)
        assert.strictEqual(yield* rejections("oversized"), 1)
        assert.strictEqual(yield* remote.work("small"), "small")
      }).pipe(isolatedMetrics))

    const silentPeer = () =>
      fakePeer((socket) => {
        socket.write(helloFrame())
        socket.on("data", (bytes: Buffer) => {
          for (const message of messagesIn(bytes)) {
            if (!(message instanceof Wire.WireError) && message._tag === "Connect") {
              socket.write(Wire.connected(message.id, null, "").bytes)
            }
          }
        })
      })

    const fastHeartbeats = withConfig({
      heartbeatInterval: Duration.millis(50),
      heartbeatPause: Duration.millis(300),
      askTimeout: Duration.seconds(30)
    })

    it.live("a peer that falls silent is counted in rpc_heartbeat_misses_total", () =>
      Effect.gen(function*() {
        const fake = yield* silentPeer()
        const client = yield* RpcService.makeTcp().pipe(fastHeartbeats)
        const gateway = yield* client.connect(`rpc://127.0.0.1:${fake}/silent`, TestGateway)
        assert.strictEqual(yield* counter(RpcMetrics.names.heartbeatMisses), 0)
        const error = yield* Effect.flip(gateway.foobar())
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
        assert.include(error.message, "no heartbeat")
        assert.strictEqual(yield* counter(RpcMetrics.names.heartbeatMisses), 1)
        // A closed connection lingers (state "closed") until its socket has finished, at most about a second.
        yield* eventually(
          Effect.map(client.introspect, (snapshot) => snapshot.connections.length),
          (n) => n === 0,
          "the dead connection to leave the snapshot"
        )
      }).pipe(isolatedMetrics))

    it.live("an inbound peer that falls silent after its hello is counted, and the warning reaches the service's logger", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const server = yield* RpcService.makeTcp({ name: "heartbeat-server" }).pipe(fastHeartbeats)
        const port = Number((yield* server.introspect).authority!.split(":").at(-1))
        yield* Effect.acquireRelease(
          Effect.callback<Net.Socket>((resume) => {
            const socket = Net.connect({ host: "127.0.0.1", port }, () => {
              socket.write(helloFrame())
              resume(Effect.succeed(socket))
            })
            socket.on("error", () => {})
            socket.resume()
          }),
          (socket) => Effect.sync(() => socket.destroy())
        )
        yield* eventually(counter(RpcMetrics.names.heartbeatMisses), (n) => n === 1, "the miss to be counted")
        const warning = logs.find((log) => log.message.includes("declaring the peer dead"))
        assert.isDefined(warning, JSON.stringify(logs))
        assert.strictEqual(warning!.level, "Warn")
        assert.strictEqual(warning!.annotations.service, "heartbeat-server")
      }).pipe(isolatedMetrics, withLogs(logs))
    })

    it.live("the warning about a silent peer the service dialled reaches the service's logger", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const fake = yield* silentPeer()
        const client = yield* RpcService.makeTcp().pipe(fastHeartbeats)
        const gateway = yield* client.connect(`rpc://127.0.0.1:${fake}/silent`, TestGateway)
        assert.instanceOf(yield* Effect.flip(gateway.foobar()), RpcError.RecipientUnreachableError)
        assert.strictEqual(yield* counter(RpcMetrics.names.heartbeatMisses), 1)
        const warning = logs.find((log) => log.message.includes("declaring the peer dead"))
        assert.isDefined(warning, "the warning went to the default logger instead")
      }).pipe(isolatedMetrics, withLogs(logs))
    })

    it.live("connections refused for maxConnections are counted by reason", () =>
      Effect.gen(function*() {
        const serverRegistry: Metric.MetricRegistry = new Map()
        const server = yield* RpcService.makeTcp().pipe(withConfig({ maxConnections: 1 }), inRegistry(serverRegistry))
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const first = yield* RpcService.makeTcp()
        const second = yield* RpcService.makeTcp()
        const remote = yield* first.connect(endpoint.address, GateGateway)
        assert.strictEqual(yield* remote.work("first"), "first")
        const refused = yield* Effect.flip(second.connect(endpoint.address, GateGateway))
        assert.strictEqual(refused._tag === "RpcConnectionError" && refused.reason, "Refused")
        const count = yield* counter(RpcMetrics.names.connectionsRefused, { reason: "max_connections" }).pipe(
          inRegistry(serverRegistry)
        )
        assert.strictEqual(count, 1)
      }).pipe(isolatedMetrics))

    it.effect("metrics: false records no histograms, but still counts rejections", () =>
      Effect.gen(function*() {
        const gate = yield* makeGate
        const server = yield* RpcEndpoint.scoped(gateEndpoint(gate, { mailboxCapacity: 1 }))
        const client = server.self(GateGateway)
        for (let i = 0; i < 5; i++) yield* client.work(String(i))
        yield* client.note("n")
        const blocked = yield* Effect.forkChild(client.block())
        yield* Deferred.await(gate.entered)
        const expiring = yield* Effect.forkChild(Effect.flip(client.work("expiring", { timeout: "10 millis" })), {
          startImmediately: true
        })
        assert.instanceOf(yield* Effect.flip(client.work("refused")), RpcError.MailboxFullError)
        yield* TestClock.adjust("10 millis")
        yield* Fiber.join(expiring)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(blocked)
        yield* settle
        assert.deepStrictEqual(yield* recordedHistograms, [])
        assert.strictEqual(yield* rejections("mailbox_full"), 1)
        assert.strictEqual(yield* rejections("expired"), 1)
      }).pipe(withService({ metrics: false }), isolatedMetrics))

    it.live("metrics: false over TCP records no frame sizes", () =>
      Effect.gen(function*() {
        const { client, server } = yield* tcpPair({ metrics: false })
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        for (let i = 0; i < 5; i++) yield* remote.work(String(i))
        assert.deepStrictEqual(yield* recordedHistograms, [])
      }).pipe(isolatedMetrics))
  })

  // -------------------------------------------------------------------------------------------------------------
  // Tracing
  // -------------------------------------------------------------------------------------------------------------

  describe("tracing", () => {
    it.effect("a local ask inside a span: a client span under it, and a server span for the handler under that", () =>
      Effect.gen(function*() {
        const { named, spans, tracer } = recordingTracer()
        yield* Effect.gen(function*() {
          const gate = yield* makeGate
          const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
          const client = yield* (yield* service).connect(server.address, GateGateway)
          assert.strictEqual(
            yield* client.work("traced").pipe(Effect.withSpan("root")),
            "traced"
          )
          const [root] = named("root")
          const [ask] = named("GateGateway.work (ask)")
          const [handler] = named("GateGateway.work (handler)")
          assert.isDefined(root)
          assert.isDefined(ask)
          assert.isDefined(handler)
          assert.strictEqual(ask!.kind, "client")
          assert.strictEqual(handler!.kind, "server")
          assert.strictEqual(parentOf(ask!), root)
          assert.strictEqual(parentOf(handler!)?.spanId, ask!.spanId)
          assert.strictEqual(ask!.traceId, root!.traceId)
          assert.strictEqual(handler!.traceId, root!.traceId)
          assert.strictEqual(ask!.attributes.get("rpc.method"), "GateGateway.work")
          assert.strictEqual(ask!.attributes.get("rpc.address"), server.address)
          assert.strictEqual(handler!.attributes.get("rpc.method"), "GateGateway.work")
          assert.strictEqual(handler!.attributes.get("rpc.endpoint"), "gate")
          assert.strictEqual(ask!.status._tag, "Ended")
          assert.strictEqual(handler!.status._tag, "Ended")
          assert.strictEqual(spans.length, 3)
        }).pipe(Effect.withTracer(tracer))
      }).pipe(withService()))

    it.effect("a local tell inside a span: a client span (tell) and the handler's server span under it", () =>
      Effect.gen(function*() {
        const { named, tracer } = recordingTracer()
        yield* Effect.gen(function*() {
          const gate = yield* makeGate
          const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
          yield* server.self(GateGateway).note("told").pipe(Effect.withSpan("root"))
          yield* settle
          const [tell] = named("GateGateway.note (tell)")
          const [handler] = named("GateGateway.note (handler)")
          assert.strictEqual(tell?.kind, "client")
          assert.strictEqual(handler?.kind, "server")
          assert.strictEqual(parentOf(handler!)?.spanId, tell!.spanId)
          assert.strictEqual(handler!.traceId, named("root")[0]!.traceId)
        }).pipe(Effect.withTracer(tracer))
      }).pipe(withService()))

    it.effect("a handler that asks another endpoint continues the trace: root → ask → handler → ask → handler", () =>
      Effect.gen(function*() {
        const { named, tracer } = recordingTracer()
        yield* Effect.gen(function*() {
          const gate = yield* makeGate
          const inner = yield* RpcEndpoint.scoped(gateEndpoint(gate, { id: "inner" }))
          const svc = yield* service
          const innerClient = yield* svc.connect(inner.address, GateGateway)
          const OuterGateway = RpcGateway.make("OuterGateway", { relay: RpcGateway.ask({ success: Schema.String }) })
          const outer = yield* RpcEndpoint.scoped(RpcEndpoint.make({
            id: "outer",
            gateways: [OuterGateway],
            init: () => Effect.succeed({ handlers: { relay: () => innerClient.work("relayed") } })
          }))
          assert.strictEqual(yield* outer.self(OuterGateway).relay().pipe(Effect.withSpan("root")), "relayed")
          const root = named("root")[0]!
          const outerAsk = named("OuterGateway.relay (ask)")[0]!
          const outerHandler = named("OuterGateway.relay (handler)")[0]!
          const innerAsk = named("GateGateway.work (ask)")[0]!
          const innerHandler = named("GateGateway.work (handler)")[0]!
          assert.strictEqual(parentOf(outerAsk)?.spanId, root.spanId)
          assert.strictEqual(parentOf(outerHandler)?.spanId, outerAsk.spanId)
          assert.strictEqual(parentOf(innerAsk)?.spanId, outerHandler.spanId)
          assert.strictEqual(parentOf(innerHandler)?.spanId, innerAsk.spanId)
          for (const span of [outerAsk, outerHandler, innerAsk, innerHandler]) assert.strictEqual(span.traceId, root.traceId)
        }).pipe(Effect.withTracer(tracer))
      }).pipe(withService()))

    it.effect("calls made outside any span create no spans", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recordingTracer()
        yield* Effect.gen(function*() {
          const gate = yield* makeGate
          const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
          const client = server.self(GateGateway)
          yield* client.work("untraced")
          yield* client.note("untraced")
          yield* settle
          assert.deepStrictEqual(gate.runs, ["untraced", "untraced"])
          assert.deepStrictEqual(spans.map((span) => span.name), [])
        }).pipe(Effect.withTracer(tracer))
      }).pipe(withService()))

    it.effect("tracing: false creates no spans even inside a span", () =>
      Effect.gen(function*() {
        const { spans, tracer } = recordingTracer()
        yield* Effect.gen(function*() {
          const gate = yield* makeGate
          const server = yield* RpcEndpoint.scoped(gateEndpoint(gate))
          const client = server.self(GateGateway)
          yield* Effect.gen(function*() {
            yield* client.work("x")
            yield* client.note("y")
          }).pipe(Effect.withSpan("root"))
          yield* settle
          assert.deepStrictEqual(spans.map((span) => span.name), ["root"])
        }).pipe(Effect.withTracer(tracer))
      }).pipe(withService({ tracing: false })))

    it.live("across TCP: the handler's server span continues the caller's trace (same traceId, parent = client span)", () =>
      Effect.gen(function*() {
        const clientSide = recordingTracer()
        const serverSide = recordingTracer()
        const { client, server } = yield* tcpPair()
        const gate = yield* makeGate
        const endpoint = yield* startOn(server, gateEndpoint(gate)).pipe(Effect.withTracer(serverSide.tracer))
        const remote = yield* client.connect(endpoint.address, GateGateway)
        yield* Effect.gen(function*() {
          yield* remote.note("told")
          assert.strictEqual(yield* remote.work("asked"), "asked")
        }).pipe(Effect.withSpan("root"), Effect.withTracer(clientSide.tracer))
        yield* settle
        const root = clientSide.named("root")[0]!
        const ask = clientSide.named("GateGateway.work (ask)")[0]!
        const tell = clientSide.named("GateGateway.note (tell)")[0]!
        assert.strictEqual(ask.kind, "client")
        assert.strictEqual(tell.kind, "client")
        assert.deepStrictEqual(clientSide.spans.map((s) => s.name).sort(), [
          "GateGateway.note (tell)",
          "GateGateway.work (ask)",
          "root"
        ])
        // The server's spans were made by the server's tracer, from the trace context on the wire.
        const askHandler = serverSide.named("GateGateway.work (handler)")[0]!
        const tellHandler = serverSide.named("GateGateway.note (handler)")[0]!
        assert.strictEqual(serverSide.spans.length, 2)
        assert.strictEqual(askHandler.kind, "server")
        assert.strictEqual(askHandler.traceId, root.traceId)
        assert.strictEqual(parentOf(askHandler)?._tag, "ExternalSpan")
        assert.strictEqual(parentOf(askHandler)?.spanId, ask.spanId)
        assert.strictEqual(parentOf(askHandler)?.traceId, ask.traceId)
        assert.strictEqual(tellHandler.traceId, root.traceId)
        assert.strictEqual(parentOf(tellHandler)?.spanId, tell.spanId)
        assert.strictEqual(askHandler.status._tag, "Ended")
      }))

    it.live("across TCP: no spans outside a span, and none when either side has tracing: false", () =>
      Effect.gen(function*() {
        const clientSide = recordingTracer()
        const serverSide = recordingTracer()
        const server = yield* RpcService.makeTcp()
        const untracedServer = yield* RpcService.makeTcp().pipe(withConfig({ tracing: false }))
        const client = yield* RpcService.makeTcp()
        const untracedClient = yield* RpcService.makeTcp().pipe(withConfig({ tracing: false }))
        const gate = yield* makeGate
        const traced = yield* startOn(server, gateEndpoint(gate)).pipe(Effect.withTracer(serverSide.tracer))
        const untraced = yield* startOn(untracedServer, gateEndpoint(gate)).pipe(Effect.withTracer(serverSide.tracer))

        // Outside any span.
        yield* (yield* client.connect(traced.address, GateGateway)).work("a").pipe(Effect.withTracer(clientSide.tracer))
        assert.deepStrictEqual(clientSide.spans.map((s) => s.name), [])
        assert.deepStrictEqual(serverSide.spans.map((s) => s.name), [])

        // The caller does not trace: no client span, no trace context on the wire, no server span.
        yield* (yield* untracedClient.connect(traced.address, GateGateway)).work("b").pipe(
          Effect.withSpan("root"),
          Effect.withTracer(clientSide.tracer)
        )
        assert.deepStrictEqual(clientSide.spans.map((s) => s.name), ["root"])
        assert.deepStrictEqual(serverSide.spans.map((s) => s.name), [])

        // The receiver does not trace: the caller's span exists, the handler gets none.
        yield* (yield* client.connect(untraced.address, GateGateway)).work("c").pipe(
          Effect.withSpan("root"),
          Effect.withTracer(clientSide.tracer)
        )
        assert.deepStrictEqual(clientSide.spans.map((s) => s.name), ["root", "root", "GateGateway.work (ask)"])
        assert.deepStrictEqual(serverSide.spans.map((s) => s.name), [])
      }))
  })

  // -------------------------------------------------------------------------------------------------------------
  // Log annotations
  // -------------------------------------------------------------------------------------------------------------

  describe("log annotations", () => {
    const LogGateway = RpcGateway.make("LogGateway", {
      hello: RpcGateway.ask({ success: Schema.String }),
      other: RpcGateway.ask({ success: Schema.String }),
      deferLog: RpcGateway.ask({ success: Schema.String }),
      laterLog: RpcGateway.ask({ success: Schema.String }),
      poke: RpcGateway.tell({ payload: Schema.String })
    })

    const loggingEndpoint = RpcEndpoint.make({
      id: "logger",
      gateways: [LogGateway],
      init: (main) =>
        Effect.succeed({
          handlers: {
            hello: () => Effect.as(Effect.log("in hello"), "hello"),
            other: () => Effect.as(Effect.log("in other"), "other"),
            deferLog: () => Effect.as(main.runAsync(Effect.log("in runAsync")), "deferred"),
            laterLog: () => Effect.succeed(RpcEndpoint.later(Effect.as(Effect.log("in later"), "later"))),
            poke: (what) => Effect.log(`poked ${what}`)
          },
          onStart: Effect.log("in onStart"),
          onStop: Effect.log("in onStop")
        })
    })

    const find = (logs: ReadonlyArray<Captured>, message: string) => {
      const found = logs.find((log) => log.message === message)
      assert.isDefined(found, `no log "${message}" in ${JSON.stringify(logs.map((log) => log.message))}`)
      return found!
    }

    it.effect("a handler's logs carry endpoint and method; onStart's and runAsync's carry the endpoint only", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(loggingEndpoint).pipe(Effect.annotateLogs({ app: "starter" }))
        const client = server.self(LogGateway)
        yield* client.hello()
        yield* client.other()
        yield* client.deferLog()
        yield* client.poke("tell")
        assert.strictEqual(yield* client.laterLog(), "later")
        yield* client.hello()
        yield* settle
        yield* Effect.log("in the caller")

        assert.deepStrictEqual(find(logs, "in onStart").annotations, { app: "starter", endpoint: "logger" })
        assert.deepStrictEqual(find(logs, "in hello").annotations, {
          app: "starter",
          endpoint: "logger",
          method: "LogGateway.hello"
        })
        assert.strictEqual(find(logs, "in other").annotations.method, "LogGateway.other")
        assert.strictEqual(find(logs, "poked tell").annotations.method, "LogGateway.poke")
        // A later reply's work belongs to its call.
        assert.deepStrictEqual(find(logs, "in later").annotations, {
          app: "starter",
          endpoint: "logger",
          method: "LogGateway.laterLog"
        })
        // runAsync runs after deferLog's handler on the same main thread: it must not inherit its method.
        assert.deepStrictEqual(find(logs, "in runAsync").annotations, { app: "starter", endpoint: "logger" })
        const hellos = logs.filter((log) => log.message === "in hello")
        assert.strictEqual(hellos.length, 2)
        assert.strictEqual(hellos[1]!.annotations.method, "LogGateway.hello")
        // The caller's own logs are not annotated by the endpoint.
        assert.deepStrictEqual(find(logs, "in the caller").annotations, {})
      }).pipe(withService(), withLogs(logs))
    })

    it.effect("onStop's logs carry the endpoint only, even right after a handler ran", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(loggingEndpoint)
        yield* server.start
        yield* server.awaitStarted
        yield* server.self(LogGateway).hello()
        yield* server.terminate
        assert.deepStrictEqual(find(logs, "in onStop").annotations, { endpoint: "logger" })
      }).pipe(withService(), withLogs(logs))
    })

    it.live("a remote handler's logs carry its endpoint and method", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const { client, server } = yield* tcpPair()
        const endpoint = yield* startOn(server, loggingEndpoint)
        const remote = yield* client.connect(endpoint.address, LogGateway)
        assert.strictEqual(yield* remote.hello(), "hello")
        yield* remote.poke("remote")
        assert.strictEqual(yield* remote.deferLog(), "deferred")
        yield* eventually(Effect.sync(() => logs.some((log) => log.message === "in runAsync")), Boolean, "runAsync's log")
        assert.deepStrictEqual(find(logs, "in hello").annotations, { endpoint: "logger", method: "LogGateway.hello" })
        assert.deepStrictEqual(find(logs, "poked remote").annotations, { endpoint: "logger", method: "LogGateway.poke" })
        assert.deepStrictEqual(find(logs, "in runAsync").annotations, { endpoint: "logger" })
      }).pipe(withLogs(logs))
    })

    it.effect("a handler that dies is logged with its method", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const DieGateway = RpcGateway.make("DieGateway", {
          fine: RpcGateway.ask({ success: Schema.String }),
          die: RpcGateway.ask({ success: Schema.String })
        })
        const server = yield* RpcEndpoint.scoped(RpcEndpoint.make({
          id: "dying",
          gateways: [DieGateway],
          init: () =>
            Effect.succeed({
              handlers: { fine: () => Effect.succeed("fine"), die: () => Effect.die(new Error("boom")) }
            })
        }))
        const client = server.self(DieGateway)
        yield* client.fine()
        assert.instanceOf(yield* Effect.flip(client.die()), RpcError.RemoteDefectError)
        // The reply reaches the caller before the main thread logs the defect.
        yield* settle
        const died = logs.find((log) => log.message.includes("died"))
        assert.isDefined(died)
        assert.strictEqual(died!.level, "Error")
        assert.strictEqual(died!.annotations.method, "DieGateway.die")
      }).pipe(withService(), withLogs(logs))
    })

    it.effect("a discarded tell's warning is not annotated with the previous handler's method", () => {
      const logs: Array<Captured> = []
      return Effect.gen(function*() {
        const FencedLogGateway = RpcGateway.make("FencedLogGateway", {
          whoami: RpcGateway.ask({ success: Schema.String }),
          lead: RpcGateway.tell({ payload: Schema.String })
        })
        const server = yield* RpcEndpoint.scoped(RpcEndpoint.makeFenced({
          id: "fenced-logger",
          gateways: [FencedLogGateway],
          token: Schema.String,
          initialToken: "leader",
          init: () =>
            Effect.succeed({ handlers: { whoami: () => Effect.succeed("me"), lead: () => Effect.void } })
        }))
        const svc = yield* service
        const leader = yield* svc.connectFenced(server.address, "leader", FencedLogGateway)
        const stale = yield* svc.connectFenced(server.address, "stale", FencedLogGateway)
        assert.strictEqual(yield* leader.whoami(), "me")
        yield* stale.lead("ignored")
        yield* settle
        const discarded = logs.find((log) => log.message.startsWith("Discarding FencedLogGateway.lead"))
        assert.isDefined(discarded)
        assert.notStrictEqual(discarded!.annotations.method, "FencedLogGateway.whoami")
      }).pipe(withService(), withLogs(logs))
    })
  })
})
