/**
 * The attack catalogue: what a hostile peer sends, chosen by a seeded generator. Attack number `i` of a run with
 * seed `s` is built from `new Rng(s, i)` alone, so `--seed s --only i` replays it exactly.
 *
 * Each attack is a script of writes and pauses on one raw TCP connection, a policy for when the attacker stops
 * waiting, and, where docs/PROTOCOL.md says what the server answers, the answer it must get.
 */
import { Option, Result, Schema } from "effect"
import { RpcGateway } from "effect-actor-rpc"
import * as Wire from "../../src/internal/wire.js"
import * as G from "./generators.js"

// ---------------------------------------------------------------------------------------------------------------
// The service under attack
// ---------------------------------------------------------------------------------------------------------------

/** A value of every shape SchemaBinary carries (no lone surrogates: those become U+FFFD by design). */
export const Sample = Schema.Struct({
  text: Schema.String,
  n: Schema.Number,
  big: Schema.BigInt,
  when: Schema.Date,
  maybe: Schema.Option(Schema.String),
  bytes: Schema.Uint8Array,
  list: Schema.Array(Schema.Number)
})
export type Sample = typeof Sample.Type

export const Addition = Schema.Struct({ key: Schema.String, n: Schema.Int })

/** The unfenced gateway under attack. */
export const FuzzGateway = RpcGateway.make("FuzzGateway", {
  echo: RpcGateway.ask({ payload: Sample, success: Sample }),
  bytes: RpcGateway.ask({ payload: Schema.Uint8Array, success: Schema.Uint8Array }),
  add: RpcGateway.tell({ payload: Addition }),
  total: RpcGateway.ask({ payload: Schema.String, success: Schema.Number }),
  double: RpcGateway.ask({ payload: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 })), success: Schema.Int })
})

export const Token = Schema.Struct({ epoch: Schema.Int, leader: Schema.String })
export type Token = typeof Token.Type

/** The fenced gateway under attack. */
export const FencedGateway = RpcGateway.make("FencedGateway", {
  ping: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
  note: RpcGateway.tell({ payload: Schema.String })
})

export const FUZZ_ID = "fuzz"
export const FENCED_ID = "fenced"
export const TOKEN: Token = { epoch: 7, leader: "fuzz-leader" }

/** What an attack is built against. */
export interface Target {
  /** `host:port` of the well-behaved client's own listener (for the hello that claims to be it). */
  readonly clientAuthority: string
  /** The server's `RpcConfig.maximumFrameSize`. */
  readonly frameLimit: number
  /** The server's `RpcConfig.connectTimeout`, in ms: a hello dripped slower than this is refused on time. */
  readonly connectTimeoutMs: number
  /** Leave out the inputs of the library bugs in `knownBugs`, so that a run checks everything else. */
  readonly avoidKnownBugs: boolean
}

/**
 * Library bugs the fuzzer found, by the label an attack carries; all four are fixed, and their reproductions run in
 * test/fuzz.test.ts. The suite's bounded run still leaves their inputs out (`avoidKnownBugs`); `npm run fuzz`
 * includes them unless given --avoid-known-bugs.
 */
export const knownBugs = {
  "inherited-method-name":
    "an Ask whose method is an Object.prototype member (constructor, toString, __proto__, ...) of a served gateway " +
    "passes the connection's method lookup and makes Wire.decodeValue throw in the socket's data callback: an " +
    "uncaught TypeError that kills the process",
  "deep-type-code":
    "a frame body that is an array whose first element is nested ~5000 deep (arrays or maps) makes Wire.decode's error message " +
    "(JSON.stringify of the type code) overflow the stack: Wire.decode throws a RangeError in the socket's data " +
    "callback, an uncaught exception that kills the process",
  "unread-replies":
    "a peer that keeps sending asks and never reads makes the server queue every reply in memory: the connection " +
    "keeps reading while its writes are stuck, and the heartbeat never fires because the peer is not silent; " +
    "about 80 MB/s of growth here, without bound",
  "deep-token":
    "a fenced call whose token is nested ~5000 deep makes describe() (JSON.stringify, then String) overflow the stack " +
    "while the endpoint formats the FencingTokenError: the ask is never answered and nothing is logged"
} as const
export type KnownBug = keyof typeof knownBugs

