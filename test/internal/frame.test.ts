import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Frame from "../../src/internal/frame.js"

const decodeAll = (decoder: Frame.FrameDecoder, chunks: ReadonlyArray<Uint8Array>) => {
  const frames: Array<Array<number>> = []
  for (const chunk of chunks) {
    const error = decoder.push(chunk, (frame) => frames.push([...frame]))
    if (error !== undefined) return { frames, error }
  }
  return { frames, error: undefined }
}

/** Cuts `bytes` at the given fractions of its length. */
const cut = (bytes: Uint8Array, fractions: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(fractions.map((f) => Math.floor(f * bytes.length)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let start = 0
  for (const point of [...points, bytes.length]) {
    if (point > start) chunks.push(bytes.subarray(start, point))
    start = Math.max(start, point)
  }
  return chunks
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

const Bodies = Schema.Array(Schema.Uint8Array.check(Schema.isMinLength(1), Schema.isMaxLength(300))).check(
  Schema.isMaxLength(20)
)
const Cuts = Schema.Array(Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 }))).check(
  Schema.isMaxLength(40)
)

describe("frame decoder", () => {
  it.prop("round-trips any frames under any chunking", [Bodies, Cuts], ([bodies, fractions]) => {
    const stream = concat(bodies.map(Frame.encode))
    const { error, frames } = decodeAll(new Frame.FrameDecoder(1024), cut(stream, fractions))
    assert.isUndefined(error)
    assert.deepStrictEqual(frames, bodies.map((body) => [...body]))
  }, { arbitrary: { runs: 300 } })

  it.prop("arbitrary bytes end in frames, a typed error or a wait for more; never a throw or unbounded buffering", [
    Schema.Uint8Array.check(Schema.isMaxLength(2000)),
    Cuts
  ], ([bytes, fractions]) => {
    const decoder = new Frame.FrameDecoder(64)
    const { error } = decodeAll(decoder, cut(bytes, fractions))
    if (error !== undefined) assert.instanceOf(error, Frame.FrameError)
    assert.isAtMost(decoder.buffered, 64)
  }, { arbitrary: { runs: 300 } })

  it("refuses a length prefix over the limit before buffering the body", () => {
    const decoder = new Frame.FrameDecoder(10)
    const header = new Uint8Array(4)
    Frame.writeHeader(header, 0xffffffff)
    const { error } = decodeAll(decoder, [header.subarray(0, 2), header.subarray(2)])
    assert.include(error?.detail, "4294967295 bytes, over the maximum frame size of 10 bytes")
    assert.strictEqual(decoder.buffered, 0)
  })

  it("refuses an empty frame", () => {
    const { error } = decodeAll(new Frame.FrameDecoder(10), [new Uint8Array(4)])
    assert.include(error?.detail, "empty body")
  })

  it("waits for a truncated frame's rest", () => {
    const frame = Frame.encode(new Uint8Array([1, 2, 3, 4, 5]))
    const decoder = new Frame.FrameDecoder(10)
    const first = decodeAll(decoder, [frame.subarray(0, 6)])
    assert.deepStrictEqual(first, { frames: [], error: undefined })
    assert.strictEqual(decoder.buffered, 2)
    assert.deepStrictEqual(decodeAll(decoder, [frame.subarray(6)]).frames, [[1, 2, 3, 4, 5]])
  })
})
