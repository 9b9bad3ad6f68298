/**
 * The judgement of a connect between two versions of a gateway (src/internal/exchange.ts): what each policy accepts,
 * the methods a caller has and its endpoint lacks, the rename rule, hostile snapshots, and the bounded cache.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { RpcCompatibility, RpcGateway } from "effect-actor-rpc"
import * as Exchange from "../../src/internal/exchange.js"

const V1 = RpcGateway.make("G", {
  get: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String }), success: Schema.String })
})
/** v1 plus an optional payload field and a method: compatible both ways. */
const V2 = RpcGateway.make("G", {
  get: RpcGateway.ask({
    payload: Schema.Struct({ a: Schema.String, b: Schema.optionalKey(Schema.Number) }),
    success: Schema.String
  }),
  extra: RpcGateway.ask({ success: Schema.Number })
})
/** v1 plus a required payload field: old callers break new endpoints; new callers are fine with old endpoints. */
const Required = RpcGateway.make("G", {
  get: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String, b: Schema.Number }), success: Schema.String })
})
/** v1's method renamed. */
const Renamed = RpcGateway.make("G", {
  fetch: RpcGateway.ask({ payload: Schema.Struct({ a: Schema.String }), success: Schema.String })
})

const snap = RpcCompatibility.snapshot
const judge = (policy: Exchange.Policy, caller: RpcGateway.Any, endpoint: RpcGateway.Any) =>
  Exchange.judge(policy, snap(caller), snap(endpoint), "this service")