// ---------------------------------------------------------------------------------------------------------------
// Attacks
// ---------------------------------------------------------------------------------------------------------------

export type Step =
  | { readonly _tag: "write"; readonly bytes: Uint8Array }
  /** Writes `bytes` one byte at a time, `delayMs` apart. */
  | { readonly _tag: "drip"; readonly bytes: Uint8Array; readonly delayMs: number }
  | { readonly _tag: "pause"; readonly ms: number }
  /** Half-closes: the attacker hangs up but still reads. */
  | { readonly _tag: "end" }

/** What the server must answer, when docs/PROTOCOL.md says. */
export type Expectation =
  /** An error reply whose RpcCallError has this tag, or `Connected:<reason>`. */
  | { readonly _tag: "error"; readonly error: string }
  /** A Close frame with this reason. */
  | { readonly _tag: "close"; readonly reason: string }
  /** A successful answer (a Reply with a success or failure outcome, an accepting Connected, a heartbeat reply). */
  | { readonly _tag: "answer" }

export interface Attack {
  readonly kind: AttackKind
  readonly variant: string
  readonly steps: ReadonlyArray<Step>
  /** Hang up as soon as an answer arrives, instead of waiting for the server to close a silent connection. */
  readonly hangUpOnAnswer: boolean
  /** Do not read until the server has had time to give up on the connection. */
  readonly slowReader: boolean
  readonly expect: Expectation | undefined
  /** The library bug this attack's input triggers, if it is a known one. */
  readonly knownBug: KnownBug | undefined
}

export const attackKinds = [
  "random-bytes",
  "mutated-frame",
  "truncated-silent",
  "truncated-hangup",
  "oversized-length",
  "zero-length",
  "wrong-shape",
  "unknown-endpoint",
  "unknown-gateway",
  "unknown-method",
  "kind-mismatch",
  "bad-payload",
  "bad-token",
  "tiny-frame-limit",
  "no-hello",
  "second-hello",
  "wrong-version",
  "before-hello",
  "hello-then-garbage",
  "connect-flood",
  "stray-replies",
  "slow-writer",
  "slow-reader"
] as const
export type AttackKind = typeof attackKinds[number]

const weights: Record<AttackKind, number> = {
  "random-bytes": 6,
  "mutated-frame": 16,
  "truncated-silent": 3,
  "truncated-hangup": 4,
  "oversized-length": 3,
  "zero-length": 2,
  "wrong-shape": 12,
  "unknown-endpoint": 4,
  "unknown-gateway": 4,
  "unknown-method": 4,
  "kind-mismatch": 3,
  "bad-payload": 8,
  "bad-token": 6,
  "tiny-frame-limit": 2,
  "no-hello": 1,
  "second-hello": 2,
  "wrong-version": 2,
  "before-hello": 3,
  "hello-then-garbage": 3,
  "connect-flood": 2,
  "stray-replies": 2,
  "slow-writer": 2,
  "slow-reader": 1
}

const encoded = (schema: Schema.Top, value: unknown): Uint8Array => Result.getOrThrow(Wire.encodeValue(schema, value)) as Uint8Array

/** A random value of `Sample`, from the generator. */
export const randomSample = (rng: G.Rng): Sample => ({
  text: rng.text(rng.bool(0.1) ? 2000 : 40),
  n: rng.bool(0.8) ? rng.between(-1e6, 1e6) : rng.pick([0.1, -0, 1e300, -1e-300, Number.MAX_SAFE_INTEGER, NaN, Infinity]),
  big: BigInt(rng.between(-1e9, 1e9)) * (rng.bool(0.2) ? 10n ** 30n : 1n),
  when: new Date(rng.between(0, 4e12)),
  maybe: rng.bool() ? Option.some(rng.text(12)) : Option.none(),
  bytes: rng.bytes(rng.size(rng.bool(0.1) ? 20_000 : 300)),
  list: Array.from({ length: rng.size(40) }, () => rng.between(-1000, 1000) / 8)
})

