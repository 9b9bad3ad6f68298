/**
 * Calls and their outcomes to frames and back, as pure functions: what a connection sends for an ask or a tell,
 * what it sends back for a handler's outcome, and what a reply means to the caller. No socket is needed to test
 * them; every value that does not encode or decode becomes the library's typed error, never a throw.
 */
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Tracer from "effect/Tracer"
import {
  FrameTooLargeError,
  RemoteDefectError,
  RpcCallError,
  RpcSerializationError
} from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import { describe } from "./format.js"
import { NoToken, qualified } from "./invocation.js"
import * as Wire from "./wire.js"

/** One call out: the endpoint it goes to and what it carries. */
export interface OutboundCall {
  readonly address: string
  readonly endpointId: string
  readonly gateway: RpcGateway.Any
  readonly method: string
  readonly payload: unknown
  /** `NoToken` for an unfenced call. */
  readonly token: unknown
  /** An ask's timeout (Infinity for none): the receiver drops the ask once it has passed. */
  readonly timeoutMillis: number
  readonly span: Tracer.AnySpan | undefined
}

/** An ask or a tell as it arrived. */
export type CallMessage = Extract<Wire.Message, { _tag: "Ask" | "Tell" }>

/** The method a call names, if its gateway has it as an own property (a hostile name must not reach a prototype). */
export const methodOf = (methods: RpcGateway.Methods | undefined, name: string): RpcGateway.Method | undefined =>
  methods !== undefined && Object.hasOwn(methods, name) ? methods[name] : undefined

const cannotEncodeRequest = (call: OutboundCall, detail: string) =>
  new RpcSerializationError({
    address: call.address,
    method: qualified(call.gateway.name, call.method),
    direction: "request",
    operation: "encode",
    detail
  })

/**
 * The frame of a call. A payload or token that does not encode, or a frame over `limit`, is the error to fail
 * the call with: nothing is sent.
 */
export const encodeCall = (
  call: OutboundCall,
  tell: boolean,
  id: number,
  limit: number
): Result.Result<Wire.OutFrame, RpcSerializationError | FrameTooLargeError> => {
  const { address, gateway, method } = call
  const spec = (gateway.methods as RpcGateway.Methods)[method]!
  const encoded = Wire.encodeValue(spec.payload, call.payload)
  if (Result.isFailure(encoded)) return Result.fail(cannotEncodeRequest(call, encoded.failure))
  let frame: Wire.OutFrame
  try {
    const token = call.token === NoToken ? undefined : { value: call.token }
    const timeout = call.timeoutMillis === Infinity ? undefined : Math.max(0, Math.ceil(call.timeoutMillis))
    const span = call.span
    const trace = span === undefined
      ? undefined
      : { traceId: span.traceId, spanId: span.spanId, sampled: span.sampled }
    frame = Wire.call(tell, id, call.endpointId, gateway.name, method, token, timeout, trace, encoded.success)
  } catch (error) {
    return Result.fail(cannotEncodeRequest(call, `the fencing token cannot be packed: ${describe(error)}`))
  }
  if (frame.size > limit) {
    return Result.fail(
      new FrameTooLargeError({ address, method: qualified(gateway.name, method), direction: "request", size: frame.size, limit })
    )
  }
  return Result.succeed(frame)
}

/** Where a call was served: the endpoint's address and the qualified method, for the errors of its reply. */
export interface Served {
  readonly address: string
  readonly method: string
}

/** The address of an endpoint of this service, by id: how a reply's errors name where the call was served. */
export type AddressOf = (endpointId: string) => string

/** Built on error paths only: a successful reply names nothing. */
const servedBy = (call: CallMessage, addressOf: AddressOf): Served => ({
  address: addressOf(call.endpointId),
  method: qualified(call.gateway, call.method)
})

const encodeRpcError = (error: RpcCallError) => Wire.encodeValue(RpcCallError, error)
const decodeRpcError = (wire: unknown) => Wire.decodeValue(RpcCallError, wire)
const isRpcCallError = Schema.is(RpcCallError)

const cannotEncodeResponse = (served: Served, detail: string) =>
  new RpcSerializationError({ ...served, direction: "response", operation: "encode", detail })

/** A reply to `call` carrying one of the library's errors (and if even that cannot be encoded, the encoding error). */
export const errorReply = (call: CallMessage, error: RpcCallError, addressOf: AddressOf): Wire.OutFrame => {
  const encoded = encodeRpcError(error)
  return Wire.reply(
    call.id,
    Wire.Outcome.Error,
    Result.isSuccess(encoded)
      ? encoded.success
      : Result.getOrThrow(encodeRpcError(cannotEncodeResponse(servedBy(call, addressOf), encoded.failure)))
  )
}

/**
 * The reply frame of the ask `call` whose handler ended with `exit` (`spec`: the method, when the call reached
 * one). What cannot be encoded becomes a typed error reply. The frame limit is the caller's to check
 * ({@link tooLargeReply}).
 */
export const encodeReply = (
  call: CallMessage,
  spec: RpcGateway.Method | undefined,
  exit: Exit.Exit<unknown, unknown>,
  addressOf: AddressOf
): Wire.OutFrame => {
  const id = call.id
  if (Exit.isSuccess(exit)) {
    // A `void` handler may still return something (TypeScript allows it); there is nothing to send.
    const value = Wire.encodeValue(spec!.success, spec!.success === Schema.Void ? undefined : exit.value)
    return Result.isSuccess(value)
      ? Wire.reply(id, Wire.Outcome.Success, value.success)
      : errorReply(call, cannotEncodeResponse(servedBy(call, addressOf), value.failure), addressOf)
  }
  const error = Exit.findErrorOption(exit)
  const failure = error._tag === "Some" ? error.value : describe(exit.cause)
  if (isRpcCallError(failure)) return errorReply(call, failure, addressOf)
  const value = spec === undefined ? undefined : Wire.encodeValue(spec.failure, failure)
  return value !== undefined && Result.isSuccess(value)
    ? Wire.reply(id, Wire.Outcome.Failure, value.success)
    : errorReply(
      call,
      new RemoteDefectError({
        ...servedBy(call, addressOf),
        defect: `the handler failed with ${describe(failure)}, which its failure Schema does not describe`
      }),
      addressOf
    )
}

/** The reply that replaces one of `size` bytes, over `limit`: a `FrameTooLargeError` naming both. */
export const tooLargeReply = (call: CallMessage, size: number, limit: number, addressOf: AddressOf): Wire.OutFrame =>
  errorReply(
    call,
    new FrameTooLargeError({ ...servedBy(call, addressOf), direction: "response", size, limit }),
    addressOf
  )

/** What a reply means to the caller of `call`, whose method is `spec`. */
export const decodeReply = (
  spec: RpcGateway.Method,
  call: OutboundCall,
  outcome: number,
  value: unknown
): Exit.Exit<unknown, unknown> => {
  const decoded = outcome === Wire.Outcome.Success
    ? Wire.decodeValue(spec.success, value)
    : outcome === Wire.Outcome.Failure
    ? Wire.decodeValue(spec.failure, value)
    : decodeRpcError(value)
  if (Result.isFailure(decoded)) {
    return Exit.fail(
      new RpcSerializationError({
        address: call.address,
        method: qualified(call.gateway.name, call.method),
        direction: "response",
        operation: "decode",
        detail: decoded.failure
      })
    )
  }
  return outcome === Wire.Outcome.Success ? Exit.succeed(decoded.success) : Exit.fail(decoded.success)
}
