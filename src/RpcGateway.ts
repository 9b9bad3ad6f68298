/**
 * Gateways: the typed protocols that callers and endpoints share (Flink's `RpcGateway` interfaces).
 *
 * A gateway is a named set of methods; each method has Schemas for its payload, success and failure, a kind
 * (`ask` = request/response, `tell` = fire-and-forget) and an optional default timeout. A gateway *client* is a
 * record of functions returning Effects; a client obtained locally and one obtained by address have one type.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Hash from "effect/Hash"
import * as Layer from "effect/Layer"
import { hasProperty } from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as SchemaRepresentation from "effect/SchemaRepresentation"
import type { RpcCallError, RpcConnectionError, RpcServiceStoppedError } from "./RpcError.js"
import { RpcService } from "./internal/serviceTag.js"

const TypeId = "~effect-actor-rpc/RpcGateway"

/**
 * A Schema usable on the wire: encoding and decoding need no services.
 *
 * @since 0.1.0
 */
export type AnySchema = Schema.Codec<any, any>

/**
 * One method of a gateway.
 *
 * @since 0.1.0
 */
export interface Method<
  Kind extends "ask" | "tell" = "ask" | "tell",
  Payload extends AnySchema = AnySchema,
  Success extends AnySchema = AnySchema,
  Failure extends AnySchema = AnySchema
> {
  readonly kind: Kind
  readonly payload: Payload
  readonly success: Success
  readonly failure: Failure
  /** The method's default timeout (Flink's `@RpcTimeout`); the service's `askTimeout` applies when absent. */
  readonly timeout: Duration.Duration | undefined
}

/**
 * Declares a request/response method. Payload, success and failure default to `Void`, `Void` and `Never`.
 *
 * @since 0.1.0
 */
export const ask = <
  Payload extends AnySchema = typeof Schema.Void,
  Success extends AnySchema = typeof Schema.Void,
  Failure extends AnySchema = typeof Schema.Never
>(options: {
  readonly payload?: Payload | undefined
  readonly success?: Success | undefined
  readonly failure?: Failure | undefined
  readonly timeout?: Duration.Input | undefined
}): Method<"ask", Payload, Success, Failure> => ({
  kind: "ask",
  payload: options.payload ?? (Schema.Void as any),
  success: options.success ?? (Schema.Void as any),
  failure: options.failure ?? (Schema.Never as any),
  timeout: options.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout)
})

/**
 * Declares a fire-and-forget method: the caller neither waits nor hears of the handler's outcome.
 *
 * @since 0.1.0
 */
export const tell = <Payload extends AnySchema = typeof Schema.Void>(options: {
  readonly payload?: Payload | undefined
}): Method<"tell", Payload, typeof Schema.Void, typeof Schema.Never> => ({
  kind: "tell",
  payload: options.payload ?? (Schema.Void as any),
  success: Schema.Void,
  failure: Schema.Never,
  timeout: undefined
})

/**
 * The methods of a gateway, by name.
 *
 * @since 0.1.0
 */
export type Methods = Readonly<Record<string, Method>>

/**
 * A named protocol: the contract between callers and the endpoints that serve it.
 *
 * @since 0.1.0
 */
export interface RpcGateway<Name extends string = string, M extends Methods = Methods, Token = unknown> {
  readonly [TypeId]: typeof TypeId
  readonly name: Name
  readonly methods: M
  /**
   * The Schema of the fencing token of the endpoints that serve it, when the gateway declares that it is fenced:
   * `connectFenced` then takes a token of this type and checks it at connect.
   */
  readonly token: Schema.Codec<Token, any> | undefined
  /**
   * A hash of the method names, kinds and Schemas (and of the token Schema): two sides with different fingerprints
   * have drifted apart.
   */
  readonly fingerprint: string
}

/**
 * Any gateway.
 *
 * @since 0.1.0
 */
export type Any = RpcGateway<string, any, any>

/**
 * The fencing token a gateway's calls carry: its declared token's type, or `unknown` for a gateway that declares
 * none (any token, checked by the endpoint at connect).
 *
 * @since 0.1.0
 */
export type TokenOf<G extends Any> = G extends RpcGateway<string, any, infer Token> ? Token : never

/**
 * Options of a gateway definition.
 *
 * @since 0.1.0
 */
