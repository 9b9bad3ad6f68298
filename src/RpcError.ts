/**
 * The typed errors of effect-actor-rpc. Every class is a `Schema.TaggedError`, so each one can cross the wire
 * unchanged, and every message says what failed, where (endpoint, method, address) and what to do about it.
 *
 * @since 0.1.0
 */
import { hasProperty } from "effect/Predicate"
import * as Schema from "effect/Schema"
import { describe } from "./internal/format.js"

const TypeId = "~effect-actor-rpc/RpcError"

/**
 * Marks every error of this module, for `isRpcError`.
 *
 * @since 0.1.0
 */
export type TypeId = typeof TypeId

const where = (address: string, method?: string | undefined) =>
  method === undefined ? `at ${address}` : `${method} at ${address}`

/**
 * An ask reached an endpoint that has not been started yet (`server.start` was not called).
 *
 * @since 0.1.0
 */
export class EndpointNotStartedError extends Schema.TaggedError<EndpointNotStartedError>()(
  "EndpointNotStartedError",
  {
    address: Schema.String,
    method: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `Cannot serve ${where(this.address, this.method)}: the endpoint has not been started. ` +
      `Call start on its server handle (or provide it with RpcEndpoint.layer) before calling it.`
  }
}

/**
 * The recipient of a call cannot be reached: the endpoint has terminated, is terminating, or its service is gone.
 *
 * @since 0.1.0
 */
export class RecipientUnreachableError extends Schema.TaggedError<RecipientUnreachableError>()(
  "RecipientUnreachableError",
  {
    address: Schema.String,
    method: Schema.String,
    reason: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `Could not deliver ${where(this.address, this.method)}: ${this.reason}. ` +
      `Reconnect once the endpoint is running again, or treat the recipient as gone.`
  }
}

/**
 * The endpoint's bounded mailbox was full when the call arrived, or the caller's connection had as many asks
 * waiting as the receiving service allows: the call was not queued (it never ran).
 *
 * @since 0.1.0
 */
export class MailboxFullError extends Schema.TaggedError<MailboxFullError>()("MailboxFullError", {
  address: Schema.String,
  method: Schema.String,
  capacity: Schema.Number,
  /** Which bound was reached: the endpoint's mailbox (the default) or the asks one connection may have waiting. */
  limit: Schema.optional(Schema.Literals(["mailboxCapacity", "maxAsksPerConnection"]))
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const full = this.limit === "maxAsksPerConnection"
      ? `this caller's connection already has ${this.capacity} asks waiting on the service (its ` +
        `RpcConfig.maxAsksPerConnection)`
      : `the endpoint's mailbox is full (${this.capacity} messages queued, its mailboxCapacity)`
    return `Rejected ${where(this.address, this.method)}: ${full}. The recipient is overloaded: retry with ` +
      `backoff, shed load, or raise the limit.`
  }
}

/**
 * An ask (or a `callAsync`) did not complete within its timeout. The call may still run on the recipient.
 *
 * @since 0.1.0
 */
export class RpcTimeoutError extends Schema.TaggedError<RpcTimeoutError>()("RpcTimeoutError", {
  address: Schema.String,
  method: Schema.String,
  timeoutMillis: Schema.Number,
  callSite: Schema.optional(Schema.String)
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const site = this.callSite === undefined ? "" : `\nCalled ${this.callSite}`
    return `Call ${where(this.address, this.method)} timed out after ${this.timeoutMillis} ms. ` +
      `The recipient may be overloaded or blocked on its main thread; raise the timeout for this method ` +
      `(per call, per method, or RpcConfig.askTimeout) or check the recipient.${site}`
  }
}

/**
 * A fenced endpoint rejected a message: its token is not set, the message carried none, or the two differ.
 *
 * @since 0.1.0
 */
