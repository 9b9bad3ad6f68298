/**
 * Fencing, as pure functions: how an endpoint definition's tokens are compared, printed and read from the wire,
 * and whether a message's token lets it run. The runtime keeps the current token; this module decides.
 */
import * as Equal from "effect/Equal"
import * as Option from "effect/Option"
import type * as Order from "effect/Order"
import * as Schema from "effect/Schema"
import { FencingTokenError } from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import { describe } from "./format.js"
import { type Invocation, NoToken, qualified, UndecodableToken } from "./invocation.js"

/** How one endpoint definition's tokens are compared, printed and read: made once, shared by its endpoints. */
export interface TokenCodec {
  readonly equals: (a: unknown, b: unknown) => boolean
  readonly format: (token: unknown) => string
  /** Tokens cross the wire as plain data: the token itself, or its Schema's encoded form. */
  readonly decodeWire: (raw: unknown) => unknown
}

const unfenced: TokenCodec = { equals: Equal.equals, format: describe, decodeWire: () => NoToken }

/** The codec of a definition's fencing (`undefined`: an unfenced endpoint, whose messages carry no token). */
export const codecOf = (fencing: RpcEndpoint.Fencing<unknown> | undefined): TokenCodec => {
  if (fencing === undefined) return unfenced
  const equivalence = Schema.toEquivalence(fencing.schema)
  const encode = Schema.encodeUnknownOption(fencing.schema)
  const is = Schema.is(fencing.schema)
  const decode = Schema.decodeUnknownOption(fencing.schema)
  return {
    equals: (a, b) => a === b || equivalence(a, b),
    format: (token) =>
      token instanceof UndecodableToken ? describe(token.raw) : Option.match(encode(token), {
        onNone: () => describe(token),
        onSome: (encoded) => describe(encoded)
      }),
    decodeWire: (raw) => is(raw) ? raw : Option.getOrElse(decode(raw), () => new UndecodableToken(raw))
  }
}

/** A fenced endpoint's token state; the runtime keeps it, changing it on its main thread (or clearing it at once). */
export interface TokenState {
  /** The current token; for a monotonic endpoint, the highest admitted so far. */
  token: Option.Option<unknown>
  /** When the current token stops admitting messages, by the service's clock; undefined: never. */
  validUntil: (() => number) | undefined
}

/**
 * Whether a message carrying `received` may run on a fenced endpoint in state `state`: `undefined` when it may, the
 * rejection otherwise. `what` names the call in the error (an invocation, or `runAsync` / `callAsync`); an
 * invocation's name is built only for a rejection. `now` reads the service's clock, only when a deadline is set.
 *
 * Exact fencing (the default) admits only the current token. Monotonic fencing (`order`) admits any token not lower
 * than the highest admitted so far; the runtime then records it with {@link admit}.
 */
export const check = (
  codec: TokenCodec,
  state: TokenState,
  received: unknown,
  order: Order.Order<unknown> | undefined,
  now: () => number,
  address: string,
  what: Invocation | string
): FencingTokenError | undefined => {
  const reason = rejection(codec, state, received, order, now)
  return reason === undefined ? undefined : rejected(codec, state, received, reason, address, what)
}

/** Why the message may not run, or undefined; allocates nothing (it runs for every fenced message). */
const rejection = (
  codec: TokenCodec,
  state: TokenState,
  received: unknown,
  order: Order.Order<unknown> | undefined,
  now: () => number
): FencingTokenError["reason"] | undefined => {
  const expected = state.token
  if (received === NoToken) return Option.isNone(expected) && order === undefined ? "NotSet" : "Missing"
  if (received instanceof UndecodableToken) return Option.isNone(expected) && order === undefined ? "NotSet" : "Mismatch"
  const expired = state.validUntil !== undefined && now() >= state.validUntil()
  if (order === undefined) {
    if (Option.isNone(expected)) return "NotSet"
    if (!(received === expected.value || codec.equals(received, expected.value))) return expired ? "Expired" : "Mismatch"
  } else if (Option.isSome(expected) && order(received, expected.value) < 0) {
    return "Stale"
  }
  return expired ? "Expired" : undefined
}

const rejected = (
  codec: TokenCodec,
  state: TokenState,
  received: unknown,
  reason: FencingTokenError["reason"],
  address: string,
  what: Invocation | string
): FencingTokenError => {
  const expected = state.token
  return new FencingTokenError({
    address,
    method: typeof what === "string" ? what : qualified(what.gateway, what.method),
    reason,
    ...(Option.isSome(expected) ? { expected: codec.format(expected.value) } : {}),
    ...(received === NoToken ? {} : { received: codec.format(received) })
  })
}

/** A monotonic endpoint admitted `received`: it becomes the highest admitted if it is higher. */
export const admit = (state: TokenState, received: unknown, order: Order.Order<unknown>): void => {
  if (Option.isNone(state.token) || order(received, state.token.value) > 0) state.token = Option.some(received)
}