const incarnation = (rng: G.Rng) => `attacker-${rng.u32().toString(16)}`

/** A valid hello from an attacker (authority null: it does not claim to be a service one can call back). */
const hello = (rng: G.Rng, options?: { readonly limit?: number; readonly authority?: string | null }) =>
  G.frameBytes(Wire.hello(incarnation(rng), "fuzz-attacker", options?.authority ?? null, options?.limit ?? 1 << 20))

const ask = (id: number, endpointId: string, gateway: string, method: string, token: unknown, payload: unknown) =>
  G.frameBytes(Wire.call(false, id, endpointId, gateway, method, token === undefined ? undefined : { value: token }, undefined, undefined, payload))

const tell = (endpointId: string, gateway: string, method: string, token: unknown, payload: unknown) =>
  G.frameBytes(Wire.call(true, 0, endpointId, gateway, method, token === undefined ? undefined : { value: token }, undefined, undefined, payload))

const askId = (rng: G.Rng) => rng.bool(0.9) ? rng.between(1, 1000) : rng.pick([0, 0x7fffffff, 2 ** 53 - 1])

/** Valid frames of every message type, each from its Wire builder. */
export const templates = {
  hello: (rng: G.Rng) => hello(rng),
  connect: (rng: G.Rng) => G.frameBytes(Wire.connect(askId(rng), FUZZ_ID, FuzzGateway.name, FuzzGateway.fingerprint)),
  "ask-echo": (rng: G.Rng) => ask(askId(rng), FUZZ_ID, FuzzGateway.name, "echo", undefined, encoded(Sample, randomSample(rng))),
  "ask-bytes": (rng: G.Rng) =>
    ask(askId(rng), FUZZ_ID, FuzzGateway.name, "bytes", undefined, encoded(Schema.Uint8Array, rng.bytes(rng.size(2000)))),
  "ask-double": (rng: G.Rng) =>
    ask(askId(rng), FUZZ_ID, FuzzGateway.name, "double", undefined, encoded(Schema.Int, rng.between(0, 1000))),
  "tell-add": (rng: G.Rng) =>
    tell(FUZZ_ID, FuzzGateway.name, "add", undefined, encoded(Addition, { key: "attacker", n: rng.between(-5, 5) })),
  "ask-fenced": (rng: G.Rng) =>
    ask(askId(rng), FENCED_ID, FencedGateway.name, "ping", TOKEN, encoded(Schema.Number, rng.between(0, 100))),
  "tell-fenced": (rng: G.Rng) => tell(FENCED_ID, FencedGateway.name, "note", TOKEN, encoded(Schema.String, rng.text(20))),
  reply: (rng: G.Rng) => G.frameBytes(Wire.reply(askId(rng), rng.pick([0, 1, 2]), rng.bytes(rng.size(64)))),
  connected: (rng: G.Rng) =>
    G.frameBytes(Wire.connected(askId(rng), rng.bool() ? null : "UnknownEndpoint", rng.text(20))),
  heartbeat: () => G.frameBytes(Wire.heartbeat),
  "heartbeat-reply": () => G.frameBytes(Wire.heartbeatReply),
  close: (rng: G.Rng) => G.frameBytes(Wire.close(rng.pick(["Unreachable", "VersionMismatch", "Untrusted", "Nonsense"]), rng.text(30)))
} satisfies Record<string, (rng: G.Rng) => Uint8Array>
export type Template = keyof typeof templates
export const templateNames = Object.keys(templates) as ReadonlyArray<Template>

/** Method names that a plain object resolves through its prototype. */
const inheritedNames = ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf", "isPrototypeOf", "__defineGetter__"]

const strangeNames = (rng: G.Rng) =>
  rng.pick(["", " ", "fuzz ", "FUZZ", "../fuzz", "fuzz\u0000", "\ud83d\ude00", "x".repeat(rng.between(1000, 60_000)), rng.text(30)])

