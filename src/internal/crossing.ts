/**
 * Ports for a client whose version of a gateway differs from its endpoint's, once the connect has accepted the
 * difference (./exchange.ts):
 *
 * - `withNotServed` fails the calls of the methods the endpoint does not serve at once, with
 *   `MethodNotServedError`, asks and tells alike (a tell that reached the endpoint could not tell its caller);
 * - `crossing` makes an in-process call cross as it would cross the wire: the payload encoded with the caller's
 *   Schema and decoded with the endpoint's, the reply the other way. In-process calls otherwise pass values by
 *   reference, which is right only when both sides have the same Schemas: a field renamed with its `fieldId` kept,
 *   or a transformation on one side only, would reach the other side as the wrong value. So local connects follow
 *   the same policy, and the same rules, as remote ones.
 */
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { MethodNotServedError, RpcCallError, RpcSerializationError } from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { Port } from "./client.js"
import { qualified, type Resume } from "./invocation.js"
import * as Wire from "./wire.js"

const notServedError = (address: string, gateway: RpcGateway.Any, method: string) =>
  new MethodNotServedError({
    address,
    method: qualified(gateway.name, method),
    kind: (gateway.methods as RpcGateway.Methods)[method]!.kind
  })

/** `port`, with the calls of the methods in `notServed` failing at once; `port` itself when there are none. */
export const withNotServed = (port: Port, notServed: ReadonlyArray<string>): Port => {
  if (notServed.length === 0) return port
  const missing = new Set(notServed)
  return {
    address: port.address,
    ask: (gateway, method, payload, token, timeoutMillis, now, span, resume) => {
      if (!missing.has(method)) return port.ask(gateway, method, payload, token, timeoutMillis, now, span, resume)
      resume(Exit.fail(notServedError(port.address, gateway, method)))
      return undefined
    },
    tell: (gateway, method, payload, token, span) =>
      missing.has(method)
        ? notServedError(port.address, gateway, method)
        : port.tell(gateway, method, payload, token, span)
  }
}

const isRpcCallError = Schema.is(RpcCallError)

/** Which half of a crossing failed, and why. */
interface CrossFailure {
  readonly op: "encode" | "decode"
  readonly detail: string
}

/** A value written with `writer`'s Schema and read with `reader`'s, as the wire would carry it. */
const cross = (writer: Schema.Top, reader: Schema.Top, value: unknown): Result.Result<unknown, CrossFailure> => {
  const encoded = Wire.encodeValue(writer, value)
  if (Result.isFailure(encoded)) return Result.fail({ op: "encode", detail: encoded.failure })
  const decoded = Wire.decodeValue(reader, encoded.success)
  return Result.isFailure(decoded)
    ? Result.fail({ op: "decode", detail: decoded.failure })
    : Result.succeed(decoded.success)
}

/**
 * A port over `port` (the endpoint's local port) for a caller speaking `callerGateway` to an endpoint serving
 * `endpointGateway`: every value crosses through both sides' codecs, as it would over the wire.
 */
export const crossing = (
  port: Port,
  callerGateway: RpcGateway.Any,
  endpointGateway: RpcGateway.Any,
  notServed: ReadonlyArray<string>
): Port => {
  const address = port.address
  const callerMethods = callerGateway.methods as RpcGateway.Methods
  const endpointMethods = endpointGateway.methods as RpcGateway.Methods
  const serializationError = (method: string, direction: "request" | "response", failure: CrossFailure) =>
    new RpcSerializationError({
      address,
      method: qualified(callerGateway.name, method),
      direction,
      operation: failure.op,
      detail: failure.detail
    })
  const payloadFor = (method: string, payload: unknown) =>
    Result.mapError(
      cross(callerMethods[method]!.payload, endpointMethods[method]!.payload, payload),
      (failure) => serializationError(method, "request", failure)
    )
  const replyTo = (method: string, resume: Resume): Resume => (exit) => {
    const caller = callerMethods[method]!
    const endpoint = endpointMethods[method]!
    if (Exit.isSuccess(exit)) {
      const value = cross(endpoint.success, caller.success, endpoint.success === Schema.Void ? undefined : exit.value)
      return resume(
        Result.isSuccess(value)
          ? Exit.succeed(value.success)
          : Exit.fail(serializationError(method, "response", value.failure))
      )
    }
    const found = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    // Defects, interruptions and the library's own errors are the same on both sides.
    if (found === undefined || isRpcCallError(found.error)) return resume(exit)
    const value = cross(endpoint.failure, caller.failure, found.error)
    resume(Exit.fail(Result.isSuccess(value) ? value.success : serializationError(method, "response", value.failure)))
  }
  return withNotServed({
    address,
    ask: (_gateway, method, payload, token, timeoutMillis, now, span, resume) => {
      const crossed = payloadFor(method, payload)
      if (Result.isFailure(crossed)) {
        resume(Exit.fail(crossed.failure))
        return undefined
      }
      return port.ask(endpointGateway, method, crossed.success, token, timeoutMillis, now, span, replyTo(method, resume))
    },
    tell: (_gateway, method, payload, token, span) => {
      const crossed = payloadFor(method, payload)
      return Result.isFailure(crossed)
        ? crossed.failure
        : port.tell(endpointGateway, method, crossed.success, token, span)
    }
  }, notServed)
}
