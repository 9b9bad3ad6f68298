/**
 * The wire's own encodings: a large value written as a chunk of its own decodes like any other frame, the writer's
 * batching keeps order and bytes, and plain byte payloads cross without SchemaBinary yet never alias the sender's
 * buffer.
 */
import { assert, describe, it } from "@effect/vitest"
import { encode as msgpack } from "@msgpack/msgpack"
import { Result, Schema } from "effect"
import { coalesce } from "../../src/internal/outbox.js"
import * as Frame from "../../src/internal/frame.js"
import * as Wire from "../../src/internal/wire.js"

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => Buffer.concat(parts)

/** The chunks a frame is written as. */
const chunksOf = (frame: Wire.OutFrame): Array<Uint8Array> =>
  frame.tail === undefined ? [frame.bytes] : [frame.bytes, frame.tail]

const decodeStream = (bytes: Uint8Array) => {
  const messages: Array<Wire.Message | Wire.WireError> = []
  const error = new Frame.FrameDecoder(1 << 24).push(bytes, (body) => messages.push(Wire.decode(body)))
  assert.isUndefined(error)
  return messages
}

const Sizes = Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 3 * Wire.TAIL_BYTES }))).check(
  Schema.isMinLength(1),
  Schema.isMaxLength(8)
)

const bytesOf = (size: number, seed: number) => Uint8Array.from({ length: size }, (_, i) => (i * 31 + seed) & 0xff)

describe("wire", () => {
  it.prop("a value of any size, in one chunk or as a tail, decodes to the message that was framed", [Sizes], ([sizes]) => {
    const values = sizes.map(bytesOf)
    const frames = values.map((value, id) => Wire.reply(id, Wire.Outcome.Success, value))
    for (const [i, frame] of frames.entries()) {
      assert.strictEqual(frame.tail !== undefined, values[i]!.length >= Wire.TAIL_BYTES)
      assert.strictEqual(frame.bytes.length + (frame.tail?.length ?? 0), Frame.HEADER_BYTES + frame.size)
    }
    const messages = decodeStream(concat(frames.flatMap(chunksOf)))
    assert.deepStrictEqual(
      messages.map((m) => m._tag === "Reply" ? [m.id, m.outcome, [...(m.value as Uint8Array)]] : m),
      values.map((value, id) => [id, Wire.Outcome.Success, [...value]])
    )
  }, { arbitrary: { runs: 100 } })

  it("an ask whose payload is a tail keeps its fields and token", () => {
    const payload = bytesOf(Wire.TAIL_BYTES, 7)
    const frame = Wire.call(false, 42, "endpoint", "Gateway", "method", { value: 3 }, 1500, undefined, payload)
    assert.isDefined(frame.tail)
    const [message] = decodeStream(concat(chunksOf(frame)))
    assert.deepStrictEqual(message, {
      _tag: "Ask",
      id: 42,
      endpointId: "endpoint",
      gateway: "Gateway",
      method: "method",
      token: { value: 3 },
      timeout: 1500,
      trace: undefined,
      payload: Buffer.from(payload)
    })
  })

  it.prop("the writer's batches keep every byte in order; small chunks are joined and large ones kept", [Sizes], ([sizes]) => {
    const chunks = sizes.map(bytesOf)
    const batch = coalesce([...chunks])
    assert.deepStrictEqual([...concat(batch)], [...concat(chunks)])
    for (const chunk of chunks) {
      if (chunk.length >= Wire.TAIL_BYTES) assert.include(batch, chunk, "a large chunk is written as it is")
    }
    // No two neighbouring chunks that are both small are left unjoined.
    for (let i = 1; i < batch.length; i++) {
      assert.isFalse(batch[i - 1]!.length < Wire.TAIL_BYTES && batch[i]!.length < Wire.TAIL_BYTES)
    }
  }, { arbitrary: { runs: 200 } })

  describe("plain byte values", () => {
    it("are copied when encoded, so the sender may reuse its buffer at once", () => {
      const mine = bytesOf(Wire.TAIL_BYTES * 2, 1)
      const encoded = Result.getOrThrow(Wire.encodeValue(Schema.Uint8Array, mine))
      mine.fill(0)
      assert.deepStrictEqual([...(encoded as Uint8Array)], [...bytesOf(Wire.TAIL_BYTES * 2, 1)])
    })

    it("arrive as a view of a large frame, and as their own copy when small", () => {
      const frame = new Uint8Array(4 * Wire.TAIL_BYTES)
      const large = frame.subarray(0, 2 * Wire.TAIL_BYTES)
      const small = frame.subarray(0, 16)
      assert.strictEqual(Result.getOrThrow(Wire.decodeValue(Schema.Uint8Array, large)), large)
      const copied = Result.getOrThrow(Wire.decodeValue(Schema.Uint8Array, small)) as Uint8Array
      assert.notStrictEqual(copied.buffer, frame.buffer)
      assert.deepStrictEqual([...copied], [...small])
    })

    it("refuse what is not bytes, in either direction", () => {
      const encoded = Wire.encodeValue(Schema.Uint8Array, "not bytes")
      assert.isTrue(Result.isFailure(encoded) && encoded.failure.includes("Expected Uint8Array"))
      const decoded = Wire.decodeValue(Schema.Uint8Array, 12)
      assert.isTrue(Result.isFailure(decoded) && decoded.failure.includes("not a byte string"))
    })

    it("inside another Schema still go through SchemaBinary, which checks them", () => {
      const Limited = Schema.Uint8Array.check(Schema.isMaxLength(2))
      assert.isTrue(Result.isFailure(Wire.encodeValue(Limited, new Uint8Array(3))))
      const ok = Result.getOrThrow(Wire.encodeValue(Limited, new Uint8Array(2)))
      assert.isTrue(Result.isSuccess(Wire.decodeValue(Limited, ok)))
    })
  })
})

