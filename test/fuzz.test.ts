/**
 * The fuzzer in the test suite: a bounded run against a live TCP service (test/fuzz/fuzzer.ts), properties of the
 * mutators over the frame decoder and `Wire`, and the reproduction of each library bug the fuzzer found
 * (test/fuzz/knownBugs.ts; all four are fixed, and `npm run fuzz` attacks with their inputs too).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Schema } from "effect"
import { spawnSync } from "node:child_process"
import * as Frame from "../src/internal/frame.js"
import * as Wire from "../src/internal/wire.js"
import { buildAttack, FuzzGateway, Sample, type Target, templateNames, templates, Token } from "./fuzz/catalogue.js"
import { formatReport, runFuzz } from "./fuzz/fuzzer.js"
import * as G from "./fuzz/generators.js"
import { deepToken, deepTypeCode, unreadReplies } from "./fuzz/knownBugs.js"

const Seed = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0x7fffffff }))
const messageTags = new Set(["Hello", "Connect", "Connected", "Ask", "Tell", "Reply", "Heartbeat", "Close", "Cancel"])

/** Feeds `bytes` to a frame decoder in chunks of `chunk` bytes and decodes every frame; never throws, or fails. */
const decodeAll = (bytes: Uint8Array, chunk: number, limit: number) => {
  const decoder = new Frame.FrameDecoder(limit)
  const decoded: Array<Wire.Message | Wire.WireError> = []
  for (let offset = 0; offset < bytes.length; offset += chunk) {
    const error = decoder.push(bytes.subarray(offset, offset + chunk), (body) => decoded.push(Wire.decode(body)))
    assert.isAtMost(decoder.buffered, limit)
    if (error !== undefined) {
      assert.instanceOf(error, Frame.FrameError)
      break
    }
  }
  for (const message of decoded) {
    if (!(message instanceof Wire.WireError)) assert.isTrue(messageTags.has(message._tag), message._tag)
  }
  return decoded
}

const target: Target = { clientAuthority: "127.0.0.1:1", frameLimit: 256 * 1024, connectTimeoutMs: 1000, avoidKnownBugs: true }

