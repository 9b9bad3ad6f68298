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

  // After Flink's PekkoRpcServiceUtilsTest (getRpcUrl for IPv4, IPv6 and host names).
  it("parses host and port out of IPv4, IPv6 and host-name authorities", () => {
    const cases: ReadonlyArray<readonly [string, string, number]> = [
      ["127.0.0.1:6123", "127.0.0.1", 6123],
      ["[::1]:1", "::1", 1],
      ["[2001:db8:10:11:12:ff00:42:8329]:65535", "2001:db8:10:11:12:ff00:42:8329", 65535],
      ["[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", 80],
      ["localhost:50100", "localhost", 50100],
      ["abc-123.Example.org:8080", "abc-123.Example.org", 8080]
    ]
    for (const [authority, host, port] of cases) {
      assert.deepStrictEqual(RpcAddress.parseHostPort(authority), Result.succeed({ host, port }), authority)
      assert.strictEqual(RpcAddress.formatHostPort(host, port), authority)
    }
    assert.strictEqual(RpcAddress.remote("rpcs", "::1", 6123, "job master"), "rpcs://[::1]:6123/job%20master")
  })

  it("rejects bad hosts and ports with a reason", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["::1:6123", "without brackets"],
      ["[::1]6123", "in brackets"],
      ["[not-ipv6]:1", "is not an IPv6 address"],
      ["host", "has no port"],
      ["host:0", "from 1 to 65535"],
      ["host:65536", "from 1 to 65535"],
      ["host:12a", "is not a port"],
      ["host:", "is not a port"],
      ["-host:1", "valid host name"],
      ["ho_st:1", "valid host name"],
      [":1", "valid host name"],
      ["999.1.1.1.1:1", "valid host name"]
    ]
    for (const [authority, reason] of cases) {
      const parsed = RpcAddress.parseHostPort(authority)
      assert.isTrue(Result.isFailure(parsed), authority)
      if (Result.isFailure(parsed)) assert.include(parsed.failure, reason, authority)
    }
    const address = RpcAddress.parse("rpc://host:99999/x")
    assert.isTrue(Result.isFailure(address) && address.failure.includes("rpc://host:99999/x"))
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
