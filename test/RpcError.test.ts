/**
 * Every error reads well in a log (what, where, what to do) and survives a round trip through its Schema, as it
 * must to cross the wire.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { RpcError } from "effect-actor-rpc"

const address = "local://svc/endpoint-1"

const samples: ReadonlyArray<[RpcError.RpcCallError, ReadonlyArray<string>]> = [
  [new RpcError.EndpointNotStartedError({ address, method: "G.m" }), ["G.m", address, "not been started", "start"]],
  [
    new RpcError.RecipientUnreachableError({ address, method: "G.m", reason: "the endpoint has terminated" }),
    ["G.m", address, "terminated", "Reconnect"]
  ],
  [
    new RpcError.RpcTimeoutError({ address, method: "G.m", timeoutMillis: 250, callSite: "at caller (file.ts:1:2)" }),
    ["G.m", address, "250 ms", "raise the timeout", "caller (file.ts:1:2)"]
  ],
  [
    new RpcError.FencingTokenError({ address, method: "G.m", reason: "Mismatch", expected: "\"b\"", received: "\"a\"" }),
    ["mismatch", "\"a\"", "\"b\"", "current leader"]
  ],
  [new RpcError.RpcServiceStoppedError({ service: "svc", operation: "call G.m" }), ["svc", "call G.m", "stopped"]],
  [
    new RpcError.FrameTooLargeError({ address, method: "G.m", direction: "request", size: 11, limit: 10 }),
    ["request", "11 bytes", "10 bytes", "maximumFrameSize"]
  ],
  [new RpcError.RemoteDefectError({ address, method: "G.m", defect: "Error: boom" }), ["G.m", "boom", "keeps serving"]],
  [
    new RpcError.MethodNotServedError({ address, method: "G.m", kind: "ask" }),
    ["G.m", address, "no such method", "different versions", "the rest of it works", "MethodNotServedError"]
  ],
  [
    new RpcError.MethodNotServedError({ address, method: "G.m", kind: "ask", served: "tell" }),
    ["G.m", "serves it as a tell, not as an ask"]
  ]
]

describe("RpcError", () => {
  for (const [error, fragments] of samples) {
    it(`${error._tag} says what, where and what to do`, () => {
      for (const fragment of fragments) assert.include(error.message, fragment)
      assert.isTrue(RpcError.isRpcError(error))
    })
  }

  it("every call error round-trips through the RpcCallError Schema", () => {
    const encode = Schema.encodeUnknownSync(RpcError.RpcCallError)
    const decode = Schema.decodeUnknownSync(RpcError.RpcCallError)
    for (const [error] of samples) {
      const decoded = decode(JSON.parse(JSON.stringify(encode(error))))
      assert.strictEqual(decoded._tag, error._tag)
      assert.strictEqual(decoded.message, error.message)
      assert.isTrue(RpcError.isRpcError(decoded))
    }
  })

  it("fencing errors explain each reason", () => {
    const notSet = new RpcError.FencingTokenError({ address, method: "G.m", reason: "NotSet", received: "1" })
    const missing = new RpcError.FencingTokenError({ address, method: "G.m", reason: "Missing", expected: "2" })
    assert.include(notSet.message, "not set")
    assert.include(missing.message, "connectFenced")
    assert.include(missing.message, "2")
  })

  it("connection, id and start errors name the address, id and cause", () => {
    const connection = new RpcError.RpcConnectionError({
      address,
      gateway: "G",
      reason: "UnknownEndpoint",
      detail: "no endpoint \"x\""
    })
    assert.include(connection.message, "G")
    assert.include(connection.message, address)
    assert.include(connection.message, "UnknownEndpoint")
    const inUse = new RpcError.EndpointIdInUseError({ service: "svc", endpointId: "x" })
    assert.include(inUse.message, "\"x\"")
    const start = new RpcError.EndpointStartError({ address, cause: new Error("no disk") })
    assert.include(start.message, "no disk")
    assert.include(start.message, address)
  })

  it("isRpcError tells the library's errors from others", () => {
    assert.isTrue(RpcError.isRpcError(new RpcError.RpcServiceStoppedError({ service: "s", operation: "o" })))
    assert.isFalse(RpcError.isRpcError(new Error("x")))
  })
})
