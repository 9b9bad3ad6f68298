/**
 * Payload encoding benchmark for the planned TCP wire protocol.
 *
 * Measures, for each candidate encoding × payload: encoded size in bytes and encode, decode and
 * round-trip (encode + decode) operations per second. Every candidate validates with the Schema on
 * decode. Each cell gets a warm-up, then three timed rounds of a fixed number of iterations
 * (`performance.now()`); the median round is reported. A correctness matrix follows: does each
 * candidate round-trip a set of tricky schemas/values (Option, Date, bigint, Class, TaggedError,
 * tagged unions, ReadonlyMap, NaN/±Infinity, -0, null, void, lone surrogates, ...)?
 *
 * Candidates:
 *   A      JSON codec (`Schema.toCodecJson`) → JSON.stringify → UTF-8 (Buffer), reverse on decode
 *   B      JSON codec → MessagePack (@msgpack/msgpack, the envelope's library)
 *   C      plain encoded side (`Schema.encodeSync(schema)`) → MessagePack
 *   D      `SchemaBinary.toCodec(schema)` with `Schema.encodeSync` / `Schema.decodeUnknownSync`
 *   D-fp   `SchemaBinary.toCodec(schema, { fingerprint: true })`
 *   D-dir  `SchemaBinary.encoder(schema).encode` / `SchemaBinary.parser(schema).feedSync` (the
 *          public entry points of the direct path; `encodeUnknownSync` is internal and untyped)
 *   D-fdir the same with `fingerprint: true`
 *
 * SchemaBinary returns views into a shared output buffer, but does not rewrite earlier views on
 * later encodes (checked below), so a writer can pass them straight to `socket.write` and no copy
 * is timed; @msgpack/msgpack's `encode` returns a fresh copy.
 *
 * Run: npx tsx bench/encoding.ts
 */
import { Option, Schema } from "effect"
import { SchemaBinary } from "effect/encoding"
import { Decoder, Encoder } from "@msgpack/msgpack"

type AnySchema = Schema.ConstraintCodec<unknown, unknown, never, never>

interface Codec {
  readonly encode: (value: unknown) => Uint8Array
  readonly decode: (bytes: Uint8Array) => unknown
}

interface Candidate {
  readonly name: string
  readonly make: (schema: AnySchema) => Codec
}

const jsonSides = (schema: AnySchema) => {
  const json = Schema.toCodecJson(schema)
  return { encode: Schema.encodeSync(json), decode: Schema.decodeUnknownSync(json) }
}

const plainSides = (schema: AnySchema) => ({
  encode: Schema.encodeSync(schema),
  decode: Schema.decodeUnknownSync(schema)
})

const msgpack = (
  sides: (schema: AnySchema) => { encode: (v: unknown) => unknown; decode: (v: unknown) => unknown }
) =>
(schema: AnySchema): Codec => {
  const { encode, decode } = sides(schema)
  const encoder = new Encoder()
  const decoder = new Decoder()
  return { encode: (v) => encoder.encode(encode(v)), decode: (b) => decode(decoder.decode(b)) }
}

const binaryCodec = (fingerprint: boolean) => (schema: AnySchema): Codec => {
  const codec = SchemaBinary.toCodec(schema, { fingerprint })
  return { encode: Schema.encodeSync(codec), decode: Schema.decodeUnknownSync(codec) }
}

const binaryDirect = (fingerprint: boolean) => (schema: AnySchema): Codec => {
  const encoder = SchemaBinary.encoder(schema, { fingerprint })
  const parser = SchemaBinary.parser(schema, { fingerprint })
  return {
    encode: (v) => encoder.encode(v),
    decode: (b) => {
      const values = parser.feedSync(b)
      if (values.length !== 1) throw new Error(`expected one frame, got ${values.length}`)
      return values[0]
    }
  }
}

