/**
 * The wire protocol (docs/PROTOCOL.md): the messages two services exchange over one connection, and how values
 * become bytes. A frame body is a MessagePack array (@msgpack/msgpack) whose first element is the message type; payloads and
 * replies travel inside it as byte strings written by Effect's SchemaBinary codec of the method's Schemas
 * (chosen by measurement: bench/encoding.ts).
 */
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { Decoder, Encoder } from "@msgpack/msgpack"
import * as Frame from "./frame.js"

/** The protocol version this library speaks; a peer with another version is refused at hello. */
export const VERSION = 4

/** Message type codes, the first element of every frame body. */
export const Type = {
  Hello: 0,
  Connect: 1,
  Connected: 2,
  Ask: 3,
  Tell: 4,
  Reply: 5,
  Heartbeat: 6,
  Close: 7,
  Cancel: 8,
  Credit: 9,
  Compare: 10
} as const

/**
 * Flow control of requests (Connect, Ask, Tell), so that neither side ever has to stop reading (docs/PROTOCOL.md,
 * "Flow control"). A side keeps at most the peer's `receiveWindow` of requests outstanding (sent, not yet
 * credited), each costing `requestCost` of its body. The receiver credits requests once it has handed them to
 * its endpoints, and holds them back while its own backlog to the peer is large; a peer that sends beyond the
 * window breaks the protocol.
 */
export const MIN_WINDOW = 8 * 1024 * 1024

/** The receive window a side announces: room for two of the largest frames it accepts, and at least 8 MiB. */
export const windowFor = (maximumFrameSize: number): number => Math.max(MIN_WINDOW, 2 * maximumFrameSize)

/**
 * What a request costs of the window: its body, plus a fixed charge for what holding it costs besides its bytes,
 * so that a window full of tiny requests is bounded in memory too.
 */
export const requestCost = (bodyBytes: number): number => bodyBytes + REQUEST_OVERHEAD

const REQUEST_OVERHEAD = 256

/** How a reply ended: the method's success, the method's failure, or one of the library's call errors. */
export const Outcome = { Success: 0, Failure: 1, Error: 2 } as const

