/**
 * Security claims about connections, each a test a threat model can cite (docs/SECURITY.md): TLS material is
 * reloaded from its files without a restart and a bad set is refused, `RpcConfig.maxConnections` bounds what a
 * flood of connections can hold, and peers that never finish their handshake are disconnected after
 * `RpcConfig.connectTimeout`. Input-level claims (frame limits, prototype pollution, slow readers, fencing) are in
 * test/security.input.test.ts. Every socket is on 127.0.0.1 and closed with its test.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import { RpcError, RpcMetrics, RpcService } from "effect-actor-rpc"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startOn } from "./behaviour.js"
import { testEndpoint, TestGateway } from "./fixtures/common.js"
import {
  collectLogs,
  config,
  counter,
  eventually,
  helloFrame,
  isolatedMetrics,
  makeLogLines,
  messagesOf,
  portOf,
  rawConnection
} from "./fixtures/raw.js"
import { tlsMaterial } from "./fixtures/tls.js"

const refused = RpcMetrics.names.connectionsRefused

/** A TLS client service presenting `key`/`cert` and trusting `ca` (PEM strings), in its own scope. */
const tlsClient = (material: { readonly key: string; readonly cert: string; readonly ca: string }) =>
  RpcService.makeTls({ key: material.key, cert: material.cert, ca: material.ca })

/** Connects with `client` and reads foobar, or fails with the connect's RpcConnectionError. */
const foobarVia = (client: RpcService.RpcServiceShape, address: string) =>
  Effect.flatMap(client.connect(address, TestGateway), (gateway) => gateway.foobar())

/** Runs `make` in a scope of its own, closed by the returned `close`. */
const detachable = <A, E>(make: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const value = yield* Scope.provide(scope)(make)
    return { value, close: Scope.close(scope, Exit.void) }
  })

