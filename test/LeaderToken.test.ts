/**
 * LeaderToken and LeaderInformation: ordered by term, equivalent by term and session, and usable as a fenced
 * endpoint's token Schema (they round-trip through SchemaBinary, the wire codec, and through JSON, the etcd value).
 */
import { assert, describe, it } from "@effect/vitest"
import { Array as Arr, Effect, Order, Result, Schema } from "effect"
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import { LeaderInformation, LeaderToken } from "effect-actor-rpc"

const Binary = SchemaBinary.toCodec(LeaderToken.LeaderToken)
const InformationBinary = SchemaBinary.toCodec(LeaderInformation.LeaderInformation)

describe("LeaderToken", () => {
  it.effect.prop("round-trips through SchemaBinary", [LeaderToken.LeaderToken], ([token]) =>
    Effect.gen(function*() {
      const bytes = yield* Schema.encodeEffect(Binary)(token)
      const back = yield* Schema.decodeEffect(Binary)(bytes)
      assert.isTrue(LeaderToken.isLeaderToken(back))
      assert.isTrue(LeaderToken.Equivalence(back, token))
      assert.strictEqual(back.term, token.term)
      assert.strictEqual(back.session, token.session)
    }))

  it.effect.prop("LeaderInformation round-trips through SchemaBinary", [LeaderInformation.LeaderInformation], ([info]) =>
    Effect.gen(function*() {
      const back = yield* Schema.decodeEffect(InformationBinary)(yield* Schema.encodeEffect(InformationBinary)(info))
      assert.isTrue(LeaderInformation.Equivalence(back, info))
    }))

  it.effect.prop("Order sorts by term and agrees with Equivalence", [Schema.Array(LeaderToken.LeaderToken)], ([tokens]) =>
    Effect.sync(() => {
      const sorted = Arr.sort(tokens, LeaderToken.Order)
      for (let i = 1; i < sorted.length; i++) {
        assert.isTrue(sorted[i - 1]!.term <= sorted[i]!.term)
        const compared = LeaderToken.Order(sorted[i - 1]!, sorted[i]!)
        assert.strictEqual(compared === 0, LeaderToken.Equivalence(sorted[i - 1]!, sorted[i]!))
      }
    }))

  it("a newer term is greater whatever the sessions", () => {
    const older = LeaderToken.make(7, "zzz")
    const newer = LeaderToken.make(8, "aaa")
    assert.strictEqual(LeaderToken.Order(older, newer), -1)
    assert.isTrue(Order.isGreaterThan(LeaderToken.Order)(newer, older))
    assert.isTrue(LeaderToken.isNewerThan(newer, older))
    assert.isFalse(LeaderToken.isNewerThan(older, newer))
    assert.isFalse(LeaderToken.Equivalence(LeaderToken.make(8, "a"), LeaderToken.make(8, "b")))
    assert.strictEqual(String(newer), "term 8 (session aaa)")
  })

  it("rejects a term that is not a positive safe integer, and an empty session", () => {
    const decode = Schema.decodeUnknownResult(LeaderToken.LeaderToken)
    for (const term of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2, Number.NaN]) {
      assert.isTrue(Result.isFailure(decode({ term, session: "s" })), `term ${term}`)
    }
    assert.isTrue(Result.isFailure(decode({ term: 1, session: "" })))
    assert.isTrue(Result.isSuccess(decode({ term: Number.MAX_SAFE_INTEGER, session: "s" })))
    assert.throws(() => LeaderToken.make(0, "s"))
  })

  it("LeaderInformation crosses as JSON (the etcd driver's value) and rejects an empty address", () => {
    const Json = Schema.fromJsonString(LeaderInformation.LeaderInformation)
    const info = LeaderInformation.make("rpc://127.0.0.1:6123/rm", LeaderToken.make(42, "s-1"))
    const text = Schema.encodeSync(Json)(info)
    assert.deepStrictEqual(JSON.parse(text), { address: "rpc://127.0.0.1:6123/rm", token: { term: 42, session: "s-1" } })
    assert.isTrue(LeaderInformation.Equivalence(Schema.decodeSync(Json)(text), info))
    assert.isTrue(Result.isFailure(Schema.decodeUnknownResult(Json)(`{"address":"","token":{"term":1,"session":"s"}}`)))
  })
})