const candidates: ReadonlyArray<Candidate> = [
  {
    name: "A json",
    make: (schema) => {
      const { encode, decode } = jsonSides(schema)
      return {
        encode: (v) => Buffer.from(JSON.stringify(encode(v)), "utf8"),
        decode: (b) => decode(JSON.parse(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8")))
      }
    }
  },
  { name: "B json+msgpack", make: msgpack(jsonSides) },
  { name: "C plain+msgpack", make: msgpack(plainSides) },
  { name: "D SchemaBinary", make: binaryCodec(false) },
  { name: "D-fp SchemaBinary", make: binaryCodec(true) },
  { name: "D-dir SchemaBinary", make: binaryDirect(false) },
  { name: "D-fdir SchemaBinary", make: binaryDirect(true) }
]

// ---------------------------------------------------------------------------------------------
// Timed payloads

const Small = Schema.Struct({ id: Schema.Number, name: Schema.String })

const Item = Schema.Struct({ sku: Schema.String, qty: Schema.Number, price: Schema.Number, gift: Schema.Boolean })
const Medium = Schema.Struct({
  orderId: Schema.Number,
  customer: Schema.String,
  region: Schema.String,
  createdAt: Schema.Number,
  total: Schema.Number,
  tags: Schema.Array(Schema.String),
  items: Schema.Array(Item)
})

const BigString = Schema.Struct({ data: Schema.String })
const BigBytes = Schema.Struct({ data: Schema.Uint8Array })

const Envelope = Schema.Struct({
  type: Schema.Literals(["ask", "tell", "reply", "failure"]),
  requestId: Schema.Number,
  endpointId: Schema.String,
  gateway: Schema.String,
  method: Schema.String,
  fencingToken: Schema.optionalKey(Schema.Uint8Array),
  payload: Schema.Uint8Array
})

const bytesOf = (n: number, seed: number): Uint8Array => {
  const out = new Uint8Array(n)
  let x = seed
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff
    out[i] = x >>> 16
  }
  return out
}

interface Payload {
  readonly name: string
  readonly schema: AnySchema
  readonly value: unknown
  readonly iterations: number
}

const payloads: ReadonlyArray<Payload> = [
  { name: "32B", schema: Small, value: { id: 42, name: "alice-the-endpoint-01" }, iterations: 20_000 },
  {
    name: "1KiB",
    schema: Medium,
    value: {
      orderId: 987654,
      customer: "customer-0042",
      region: "eu-west-1",
      createdAt: 1_700_000_000_000,
      total: 1234.56,
      tags: ["priority", "gift", "express"],
      items: Array.from({ length: 20 }, (_, i) => ({
        sku: `SKU-${1000 + i}`,
        qty: i + 1,
        price: 9.99 + i,
        gift: i % 3 === 0
      }))
    },
    iterations: 8_000
  },
  // Flattened (as a string read from a socket or file would be), not the rope `repeat` builds.
  {
    name: "64KiB-string",
    schema: BigString,
    value: { data: Buffer.from("abcdefghijklmnop".repeat(4096)).toString("utf8") },
    iterations: 1_000
  },
  { name: "64KiB-bytes", schema: BigBytes, value: { data: bytesOf(65536, 7) }, iterations: 1_000 },
  {
    name: "envelope+32B",
    schema: Envelope,
    value: {
      type: "ask",
      requestId: 123456,
      endpointId: "endpoint-7f3a",
      gateway: "KvStore",
      method: "put",
      fencingToken: bytesOf(16, 3),
      payload: bytesOf(32, 5)
    },
    iterations: 20_000
  }
]

// ---------------------------------------------------------------------------------------------
// Correctness

const deepEqual = (a: unknown, b: unknown): boolean => {
  if (Object.is(a, b)) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0
  }
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false
  if (a instanceof Date) return a.getTime() === (b as Date).getTime()
  if (a instanceof Map) {
    const m = b as Map<unknown, unknown>
    if (a.size !== m.size) return false
    for (const [k, v] of a) if (!m.has(k) || !deepEqual(v, m.get(k))) return false
    return true
  }
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  if (ka.length !== kb.length) return false
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) {
      return false
    }
  }
  return true
}

class Person extends Schema.Class<Person>("Person")({ name: Schema.String, age: Schema.Number }) {}
class Boom extends Schema.TaggedError<Boom>()("Boom", { message: Schema.String, code: Schema.Number }) {}
const AorB = Schema.Union([
  Schema.TaggedStruct("A", { a: Schema.Number }),
  Schema.TaggedStruct("B", { b: Schema.String })
])
const Numbers = Schema.Struct({ nan: Schema.Number, inf: Schema.Number, ninf: Schema.Number })

interface Case {
  readonly name: string
  readonly schema: AnySchema
  readonly value: unknown
}

const cases: ReadonlyArray<Case> = [
  { name: "Option.some(string)", schema: Schema.Option(Schema.String), value: Option.some("x") },
  { name: "Option.none()", schema: Schema.Option(Schema.String), value: Option.none() },
  { name: "Date", schema: Schema.Date, value: new Date("2024-05-06T07:08:09.123Z") },
  { name: "BigInt small (42n)", schema: Schema.BigInt, value: 42n },
  { name: "BigInt 2^70", schema: Schema.BigInt, value: 2n ** 70n },
  { name: "Schema.Class", schema: Person, value: new Person({ name: "Ada", age: 36 }) },
  { name: "Schema.TaggedError", schema: Boom, value: new Boom({ message: "bad", code: 7 }) },
  { name: "Union of TaggedStructs", schema: AorB, value: { _tag: "B", b: "hi" } },
  {
    name: "ReadonlyMap<string,number>",
    schema: Schema.ReadonlyMap(Schema.String, Schema.Number),
    value: new Map([["a", 1], ["b", 2]])
  },
  { name: "NaN/Infinity/-Infinity", schema: Numbers, value: { nan: NaN, inf: Infinity, ninf: -Infinity } },
  { name: "-0", schema: Schema.Number, value: -0 },
  { name: "null", schema: Schema.Null, value: null },
  { name: "Void (undefined)", schema: Schema.Void, value: undefined },
  { name: "lone surrogate string", schema: Schema.String, value: "a\uD800b\uDC00c" },
  { name: "non-BMP string", schema: Schema.String, value: "emoji \u{1F600} clef \u{1D11E}" },
  { name: "Uint8Array (top level)", schema: Schema.Uint8Array, value: new Uint8Array([0, 1, 254, 255]) }
]
const roundTrip = (make: Candidate["make"], c: Case): string => {
  try {
    const codec = make(c.schema)
    const decoded = codec.decode(codec.encode(c.value))
    return deepEqual(c.value, decoded) ? "yes" : "NO(value)"
  } catch {
    return "NO(throw)"
  }
}

