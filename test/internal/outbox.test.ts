/**
 * The outbox on its own, over a recording stream: frames go out in the order they were pushed, one write per turn,
 * and a turn that piles up small frames writes each 16 KiB of them at once (so the peer starts on them early).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Schema } from "effect"
import type { Duplex } from "node:stream"
import { Instruments } from "../../src/internal/metrics.js"
import { EARLY_WRITE_BYTES, Outbox } from "../../src/internal/outbox.js"
import type * as Wire from "../../src/internal/wire.js"

/** A stream that records what is written and how many writes it took; `full` makes writes report backpressure. */
class Recorder {
  readonly chunks: Array<Uint8Array> = []
  writes = 0
  writable = true
  writableLength = 0
  full = false
  private corked = 0
  private onDrain: (() => void) | undefined = undefined

  cork(): void {
    this.corked++
  }
  uncork(): void {
    if (--this.corked === 0) this.writes++
  }
  write(chunk: Uint8Array): boolean {
    this.chunks.push(chunk)
    if (this.corked === 0) this.writes++
    return !this.full
  }
  once(_event: "drain", listener: () => void): this {
    this.onDrain = listener
    return this
  }
  off(): this {
    return this
  }
  drain(): void {
    this.full = false
    const listener = this.onDrain
    this.onDrain = undefined
    listener?.()
  }
  bytes(): Array<number> {
    return this.chunks.flatMap((chunk) => [...chunk])
  }
}

const instruments = new Instruments(Context.empty() as Context.Context<never>, false)

/** A frame of `size` bytes, each byte `fill`; with a tail of `tail` bytes of `fill + 1`. */
const frame = (size: number, fill: number, tail = 0): Wire.OutFrame => ({
  bytes: Buffer.alloc(size, fill),
  tail: tail === 0 ? undefined : new Uint8Array(tail).fill(fill + 1),
  size: size + tail
})

const expected = (frames: ReadonlyArray<Wire.OutFrame>): Array<number> =>
  frames.flatMap((f) => [...f.bytes, ...(f.tail ?? [])])

const setup = () => {
  const stream = new Recorder()
  let writable = 0
  const outbox = new Outbox(instruments, () => writable++)
  outbox.attach(stream as unknown as Duplex)
  return { stream, outbox, writable: () => writable }
}

/** Lets the turn end: the outbox's end-of-turn flush is a microtask. */
const endOfTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

describe("outbox", () => {
  it.effect("frames of one turn go out in one write at its end, in order", () =>
    Effect.gen(function*() {
      const { outbox, stream, writable } = setup()
      const frames = [frame(10, 1), frame(200, 2), frame(30, 3)]
      for (const f of frames) outbox.push(f)
      assert.strictEqual(stream.writes, 0, "nothing is written during the turn")
      yield* endOfTurn
      assert.strictEqual(stream.writes, 1)
      assert.deepStrictEqual(stream.bytes(), expected(frames))
      assert.strictEqual(writable(), 1, "the owner hears that the socket has room")
    }))

  it.effect("a turn that piles up small frames writes each 16 KiB of them at once, the rest at its end", () =>
    Effect.gen(function*() {
      const { outbox, stream } = setup()
      const frames = Array.from({ length: 100 }, (_, i) => frame(1000, i % 200))
      let writtenDuringTurn = 0
      for (const f of frames) {
        outbox.push(f)
        writtenDuringTurn = stream.writes
      }
      // A write each time the frames since the last one reach 16 KiB: every 17 frames of 1,000 bytes.
      const early = Math.floor(100 / Math.ceil(EARLY_WRITE_BYTES / 1000))
      assert.strictEqual(writtenDuringTurn, early, "written while the turn was still producing")
      assert.isAbove(stream.chunks.length, 0)
      yield* endOfTurn
      assert.strictEqual(stream.writes, early + 1)
      assert.deepStrictEqual(stream.bytes(), expected(frames))
    }))

  it.effect("large values (a frame's tail) do not count toward an early write: they are written as they are", () =>
    Effect.gen(function*() {
      const { outbox, stream } = setup()
      const frames = Array.from({ length: 8 }, (_, i) => frame(20, i, 64 * 1024))
      for (const f of frames) outbox.push(f)
      assert.strictEqual(stream.writes, 0)
      yield* endOfTurn
      assert.strictEqual(stream.writes, 1)
      assert.deepStrictEqual(stream.bytes(), expected(frames))
    }))

  it.effect("while the socket is full nothing is written early; its drain writes everything, in order", () =>
    Effect.gen(function*() {
      const { outbox, stream, writable } = setup()
      stream.full = true
      const first = frame(100, 7)
      outbox.push(first)
      yield* endOfTurn
      assert.strictEqual(stream.writes, 1, "the write that found the socket full")
      assert.strictEqual(writable(), 0, "no room: the owner is not told to catch up")
      const rest = Array.from({ length: 40 }, (_, i) => frame(1000, i))
      for (const f of rest) outbox.push(f)
      yield* endOfTurn
      assert.strictEqual(stream.writes, 1, "nothing more until the drain")
      stream.drain()
      assert.strictEqual(stream.writes, 2)
      assert.deepStrictEqual(stream.bytes(), expected([first, ...rest]))
      assert.strictEqual(writable(), 1)
    }))

  it.effect.prop(
    "any frames over any turns arrive whole and in order, with at most one write per turn plus one per 16 KiB",
    [
      Schema.Array(
        Schema.Struct({
          size: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 6000 })),
          tail: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20000 })),
          endsTurn: Schema.Boolean
        })
      ).check(Schema.isMaxLength(60))
    ],
    ([specs]) =>
      Effect.gen(function*() {
        const { outbox, stream } = setup()
        const frames: Array<Wire.OutFrame> = []
        let turns = 1
        let small = 0
        for (const [i, spec] of specs.entries()) {
          // Tails below the wire's tail size would be copied into the frame: model only those it keeps apart.
          const f = frame(spec.size, i % 250, spec.tail >= 8192 ? spec.tail : 0)
          frames.push(f)
          if (f.tail === undefined) small += spec.size
          outbox.push(f)
          if (spec.endsTurn) {
            yield* endOfTurn
            turns++
          }
        }
        yield* endOfTurn
        assert.deepStrictEqual(stream.bytes(), expected(frames))
        assert.isAtMost(stream.writes, turns + Math.floor(small / EARLY_WRITE_BYTES))
      }),
    { arbitrary: { runs: 100 } }
  )
})
