/**
 * Fencing, as pure functions: how an endpoint definition's tokens are compared, printed and read from the wire,
 * and whether a message's token lets it run. The runtime keeps the current token; this module decides.
 */
import * as Equal from "effect/Equal"
import * as Option from "effect/Option"
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

/**
 * Whether a message carrying `received` may run on a fenced endpoint whose token is `expected`: `undefined` when
 * it may, the rejection otherwise. `what` names the call in the error (an invocation, or `runAsync` /
 * `callAsync`); an invocation's name is built only for a rejection.
 */
export const check = (
  codec: TokenCodec,
  expected: Option.Option<unknown>,
  received: unknown,
  address: string,
  what: Invocation | string
): FencingTokenError | undefined => {
  if (
    Option.isSome(expected) && received !== NoToken && !(received instanceof UndecodableToken) &&
    codec.equals(received, expected.value)
  ) return undefined
  const method = () => typeof what === "string" ? what : qualified(what.gateway, what.method)
  if (Option.isNone(expected)) {
    return new FencingTokenError({
      address,
      method: method(),
      reason: "NotSet",
      ...(received === NoToken ? {} : { received: codec.format(received) })
    })
  }
  if (received === NoToken) {
    return new FencingTokenError({ address, method: method(), reason: "Missing", expected: codec.format(expected.value) })
  }
  // Anything else failed the match above: an undecodable token or another one.
  return new FencingTokenError({
    address,
    method: method(),
    reason: "Mismatch",
    expected: codec.format(expected.value),
    received: codec.format(received)
  })
}