/** The span a call was made in, so the receiver's span continues the caller's trace. */
export interface TraceContext {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

/** A decoded frame body. */
export type Message =
  | {
    readonly _tag: "Hello"
    readonly version: number
    readonly incarnation: string
    readonly service: string
    readonly authority: string | null
    readonly maximumFrameSize: number
    /** How many request bytes this side may have outstanding towards the peer before a Credit (see `window`). */
    readonly receiveWindow: number
  }
  | {
    readonly _tag: "Connect"
    readonly id: number
    readonly endpointId: string
    readonly gateway: string
    readonly fingerprint: string
    /** Absent for a plain connect; a fenced connect's token, checked by the endpoint. */
    readonly token: { readonly value: unknown } | undefined
    /** The caller's snapshot of the gateway (JSON text), sent only in answer to a `Compare`. */
    readonly snapshot: string | undefined
  }
  | {
    readonly _tag: "Connected"
    readonly id: number
    readonly reason: string | null
    readonly detail: string
    /**
     * On an accepted connect whose fingerprints differ: the caller's methods the endpoint does not serve (calls to
     * them fail at once with `MethodNotServedError`). Empty otherwise.
     */
    readonly notServed: ReadonlyArray<string>
  }
  | {
    readonly _tag: "Compare"
    readonly id: number
    /** The endpoint's snapshot of the gateway (JSON text). */
    readonly snapshot: string
  }
  | {
    readonly _tag: "Ask" | "Tell"
    readonly id: number
    readonly endpointId: string
    readonly gateway: string
    readonly method: string
    /** Absent (`undefined`) for an unfenced call. */
    readonly token: { readonly value: unknown } | undefined
    /** An ask's time left when it was sent, in milliseconds; absent for tells and asks without a timeout. */
    readonly timeout: number | undefined
    /** Absent when the caller was not tracing. */
    readonly trace: TraceContext | undefined
    readonly payload: unknown
  }
  | { readonly _tag: "Cancel"; readonly id: number }
  | { readonly _tag: "Credit"; readonly bytes: number }
  | { readonly _tag: "Reply"; readonly id: number; readonly outcome: number; readonly value: unknown }
  | { readonly _tag: "Heartbeat"; readonly reply: boolean }
  | { readonly _tag: "Close"; readonly reason: string; readonly detail: string }

// Plain MessagePack: every frame stands alone. The decoder refuses `__proto__` keys, so nothing from the wire
// can reach a prototype.
const encoder = new Encoder()
const decoder = new Decoder()

/** A frame ready to write: length prefix and body in one buffer, so it goes out as one chunk. */
export interface OutFrame {
  /** The length prefix and the body, or for a large value the body up to the value's bytes. */
  readonly bytes: Buffer
  /** A large value's bytes, written after `bytes` as they are instead of being copied into it. */
  readonly tail: Uint8Array | undefined
  /** The body's size, which the frame limit applies to. */
  readonly size: number
}

/**
 * From this size on, a value that ends a message goes out as a chunk of its own. Copying 64 KiB costs 13-16 µs
 * here and its buffers drive the garbage collector; below a few KiB another chunk costs more than the copy.
 */
export const TAIL_BYTES = 8 * 1024

// A view of the encoder's own buffer, valid until the next encode: copied at once behind the length prefix.
const single = (body: Uint8Array): OutFrame => {
  const bytes = Buffer.allocUnsafe(Frame.HEADER_BYTES + body.length)
  Frame.writeHeader(bytes, body.length)
  bytes.set(body, Frame.HEADER_BYTES)
  return { bytes, tail: undefined, size: body.length }
}

const EMPTY = new Uint8Array(0)

const frame = (message: Array<unknown>): OutFrame => {
  const last = message.length - 1
  const value = message[last]
  if (!(value instanceof Uint8Array) || value.length < TAIL_BYTES) return single(encoder.encodeSharedRef(message))
  // The same bytes MessagePack would write: the message with an empty byte string last, whose two-byte header
  // (bin8, length 0) is replaced by a bin32 header of the value's length, followed by the value itself.
  message[last] = EMPTY
  const head = encoder.encodeSharedRef(message)
  const prefix = head.length - 2
  const size = prefix + 5 + value.length
  const bytes = Buffer.allocUnsafe(Frame.HEADER_BYTES + prefix + 5)
  Frame.writeHeader(bytes, size)
  bytes.set(head.subarray(0, prefix), Frame.HEADER_BYTES)
  bytes[Frame.HEADER_BYTES + prefix] = 0xc6
  bytes.writeUInt32BE(value.length, Frame.HEADER_BYTES + prefix + 1)
  return { bytes, tail: value, size }
}

/** The hello each side sends first; `receiveWindow` defaults to the one `maximumFrameSize` implies. */
export const hello = (
  incarnation: string,
  service: string,
  authority: string | null,
  maximumFrameSize: number,
  receiveWindow: number = windowFor(maximumFrameSize)
) => frame([Type.Hello, VERSION, incarnation, service, authority, maximumFrameSize, receiveWindow])

/**
 * The per-gateway handshake request; `token` is present for a fenced connect, so that the endpoint checks it, and
 * `snapshot` (the caller's gateway as JSON) only in answer to a `Compare`: the fast path sends six elements.
 */
export const connect = (
  id: number,
  endpointId: string,
  gateway: string,
  fingerprint: string,
  token?: { readonly value: unknown } | undefined,
  snapshot?: string | undefined
) => {
  const wireToken = token === undefined ? null : [token.value]
  const message: Array<unknown> = [Type.Connect, id, endpointId, gateway, fingerprint, wireToken]
  if (snapshot !== undefined) message.push(snapshot)
  return frame(message)
}

/**
 * The handshake answer: `reason` is null when the endpoint serves the gateway. `notServed` (sent only when not
 * empty) lists the caller's methods the endpoint does not serve, after an exchange of snapshots.
 */
export const connected = (id: number, reason: string | null, detail: string, notServed?: ReadonlyArray<string>) =>
  frame(
    notServed === undefined || notServed.length === 0
      ? [Type.Connected, id, reason, detail]
      : [Type.Connected, id, reason, detail, notServed]
  )

/**
 * The endpoint's answer to a `Connect` whose fingerprint differs from its own, when it has no verdict for the pair
 * yet: its snapshot of the gateway, to be judged by the caller, which answers with a `Connect` carrying its own.
 */
export const compare = (id: number, snapshot: string) => frame([Type.Compare, id, snapshot])

/** A call; `token` is absent for unfenced calls, `timeout` for tells and asks without one. */
export const call = (
  tell: boolean,
  id: number,
  endpointId: string,
  gateway: string,
  method: string,
  token: { readonly value: unknown } | undefined,
  timeout: number | undefined,
  trace: TraceContext | undefined,
  payload: unknown
) => {
  const wireToken = token === undefined ? null : [token.value]
  const wireTrace = trace === undefined ? null : [trace.traceId, trace.spanId, trace.sampled]
  return frame(
    tell
      ? [Type.Tell, endpointId, gateway, method, wireToken, wireTrace, payload]
      : [Type.Ask, id, endpointId, gateway, method, wireToken, timeout ?? null, wireTrace, payload]
  )
}

/** The receiver has handed `bytes` more request bytes (by `requestCost`) to its endpoints: send that much more. */
export const credit = (bytes: number) => frame([Type.Credit, bytes])

/** The caller of ask `id` gave up (it was interrupted): drop the ask if its handler has not started. */
export const cancel = (id: number) => frame([Type.Cancel, id])

/** The answer to an ask. */
export const reply = (id: number, outcome: number, value: unknown) => frame([Type.Reply, id, outcome, value])

/**
 * A heartbeat request. The peer answers each one, so a side's failure detector depends on its own interval and
 * pause only, whatever the peer's settings are (Pekko's watch heartbeats work the same way).
 */
export const heartbeat: OutFrame = frame([Type.Heartbeat, 0])

/** The answer to a heartbeat request. */
export const heartbeatReply: OutFrame = frame([Type.Heartbeat, 1])

/** The last frame of a connection, with the reason it closes. */
export const close = (reason: string, detail: string) => frame([Type.Close, reason, detail])

/** A frame body that is not a message of this protocol. */
export class WireError {
  readonly _tag = "WireError"
  constructor(readonly detail: string) {}
}

const isId = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0
const isString = (u: unknown): u is string => typeof u === "string"
const isStrings = (u: unknown): u is Array<string> => Array.isArray(u) && u.every(isString)
const isToken = (u: unknown): u is null | [unknown] => u === null || (Array.isArray(u) && u.length === 1)
const isTimeout = (u: unknown): u is null | number => u === null || (typeof u === "number" && u >= 0 && u <= MAX_TIMEOUT)
const isTrace = (u: unknown): u is null | [string, string, boolean] =>
  u === null ||
  (Array.isArray(u) && u.length === 3 && isString(u[0]) && u[0].length <= 64 && isString(u[1]) && u[1].length <= 64 &&
    typeof u[2] === "boolean")
const toTrace = (u: null | [string, string, boolean]): TraceContext | undefined =>
  u === null ? undefined : { traceId: u[0], spanId: u[1], sampled: u[2] }

/** The longest timeout an ask may carry (the largest a Node timer accepts, about 24.8 days). */
const MAX_TIMEOUT = 2 ** 31 - 1

// Only a number is printed: a hostile type code can be nested deep enough to overflow JSON.stringify.
const typeCode = (code: unknown): string => typeof code === "number" ? String(code) : `(a ${typeof code})`

/** Decodes and checks a frame body; anything malformed is a `WireError`, never a throw. */
export const decode = (body: Uint8Array): Message | WireError => {
  let m: unknown
  try {
    m = decoder.decode(body)
  } catch (error) {
    return new WireError(`an undecodable frame (${error instanceof Error ? error.message : String(error)})`)
  }
  if (!Array.isArray(m) || m.length === 0) return new WireError("a frame that is not a message array")
  switch (m[0]) {
    case Type.Hello:
      if (
        m.length >= 7 && m[1] === VERSION && isString(m[2]) && isString(m[3]) && (m[4] === null || isString(m[4])) &&
        isId(m[5]) && isId(m[6]) && m[6] >= MIN_WINDOW
      ) {
        return {
          _tag: "Hello",
          version: m[1],
          incarnation: m[2],
          service: m[3],
          authority: m[4],
          maximumFrameSize: m[5],
          receiveWindow: m[6]
        }
      }
      // An older or newer peer may shape its hello differently; the version alone must be readable.
      if (m.length >= 2 && isId(m[1]) && m[1] !== VERSION) {
        return {
          _tag: "Hello",
          version: m[1],
          incarnation: "",
          service: "",
          authority: null,
          maximumFrameSize: 0,
          receiveWindow: 0
        }
      }
      break
    case Type.Connect:
      if (
        (m.length === 6 || (m.length === 7 && isString(m[6]))) && isId(m[1]) && isString(m[2]) && isString(m[3]) &&
        isString(m[4]) && isToken(m[5])
      ) {
        return {
          _tag: "Connect",
          id: m[1],
          endpointId: m[2],
          gateway: m[3],
          fingerprint: m[4],
          token: m[5] === null ? undefined : { value: m[5][0] },
          snapshot: m.length === 7 ? m[6] : undefined
        }
      }
      break
    case Type.Connected:
      if (
        (m.length === 4 || (m.length === 5 && isStrings(m[4]))) && isId(m[1]) && (m[2] === null || isString(m[2])) &&
        isString(m[3])
      ) {
        return { _tag: "Connected", id: m[1], reason: m[2], detail: m[3], notServed: m.length === 5 ? m[4] : [] }
      }
      break
    case Type.Compare:
      if (m.length === 3 && isId(m[1]) && isString(m[2])) return { _tag: "Compare", id: m[1], snapshot: m[2] }
      break
    case Type.Ask:
      if (
        m.length === 9 && isId(m[1]) && isString(m[2]) && isString(m[3]) && isString(m[4]) && isToken(m[5]) &&
        isTimeout(m[6]) && isTrace(m[7])
      ) {
        return {
          _tag: "Ask",
          id: m[1],
          endpointId: m[2],
          gateway: m[3],
          method: m[4],
          token: m[5] === null ? undefined : { value: m[5][0] },
          timeout: m[6] ?? undefined,
          trace: toTrace(m[7]),
          payload: m[8]
        }
      }
      break
    case Type.Tell:
      if (m.length === 7 && isString(m[1]) && isString(m[2]) && isString(m[3]) && isToken(m[4]) && isTrace(m[5])) {
        return {
          _tag: "Tell",
          id: 0,
          endpointId: m[1],
          gateway: m[2],
          method: m[3],
          token: m[4] === null ? undefined : { value: m[4][0] },
          timeout: undefined,
          trace: toTrace(m[5]),
          payload: m[6]
        }
      }
      break
    case Type.Cancel:
      if (m.length === 2 && isId(m[1])) return { _tag: "Cancel", id: m[1] }
      break
    case Type.Credit:
      if (m.length === 2 && isId(m[1]) && m[1] > 0) return { _tag: "Credit", bytes: m[1] }
      break
    case Type.Reply:
      if (m.length === 4 && isId(m[1]) && (m[2] === 0 || m[2] === 1 || m[2] === 2)) {
        return { _tag: "Reply", id: m[1], outcome: m[2], value: m[3] }
      }
      break
    case Type.Heartbeat:
      if (m.length === 2 && (m[1] === 0 || m[1] === 1)) return { _tag: "Heartbeat", reply: m[1] === 1 }
      break
    case Type.Close:
      if (m.length === 3 && isString(m[1]) && isString(m[2])) return { _tag: "Close", reason: m[1], detail: m[2] }
      break
    default:
      return new WireError(`a message of unknown type ${typeCode(m[0])}`)
  }
  return new WireError(`a malformed message of type ${typeCode(m[0])}`)
}

// ---------------------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------------------

type Codec = {
  readonly encode: (value: unknown) => Result.Result<unknown, string>
  readonly decode: (wire: unknown) => Result.Result<unknown, string>
}

const codecs = new WeakMap<Schema.Top, Codec>()

const describeIssue = (error: unknown): string => error instanceof Error ? error.message : String(error)

/**
 * Plain `Schema.Uint8Array` values cross as they are: SchemaBinary would copy them into its arena on the way out
 * (a new 128 KiB arena per 64 KiB value) and again on the way in. The copy made here keeps the sender's buffer
 * free to change once the call returns; a large value arriving is handed out as a view of its frame, which
 * nothing else holds.
 */
const bytesCodec: Codec = {
  encode: (value) =>
    value instanceof Uint8Array ? Result.succeed(value.slice()) : Result.fail(`Expected Uint8Array, got ${typeof value}`),
  decode: (wire) =>
    wire instanceof Uint8Array
      // A small value would otherwise keep the whole socket read it came in alive.
      ? Result.succeed(wire.length < TAIL_BYTES ? wire.slice() : wire)
      : Result.fail("the value on the wire is not a byte string")
}

/** The wire codec of a Schema: SchemaBinary's compact bytes (Dates, Options, bigints and raw bytes all cross). */
const codecOf = (schema: Schema.Top): Codec => {
  if (schema === Schema.Uint8Array) return bytesCodec
  let codec = codecs.get(schema)
  if (codec === undefined) {
    codec = makeCodec(schema)
    codecs.set(schema, codec)
  }
  return codec
}

/**
 * A Schema SchemaBinary cannot lay out (a `Schema.declare` without a codec: Flink's non-serializable argument, which
 * only passes by reference in-process) has a codec that fails every value, with why: the caller gets a typed
 * `RpcSerializationError` (or, for a typed failure, a `RemoteDefectError`) instead of a defect or a lost reply.
 */
const makeCodec = (schema: Schema.Top): Codec => {
  try {
    const binary = SchemaBinary.toCodec(schema as Schema.Codec<unknown, unknown>)
    // The direct encoder skips the generic Schema pipeline where the binary layout validates on its own (about 1.5×
    // faster in bench/encoding.ts); it throws a SchemaError for a value its Schema does not accept.
    const encode = SchemaBinary.encoder(schema as Schema.Codec<unknown, unknown>).encode
    const decode = Schema.decodeUnknownResult(binary)
    return {
      encode: (value) => {
        try {
          return Result.succeed(encode(value))
        } catch (error) {
          return Result.fail(describeIssue(error))
        }
      },
      decode: (wire) => {
        if (!(wire instanceof Uint8Array)) return Result.fail("the value on the wire is not a byte string")
        try {
          return Result.mapError(decode(wire), describeIssue)
        } catch (error) {
          return Result.fail(describeIssue(error))
        }
      }
    }
  } catch (error) {
    const unusable = Result.fail(`its Schema cannot cross the wire (${describeIssue(error)}); pass such values ` +
      `in-process only, or give the Schema a codec`)
    return { encode: () => unusable, decode: () => unusable }
  }
}

/** Encodes a value with its Schema into what a frame carries. */
export const encodeValue = (schema: Schema.Top, value: unknown): Result.Result<unknown, string> =>
  codecOf(schema).encode(value)

/** Decodes what a frame carried with the value's Schema. */
export const decodeValue = (schema: Schema.Top, wire: unknown): Result.Result<unknown, string> =>
  codecOf(schema).decode(wire)
