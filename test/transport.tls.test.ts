/**
 * Mutual TLS: ports of Flink's RpcSSLAuthITCase (a peer without a trusted certificate cannot connect) plus
 * certificate pinning, both directions of trust, and TLS settings that cannot be loaded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { RpcError, RpcService } from "effect-actor-rpc"
import { startOn } from "./behaviour.js"
import { testEndpoint, TestGateway } from "./fixtures/common.js"
import { tlsMaterial } from "./fixtures/tls.js"

const material = () => tlsMaterial()

/** A TLS service presenting `which` and trusting `trust`. */
const tlsService = (
  which: "server" | "client" | "untrustedClient" | "untrustedServer" | "expiredClient",
  options: Omit<RpcService.TlsOptions, "key" | "cert"> = {}
) => {
  const m = material()
  return RpcService.makeTls({ key: m[which].key, cert: m[which].cert, ca: m.ca.cert, ...options })
}

const connectError = (client: RpcService.RpcServiceShape, address: string) =>
  Effect.flip(client.connect(address, TestGateway)).pipe(
    Effect.map((error) => error as RpcError.RpcConnectionError)
  )

describe("TLS transport", () => {
  it.live("RpcSSLAuthITCase: peers with certificates from the trusted CA talk; files work as well as PEM strings", () =>
    Effect.gen(function*() {
      const m = material()
      const server = yield* RpcService.makeTls({ key: m.server.keyPath, cert: m.server.certPath, ca: m.ca.certPath })
      const client = yield* tlsService("client")
      const endpoint = yield* startOn(server, testEndpoint({ id: "test", value: 9 }))
      assert.isTrue(endpoint.address.startsWith("rpcs://127.0.0.1:"))
      assert.strictEqual(yield* (yield* client.connect(endpoint.address, TestGateway)).foobar(), 9)
    }))

  it.live("RpcSSLAuthITCase: a client whose certificate the server does not trust fails Untrusted, fast", () =>
    Effect.gen(function*() {
      const server = yield* tlsService("server")
      const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
      for (const which of ["untrustedClient", "expiredClient"] as const) {
        const client = yield* tlsService(which)
        const error = yield* connectError(client, endpoint.address)
        assert.strictEqual(error.reason, "Untrusted", which)
        assert.include(error.message, "does not trust this service's certificate")
      }
    }))

  it.live("a server whose certificate the client does not trust fails Untrusted", () =>
    Effect.gen(function*() {
      const server = yield* tlsService("untrustedServer")
      const endpoint = yield* startOn(server, testEndpoint({ id: "test" }))
      const client = yield* tlsService("client")
      const error = yield* connectError(client, endpoint.address)
      assert.strictEqual(error.reason, "Untrusted")
      assert.include(error.message, "is not trusted")
    }))

  it.live("pinning: only peers whose certificate fingerprint is pinned are trusted, in both directions", () =>
    Effect.gen(function*() {
      const m = material()
      const pinned = yield* tlsService("server", { pinnedFingerprints: [m.client.fingerprint256] })
      const endpoint = yield* startOn(pinned, testEndpoint({ id: "test", value: 1 }))
      const good = yield* tlsService("client")
      assert.strictEqual(yield* (yield* good.connect(endpoint.address, TestGateway)).foobar(), 1)
      // Trusted by the CA, but not pinned: the server refuses it with a reason.
      const other = yield* tlsService("server")
      const refused = yield* connectError(other, endpoint.address)
      assert.strictEqual(refused.reason, "Untrusted")
      assert.include(refused.message, "pinned")
      // The client pins a fingerprint the server does not have.
      const picky = yield* tlsService("client", { pinnedFingerprints: [m.client.fingerprint256] })
      const server = yield* tlsService("server")
      const target = yield* startOn(server, testEndpoint({ id: "test" }))
      const unpinned = yield* connectError(picky, target.address)
      assert.strictEqual(unpinned.reason, "Untrusted")
      assert.include(unpinned.message, "not pinned")
    }))

  it.live("a TLS service cannot reach rpc:// addresses; missing or unreadable TLS files are an RpcBindError", () =>
    Effect.gen(function*() {
      const tls = yield* tlsService("client")
      const error = yield* connectError(tls, "rpc://127.0.0.1:6123/x")
      assert.strictEqual(error.reason, "InvalidAddress")
      const missing = yield* Effect.flip(RpcService.makeTls({ ca: material().ca.cert }))
      assert.instanceOf(missing, RpcError.RpcBindError)
      assert.include(missing.message, "no TLS key is configured")
      const unreadable = yield* Effect.flip(
        RpcService.makeTls({ key: "/nonexistent/key.pem", cert: material().server.cert, ca: material().ca.cert })
      )
      assert.include(unreadable.message, "cannot read the TLS key file /nonexistent/key.pem")
    }))
})