describe("fuzz", () => {
  it.live("300 attacks from a fixed seed while a well-behaved client calls: no violation", () =>
    Effect.gen(function*() {
      const report = yield* runFuzz({
        iterations: 300,
        seed: 20_251_121,
        concurrency: 24,
        avoidKnownBugs: true,
        heartbeatIntervalMs: 200,
        heartbeatPauseMs: 1000,
        connectTimeoutMs: 800,
        callsAfter: 50
      })
      assert.strictEqual(report.violationCount, 0, formatReport(report))
      assert.strictEqual(report.attacks, 300)
      assert.strictEqual(report.calls.after.ok, 100)
      assert.isAbove(report.calls.during.ok, 0)
      assert.strictEqual(report.connections.final, report.connections.baseline)
      assert.isAbove(report.expectations.met, 50)
    }), 60_000)

  describe("properties", () => {
    it.effect.prop(
      "a mutated valid frame, in any chunking, decodes or gives a typed FrameError / WireError, never a throw",
      { seed: Seed, template: Schema.Literals(templateNames), mutation: Schema.Literals(G.mutations), chunk: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 64 })) },
      ({ chunk, mutation, seed, template }) =>
        Effect.sync(() => {
          const rng = new G.Rng(seed)
          const frame = G.mutate(rng, templates[template](rng), mutation)
          decodeAll(G.concat([frame, G.frameBytes(Wire.heartbeat)]), chunk, 256 * 1024)
        })
    )

    it.effect.prop(
      "a message array with random MessagePack in any field (type code included) is a message or a WireError",
      { seed: Seed, arity: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 9 })) },
      ({ arity, seed }) =>
        Effect.sync(() => {
          const rng = new G.Rng(seed)
          const hostile = () => G.hostileValue(rng, rng.pick(G.hostileKinds))
          const fields = Array.from({ length: arity }, (_, i) =>
            i === 0 && rng.bool() ? rng.int(10) : rng.bool(0.2) ? hostile() : G.randomValue(rng))
          const decoded = Wire.decode(G.packArray(fields))
          if (!(decoded instanceof Wire.WireError)) assert.isTrue(messageTags.has(decoded._tag))
        })
    )

    it.effect.prop(
      "a mutated encoding of a Sample either fails to decode with a message or decodes to a value the Schema accepts",
      { sample: Sample, seed: Seed, mutation: Schema.Literals(["flip-bits", "flip-bytes", "splice", "truncate-body"]) },
      ({ mutation, sample, seed }) =>
        Effect.sync(() => {
          const encoded = Wire.encodeValue(Sample, sample)
          if (Result.isFailure(encoded)) return
          const rng = new G.Rng(seed)
          const damaged = G.bodyOf(G.mutate(rng, G.framed(encoded.success as Uint8Array), mutation))
          const decoded = Wire.decodeValue(Sample, damaged)
          if (Result.isSuccess(decoded)) assert.isTrue(Schema.is(Sample)(decoded.success))
          else assert.isString(decoded.failure)
        })
    )

    it.effect.prop(
      "random bytes under a checked Schema (FuzzGateway.double's Int from 0 to 1000) never decode to a refused value",
      { bytes: Schema.Uint8Array },
      ({ bytes }) =>
        Effect.sync(() => {
          const decoded = Wire.decodeValue(FuzzGateway.methods.double.payload, bytes)
          if (Result.isSuccess(decoded)) {
            const n = decoded.success as number
            assert.isTrue(Number.isInteger(n) && n >= 0 && n <= 1000, String(n))
          }
        })
    )

    it.effect.prop(
      "a fencing token from the wire never decodes to an invalid Token",
      { seed: Seed },
      ({ seed }) =>
        Effect.sync(() => {
          const raw = G.unpack(G.pack(G.randomValue(new G.Rng(seed), 3)))
          const decoded = Schema.decodeUnknownResult(Token)(raw)
          if (Result.isSuccess(decoded)) assert.isTrue(Schema.is(Token)(decoded.success))
        })
    )

    it.effect.prop(
      "the same seed and attack number build the same attack",
      { seed: Seed, index: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1_000_000 })) },
      ({ index, seed }) =>
        Effect.sync(() => {
          const a = buildAttack(seed, index, target)
          const b = buildAttack(seed, index, target)
          assert.deepStrictEqual(a, b)
          assert.isFalse(a.knownBug !== undefined, "avoidKnownBugs leaves known bugs out")
        })
    )
  })

  describe("library bugs the fuzzer found, fixed: their reproductions", () => {
    it("inherited-method-name: an Ask for FuzzGateway.constructor is answered with a typed error, the process lives", () => {
      // In a child process: the uncaught exception would otherwise take this test worker down with it.
      const node = ["--conditions=effect-actor-rpc-source", "--import", "tsx"]
      const run = spawnSync(process.execPath, [...node, "test/fuzz/repro.ts", "inherited-method-name"], {
        cwd: new URL("..", import.meta.url).pathname,
        encoding: "utf8",
        timeout: 25_000
      })
      assert.strictEqual(run.status, 0, `${run.stdout}\n${run.stderr.split("\n").slice(0, 8).join("\n")}`)
    }, 30_000)

    it("deep-type-code: a body whose type code is nested 20 000 deep is a WireError, not a RangeError", async () => {
      assert.isUndefined(await Effect.runPromise(deepTypeCode))
    })

    it("deep-token: a fenced ask with a token nested 20 000 deep is answered with FencingTokenError", async () => {
      assert.isUndefined(await Effect.runPromise(deepToken))
    }, 20_000)

    it("unread-replies: a peer that sends asks and never reads cannot make the server buffer every reply", async () => {
      assert.isUndefined(await Effect.runPromise(unreadReplies))
    }, 30_000)
  })
})