export class FencingTokenError extends Schema.TaggedError<FencingTokenError>()("FencingTokenError", {
  address: Schema.String,
  method: Schema.String,
  /**
   * `NotSet`: the endpoint has no token; `Missing`: the message carried none; `Mismatch`: it carried another one;
   * `Expired`: the endpoint's token outlived the deadline it was set with (a leader past its lease); `Stale`: a
   * monotonic endpoint has already accepted a newer token.
   */
  reason: Schema.Literals(["NotSet", "Missing", "Mismatch", "Expired", "Stale"]),
  expected: Schema.optional(Schema.String),
  received: Schema.optional(Schema.String)
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    switch (this.reason) {
      case "Expired":
        return `Fencing token expired: ${where(this.address, this.method)} ignored a message with token ` +
          `${this.received ?? "<none>"} because its own token ${this.expected ?? "<not set>"} is past the deadline ` +
          `it was set with (its leadership lease ended). Look up the current leader and reconnect.`
      case "Stale":
        return `Stale fencing token: ${where(this.address, this.method)} ignored a message with token ` +
          `${this.received ?? "<none>"} because it has already accepted the newer token ${this.expected ?? "<none>"}. ` +
          `The sender is a former leader; it should step down.`
      case "NotSet":
        return `Fencing token not set: ${where(this.address, this.method)} ignored a message carrying token ` +
          `${this.received ?? "<none>"} because the endpoint has no fencing token yet. ` +
          `Retry once the endpoint has been granted leadership.`
      case "Missing":
        return `Unfenced message rejected: ${where(this.address, this.method)} is a fenced endpoint ` +
          `(current token ${this.expected ?? "<not set>"}); connect with RpcService.connectFenced and a token.`
      case "Mismatch":
        return `Fencing token mismatch: ${where(this.address, this.method)} ignored a message with token ` +
          `${this.received ?? "<none>"} because the expected fencing token is ${this.expected ?? "<not set>"}. ` +
          `The sender is talking to a former leader; look up the current leader and reconnect.`
    }
  }
}

/**
 * Why a connection to an address could not be established: a malformed address, an unknown service or endpoint,
 * an endpoint that does not serve the gateway (or serves another version of it), another protocol version, a host
 * that does not resolve, a refused or unreachable port, an untrusted TLS peer, a token given to an unfenced endpoint
 * (`NotFenced`) or one its token Schema rejects (`InvalidToken`), or a connect that exceeded its timeout.
 *
 * @since 0.1.0
 */
export const ConnectionFailureReason = Schema.Literals([
  "InvalidAddress",
  "UnknownService",
  "UnknownEndpoint",
  "GatewayNotServed",
  "GatewayMismatch",
  "VersionMismatch",
  "UnknownHost",
  "Refused",
  "Unreachable",
  "Untrusted",
  "NotFenced",
  "InvalidToken",
  "Timeout"
])

/**
 * One of the reasons a connection can fail.
 *
 * @since 0.1.0
 */
export type ConnectionFailureReason = typeof ConnectionFailureReason.Type

/**
 * Connecting to an address failed at once, with the reason.
 *
 * @since 0.1.0
 */
export class RpcConnectionError extends Schema.TaggedError<RpcConnectionError>()("RpcConnectionError", {
  address: Schema.String,
  gateway: Schema.String,
  reason: ConnectionFailureReason,
  detail: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `Could not connect gateway ${this.gateway} to ${this.address} (${this.reason}): ${this.detail}`
  }
}

/**
 * The RpcService has been shut down (or is shutting down) and takes no more work.
 *
 * @since 0.1.0
 */
export class RpcServiceStoppedError extends Schema.TaggedError<RpcServiceStoppedError>()(
  "RpcServiceStoppedError",
  {
    service: Schema.String,
    operation: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `RpcService ${this.service} is stopped: cannot ${this.operation}. ` +
      `Use a service whose Layer is still open, or build a new one.`
  }
}

/**
 * An endpoint with this id is still live on the service.
 *
 * @since 0.1.0
 */
