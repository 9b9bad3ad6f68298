/**
 * What the command-line client does over the wire: an RpcService of its own (TCP, or mutual TLS for `rpcs://`), the
 * handshake round trips of `ping`, reflection for `list` and `describe`, and `call`, which rebuilds the method's
 * Schemas from the reflected snapshot.
 *
 * A snapshot keeps each Schema's encoded side as a `SchemaRepresentation`, which is what SchemaBinary lays out, so the
 * Schemas rebuilt from it write and read the very bytes the endpoint's own do; the client connects under the
 * endpoint's fingerprint for that reason. A payload given as JSON is read with the rebuilt Schema's JSON codec: it is
 * the wire form (a `NumberFromString` field takes a string), which `describe` shows when it differs from the type.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as SchemaRepresentation from "effect/SchemaRepresentation"
import type * as Scope from "effect/Scope"
import * as RpcAddress from "../RpcAddress.js"
import type * as RpcCompatibility from "../RpcCompatibility.js"
import * as RpcConfig from "../RpcConfig.js"
import * as RpcError from "../RpcError.js"
import * as RpcGateway from "../RpcGateway.js"
import * as RpcReflection from "../RpcReflection.js"
import * as RpcService from "../RpcService.js"
import * as Layout from "./layout.js"
import * as Snapshot from "./snapshot.js"
import * as Wire from "./wire.js"

/** The flags every command that talks to a service takes. */
export interface ConnectionFlags {
  readonly timeout: Duration.Duration
  readonly key: string | undefined
  readonly cert: string | undefined
  readonly ca: string | undefined
}

/** Why a remote command could not do its work, classified for the exit code. */
export class RemoteFailure extends Data.TaggedError("RemoteFailure")<{
  readonly kind: "usage" | "unreachable" | "notFound" | "callError"
  readonly detail: string
}> {}

const failWith = (kind: RemoteFailure["kind"], detail: string) => new RemoteFailure({ kind, detail })

const usage = (detail: string) => failWith("usage", detail)

/** A `RpcConnectionError` as a failure of the command: an absent endpoint or gateway is "not found". */
const connectFailure = (error: RpcError.RpcConnectionError | RpcError.RpcServiceStoppedError): RemoteFailure =>
  failWith(
    error._tag === "RpcConnectionError" && (error.reason === "UnknownEndpoint" || error.reason === "GatewayNotServed")
      ? "notFound"
      : error._tag === "RpcConnectionError" && error.reason === "InvalidAddress"
      ? "usage"
      : "unreachable",
    error.message
  )

/** A remote service's address, and the endpoint it names, if any. */
export interface Target {
  readonly protocol: "rpc" | "rpcs"
  readonly authority: string
  readonly endpointId: string | undefined
}

/** The parts of an `rpc://host:port[/endpointId]` address. */
export const parseTarget = (address: string): Result.Result<Target, RemoteFailure> => {
  const match = /^(rpcs?):\/\/([^/]+)(?:\/(.*))?$/.exec(address)
  if (match === null) {
    return Result.fail(
      usage(`"${address}" is not an address of a remote service; expected rpc://host:port[/endpointId] or rpcs://...`)
    )
  }
  const hostPort = RpcAddress.parseHostPort(match[2]!)
  if (Result.isFailure(hostPort)) return Result.fail(usage(hostPort.failure))
  const endpointId = match[3] === undefined || match[3] === "" ? undefined : match[3]
  if (endpointId !== undefined && Result.isFailure(RpcAddress.parse(address))) {
    return Result.fail(usage(`"${address}" has a malformed endpoint id`))
  }
  return Result.succeed({
    protocol: match[1] as "rpc" | "rpcs",
    authority: match[2]!,
    endpointId: endpointId === undefined ? undefined : decodeURIComponent(endpointId)
  })
}

/**
 * The client's own RpcService: it listens on a free port of 127.0.0.1 only because every service does; its hello
 * advertises that port. `RPC_*` variables apply (RPC_TLS_KEY, ...), except where to listen; flags win over them.
 */