describe("security: connections", () => {
  describe("TLS certificate reload", () => {
    it.live(
      "rewritten key/cert/CA files apply to new connections without a restart; open connections keep working; a bad set keeps the previous material",
      () => {
        const logs = makeLogLines()
        return Effect.gen(function*() {
          const m = tlsMaterial()
          const dir = mkdtempSync(join(tmpdir(), "effect-actor-rpc-reload-"))
          yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
          const files = { key: join(dir, "server.key"), cert: join(dir, "server.crt"), ca: join(dir, "ca.crt") }
          const install = (material: { readonly key: string; readonly cert: string; readonly ca: string }) => {
            // Synchronous writes: the watcher runs on this thread, so it never sees half of a set.
            writeFileSync(files.key, material.key)
            writeFileSync(files.cert, material.cert)
            writeFileSync(files.ca, material.ca)
          }
          install({ key: m.server.key, cert: m.server.cert, ca: m.ca.cert })
          const server = yield* RpcService.makeTls(files).pipe(
            config({ tlsReloadInterval: Duration.millis(100) })
          )
          const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 7 }))
          const oldCa = { key: m.client.key, cert: m.client.cert, ca: m.ca.cert }
          const newCa = { key: m.untrustedClient.key, cert: m.untrustedClient.cert, ca: m.otherCa.cert }

          // Before: the old CA's client is served, the other CA's is not.
          const openClient = yield* tlsClient(oldCa)
          const open = yield* openClient.connect(endpoint.address, TestGateway)
          assert.strictEqual(yield* open.foobar(), 7)
          const early = yield* Effect.flip(foobarVia(yield* tlsClient(newCa), endpoint.address))
          assert.instanceOf(early, RpcError.RpcConnectionError)

          // Rotate to a new CA and a leaf it signed.
          install({ key: m.untrustedServer.key, cert: m.untrustedServer.cert, ca: m.otherCa.cert })
          yield* eventually("the reload is logged", Effect.sync(() => logs.count("Reloaded the TLS") === 1))
          assert.strictEqual(yield* foobarVia(yield* tlsClient(newCa), endpoint.address), 7)
          const stale = yield* Effect.flip(foobarVia(yield* tlsClient(oldCa), endpoint.address))
          assert.instanceOf(stale, RpcError.RpcConnectionError)
          assert.strictEqual((stale as RpcError.RpcConnectionError).reason, "Untrusted")
          // The connection opened before the rotation is not torn down.
          assert.strictEqual(yield* open.foobar(), 7)

          // Bad sets: garbage in PEM armour, a file without PEM, a missing file. Each is refused with a log, and
          // the material in force (the new CA's) keeps serving.
          const garbage: ReadonlyArray<() => void> = [
            () => writeFileSync(files.key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"),
            () => writeFileSync(files.cert, "this is not a certificate\n"),
            () => rmSync(files.ca)
          ]
          for (const [i, corrupt] of garbage.entries()) {
            corrupt()
            yield* eventually(
              `bad set ${i} is refused`,
              Effect.sync(() => logs.count("Kept the previous TLS material") === i + 1)
            )
            assert.strictEqual(yield* foobarVia(yield* tlsClient(newCa), endpoint.address), 7, `after bad set ${i}`)
            const old = yield* Effect.flip(foobarVia(yield* tlsClient(oldCa), endpoint.address))
            assert.instanceOf(old, RpcError.RpcConnectionError, `after bad set ${i}`)
          }
          assert.strictEqual(logs.count("Reloaded the TLS"), 1)
          assert.strictEqual(yield* open.foobar(), 7)
          assert.strictEqual((yield* server.introspect).lifecycle, "running")
        }).pipe(collectLogs(logs))
      }
    )
  })

  describe("maxConnections", () => {
    it.live("TCP: connections beyond the limit get a Close(\"Refused\") frame, a client fails fast, the refusal is counted; a freed slot is reusable", () =>
      isolatedMetrics(Effect.gen(function*() {
        const server = yield* RpcService.makeTcp().pipe(config({ maxConnections: 2 }))
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 3 }))
        const port = portOf(endpoint.address)
        const first = yield* rawConnection(port)
        const second = yield* rawConnection(port)
        for (const raw of [first, second]) {
          raw.socket.write(helloFrame())
          yield* eventually("the server answers the hello", Effect.sync(() => messagesOf(raw.received(), "Hello").length === 1))
        }
        assert.strictEqual((yield* server.introspect).connections.length, 2)

        const third = yield* rawConnection(port)
        third.socket.write(helloFrame())
        yield* third.awaitClose()
        const [close] = messagesOf(third.received(), "Close")
        assert.strictEqual(close?.reason, "Refused")
        assert.include(close?.detail, "maxConnections")
        assert.strictEqual(messagesOf(third.received(), "Hello").length, 0, "a refused peer gets no hello")
        assert.strictEqual(yield* counter(refused, "max_connections"), 1)

        // A real client is told why at once: not after its connect timeout.
        const client = yield* RpcService.makeTcp().pipe(config({ connectTimeout: Duration.seconds(20) }))
        const started = Date.now()
        const error = yield* Effect.flip(foobarVia(client, endpoint.address))
        assert.isBelow(Date.now() - started, 5_000)
        assert.instanceOf(error, RpcError.RpcConnectionError)
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "Refused")
        assert.include(error.message, "maxConnections")
        assert.strictEqual(yield* counter(refused, "max_connections"), 2)
        // The connections already admitted were not disturbed.
        assert.isFalse(first.isClosed() || second.isClosed())

        first.socket.destroy()
        yield* eventually("the freed slot is released", Effect.map(server.introspect, (s) => s.connections.length <= 1))
        assert.strictEqual(yield* foobarVia(client, endpoint.address), 3)
        assert.strictEqual(yield* counter(refused, "max_connections"), 2)
      })))

    it.live("TLS: a connection beyond the limit is closed before any handshake; a client fails fast; a freed slot is reusable", () =>
      isolatedMetrics(Effect.gen(function*() {
        const m = tlsMaterial()
        const material = { key: m.client.key, cert: m.client.cert, ca: m.ca.cert }
        const server = yield* RpcService.makeTls({ key: m.server.key, cert: m.server.cert, ca: m.ca.cert }).pipe(
          config({ maxConnections: 2 })
        )
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 4 }))
        const one = yield* detachable(tlsClient(material))
        const two = yield* tlsClient(material)
        assert.strictEqual(yield* foobarVia(one.value, endpoint.address), 4)
        assert.strictEqual(yield* foobarVia(two, endpoint.address), 4)

        const raw = yield* rawConnection(portOf(endpoint.address))
        yield* raw.awaitClose()
        assert.strictEqual(raw.received().length, 0, "not a byte of TLS for a refused peer")
        assert.strictEqual(yield* counter(refused, "max_connections"), 1)

        const third = yield* tlsClient(material).pipe(config({ connectTimeout: Duration.seconds(20) }))
        const started = Date.now()
        const error = yield* Effect.flip(foobarVia(third, endpoint.address))
        assert.isBelow(Date.now() - started, 5_000)
        assert.instanceOf(error, RpcError.RpcConnectionError)
        assert.strictEqual(yield* counter(refused, "max_connections"), 2)

        yield* one.close
        yield* eventually("the freed slot is released", Effect.map(server.introspect, (s) => s.connections.length <= 1))
        assert.strictEqual(yield* foobarVia(third, endpoint.address), 4)
        assert.strictEqual(yield* foobarVia(two, endpoint.address), 4)
      })))
  })

  describe("handshake timeout", () => {
    it.live("TCP: a peer that connects and sends no hello (or only part of one) is disconnected after connectTimeout, counted as handshake_timeout", () =>
      isolatedMetrics(Effect.gen(function*() {
        const connectTimeout = 300
        const heartbeatInterval = 100
        const server = yield* RpcService.makeTcp().pipe(
          config({ connectTimeout: Duration.millis(connectTimeout), heartbeatInterval: Duration.millis(heartbeatInterval) })
        )
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 1 }))
        const silent = yield* rawConnection(portOf(endpoint.address))
        const partial = yield* rawConnection(portOf(endpoint.address))
        const hello = helloFrame()
        partial.socket.write(hello.subarray(0, hello.length - 2))
        const started = Date.now()
        yield* silent.awaitClose(connectTimeout + heartbeatInterval + 2_500)
        yield* partial.awaitClose(connectTimeout + heartbeatInterval + 2_500)
        assert.isAtLeast(Date.now() - started, connectTimeout - 100)
        for (const raw of [silent, partial]) {
          const [close] = messagesOf(raw.received(), "Close")
          assert.include(close?.detail, "no hello from the peer")
        }
        assert.strictEqual(yield* counter(refused, "handshake_timeout"), 2)
        assert.strictEqual((yield* server.introspect).connections.length, 0)
      })))

    it.live("TLS: a peer that connects and sends no ClientHello is disconnected after connectTimeout, counted as handshake_timeout, and frees its slot", () =>
      isolatedMetrics(Effect.gen(function*() {
        const m = tlsMaterial()
        const connectTimeout = 400
        const server = yield* RpcService.makeTls({ key: m.server.key, cert: m.server.cert, ca: m.ca.cert }).pipe(
          config({ connectTimeout: Duration.millis(connectTimeout), maxConnections: 2 })
        )
        const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 1 }))
        const silent = yield* rawConnection(portOf(endpoint.address))
        const started = Date.now()
        yield* silent.awaitClose(connectTimeout + 2_500)
        assert.isAtLeast(Date.now() - started, connectTimeout - 100)
        assert.strictEqual(silent.received().length, 0)
        yield* eventually(
          "the timeout is counted",
          Effect.map(counter(refused, "handshake_timeout"), (count) => count === 1),
          1_000
        )
        // A handshake that timed out no longer holds one of the two slots.
        const material = { key: m.client.key, cert: m.client.cert, ca: m.ca.cert }
        assert.strictEqual(yield* foobarVia(yield* tlsClient(material), endpoint.address), 1)
        assert.strictEqual(yield* foobarVia(yield* tlsClient(material), endpoint.address), 1)
      })))
  })
})
