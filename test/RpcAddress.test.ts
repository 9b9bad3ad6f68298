import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { RpcAddress } from "effect-actor-rpc"

describe("RpcAddress", () => {
  it("formats and parses local addresses", () => {
    const address = RpcAddress.local("svc", "hello")
    assert.strictEqual(address, "local://svc/hello")
    assert.deepStrictEqual(RpcAddress.parse(address), Result.succeed({
      protocol: "local",
      authority: "svc",
      endpointId: "hello"
    }))
  })

  it("parses tcp and tls addresses with IPv4, bracketed IPv6 and host names", () => {
    for (const [text, authority] of [
      ["rpc://127.0.0.1:6123/jobmanager", "127.0.0.1:6123"],
      ["rpcs://[::1]:6123/jobmanager", "[::1]:6123"],
      ["rpc://taskmanager-1.example:50100/taskmanager_0", "taskmanager-1.example:50100"]
    ] as const) {
      const parsed = RpcAddress.parse(text)
      assert.isTrue(Result.isSuccess(parsed))
      if (Result.isSuccess(parsed)) assert.strictEqual(parsed.success.authority, authority)
    }
  })

  it("rejects what is not an endpoint address, saying what is expected", () => {
    for (const text of ["foobar", "http://host/x", "local://svc", "local:///x", "rpc://host:1/"]) {
      const parsed = RpcAddress.parse(text)
      assert.isTrue(Result.isFailure(parsed), text)
      if (Result.isFailure(parsed)) assert.include(parsed.failure, "expected local://")
    }
    const malformed = RpcAddress.parse("local://svc/%E0%A4%A")
    assert.isTrue(Result.isFailure(malformed))
  })

  it("an id with a lone surrogate still formats (as U+FFFD) instead of throwing", () => {
    assert.strictEqual(RpcAddress.local("svc", "a\uD800b"), "local://svc/a%EF%BF%BDb")
  })

  const WellFormed = Schema.NonEmptyString.check(
    Schema.makeFilter((s: string) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s))
  )

  it.prop("any endpoint id round-trips through format and parse", [WellFormed], ([endpointId]) => {
    const address = RpcAddress.format({ protocol: "local", authority: "svc", endpointId })
    const parsed = RpcAddress.parse(address)
    assert.isTrue(Result.isSuccess(parsed))
    if (Result.isSuccess(parsed)) assert.strictEqual(parsed.success.endpointId, endpointId)
  })
})