interface Built {
  readonly variant: string
  readonly steps: ReadonlyArray<Step>
  readonly expect?: Expectation
  readonly hangUpOnAnswer?: boolean
  readonly slowReader?: boolean
  readonly knownBug?: KnownBug
}

const write = (bytes: Uint8Array): Step => ({ _tag: "write", bytes })
const error = (name: string): Expectation => ({ _tag: "error", error: name })
const protocolError: Expectation = { _tag: "close", reason: "Unreachable" }
const answer: Expectation = { _tag: "answer" }

const builders: Record<AttackKind, (rng: G.Rng, target: Target) => Built> = {
  "random-bytes": (rng) => {
    const withHello = rng.bool(0.3)
    const bytes = rng.bool(0.1)
      ? new TextEncoder().encode(rng.pick(["GET / HTTP/1.1\r\nHost: x\r\n\r\n", "SSH-2.0-OpenSSH_9.6\r\n", "\u0016\u0003\u0001\u0002\u0000\u0001"]))
      : rng.bytes(rng.between(1, 4096))
    return { variant: withHello ? "after-hello" : "first", steps: withHello ? [write(hello(rng)), write(bytes)] : [write(bytes)] }
  },

  "mutated-frame": (rng) => {
    const template = rng.pick(templateNames)
    const mutation = rng.pick(G.mutations)
    const frame = G.mutate(rng, templates[template](rng), mutation)
    const steps = template === "hello" ? [write(frame)] : [write(hello(rng)), write(frame)]
    return { variant: `${template}/${mutation}`, steps }
  },

  "truncated-silent": (rng) => {
    const template = rng.pick(templateNames)
    const frame = templates[template](rng)
    const cut = frame.subarray(0, rng.between(1, frame.length - 1))
    return { variant: template, steps: template === "hello" ? [write(cut)] : [write(hello(rng)), write(cut)] }
  },

  "truncated-hangup": (rng) => {
    const template = rng.pick(templateNames)
    const frame = templates[template](rng)
    const cut = frame.subarray(0, rng.between(1, frame.length - 1))
    const steps = template === "hello" ? [write(cut)] : [write(hello(rng)), write(cut)]
    return { variant: template, steps: [...steps, { _tag: "end" }] }
  },

  "oversized-length": (rng, target) => {
    const length = rng.bool(0.5) ? target.frameLimit + rng.between(1, 16) : rng.between(target.frameLimit + 1, 0xffffffff)
    const junk = rng.bytes(rng.int(64))
    const withHello = rng.bool()
    const frame = G.concat([G.lengthPrefix(length), junk])
    return {
      variant: withHello ? "after-hello" : "first",
      steps: withHello ? [write(hello(rng)), write(frame)] : [write(frame)],
      expect: protocolError
    }
  },

  "zero-length": (rng) => {
    const withHello = rng.bool()
    const frame = G.concat([G.lengthPrefix(0), rng.bytes(rng.int(16))])
    return {
      variant: withHello ? "after-hello" : "first",
      steps: withHello ? [write(hello(rng)), write(frame)] : [write(frame)],
      expect: protocolError
    }
  },

  "wrong-shape": (rng, target) => {
    const variant = rng.pick(["type-code", "arity", "field-type", "hostile-field", "not-an-array", "random-value", "hostile-body"])
    const template = rng.pick(templateNames.filter((t) => t !== "hello"))
    const frame = templates[template](rng)
    let bad: Uint8Array
    switch (variant) {
      case "type-code":
        bad = G.mutate(rng, frame, "swap-type")
        break
      case "arity":
        bad = G.mutate(rng, frame, rng.bool() ? "drop-field" : "add-field")
        break
      case "field-type":
        bad = G.mutate(rng, frame, "retype-field")
        break
      case "hostile-field":
        bad = G.mutate(rng, frame, "hostile-field")
        break
      case "not-an-array":
        bad = G.framed(G.pack(rng.pick([null, 3, "Hello", {}, new Uint8Array(4), []])))
        break
      case "random-value":
        bad = G.framed(G.pack(G.randomValue(rng, 4)))
        break
      default: {
        // A whole body of raw MessagePack; a deeply nested array puts a deep value where the type code goes.
        let kind = rng.pick(G.hostileKinds)
        if (kind === "deep-array" && target.avoidKnownBugs) kind = "deep-map"
        return {
          variant: `hostile-body/${kind}`,
          steps: [write(hello(rng)), write(G.framed(G.hostileValue(rng, kind).bytes))],
          ...(kind === "deep-array" ? { knownBug: "deep-type-code" as const } : {})
        }
      }
    }
    return { variant: variant === "not-an-array" || variant === "random-value" ? variant : `${template}/${variant}`, steps: [write(hello(rng)), write(bad)] }
  },

  "unknown-endpoint": (rng) => {
    const endpointId = rng.bool(0.7) ? `no-such-${rng.u32().toString(36)}` : strangeNames(rng)
    switch (rng.int(3)) {
      case 0:
        return {
          variant: "ask",
          steps: [write(hello(rng)), write(ask(askId(rng), endpointId, FuzzGateway.name, "echo", undefined, encoded(Sample, randomSample(rng))))],
          expect: error("RecipientUnreachableError")
        }
      case 1:
        return {
          variant: "tell",
          steps: [write(hello(rng)), write(tell(endpointId, FuzzGateway.name, "add", undefined, encoded(Addition, { key: "attacker", n: 1 })))]
        }
      default:
        return {
          variant: "connect",
          steps: [write(hello(rng)), write(G.frameBytes(Wire.connect(askId(rng), endpointId, FuzzGateway.name, FuzzGateway.fingerprint)))],
          expect: error("Connected:UnknownEndpoint")
        }
    }
  },

  "unknown-gateway": (rng) => {
    const gateway = rng.bool(0.5) ? FencedGateway.name : rng.bool() ? strangeNames(rng) : rng.pick(inheritedNames)
    switch (rng.int(3)) {
      case 0:
        return {
          variant: "ask",
          steps: [write(hello(rng)), write(ask(askId(rng), FUZZ_ID, gateway, "echo", undefined, encoded(Sample, randomSample(rng))))],
          expect: error("MethodNotServedError")
        }
      case 1:
        return {
          variant: "connect",
          steps: [write(hello(rng)), write(G.frameBytes(Wire.connect(askId(rng), FUZZ_ID, gateway, FuzzGateway.fingerprint)))],
          expect: error("Connected:GatewayNotServed")
        }
      default:
        return {
          variant: "connect-fingerprint",
          steps: [
            write(hello(rng)),
            write(G.frameBytes(Wire.connect(askId(rng), FUZZ_ID, FuzzGateway.name, rng.bool() ? FencedGateway.fingerprint : rng.text(20))))
          ],
          // The fingerprints differ: the server answers with its snapshot, for the caller to judge (a Compare).
          expect: answer
        }
    }
  },

  "unknown-method": (rng, target) => {
    const inherited = !target.avoidKnownBugs && rng.bool(0.3)
    const method = inherited ? rng.pick(inheritedNames) : rng.bool(0.6) ? `no_${rng.u32().toString(36)}` : strangeNames(rng)
    const fenced = rng.bool(0.3)
    const frame = fenced
      ? ask(askId(rng), FENCED_ID, FencedGateway.name, method, TOKEN, encoded(Schema.Number, 1))
      : ask(askId(rng), FUZZ_ID, FuzzGateway.name, method, undefined, encoded(Sample, randomSample(rng)))
    return {
      variant: inherited ? "inherited-name" : fenced ? "fenced" : "unfenced",
      steps: [write(hello(rng)), write(frame)],
      expect: error("MethodNotServedError"),
      ...(inherited ? { knownBug: "inherited-method-name" as const } : {})
    }
  },

  "kind-mismatch": (rng) =>
    rng.bool()
      ? {
        variant: "ask-to-tell",
        steps: [write(hello(rng)), write(ask(askId(rng), FUZZ_ID, FuzzGateway.name, "add", undefined, encoded(Addition, { key: "attacker", n: 1 })))],
        expect: error("MethodNotServedError")
      }
      : {
        variant: "tell-to-ask",
        steps: [write(hello(rng)), write(tell(FUZZ_ID, FuzzGateway.name, "echo", undefined, encoded(Sample, randomSample(rng))))]
      },

  "bad-payload": (rng) => {
    const id = askId(rng)
    const method = rng.pick(["echo", "bytes", "double", "total"] as const)
    const spec = FuzzGateway.methods[method]
    const variant = rng.pick(["not-bytes", "random-bytes", "mutated", "truncated", "other-schema", "out-of-range"])
    let payload: unknown
    let expect: Expectation | undefined
    switch (variant) {
      case "not-bytes":
        payload = rng.bool() ? G.randomValue(rng, 2) : rng.pick([null, 0, "text", [], {}])
        if (payload instanceof Uint8Array) payload = null
        expect = error("RpcSerializationError")
        break
      case "random-bytes":
        payload = rng.bytes(rng.size(500))
        break
      case "mutated": {
        const valid = encoded(spec.payload, validPayload(rng, method))
        payload = G.bodyOf(G.mutate(rng, G.framed(valid), rng.pick(["flip-bits", "flip-bytes", "splice"] as const)))
        break
      }
      case "truncated": {
        const valid = encoded(spec.payload, validPayload(rng, method))
        payload = valid.subarray(0, rng.int(valid.length))
        break
      }
      case "other-schema":
        payload = rng.bool() ? encoded(Schema.String, rng.text(20)) : encoded(Addition, { key: "k", n: 3 })
        break
      default:
        // A value of the right type that the method's checks refuse.
        return {
          variant,
          steps: [write(hello(rng)), write(ask(id, FUZZ_ID, FuzzGateway.name, "double", undefined, encoded(Schema.Int, rng.bool() ? 1001 + rng.int(1e6) : -1 - rng.int(1e6))))],
          expect: error("RpcSerializationError")
        }
    }
    return {
      variant: `${method}/${variant}`,
      steps: [write(hello(rng)), write(ask(id, FUZZ_ID, FuzzGateway.name, method, undefined, payload))],
      ...(expect === undefined ? {} : { expect })
    }
  },

  "bad-token": (rng, target) => {
    const variants = ["missing", "wrong-type", "wrong-value", "hostile", "not-wrapped", "to-unfenced", "tell"]
    if (!target.avoidKnownBugs) variants.push("deep")
    const variant = rng.pick(variants)
    const id = askId(rng)
    const payload = encoded(Schema.Number, rng.between(0, 100))
    const fencedAsk = (token: unknown) => ask(id, FENCED_ID, FencedGateway.name, "ping", token, payload)
    switch (variant) {
      case "missing":
        return { variant, steps: [write(hello(rng)), write(fencedAsk(undefined))], expect: error("FencingTokenError") }
      case "wrong-type": {
        let token = G.randomValue(rng, 3)
        if (token === null) token = 0
        return { variant, steps: [write(hello(rng)), write(fencedAsk(token))], expect: error("FencingTokenError") }
      }
      case "wrong-value":
        return {
          variant,
          steps: [write(hello(rng)), write(fencedAsk({ epoch: TOKEN.epoch + rng.between(1, 5), leader: TOKEN.leader }))],
          expect: error("FencingTokenError")
        }
      case "hostile": {
        // The token's one element is raw MessagePack the encoder would never write.
        const fields = G.fieldsOf(Wire.call(false, id, FENCED_ID, FencedGateway.name, "ping", { value: 0 }, undefined, undefined, payload))
        const at = fields.findIndex((f) => Array.isArray(f) && f.length === 1 && f[0] === 0)
        fields[at] = new G.Raw(G.concat([Uint8Array.of(0x91), G.hostileValue(rng).bytes]))
        return { variant, steps: [write(hello(rng)), write(G.framed(G.packArray(fields)))] }
      }
      case "deep": {
        // A token nested deeper than JSON.stringify can print.
        const fields = G.fieldsOf(Wire.call(false, id, FENCED_ID, FencedGateway.name, "ping", { value: 0 }, undefined, undefined, payload))
        const at = fields.findIndex((f) => Array.isArray(f) && f.length === 1 && f[0] === 0)
        const depth = rng.between(12_000, 60_000)
        fields[at] = new G.Raw(G.concat([new Uint8Array(depth).fill(0x91), Uint8Array.of(0xc0)]))
        return { variant, steps: [write(hello(rng)), write(G.framed(G.packArray(fields)))], expect: error("FencingTokenError"), knownBug: "deep-token" }
      }
      case "not-wrapped": {
        // The token field must be nil or a one-element array: anything else is a malformed message.
        const fields = G.fieldsOf(Wire.call(false, id, FENCED_ID, FencedGateway.name, "ping", { value: 0 }, undefined, undefined, payload))
        const at = fields.findIndex((f) => Array.isArray(f) && f.length === 1 && f[0] === 0)
        fields[at] = rng.pick<unknown>(["token", 7, [], [TOKEN, TOKEN], { epoch: 7 }, true])
        return { variant, steps: [write(hello(rng)), write(G.reframe(fields))], expect: protocolError }
      }
      case "to-unfenced":
        // An unfenced endpoint ignores a token.
        return {
          variant,
          steps: [write(hello(rng)), write(ask(id, FUZZ_ID, FuzzGateway.name, "double", G.randomValue(rng, 2), encoded(Schema.Int, 21)))],
          expect: answer
        }
      default:
        return { variant, steps: [write(hello(rng)), write(tell(FENCED_ID, FencedGateway.name, "note", G.randomValue(rng, 2), encoded(Schema.String, "x")))] }
    }
  },

  "tiny-frame-limit": (rng) => ({
    variant: "ask",
    steps: [
      write(hello(rng, { limit: rng.between(0, 40) })),
      write(ask(askId(rng), FUZZ_ID, FuzzGateway.name, "bytes", undefined, encoded(Schema.Uint8Array, rng.bytes(rng.between(64, 4096)))))
    ],
    expect: error("FrameTooLargeError")
  }),

  "no-hello": (rng) =>
    rng.bool(0.7)
      ? { variant: "silent", steps: [{ _tag: "pause", ms: 0 }], expect: protocolError }
      : { variant: "hang-up", steps: [{ _tag: "end" }] },

  "second-hello": (rng, target) => {
    const authority = rng.pick([null, target.clientAuthority, "127.0.0.1:1", rng.text(20)])
    return {
      variant: authority === null ? "anonymous" : "claiming",
      steps: [write(hello(rng, { authority })), write(hello(rng, { authority }))],
      expect: protocolError
    }
  },

  "wrong-version": (rng) => {
    const fields = G.fieldsOf(Wire.hello(incarnation(rng), "fuzz-attacker", null, 1 << 20))
    // Hello's first two elements (type and version) stay where they are in every version (docs/PROTOCOL.md).
    const legal = rng.bool(0.7)
    fields[1] = legal ? rng.pick([0, 1, Wire.VERSION + 1, 255, 65_536, 2 ** 31, 2 ** 53 - 1].filter((v) => v !== Wire.VERSION)) : rng.pick<unknown>([-1, 1.5, "2", null])
    if (legal && rng.bool(0.3)) fields.splice(2)
    return { variant: legal ? "other-version" : "not-a-version", steps: [write(G.reframe(fields))], expect: legal ? { _tag: "close", reason: "VersionMismatch" } : protocolError }
  },

  "before-hello": (rng) => {
    const template = rng.pick(templateNames.filter((t) => t !== "hello" && t !== "close"))
    return { variant: template, steps: [write(templates[template](rng))], expect: protocolError }
  },

  "hello-then-garbage": (rng) => ({
    variant: "garbage",
    steps: [write(G.concat([hello(rng), rng.bytes(rng.between(1, 512))]))]
  }),

  "connect-flood": (rng) => {
    const count = rng.between(100, 2000)
    const frames: Array<Uint8Array> = [hello(rng)]
    for (let i = 0; i < count; i++) {
      frames.push(G.frameBytes(Wire.connect(i, rng.bool(0.8) ? FUZZ_ID : `no-${i}`, FuzzGateway.name, FuzzGateway.fingerprint)))
    }
    return { variant: `${count > 1000 ? "over" : "under"}-1000`, steps: [write(G.concat(frames))], expect: answer }
  },

  "stray-replies": (rng) => {
    const frames: Array<Uint8Array> = [hello(rng)]
    const count = rng.between(1, 200)
    for (let i = 0; i < count; i++) {
      frames.push(rng.pick([templates.reply, templates.connected, templates["heartbeat-reply"]])(rng))
    }
    return { variant: "replies", steps: [write(G.concat(frames))] }
  },

  "slow-writer": (rng, target) => {
    const call = ask(askId(rng), FUZZ_ID, FuzzGateway.name, "double", undefined, encoded(Schema.Int, rng.between(0, 1000)))
    if (rng.bool()) {
      // The hello too. It must be in within the connect timeout, which a loaded machine can make this miss: no
      // expectation, only the general rule (an answer or a close).
      const greeting = hello(rng)
      const delayMs = Math.max(0, Math.min(2, Math.floor(target.connectTimeoutMs / 10 / greeting.length)))
      return { variant: "hello-and-ask", steps: [{ _tag: "drip", bytes: G.concat([greeting, call]), delayMs }] }
    }
    // The attacker answers no heartbeat, and dripping the ask can outlast the heartbeat pause, after which the
    // server closes the connection (only answers count as signs of life): no expectation, only the general rule.
    return { variant: "ask", steps: [write(hello(rng)), { _tag: "drip", bytes: call, delayMs: rng.between(1, 20) }] }
  },

  "slow-reader": (rng, target) => {
    // Asks for large replies but reads nothing until the server has had time to give up on it. Mostly a bounded
    // amount (at most 2 MiB); sometimes a flood of 128 MiB, sent faster than the server could ever be silent for.
    const flood = !target.avoidKnownBugs && rng.bool(0.15)
    const size = flood ? 64 * 1024 : rng.between(8 * 1024, 64 * 1024)
    const count = flood ? 2048 : rng.between(4, Math.floor(2 * 1024 * 1024 / size))
    const frames: Array<Step> = [write(hello(rng))]
    const frame = ask(1, FUZZ_ID, FuzzGateway.name, "bytes", undefined, encoded(Schema.Uint8Array, rng.bytes(size)))
    for (let i = 0; i < count; i++) frames.push(write(frame))
    return {
      variant: flood ? "flood" : "bounded",
      steps: frames,
      slowReader: true,
      hangUpOnAnswer: false,
      ...(flood ? { knownBug: "unread-replies" as const } : {})
    }
  }
}

/** A valid payload of a FuzzGateway method. */
const validPayload = (rng: G.Rng, method: "echo" | "bytes" | "double" | "total"): unknown => {
  switch (method) {
    case "echo":
      return randomSample(rng)
    case "bytes":
      return rng.bytes(rng.size(500))
    case "double":
      return rng.between(0, 1000)
    case "total":
      return rng.text(20)
  }
}

/** Attack number `index` of the run with `seed`. */
export const buildAttack = (
  seed: number,
  index: number,
  target: Target,
  kinds: ReadonlyArray<AttackKind> = attackKinds
): Attack => {
  const rng = new G.Rng(seed, index)
  const kind = rng.weighted(kinds.map((k) => [k, weights[k]] as const))
  // Most attackers hang up once answered; some stay silent so that the server's own deadlines are tested too.
  const hangUpOnAnswer = rng.bool(0.75)
  const built = builders[kind](rng, target)
  return {
    kind,
    variant: built.variant,
    steps: built.steps,
    hangUpOnAnswer: built.hangUpOnAnswer ?? hangUpOnAnswer,
    slowReader: built.slowReader ?? false,
    expect: built.expect,
    knownBug: built.knownBug
  }
}
