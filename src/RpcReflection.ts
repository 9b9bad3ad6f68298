/**
 * Reflection: a service tells, over the wire, which endpoints it runs, which gateways each serves, and each method's
 * kind and Schemas (their snapshot, as `RpcCompatibility.snapshot` makes it). It is a gateway like any other, served
 * at a reserved endpoint id when `RpcConfig.reflection` is on (off by default: docs/SECURITY.md), as gRPC's
 * reflection is a service of its own. The command-line client's `list`, `describe` and `call` use it.
 *
 * ```ts
 * const reflection = yield* RpcReflection.connect("rpc://127.0.0.1:6123")
 * const { endpoints } = yield* reflection.list()
 * const snapshots = yield* reflection.describe({ endpointId: endpoints[0].endpointId })
 * ```
 *
 * @since 0.2.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { hasProperty } from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { RpcService } from "./internal/serviceTag.js"
import { GatewaySnapshot } from "./RpcCompatibility.js"
import { RpcConnectionError, type RpcServiceStoppedError } from "./RpcError.js"
import * as RpcGateway from "./RpcGateway.js"

/**
 * The endpoint id reflection is served at, on every service that has `RpcConfig.reflection` on. A user endpoint
 * cannot take it there (`EndpointIdInUseError`).
 *
 * @since 0.2.0
 */
export const ENDPOINT_ID = "effect-actor-rpc.reflection"

/**
 * A method of a gateway: its name and kind.
 *
 * @since 0.2.0
 */
export const MethodInfo = Schema.Struct({
  name: Schema.String,
  kind: Schema.Literals(["ask", "tell"])
})

/**
 * A gateway an endpoint serves: its name, fingerprint, whether it declares a fencing token, and its methods.
 *
 * @since 0.2.0
 */
export const GatewayInfo = Schema.Struct({
  name: Schema.String,
  fingerprint: Schema.String,
  /** Does the gateway declare a fencing token's Schema (its calls need a token)? */
  fenced: Schema.Boolean,
  methods: Schema.Array(MethodInfo)
})

/**
 * The type of {@link GatewayInfo}.
 *
 * @since 0.2.0
 */
export type GatewayInfo = typeof GatewayInfo.Type

/**
 * An endpoint a service runs: its id and address, its lifecycle state, whether it is fenced, and its gateways.
 *
 * @since 0.2.0
 */
export const EndpointInfo = Schema.Struct({
  endpointId: Schema.String,
  address: Schema.String,
  state: Schema.Literals(["created", "started", "stopping", "terminated"]),
  fenced: Schema.Boolean,
  gateways: Schema.Array(GatewayInfo)
})

/**
 * The type of {@link EndpointInfo}.
 *
 * @since 0.2.0
 */
export type EndpointInfo = typeof EndpointInfo.Type

/**
 * What `list` answers: the service's name, the `host:port` it advertises (null in-process) and its endpoints, by
 * id (the reflection endpoint itself is left out).
 *
 * @since 0.2.0
 */
export const ServiceInfo = Schema.Struct({
  service: Schema.String,
  authority: Schema.NullOr(Schema.String),
  endpoints: Schema.Array(EndpointInfo)
})

/**
 * The type of {@link ServiceInfo}.
 *
 * @since 0.2.0
 */
export type ServiceInfo = typeof ServiceInfo.Type

const EndpointNotFoundErrorTypeId = "~effect-actor-rpc/RpcReflection/EndpointNotFoundError"

/**
 * `describe` named an endpoint the service does not run.
 *
 * @since 0.2.0
 */
export class EndpointNotFoundError extends Schema.TaggedError<EndpointNotFoundError>()("EndpointNotFoundError", {
  service: Schema.String,
  endpointId: Schema.String
}) {
  /** @since 0.2.0 */
  readonly [EndpointNotFoundErrorTypeId] = EndpointNotFoundErrorTypeId

  override get message(): string {
    return `RpcService ${this.service} runs no endpoint "${this.endpointId}" (it has terminated, or never existed). ` +
      `List the endpoints it runs with RpcReflection's list (effect-actor-rpc list).`
  }
}

/**
 * Is this an `EndpointNotFoundError`?
 *
 * @since 0.2.0
 */
export const isEndpointNotFoundError = (u: unknown): u is EndpointNotFoundError =>
  hasProperty(u, EndpointNotFoundErrorTypeId)

/**
 * The reflection gateway: `list` the endpoints, `describe` one endpoint's gateways as snapshots.
 *
 * @since 0.2.0
 */
export const Gateway = RpcGateway.make("RpcReflection", {
  list: RpcGateway.ask({ success: ServiceInfo }),
  describe: RpcGateway.ask({
    payload: Schema.Struct({ endpointId: Schema.String }),
    success: Schema.Array(GatewaySnapshot),
    failure: EndpointNotFoundError
  })
})

/**
 * The address of the reflection endpoint of the service that `address` names: `rpc://host:port` (with or without
 * an endpoint id), `rpcs://...` or `local://service`.
 *
 * @since 0.2.0
 */
export const addressOf = (address: string): Result.Result<string, string> => {
  const match = /^(local|rpcs?):\/\/([^/]+)\/?/.exec(address)
  if (match === null) {
    return Result.fail(
      `"${address}" is not a service address; expected rpc://host:port, rpcs://host:port or local://service`
    )
  }
  // The connect checks the host and port; this module stays a definition that loads no socket module.
  return Result.succeed(`${match[1]}://${match[2]}/${ENDPOINT_ID}`)
}

/**
 * Connects to the reflection endpoint of the service at `address` (see {@link addressOf}). A service with
 * reflection off answers `UnknownEndpoint`.
 *
 * @since 0.2.0
 */
export const connect = (
  address: string,
  options?: { readonly timeout?: Duration.Input | undefined } | undefined
): Effect.Effect<RpcGateway.Client<typeof Gateway>, RpcConnectionError | RpcServiceStoppedError, RpcService> =>
  Effect.gen(function*() {
    const target = addressOf(address)
    if (Result.isFailure(target)) {
      return yield* new RpcConnectionError({
        address,
        gateway: Gateway.name,
        reason: "InvalidAddress",
        detail: target.failure
      })
    }
    const service = yield* RpcService
    return yield* service.connect(target.success, Gateway, options)
  })