export const clientService = (
  protocol: "rpc" | "rpcs",
  flags: ConnectionFlags
): Effect.Effect<RpcService.RpcServiceShape, RemoteFailure, Scope.Scope> => {
  const overrides: Partial<RpcConfig.RpcConfig> = {
    connectTimeout: flags.timeout,
    askTimeout: flags.timeout,
    bindHost: "127.0.0.1",
    bindPort: "0",
    externalHost: undefined,
    externalPort: undefined,
    captureAskCallSite: false,
    metrics: false,
    tracing: false,
    reflection: false
  }
  const tls = {
    ...(flags.key === undefined ? {} : { key: flags.key }),
    ...(flags.cert === undefined ? {} : { cert: flags.cert }),
    ...(flags.ca === undefined ? {} : { ca: flags.ca })
  }
  const make = protocol === "rpcs" ? RpcService.makeTls(tls) : RpcService.makeTcp()
  return make.pipe(
    Effect.provide(RpcConfig.layerFromEnv(overrides)),
    Effect.mapError((error) =>
      error._tag === "RpcBindError" && protocol === "rpcs"
        ? usage(
          `${error.detail}. An rpcs:// address needs --key, --cert and --ca (or RPC_TLS_KEY, RPC_TLS_CERT, RPC_TLS_CA)`
        )
        : error._tag === "ConfigError"
        ? usage(`An RPC_* environment variable is not valid: ${error.message}`)
        : failWith("unreachable", error.message)
    )
  )
}

// ---------------------------------------------------------------------------------------------------------------
// ping
// ---------------------------------------------------------------------------------------------------------------

/** A gateway no endpoint serves: its connects are answered by the peer's connection itself, a pure round trip. */
const Probe = RpcGateway.make("effect-actor-rpc/ping", {})

/** What `ping` found. */
export interface PingResult {
  readonly address: string
  readonly service: string | undefined
  readonly incarnation: string | undefined
  readonly protocolVersion: number
  /** Dial, TLS, hellos and the first handshake. */
  readonly connectMillis: number
  /** Each later handshake on the open connection. */
  readonly roundTripMillis: ReadonlyArray<number>
  /** Present when the address named an endpoint: does the service run it? */
  readonly endpoint: { readonly endpointId: string; readonly present: boolean } | undefined
}

export const ping = (
  address: string,
  count: number,
  flags: ConnectionFlags
): Effect.Effect<PingResult, RemoteFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const target = parseTarget(address)
    if (Result.isFailure(target)) return yield* target.failure
    const { authority, endpointId, protocol } = target.success
    const service = yield* clientService(protocol, flags)
    const probe = `${protocol}://${authority}/${encodeURIComponent(endpointId ?? RpcReflection.ENDPOINT_ID)}`
    /** One handshake: its time, and whether the endpoint exists (a refusal that names the gateway says it does). */
    const handshake = Effect.gen(function*() {
      const started = performance.now()
      const exit = yield* Effect.exit(service.connect(probe, Probe, { timeout: flags.timeout }))
      // Microseconds are all a round trip over a socket can tell.
      const millis = Math.round((performance.now() - started) * 1000) / 1000
      if (exit._tag === "Success") return { millis, present: true }
      const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error
      if (error === undefined) return yield* failWith("unreachable", `The connect died: ${String(exit.cause)}`)
      if (error._tag === "RpcConnectionError" && error.reason === "GatewayNotServed") return { millis, present: true }
      if (error._tag === "RpcConnectionError" && error.reason === "UnknownEndpoint") return { millis, present: false }
      // The probe's own gateway and endpoint mean nothing to the user: say what failed about the address.
      return yield* (error._tag === "RpcConnectionError"
        ? failWith("unreachable", `Cannot reach ${address} (${error.reason}): ${error.detail}`)
        : connectFailure(error))
    })
    const first = yield* handshake
    const rounds: Array<number> = []
    for (let i = 0; i < count; i++) rounds.push((yield* handshake).millis)
    const snapshot = yield* service.introspect
    const connection = snapshot.connections.find((c) => c.peer === authority && c.state === "open")
    return {
      address,
      service: connection?.peerService,
      incarnation: connection?.peerIncarnation,
      protocolVersion: Wire.VERSION,
      connectMillis: first.millis,
      roundTripMillis: rounds,
      endpoint: endpointId === undefined ? undefined : { endpointId, present: first.present }
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// Reflection
// ---------------------------------------------------------------------------------------------------------------

const reflectionOf = (service: RpcService.RpcServiceShape, address: string, flags: ConnectionFlags) =>
  RpcReflection.connect(address, { timeout: flags.timeout }).pipe(
    Effect.provideService(RpcService.RpcService, service),
    Effect.mapError((error) =>
      error._tag === "RpcConnectionError" && error.reason === "UnknownEndpoint"
        ? failWith(
          "notFound",
          `The service at ${address} does not answer reflection: RpcConfig.reflection is off there ` +
            `(RPC_REFLECTION=true, or RpcConfig.layer({ reflection: true }), turns it on; ` +
            `docs/SECURITY.md says when to)`
        )
        : connectFailure(error)
    )
  )

const callFailure = (error: { readonly message: string }) => failWith("callError", error.message)

/** `list`: the service's endpoints and the gateways each serves. */
export const list = (
  address: string,
  flags: ConnectionFlags
): Effect.Effect<RpcReflection.ServiceInfo, RemoteFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const target = parseTarget(address)
    if (Result.isFailure(target)) return yield* target.failure
    const service = yield* clientService(target.success.protocol, flags)
    const reflection = yield* reflectionOf(service, address, flags)
    return yield* reflection.list().pipe(Effect.mapError(callFailure))
  })