// ---------------------------------------------------------------------------------------------
// Timing

let sink = 0

const median3 = (xs: ReadonlyArray<number>): number => [...xs].sort((a, b) => a - b)[1]!

const opsPerSecond = (iterations: number, body: () => void): number => {
  const start = performance.now()
  for (let i = 0; i < iterations; i++) body()
  return iterations / ((performance.now() - start) / 1000)
}

interface Row {
  readonly payload: string
  readonly candidate: string
  readonly size: number | undefined
  readonly encode: number
  readonly decode: number
  readonly roundTrip: number
  readonly note: string
}

const measure = (candidate: Candidate, payload: Payload, verify = true): Row => {
  const base = { payload: payload.name, candidate: candidate.name }
  let codec: Codec
  let bytes: Uint8Array
  try {
    codec = candidate.make(payload.schema)
    bytes = codec.encode(payload.value)
    if (verify && !deepEqual(payload.value, codec.decode(bytes))) {
      return { ...base, size: bytes.byteLength, encode: 0, decode: 0, roundTrip: 0, note: "round-trip mismatch" }
    }
  } catch (e) {
    return { ...base, size: undefined, encode: 0, decode: 0, roundTrip: 0, note: `throws: ${String(e).slice(0, 40)}` }
  }
  const { encode, decode } = codec
  const { value, iterations } = payload
  const enc = () => {
    sink += encode(value).byteLength
  }
  const dec = () => {
    sink += decode(bytes) === undefined ? 0 : 1
  }
  const rt = () => {
    sink += decode(encode(value)) === undefined ? 0 : 1
  }
  const warm = Math.max(50, Math.floor(iterations / 4))
  opsPerSecond(warm, enc)
  opsPerSecond(warm, dec)
  opsPerSecond(warm, rt)
  const e: Array<number> = []
  const d: Array<number> = []
  const r: Array<number> = []
  for (let round = 0; round < 3; round++) {
    e.push(opsPerSecond(iterations, enc))
    d.push(opsPerSecond(iterations, dec))
    r.push(opsPerSecond(iterations, rt))
  }
  return { ...base, size: bytes.byteLength, encode: median3(e), decode: median3(d), roundTrip: median3(r), note: "" }
}

// ---------------------------------------------------------------------------------------------
// Envelope framing: one SchemaBinary struct carrying the payload bytes, versus a SchemaBinary header
// followed by the raw payload bytes in a length-prefixed frame ([u32 header length][header][payload]).

const Header = Schema.Struct({
  type: Schema.Literals(["ask", "tell", "reply", "failure"]),
  requestId: Schema.Number,
  endpointId: Schema.String,
  gateway: Schema.String,
  method: Schema.String,
  fencingToken: Schema.optionalKey(Schema.Uint8Array)
})

const header = {
  type: "ask",
  requestId: 123456,
  endpointId: "endpoint-7f3a",
  gateway: "KvStore",
  method: "put",
  fencingToken: bytesOf(16, 3)
} as const

