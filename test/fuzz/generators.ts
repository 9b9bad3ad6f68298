/**
 * The pure half of the fuzzer: a seeded random generator, random MessagePack values, and the mutators that turn a
 * valid frame into a hostile one. Nothing here touches a socket, so the property tests (test/fuzz.test.ts) drive
 * the same mutators straight into the frame decoder and `Wire.decode`.
 *
 * Valid frames always come from the `Wire` builders. Where a mutator needs the fields of a message (to drop one,
 * to change its type), it decodes what the builder wrote and re-encodes the changed array, so no envelope layout is
 * written out by hand here and a new protocol version only changes the builders' call sites.
 */
import { Decoder, Encoder, ExtData } from "@msgpack/msgpack"
import * as Frame from "../../src/internal/frame.js"
import type * as Wire from "../../src/internal/wire.js"

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------------------------

/** splitmix32: spreads a 32-bit seed over the generator's state. */
const splitmix32 = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/**
 * A small seeded generator (sfc32). `new Rng(seed, stream)` gives an independent sequence per stream, so attack
 * number `i` of a run is the same whatever the concurrency and whichever attacks ran before it.
 */
export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number, stream = 0) {
    const mix = splitmix32((seed >>> 0) ^ Math.imul(stream >>> 0, 0x9e3779b1))
    this.a = mix()
    this.b = mix()
    this.c = mix()
    this.d = mix()
    for (let i = 0; i < 12; i++) this.u32()
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n)
  }

  /** A uniform integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.int(max - min + 1)
  }

  bool(p = 0.5): boolean {
    return this.float() < p
  }

  pick<A>(items: ReadonlyArray<A>): A {
    return items[this.int(items.length)]!
  }

  /** One of `items`, each with its weight. */
  weighted<A>(items: ReadonlyArray<readonly [A, number]>): A {
    let total = 0
    for (const [, weight] of items) total += weight
    let roll = this.float() * total
    for (const [item, weight] of items) {
      roll -= weight
      if (roll < 0) return item
    }
    return items[items.length - 1]![0]
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff
    return out
  }

  /** A size skewed towards small values: mostly under 16, sometimes up to `max`. */
  size(max: number): number {
    const r = this.float()
    if (r < 0.6) return this.int(Math.min(16, max + 1))
    if (r < 0.9) return this.int(Math.min(256, max + 1))
    return this.int(max + 1)
  }

  /** A string of printable ASCII, other BMP characters and astral characters (no lone surrogates). */
  text(maxLength: number): string {
    const length = this.size(maxLength)
    let out = ""
    for (let i = 0; i < length; i++) {
      const r = this.float()
      if (r < 0.7) out += String.fromCharCode(0x20 + this.int(0x5f))
      else if (r < 0.9) out += String.fromCharCode(0xa0 + this.int(0xd7ff - 0xa0))
      else out += String.fromCodePoint(0x10000 + this.int(0xfffff))
    }
    return out
  }
}

/** A fresh random 32-bit seed, for runs that were not given one. */
export const randomSeed = (): number => Math.floor(Math.random() * 4294967296) >>> 0

// ---------------------------------------------------------------------------------------------------------------
// MessagePack
// ---------------------------------------------------------------------------------------------------------------

const encoder = new Encoder()
const decoder = new Decoder()

/** Bytes to splice into an encoded array as they are (a value the encoder will not write). */
export class Raw {
  constructor(readonly bytes: Uint8Array) {}
}

export const pack = (value: unknown): Uint8Array => encoder.encode(value)

export const unpack = (bytes: Uint8Array): unknown => decoder.decode(bytes)

const arrayHeader = (length: number): Uint8Array =>
  length < 16
    ? Uint8Array.of(0x90 | length)
    : length < 0x10000
    ? Uint8Array.of(0xdc, length >>> 8, length & 0xff)
    : Uint8Array.of(0xdd, length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff)

/** A MessagePack array of `elements`, where a `Raw` element is spliced in as its bytes. */
export const packArray = (elements: ReadonlyArray<unknown>): Uint8Array =>
  concat([arrayHeader(elements.length), ...elements.map((e) => e instanceof Raw ? e.bytes : pack(e))])