/** The snapshots of the gateways the endpoint at `address` serves (with `gateway`, that one only). */
const describeWith = (
  service: RpcService.RpcServiceShape,
  address: string,
  gateway: string | undefined,
  flags: ConnectionFlags
) =>
  Effect.gen(function*() {
    const target = parseTarget(address)
    if (Result.isFailure(target)) return yield* target.failure
    const endpointId = target.success.endpointId
    if (endpointId === undefined) {
      return yield* usage(`"${address}" names no endpoint; give its id (rpc://host:port/endpointId; list shows them)`)
    }
    const reflection = yield* reflectionOf(service, address, flags)
    const snapshots = yield* reflection.describe({ endpointId }).pipe(
      Effect.mapError((error) =>
        RpcReflection.isEndpointNotFoundError(error) ? failWith("notFound", error.message) : callFailure(error)
      )
    )
    if (gateway === undefined) return snapshots
    const chosen = snapshots.filter((snapshot) => snapshot.gateway === gateway)
    if (chosen.length === 0) {
      const served = snapshots.map((s) => s.gateway).join(", ")
      return yield* failWith("notFound", `The endpoint at ${address} does not serve ${gateway}; it serves ${served}`)
    }
    return chosen
  })

/** `describe`: the snapshots of the endpoint's gateways. */
export const describe = (
  address: string,
  gateway: string | undefined,
  flags: ConnectionFlags
): Effect.Effect<ReadonlyArray<RpcCompatibility.GatewaySnapshot>, RemoteFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const target = parseTarget(address)
    if (Result.isFailure(target)) return yield* target.failure
    const service = yield* clientService(target.success.protocol, flags)
    return yield* describeWith(service, address, gateway, flags)
  })

// ---------------------------------------------------------------------------------------------------------------
// Schemas from snapshots
// ---------------------------------------------------------------------------------------------------------------

/** A Schema this client cannot rebuild from a snapshot. */
class Unbuildable extends Error {}

/**
 * Effect's revivers (every built-in declaration and check, found by the export's name so that new ones come with
 * new Effect versions), and ours: a filter without a representation of its own is not checked here, since the
 * endpoint checks it; a declaration without one cannot be rebuilt.
 */
const revivers: ReadonlyArray<SchemaRepresentation.AnyReviver> = [
  ...Object.entries(SchemaRepresentation).flatMap(([name, value]) =>
    name.endsWith("Reviver") && typeof value === "object" && value !== null && "revive" in value
      ? [value as SchemaRepresentation.AnyReviver]
      : []
  ),
  SchemaRepresentation.makeReviverFilter(
    Layout.OPAQUE_FILTER_ID,
    Schema.Unknown,
    () => Schema.makeFilter(() => true) as SchemaAST.Filter<any>
  ),
  SchemaRepresentation.makeReviverDeclaration(Layout.OPAQUE_DECLARATION_ID, Schema.Unknown, ({ payload }) => {
    throw new Unbuildable(`a declaration without a representation (${Layout.stableText(payload)})`)
  })
]