export interface Options<Token> {
  /** Declares the gateway fenced, with the Schema of its endpoints' fencing token. */
  readonly token?: Schema.Codec<Token, any> | undefined
}

/**
 * Defines a gateway from its name (unique among the gateways an endpoint serves) and its methods; pass
 * `{ token: Schema }` for the protocol of a fenced endpoint, so that clients are type-checked against its token.
 *
 * @since 0.1.0
 */
export const make = <const Name extends string, const M extends Methods, Token = unknown>(
  name: Name,
  methods: M,
  options?: Options<Token> | undefined
): RpcGateway<Name, M, Token> => {
  let fingerprint: string | undefined
  const token = options?.token
  return {
    [TypeId]: TypeId,
    name,
    methods,
    token,
    get fingerprint() {
      return fingerprint ??= computeFingerprint(name, methods, token)
    }
  }
}

/**
 * Is this a gateway?
 *
 * @since 0.1.0
 */
export const isRpcGateway = (u: unknown): u is Any => hasProperty(u, TypeId)

const describeAst = (ast: SchemaAST.AST): string => {
  try {
    return JSON.stringify(SchemaRepresentation.toJson(SchemaRepresentation.toRepresentation(ast)))
  } catch {
    return String(ast)
  }
}

const computeFingerprint = (name: string, methods: Methods, token: AnySchema | undefined): string => {
  // A gateway without a declared token keeps the fingerprint it had before tokens could be declared.
  const parts = token === undefined ? [name] : [name, "\u0001token", describeAst(token.ast)]
  for (const key of Object.keys(methods).sort()) {
    const method = methods[key]!
    parts.push(
      key,
      method.kind,
      describeAst(method.payload.ast),
      describeAst(method.success.ast),
      describeAst(method.failure.ast)
    )
  }
  const text = parts.join("\u0000")
  return (Hash.string(text) >>> 0).toString(16).padStart(8, "0") +
    (Hash.string(text.split("").reverse().join("")) >>> 0).toString(16).padStart(8, "0")
}

/**
 * Options of a single call.
 *
 * @since 0.1.0
 */
export interface CallOptions {
  /** Overrides the method's and the service's timeout for this call (asks only). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The function a client exposes for one method.
 *
 * @since 0.1.0
 */
export type ClientMethod<M extends Method> = M extends Method<infer Kind, infer P, infer S, infer F> ? (
    ...args: [P["Type"]] extends [void] ? [payload?: P["Type"], options?: CallOptions]
      : [payload: P["Type"], options?: CallOptions]
  ) => Kind extends "ask" ? Effect.Effect<S["Type"], F["Type"] | RpcCallError>
    : Effect.Effect<void, RpcCallError>
  : never

/**
 * A gateway client: one function per method, plus the address it talks to. Local and remote clients share it.
 *
 * @since 0.1.0
 */
export type Client<G extends Any> =
  & { readonly [K in keyof G["methods"]]: ClientMethod<G["methods"][K]> }
  & {
    /** The address of the endpoint this client calls. */
    readonly address: string
    /** The gateway this client speaks. */
    readonly gateway: G
  }

/**
 * The success type of a method.
 *
 * @since 0.1.0
 */
export type SuccessOf<M extends Method> = M["success"]["Type"]

/**
 * The failure type of a method.
 *
 * @since 0.1.0
 */
export type FailureOf<M extends Method> = M["failure"]["Type"]

/**
 * The payload type of a method.
 *
 * @since 0.1.0
 */
export type PayloadOf<M extends Method> = M["payload"]["Type"]

/**
 * A Layer that connects to `address` when built and provides the client under `tag`; pass `token` for a
 * fenced endpoint.
 *
 * @since 0.1.0
 */
export const layerClient = <I, G extends Any>(
  tag: Context.Key<I, Client<G>>,
  gateway: G,
  address: string,
  options?: { readonly token?: TokenOf<G> } | undefined
): Layer.Layer<I, RpcConnectionError | RpcServiceStoppedError, RpcService> =>
  Layer.effect(tag)(
    RpcService.use((service) =>
      options !== undefined && "token" in options
        ? service.connectFenced(address, options.token as TokenOf<G>, gateway)
        : service.connect(address, gateway)
    )
  )