const framingRows = (): Array<Row> => {
  const envelope = SchemaBinary.toCodec(Envelope)
  const encodeEnvelope = Schema.encodeSync(envelope)
  const decodeEnvelope = Schema.decodeUnknownSync(envelope)
  const headerCodec = SchemaBinary.toCodec(Header)
  const encodeHeader = Schema.encodeSync(headerCodec)
  const decodeHeader = Schema.decodeUnknownSync(headerCodec)
  const rows: Array<Row> = []
  for (const [label, size, iterations] of [["32B", 32, 20_000], ["64KiB", 65536, 1_000]] as const) {
    const payload = bytesOf(size, 5)
    const variants: ReadonlyArray<{ name: string; codec: Codec }> = [
      {
        name: "D struct incl. payload",
        codec: {
          encode: () => encodeEnvelope({ ...header, payload }),
          decode: (b) => decodeEnvelope(b).payload
        }
      },
      {
        name: "D header + raw, 1 copy",
        codec: {
          encode: () => {
            const h = encodeHeader(header)
            const frame = Buffer.allocUnsafe(4 + h.byteLength + payload.byteLength)
            frame.writeUInt32BE(h.byteLength, 0)
            frame.set(h, 4)
            frame.set(payload, 4 + h.byteLength)
            return frame
          },
          decode: (b) => {
            const n = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0)
            decodeHeader(b.subarray(4, 4 + n))
            return b.subarray(4 + n)
          }
        }
      },
      {
        name: "D header + raw, writev",
        codec: {
          // A writer that corks the socket writes prefix, header and payload without copying them.
          encode: () => {
            const h = encodeHeader(header)
            const prefix = Buffer.allocUnsafe(4)
            prefix.writeUInt32BE(h.byteLength, 0)
            return h
          },
          decode: (b) => b
        }
      }
    ]
    for (const v of variants) {
      const row = measure({ name: v.name, make: () => v.codec }, {
        name: `frame ${label}`,
        schema: Envelope,
        value: { ...header, payload },
        iterations
      }, false)
      rows.push(v.name.endsWith("writev") ? { ...row, size: 4 + row.size! + size, decode: 0, roundTrip: 0 } : row)
    }
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (n: number): string => (n === 0 ? "-" : Math.round(n).toLocaleString("en-US"))

const printTable = (rows: ReadonlyArray<Row>): void => {
  const header = ["payload", "candidate", "bytes", "encode/s", "decode/s", "round-trip/s", "note"]
  const body = rows.map((r) => [
    r.payload,
    r.candidate,
    r.size === undefined ? "-" : String(r.size),
    fmt(r.encode),
    fmt(r.decode),
    fmt(r.roundTrip),
    r.note
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd()
  console.log(line(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  let previous = ""
  for (let i = 0; i < body.length; i++) {
    if (previous !== "" && rows[i]!.payload !== previous) console.log("")
    previous = rows[i]!.payload
    console.log(line(body[i]!))
  }
}

const viewsStable = (make: Candidate["make"]): boolean => {
  const codec = make(Small)
  const first = codec.encode({ id: 1, name: "first" })
  const copy = first.slice()
  for (let i = 0; i < 5000; i++) codec.encode({ id: i, name: "later-value-" + i })
  return Buffer.compare(first, copy) === 0
}

const decodedBytesCopied = (make: Candidate["make"]): string => {
  try {
    const codec = make(BigBytes)
    const wire = codec.encode({ data: new Uint8Array([1, 2, 3, 4]) }).slice()
    const decoded = codec.decode(wire) as { readonly data: Uint8Array }
    wire.fill(0)
    return decoded.data[0] === 1 ? "yes" : "NO(alias)"
  } catch {
    return "NO(throw)"
  }
}

const main = (): void => {
  const started = performance.now()
  console.log(`Node ${process.version}, ${new Date().toISOString()}`)
  console.log("ops/s = median of 3 rounds; round-trip = encode + decode; bytes = encoded payload size\n")
  const rows: Array<Row> = []
  for (const payload of payloads) {
    for (const candidate of candidates) rows.push(measure(candidate, payload))
  }
  printTable(rows)

  console.log("\nEnvelope framing (frame = whole wire message; decode = header decoded, payload bytes located)\n")
  printTable(framingRows())

  console.log("\nCorrectness (round-trip with Schema validation on decode; yes = deep-equal incl. prototype)\n")
  const allCases = cases
  const extra = [
    { name: "views stable after later encodes", check: (c: Candidate) => (viewsStable(c.make) ? "yes" : "NO") },
    { name: "decoded Uint8Array not aliasing input", check: (c: Candidate) => decodedBytesCopied(c.make) }
  ]
  const names = [...allCases.map((c) => c.name), ...extra.map((x) => x.name)]
  const matrix = candidates.map((cand) => [
    ...allCases.map((c) => roundTrip(cand.make, c)),
    ...extra.map((x) => x.check(cand))
  ])
  const nameWidth = Math.max(...names.map((n) => n.length))
  const colWidths = candidates.map((c, i) => Math.max(c.name.split(" ")[0]!.length, ...matrix[i]!.map((m) => m.length)))
  console.log(
    ["case".padEnd(nameWidth), ...candidates.map((c, i) => c.name.split(" ")[0]!.padEnd(colWidths[i]!))].join("  ")
  )
  names.forEach((n, row) => {
    console.log([n.padEnd(nameWidth), ...matrix.map((col, i) => col[row]!.padEnd(colWidths[i]!))].join("  ").trimEnd())
  })
  console.log(`\n(sink ${sink % 10}) total ${((performance.now() - started) / 1000).toFixed(1)} s`)
}

main()