/** The Schema a snapshot's representation describes: the wire form of the original. */
export const schemaOf = (schema: RpcCompatibility.SchemaSnapshot, where: string): Result.Result<Schema.Top, string> => {
  if (schema.codec === "bytes") return Result.succeed(Schema.Uint8Array)
  if (schema.representation === null) {
    return Result.fail(`${where} (${schema.description}) has no SchemaRepresentation, so this client cannot rebuild it`)
  }
  try {
    return Result.succeed(
      SchemaRepresentation.fromRepresentation(SchemaRepresentation.fromJson(schema.representation), { revivers })
    )
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error)
    return Result.fail(`${where} (${schema.description}) cannot be rebuilt: ${why}`)
  }
}

/**
 * A one-line rendering of the wire form a rebuilt Schema takes as JSON, when a transformation makes it differ from
 * the type (the snapshot's decoding notes say where).
 */
export const wireForm = (schema: RpcCompatibility.SchemaSnapshot): string | undefined => {
  const transformed = Object.values(schema.decoding ?? {}).some((note) => note.decodesTo !== undefined)
  if (!transformed) return undefined
  const rebuilt = schemaOf(schema, "")
  return Result.isFailure(rebuilt) ? undefined : Snapshot.describe(rebuilt.success.ast)
}

/**
 * A gateway with the methods of `snapshot`, whose Schemas are rebuilt from it, under the snapshot's fingerprint: on
 * the wire it is the endpoint's own gateway.
 */
const gatewayOf = (snapshot: RpcCompatibility.GatewaySnapshot): Result.Result<RpcGateway.Any, string> => {
  const methods: Record<string, RpcGateway.Method> = {}
  for (const [name, method] of Object.entries(snapshot.methods)) {
    const schemas: Array<Schema.Top> = []
    for (const part of ["payload", "success", "failure"] as const) {
      const rebuilt = schemaOf(method[part], `${snapshot.gateway}.${name}.${part}`)
      if (Result.isFailure(rebuilt)) return Result.fail(rebuilt.failure)
      schemas.push(rebuilt.success)
    }
    const [payload, success, failure] = schemas as [RpcGateway.AnySchema, RpcGateway.AnySchema, RpcGateway.AnySchema]
    const timeout = method.timeoutMillis === undefined
      ? undefined
      : method.timeoutMillis === "infinity"
      ? Duration.infinity
      : Duration.millis(method.timeoutMillis)
    methods[name] = method.kind === "ask"
      ? RpcGateway.ask({ payload, success, failure, timeout })
      : RpcGateway.tell({ payload })
  }
  let token: RpcGateway.AnySchema | undefined
  if (snapshot.token !== undefined) {
    const rebuilt = schemaOf(snapshot.token, `${snapshot.gateway}.token`)
    if (Result.isFailure(rebuilt)) return Result.fail(rebuilt.failure)
    token = rebuilt.success as RpcGateway.AnySchema
  }
  const made = RpcGateway.make(snapshot.gateway, methods, token === undefined ? undefined : { token })
  return Result.succeed({ ...made, fingerprint: snapshot.fingerprint })
}

// ---------------------------------------------------------------------------------------------------------------
// call
// ---------------------------------------------------------------------------------------------------------------

/** How a call ended: the method's success, its declared failure, or (sent) a tell. As JSON, in the wire form. */
export type CallOutcome =
  | { readonly outcome: "success"; readonly value: unknown }
  | { readonly outcome: "failure"; readonly failure: unknown }
  | { readonly outcome: "sent" }

const toJson = (schema: Schema.Top, value: unknown): unknown => {
  const encoded = Schema.encodeUnknownResult(Schema.toCodecJson(schema as Schema.Codec<unknown, unknown>))(value)
  return Result.isSuccess(encoded) ? encoded.success : String(value)
}

const fromJson = (schema: Schema.Top, json: unknown, what: string): Result.Result<unknown, RemoteFailure> => {
  let decoded: Result.Result<unknown, Schema.SchemaError>
  try {
    decoded = Schema.decodeUnknownResult(Schema.toCodecJson(schema as Schema.Codec<unknown, unknown>))(json)
  } catch (error) {
    return Result.fail(usage(`${what} cannot be read: ${error instanceof Error ? error.message : String(error)}`))
  }
  return Result.isSuccess(decoded)
    ? Result.succeed(decoded.success)
    : Result.fail(
      usage(`${what} does not match its Schema (${Snapshot.describe(schema.ast)}): ${decoded.failure.message}`)
    )
}