export const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  let length = 0
  for (const chunk of chunks) length += chunk.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

/** A copy of a built frame as one buffer: builders share some frames (the heartbeat), which must not be mutated. */
export const frameBytes = (frame: Wire.OutFrame): Uint8Array =>
  frame.tail === undefined ? Uint8Array.from(frame.bytes) : concat([frame.bytes, frame.tail])

/** The body of a frame (without its length prefix). */
export const bodyOf = (frame: Uint8Array): Uint8Array => frame.subarray(Frame.HEADER_BYTES)

/** A frame around `body`, with a correct length prefix. */
export const framed = (body: Uint8Array): Uint8Array => Frame.encode(body)

/** The fields of a built message, as MessagePack decodes them (its payload or value as a Uint8Array). */
export const fieldsOf = (frame: Wire.OutFrame): Array<unknown> => unpack(bodyOf(frameBytes(frame))) as Array<unknown>

/** A frame of a message array, re-encoded after a change to its fields. */
export const reframe = (fields: ReadonlyArray<unknown>): Uint8Array => framed(packArray(fields))

/** A length prefix claiming `length` bytes. */
export const lengthPrefix = (length: number): Uint8Array => {
  const out = new Uint8Array(Frame.HEADER_BYTES)
  Frame.writeHeader(out, length)
  return out
}

/** A random MessagePack value of every kind the format has, nested up to `depth`. */
export const randomValue = (rng: Rng, depth = 3): unknown => {
  const kinds = depth > 0 ? 13 : 11
  switch (rng.int(kinds)) {
    case 0:
      return null
    case 1:
      return rng.bool()
    case 2:
      return rng.between(-32, 127)
    case 3:
      return rng.pick([0x7fffffff, 0x80000000, 0xffffffff, 2 ** 53 - 1, -(2 ** 31), -(2 ** 53) + 1, 2 ** 40])
    case 4:
      return (rng.float() - 0.5) * 10 ** rng.int(30)
    case 5:
      return rng.pick([NaN, Infinity, -Infinity, -0, 5e-324])
    case 6:
      return rng.text(64)
    case 7:
      return rng.bytes(rng.size(64))
    case 8:
      return new ExtData(rng.between(0, 127), rng.bytes(rng.size(16)))
    case 9:
      return new Date(rng.between(-1e12, 1e13))
    case 10:
      return rng.pick(["", "__proto__x", "constructor", "prototype", "toString", "\u0000", "fuzz", "FuzzGateway"])
    case 11: {
      const length = rng.size(8)
      return Array.from({ length }, () => randomValue(rng, depth - 1))
    }
    default: {
      const out: Record<string, unknown> = {}
      const length = rng.size(6)
      for (let i = 0; i < length; i++) out[rng.text(8)] = randomValue(rng, depth - 1)
      return out
    }
  }
}

/** The kinds of raw MessagePack that `hostileValue` writes. */
export const hostileKinds = [
  "huge-array-header",
  "huge-map-header",
  "huge-string-header",
  "deep-array",
  "deep-map",
  "proto-key",
  "non-scalar-key",
  "extension",
  "big-array"
] as const
export type HostileKind = typeof hostileKinds[number]

/** Raw MessagePack that the encoder would never write: what a hostile peer can put where a value goes. */
export const hostileValue = (rng: Rng, kind: HostileKind = rng.pick(hostileKinds)): Raw => {
  switch (kind) {
    case "huge-array-header": // 2^32 - 1 elements claimed, none behind the header
      return new Raw(Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff))
    case "huge-map-header":
      return new Raw(Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff))
    case "huge-string-header": // a str or bin claiming 4 GiB
      return new Raw(Uint8Array.of(rng.pick([0xdb, 0xc6]), 0xff, 0xff, 0xff, 0xff, 1, 2, 3))
    case "deep-array": // [[[...nil...]]]
      return new Raw(concat([new Uint8Array(rng.between(1000, 60_000)).fill(0x91), Uint8Array.of(0xc0)]))
    case "deep-map": { // {"a": {"a": ...nil...}}
      const depth = rng.between(1000, 30_000)
      return new Raw(concat([new Uint8Array(depth * 3).map((_, i) => [0x81, 0xa1, 0x61][i % 3]!), Uint8Array.of(0xc0)]))
    }
    case "proto-key":
      return new Raw(concat([Uint8Array.of(0x81, 0xa9), new TextEncoder().encode("__proto__"), pack(randomValue(rng, 1))]))
    case "non-scalar-key": // a map whose key is an array
      return new Raw(Uint8Array.of(0x81, 0x91, 0x01, 0x02))
    case "extension": // an extension type, or a timestamp of a size the format does not have
      return rng.bool()
        ? new Raw(concat([Uint8Array.of(0xc7, 3, 0xff), rng.bytes(3)]))
        : new Raw(concat([Uint8Array.of(0xd4, rng.between(0, 255)), rng.bytes(1)]))
    case "big-array":
      return new Raw(pack(Array.from({ length: rng.between(1000, 20_000) }, (_, i) => i)))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Mutators
