import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as Ports from "../../src/internal/ports.js"

// After Flink's ActorSystemBootstrapToolsTest / NetUtilsTest port-range cases.
describe("port ranges", () => {
  it("parses single ports, ranges, lists and 0", () => {
    assert.deepStrictEqual(Ports.parse("0"), Result.succeed([0]))
    assert.deepStrictEqual(Ports.parse("6123"), Result.succeed([6123]))
    assert.deepStrictEqual(Ports.parse("50100-50103"), Result.succeed([50100, 50101, 50102, 50103]))
    assert.deepStrictEqual(Ports.parse("1-2, 5,7-7"), Result.succeed([1, 2, 5, 7]))
  })

  it("rejects malformed ranges with a reason", () => {
    for (const [spec, reason] of [
      ["", "neither a port nor a range"],
      ["abc", "neither a port nor a range"],
      ["10-", "neither a port nor a range"],
      ["20-10", "ends before it starts"],
      ["65536", "beyond 65535"],
      ["0,5", "cannot be combined"],
      ["0-5", "cannot be combined"]
    ] as const) {
      const parsed = Ports.parse(spec)
      assert.isTrue(Result.isFailure(parsed), spec)
      if (Result.isFailure(parsed)) assert.include(parsed.failure, reason, spec)
    }
  })

  const bindWith = (taken: ReadonlySet<number>, broken?: number) => {
    const tried: Array<number> = []
    const bind = (port: number): Effect.Effect<number, Ports.Attempt<string>> => {
      tried.push(port)
      if (port === broken) return Effect.fail({ _tag: "Failed", error: `cannot bind ${port}` })
      return taken.has(port) ? Effect.fail({ _tag: "Taken" }) : Effect.succeed(port)
    }
    return { tried, bind }
  }

  it.effect("tries ports in order and takes the first free one", () =>
    Effect.gen(function*() {
      const { bind, tried } = bindWith(new Set([50100, 50101]))
      const port = yield* Ports.bindFirst([50100, 50101, 50102, 50103], bind, () => "exhausted")
      assert.strictEqual(port, 50102)
      assert.deepStrictEqual(tried, [50100, 50101, 50102])
    }))

  it.effect("fails naming the exhaustion when every port is taken", () =>
    Effect.gen(function*() {
      const { bind } = bindWith(new Set([1, 2]))
      const error = yield* Effect.flip(Ports.bindFirst([1, 2], bind, () => "exhausted"))
      assert.strictEqual(error, "exhausted")
    }))

  it.effect("stops at the first error that is not a taken port", () =>
    Effect.gen(function*() {
      const { bind, tried } = bindWith(new Set([1]), 2)
      const error = yield* Effect.flip(Ports.bindFirst([1, 2, 3], bind, () => "exhausted"))
      assert.strictEqual(error, "cannot bind 2")
      assert.deepStrictEqual(tried, [1, 2])
    }))
})