export class EndpointIdInUseError extends Schema.TaggedError<EndpointIdInUseError>()("EndpointIdInUseError", {
  service: Schema.String,
  endpointId: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `Endpoint id "${this.endpointId}" is already in use on RpcService ${this.service}. ` +
      `Pick another id, omit it to get a generated one, or wait for the old endpoint's termination.`
  }
}

/**
 * An in-process RpcService with this name is already running: `local://name/...` addresses name one service.
 *
 * @since 0.2.0
 */
export class ServiceNameInUseError extends Schema.TaggedError<ServiceNameInUseError>()("ServiceNameInUseError", {
  service: Schema.String
}) {
  /** @since 0.2.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `An RpcService named "${this.service}" is already running in this process. Choose another name, omit ` +
      `it to get a generated one, or shut the other service down first.`
  }
}

/**
 * An RpcService shut down, but some of its endpoints' terminations failed (an `onStop` failed, or an `onStart`
 * had): every endpoint has terminated nonetheless, and each failure is listed with its endpoint.
 *
 * @since 0.2.0
 */
export class RpcServiceShutdownError extends Schema.TaggedError<RpcServiceShutdownError>()(
  "RpcServiceShutdownError",
  {
    service: Schema.String,
    failures: Schema.Array(Schema.Struct({ endpointId: Schema.String, address: Schema.String, cause: Schema.Defect() }))
  }
) {
  /** @since 0.2.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const listed = this.failures.map((failure) => `${failure.endpointId} (${failure.address}): ${describe(failure.cause)}`)
    return `RpcService ${this.service} shut down, but ${this.failures.length} endpoint(s) failed to terminate ` +
      `cleanly: ${listed.join("; ")}. Every endpoint has terminated; fix the failing onStop (or onStart).`
  }
}

/**
 * The endpoint does not serve the method called, in the kind called: it runs another version of the gateway, one
 * without this method (a method added on the caller's side, or removed on the endpoint's), or with it as the other
 * kind. Only this method fails; the rest of the gateway keeps working (docs/PROTOCOL.md, "Gateway evolution").
 *
 * @since 0.2.0
 */
export class MethodNotServedError extends Schema.TaggedError<MethodNotServedError>()("MethodNotServedError", {
  address: Schema.String,
  method: Schema.String,
  /** How the caller called it. */
  kind: Schema.Literals(["ask", "tell"]),
  /** How the endpoint serves a method of that name, when it does as the other kind; absent when it has none. */
  served: Schema.optional(Schema.Literals(["ask", "tell"]))
}) {
  /** @since 0.2.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const what = this.served === undefined
      ? `its version of the gateway has no such method`
      : `it serves it as ${article(this.served)}, not as ${article(this.kind)}`
    return `The endpoint ${where(this.address)} does not serve ${this.method}: ${what}. The two sides run different ` +
      `versions of the gateway; the rest of it works. Call ${this.method} once the endpoint runs a version that ` +
      `serves it, or handle MethodNotServedError.`
  }
}

const article = (kind: "ask" | "tell") => kind === "ask" ? "an ask" : "a tell"

/**
 * A message is larger than `RpcConfig.maximumFrameSize`.
 *
 * @since 0.1.0
 */
export class FrameTooLargeError extends Schema.TaggedError<FrameTooLargeError>()("FrameTooLargeError", {
  address: Schema.String,
  method: Schema.String,
  direction: Schema.Literals(["request", "response"]),
  size: Schema.Number,
  limit: Schema.Number
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `The ${this.direction} of ${where(this.address, this.method)} is ${this.size} bytes, over the ` +
      `maximum frame size of ${this.limit} bytes. Send less per call or raise RpcConfig.maximumFrameSize ` +
      `on both sides.`
  }
}

/**
 * A handler died (threw, or failed with a defect) while serving a call.
 *
 * @since 0.1.0
 */
export class RemoteDefectError extends Schema.TaggedError<RemoteDefectError>()("RemoteDefectError", {
  address: Schema.String,
  method: Schema.String,
  defect: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `The handler of ${where(this.address, this.method)} died: ${this.defect}. ` +
      `This is a bug in the endpoint; the endpoint keeps serving other calls.`
  }
}

/**
 * A payload, reply or fencing token could not be encoded or decoded with its Schema (remote calls only). A
 * request that does not encode fails at the caller and nothing is sent.
 *
 * @since 0.1.0
 */
export class RpcSerializationError extends Schema.TaggedError<RpcSerializationError>()("RpcSerializationError", {
  address: Schema.String,
  method: Schema.String,
  direction: Schema.Literals(["request", "response"]),
  operation: Schema.Literals(["encode", "decode"]),
  detail: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const side = this.operation === "encode"
      ? (this.direction === "request" ? "the caller" : "the endpoint")
      : (this.direction === "request" ? "the endpoint" : "the caller")
    return `Could not ${this.operation} the ${this.direction} of ${where(this.address, this.method)} on ${side}: ` +
      `${this.detail}. Check that the value matches the method's Schema and that both sides run the same ` +
      `version of the gateway.`
  }
}

/**
 * A transport could not start: every port of the range is taken, the host cannot be bound, or its TLS material
 * cannot be loaded.
 *
 * @since 0.1.0
 */
export class RpcBindError extends Schema.TaggedError<RpcBindError>()("RpcBindError", {
  host: Schema.String,
  portRange: Schema.String,
  detail: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const advice = this.detail.includes("TLS")
      ? `Pass key, cert and ca (PEM strings or file paths) to RpcService.layerTls, or set RpcConfig's tls fields.`
      : `Free a port of the range, widen it, or use "0" for any free port.`
    return `Could not start an RpcService transport on ${this.host}, port range "${this.portRange}": ` +
      `${this.detail}. ${advice}`
  }
}

/**
 * An endpoint's `onStart` failed, so the endpoint terminated; its termination fails with this error.
 *
 * @since 0.1.0
 */
export class EndpointStartError extends Schema.TaggedError<EndpointStartError>()("EndpointStartError", {
  address: Schema.String,
  cause: Schema.Defect()
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `Could not start the endpoint at ${this.address}: onStart failed with ${describe(this.cause)}. ` +
      `The endpoint has terminated; fix the cause and start a new one.`
  }
}

/**
 * Code that must run on an endpoint's main thread ran somewhere else (raised as a defect).
 *
 * @since 0.1.0
 */
export class MainThreadViolationError extends Schema.TaggedError<MainThreadViolationError>()(
  "MainThreadViolationError",
  {
    address: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `Code that must run on the main thread of ${this.address} ran on another fiber. ` +
      `Re-enter the endpoint with runAsync / callAsync instead of touching its state directly.`
  }
}

/**
 * The errors any call through a gateway client can fail with, besides the method's own failure.
 *
 * @since 0.1.0
 */
export type RpcCallError =
  | EndpointNotStartedError
  | RecipientUnreachableError
  | RpcTimeoutError
  | FencingTokenError
  | RpcServiceStoppedError
  | FrameTooLargeError
  | RemoteDefectError
  | RpcSerializationError
  | MailboxFullError
  | MethodNotServedError

/**
 * Every error of this module.
 *
 * @since 0.1.0
 */
export type RpcError =
  | RpcCallError
  | RpcConnectionError
  | RpcBindError
  | EndpointIdInUseError
  | ServiceNameInUseError
  | RpcServiceShutdownError
  | EndpointStartError
  | MainThreadViolationError

/**
 * The Schema of every error a call can fail with besides the method's own failure (what crosses the wire).
 *
 * @since 0.1.0
 */
export const RpcCallError = Schema.Union([
  EndpointNotStartedError,
  RecipientUnreachableError,
  RpcTimeoutError,
  FencingTokenError,
  RpcServiceStoppedError,
  FrameTooLargeError,
  RemoteDefectError,
  RpcSerializationError,
  MailboxFullError,
  MethodNotServedError
])

/**
 * Is this one of the errors of this module?
 *
 * @since 0.1.0
 */
export const isRpcError = (u: unknown): u is RpcError => hasProperty(u, TypeId)