// ---------------------------------------------------------------------------------------------------------------

/** How a valid frame is damaged. */
export const mutations = [
  "flip-bits",
  "flip-bytes",
  "flip-prefix",
  "splice",
  "truncate-body",
  "swap-type",
  "drop-field",
  "add-field",
  "retype-field",
  "hostile-field"
] as const
export type Mutation = typeof mutations[number]

/**
 * Damages a valid frame. The byte-level mutations keep the length prefix right (except `flip-prefix` and
 * `truncate-body`), so the damage reaches the message decoder rather than only the framing; the field-level ones
 * decode the builder's message, change it, and encode it again.
 */
export const mutate = (rng: Rng, frame: Uint8Array, mutation: Mutation): Uint8Array => {
  const body = bodyOf(frame)
  switch (mutation) {
    case "flip-bits": {
      const out = Uint8Array.from(body)
      const flips = rng.between(1, 8)
      for (let i = 0; i < flips && out.length > 0; i++) out[rng.int(out.length)]! ^= 1 << rng.int(8)
      return framed(out)
    }
    case "flip-bytes": {
      const out = Uint8Array.from(body)
      const flips = rng.between(1, 4)
      for (let i = 0; i < flips && out.length > 0; i++) out[rng.int(out.length)] = rng.u32() & 0xff
      return framed(out)
    }
    case "flip-prefix": {
      const out = Uint8Array.from(frame)
      out[rng.int(Frame.HEADER_BYTES)]! ^= 1 << rng.int(8)
      return out
    }
    case "splice": {
      const at = rng.int(body.length + 1)
      const cut = rng.int(Math.min(8, body.length - at) + 1)
      return framed(concat([body.subarray(0, at), rng.bytes(rng.int(9)), body.subarray(at + cut)]))
    }
    case "truncate-body":
      // The prefix still claims the whole body: the frame never completes.
      return frame.subarray(0, Frame.HEADER_BYTES + rng.int(Math.max(1, body.length)))
    default:
      return mutateFields(rng, body, mutation)
  }
}

const mutateFields = (rng: Rng, body: Uint8Array, mutation: Mutation): Uint8Array => {
  let fields: Array<unknown>
  try {
    const decoded = unpack(body)
    fields = Array.isArray(decoded) ? [...decoded] : [decoded]
  } catch {
    fields = [body]
  }
  switch (mutation) {
    case "swap-type":
      fields[0] = rng.bool(0.7)
        ? rng.pick([8, 9, 15, 16, 127, 128, 255, 65535, -1, -32, 2 ** 32, 1.5])
        : randomValue(rng, 1)
      break
    case "drop-field":
      if (fields.length > 0) fields.splice(rng.int(fields.length), 1)
      break
    case "add-field":
      fields.splice(rng.int(fields.length + 1), 0, randomValue(rng, 1))
      break
    case "retype-field":
      if (fields.length > 1) fields[1 + rng.int(fields.length - 1)] = randomValue(rng, 1)
      break
    default: {
      // hostile-field
      const out: Array<unknown> = [...fields]
      out[fields.length > 1 ? 1 + rng.int(fields.length - 1) : 0] = hostileValue(rng)
      return framed(packArray(out))
    }
  }
  return reframe(fields)
}