describe("the compatibility exchange's messages", () => {
  const body = (frame: Wire.OutFrame) => concat(chunksOf(frame)).subarray(Frame.HEADER_BYTES)

  it("a Connect without a snapshot is the six elements it always was: the fast path costs no byte more", () => {
    const frame = Wire.connect(7, "endpoint", "G", "0123456789abcdef")
    assert.deepStrictEqual([...body(frame)], [...msgpack([1, 7, "endpoint", "G", "0123456789abcdef", null])])
    assert.deepStrictEqual([...body(Wire.connected(7, null, ""))], [...msgpack([2, 7, null, ""])])
    assert.deepStrictEqual([...body(Wire.connected(7, null, "", []))], [...msgpack([2, 7, null, ""])])
  })

  it("Connect with a snapshot, Connected with the methods not served, and Compare decode to what was framed", () => {
    const [connect, connected, compare] = decodeStream(concat([
      ...chunksOf(Wire.connect(1, "e", "G", "fp", { value: "t" }, "{}")),
      ...chunksOf(Wire.connected(1, null, "", ["extra"])),
      ...chunksOf(Wire.compare(1, "{\"gateway\":\"G\"}"))
    ]))
    assert.deepStrictEqual(connect, {
      _tag: "Connect",
      id: 1,
      endpointId: "e",
      gateway: "G",
      fingerprint: "fp",
      token: { value: "t" },
      snapshot: "{}"
    })
    assert.deepStrictEqual(connected, { _tag: "Connected", id: 1, reason: null, detail: "", notServed: ["extra"] })
    assert.deepStrictEqual(compare, { _tag: "Compare", id: 1, snapshot: "{\"gateway\":\"G\"}" })
  })

  it("malformed ones are protocol errors", () => {
    for (
      const message of [
        [1, 1, "e", "G", "fp", null, 5],
        [1, 1, "e", "G", "fp", null, "{}", "more"],
        [2, 1, null, "", "extra"],
        [2, 1, null, "", [1]],
        [10, 1],
        [10, 1, {}],
        [10, -1, "{}"]
      ]
    ) {
      const decoded = Wire.decode(msgpack(message))
      assert.instanceOf(decoded, Wire.WireError, JSON.stringify(message))
    }
  })
})