const parseJson = (text: string, what: string): Result.Result<unknown, RemoteFailure> => {
  try {
    return Result.succeed(JSON.parse(text))
  } catch (error) {
    return Result.fail(usage(`${what} is not JSON: ${error instanceof Error ? error.message : String(error)}`))
  }
}

/**
 * `call`: finds the method among the endpoint's gateways (`Gateway.method`, or a method name only one of them has),
 * reads the payload and the token from JSON with the rebuilt Schemas, calls, and gives the outcome as JSON.
 */
export const call = (
  address: string,
  method: string,
  payloadText: string | undefined,
  options: { readonly gateway: string | undefined; readonly token: string | undefined },
  flags: ConnectionFlags
): Effect.Effect<CallOutcome, RemoteFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const target = parseTarget(address)
    if (Result.isFailure(target)) return yield* target.failure
    const dot = method.lastIndexOf(".")
    const gatewayName = options.gateway ?? (dot > 0 ? method.slice(0, dot) : undefined)
    const methodName = dot > 0 && options.gateway === undefined ? method.slice(dot + 1) : method
    const service = yield* clientService(target.success.protocol, flags)
    const snapshots = yield* describeWith(service, address, gatewayName, flags)
    const having = snapshots.filter((snapshot) => Object.hasOwn(snapshot.methods, methodName))
    if (having.length === 0) {
      const known = snapshots.flatMap((s) => Object.keys(s.methods).map((name) => `${s.gateway}.${name}`))
      return yield* failWith("notFound", `The endpoint at ${address} has no method ${methodName}${
          gatewayName === undefined ? "" : ` in ${gatewayName}`
        }; it serves ${known.join(", ")}`
      )
    }
    if (having.length > 1) {
      return yield* usage(
        `${methodName} is a method of ${having.map((s) => s.gateway).join(" and ")}: name one ` +
          `(Gateway.method or --gateway)`
      )
    }
    const snapshot = having[0]!
    const built = gatewayOf(snapshot)
    if (Result.isFailure(built)) return yield* usage(`Cannot call ${snapshot.gateway}.${methodName}: ${built.failure}`)
    const gateway = built.success
    const spec = (gateway.methods as RpcGateway.Methods)[methodName]!
    let payload: Result.Result<unknown, RemoteFailure>
    if (payloadText === undefined) {
      // No payload given: right for a void one, and nothing else.
      payload = Schema.is(spec.payload)(undefined)
        ? Result.succeed(undefined)
        : Result.fail(
          usage(`${snapshot.gateway}.${methodName} needs a payload: ${Snapshot.describe(spec.payload.ast)}`)
        )
    } else {
      const json = parseJson(payloadText, "The payload")
      payload = Result.isFailure(json) ? json : fromJson(spec.payload, json.success, "The payload")
    }
    if (Result.isFailure(payload)) return yield* payload.failure
    let client: RpcGateway.Client<RpcGateway.Any>
    if (options.token === undefined) {
      client = yield* service.connect(address, gateway, { timeout: flags.timeout }).pipe(
        Effect.mapError(connectFailure)
      )
    } else {
      const tokenJson = parseJson(options.token, "The token")
      if (Result.isFailure(tokenJson)) return yield* tokenJson.failure
      const token = gateway.token === undefined
        ? Result.succeed(tokenJson.success)
        : fromJson(gateway.token, tokenJson.success, "The token")
      if (Result.isFailure(token)) return yield* token.failure
      client = yield* service.connectFenced(address, token.success, gateway, { timeout: flags.timeout }).pipe(
        Effect.mapError(connectFailure)
      )
    }
    type Invoke = (payload: unknown, options: RpcGateway.CallOptions) => Effect.Effect<unknown, unknown>
    const invoke = (client as unknown as Record<string, Invoke>)[methodName]!
    const exit = yield* Effect.exit(invoke(payload.success, { timeout: flags.timeout }))
    if (exit._tag === "Success") {
      return spec.kind === "tell"
        ? { outcome: "sent" as const }
        : { outcome: "success" as const, value: toJson(spec.success, exit.value) }
    }
    const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    if (failure === undefined) return yield* failWith("callError", `The call died: ${String(exit.cause)}`)
    const error = failure.error
    // The library's own errors first: a permissive failure Schema (Unknown) would take them too.
    if (RpcError.isRpcError(error)) return yield* failWith("callError", error.message)
    return { outcome: "failure" as const, failure: toJson(spec.failure, error) }
  })