describe("the judgement of a connect", () => {
  it("backward accepts a caller whose calls all decode, in either version order", () => {
    assert.isTrue(judge("backward", V1, V2).accept)
    const newer = judge("backward", V2, V1)
    assert.isTrue(newer.accept)
    // The newer caller's extra method is the one thing that does not work on this connection.
    assert.deepStrictEqual(newer.notServed, ["extra"])
    assert.match(newer.message, /warning G\.extra \[MethodAdded, new caller → old endpoint\]: the caller's version has extra/)
  })

  it("backward refuses exactly the connections whose calls would break, naming the path", () => {
    const refused = judge("backward", V1, Required)
    assert.isFalse(refused.accept)
    assert.match(refused.message, /this service refuses 1 breaking change under its "backward" policy/)
    assert.match(refused.message, /error G\.get\.payload\.b \[RequiredFieldAdded, old caller → new endpoint\]/)
    // The other way, the newer caller writes b and the older endpoint skips it.
    assert.isTrue(judge("backward", Required, V1).accept)
  })

  it("both also requires the reverse calls to work; exact refuses any difference and still lists the errors", () => {
    assert.isFalse(judge("both", Required, V1).accept)
    assert.isTrue(judge("both", V1, V2).accept)
    assert.isTrue(judge("both", V2, V1).accept, "a method only one side has is not an error either way")
    const exact = judge("exact", V1, Required)
    assert.isFalse(exact.accept)
    assert.match(exact.message, /accepts only identical Schemas \(RpcConfig\.gatewayCompatibility "exact"\)/)
    assert.match(exact.message, /G\.get\.payload\.b \[RequiredFieldAdded/)
    assert.isFalse(judge("exact", V1, V2).accept)
  })

  it("a method each side lacks is a removal or a rename whichever version is newer: refused both ways", () => {
    for (const [caller, endpoint] of [[V1, Renamed], [Renamed, V1]] as const) {
      const judgement = judge("backward", caller, endpoint)
      assert.isFalse(judgement.accept)
      const removed = caller === V1 ? "get" : "fetch"
      assert.match(judgement.message, new RegExp(`error G\\.${removed} \\[MethodRemoved`))
      assert.match(judgement.message, /each version has a method the other lacks .*: a method was removed or renamed/)
    }
  })

  it("a representation that only refers to itself is judged without hanging or throwing", () => {
    const base = snap(V1)
    const get = base.methods.get!
    const loop = {
      representation: { _tag: "Reference", $ref: "A" },
      references: { A: { _tag: "Reference", $ref: "A" } }
    }
    const hostile = { ...base, methods: { get: { ...get, payload: { ...get.payload, representation: loop } } } }
    // It reads as a snapshot (every document in it parses)...
    assert.isTrue(Result.isSuccess(Exchange.readPeerSnapshot(JSON.stringify(hostile), "G", undefined, "the caller's")))
    // ...and the checker walks it, answering.
    const judgement = Exchange.judge("backward", hostile as RpcCompatibility.GatewaySnapshot, snap(V2), "this service")
    assert.isBoolean(judgement.accept)
  })
})

describe("a peer's snapshot", () => {
  it("is read with the same checks as a file, and must be of the gateway and fingerprint the connect names", () => {
    const text = JSON.stringify(Schema.encodeSync(RpcCompatibility.GatewaySnapshot)(snap(V2)))
    assert.isTrue(Result.isSuccess(Exchange.readPeerSnapshot(text, "G", V2.fingerprint, "the caller's")))
    const notJson = Exchange.readPeerSnapshot("{ nope", "G", undefined, "the caller's")
    assert.isTrue(Result.isFailure(notJson) && /the caller's snapshot of G cannot be read \(InvalidJson/.test(notJson.failure))
    const other = Exchange.readPeerSnapshot(text, "H", undefined, "the endpoint's")
    assert.isTrue(Result.isFailure(other) && /is of gateway G, not H/.test(other.failure))
    const lying = Exchange.readPeerSnapshot(text, "G", V1.fingerprint, "the caller's")
    assert.isTrue(Result.isFailure(lying) && /not the .* it connected with/.test(lying.failure))
    const empty = JSON.stringify({ format: "effect-actor-rpc/gateway-snapshot", version: 1 })
    const wrongShape = Exchange.readPeerSnapshot(empty, "G", undefined, "x")
    assert.isTrue(Result.isFailure(wrongShape) && /InvalidSnapshot/.test(wrongShape.failure))
  })
})

describe("Verdicts", () => {
  it("caches by peer incarnation, fingerprint pair and judging side, and drops the least recently used", () => {
    const verdicts = new Exchange.Verdicts("backward", 2)
    const first = verdicts.judge("peer-a", snap(V1), snap(Required), "this service")
    assert.strictEqual(verdicts.judge("peer-a", snap(V1), snap(Required), "this service"), first, "a hit")
    assert.strictEqual(verdicts.cached("peer-b", V1.fingerprint, Required.fingerprint, "this service"), undefined)
    assert.strictEqual(verdicts.cached("peer-a", V1.fingerprint, Required.fingerprint, "the endpoint's service"), undefined)
    verdicts.judge("peer-b", snap(V1), snap(V2), "this service")
    // Touch peer-a's verdict, so that peer-b's is the least recently used when a third comes.
    verdicts.cached("peer-a", V1.fingerprint, Required.fingerprint, "this service")
    verdicts.judge("peer-c", snap(V2), snap(V1), "this service")
    assert.strictEqual(verdicts.size, 2)
    assert.isDefined(verdicts.cached("peer-a", V1.fingerprint, Required.fingerprint, "this service"))
    assert.isUndefined(verdicts.cached("peer-b", V1.fingerprint, V2.fingerprint, "this service"), "the oldest went")
    assert.strictEqual(Exchange.CACHE_CAPACITY, 256)
  })

  it("never grows past its bound, whatever fingerprints a peer makes up", () => {
    const verdicts = new Exchange.Verdicts("backward", 16)
    for (let i = 0; i < 100; i++) {
      verdicts.judge("peer", { ...snap(V1), fingerprint: `made-up-${i}` }, snap(V2), "the endpoint's service")
    }
    assert.strictEqual(verdicts.size, 16)
  })
})
