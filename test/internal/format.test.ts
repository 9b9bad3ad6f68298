/**
 * Error-message formatting: errors, tagged errors, strings and values, and values that cannot be printed
 * normally (cycles, nesting deep enough to overflow JSON.stringify) never throw.
 */
import { assert, describe, it } from "@effect/vitest"
import { RpcError } from "effect-actor-rpc"
import { describe as describeValue } from "../../src/internal/format.js"

describe("format", () => {
  it("renders errors, tagged errors, strings and values", () => {
    assert.strictEqual(describeValue("plain"), "plain")
    assert.strictEqual(describeValue(new Error("boom")), "Error: boom")
    assert.include(describeValue(new RpcError.RpcServiceStoppedError({ service: "s", operation: "o" })), "s")
    assert.strictEqual(describeValue({ a: 1 }), "{\"a\":1}")
  })

  it("prints a cycle, a bigint and a deeply nested value without throwing", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    assert.strictEqual(describeValue(cyclic), "[object Object]")
    assert.strictEqual(describeValue(10n), "10")
    let deep: unknown = 0
    for (let i = 0; i < 20_000; i++) deep = [deep]
    assert.isString(describeValue(deep))
  })
})
